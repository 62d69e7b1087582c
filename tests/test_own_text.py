"""The user's own text corpus: `prepare.custom.<name>: {format: text, path: ...}` prepares under
the user's name with its own counts and runs the language-model track (docs/data.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from dnas.config import Prepare, parse_params
from dnas.data import check_prepare, load_prepared, prepare_dataset
from dnas.errors import UserError

SLOTS = [("the", "a"), ("big", "small", "red"), ("cat", "dog"), ("sat", "ran"),
         ("on", "under"), ("the",), ("mat", "log")]  # fmt: skip


def sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(str(rng.choice(s)) for s in SLOTS) for _ in range(n)]


def write_folder(root: Path, sizes=(120, 20, 20)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, (part, n) in enumerate(zip(("train", "valid", "test"), sizes, strict=True)):
        (root / f"{part}.txt").write_text("".join(f"{s}\n" for s in sentences(n, i)), "utf-8")
    return root


def prep(name: str, spec: dict, root: Path) -> Path:
    p = Prepare.model_validate({"datasets": [name], "custom": {name: spec}})
    return prepare_dataset(name, p, root)


def test_a_text_folder_prepares_under_the_users_name_with_its_own_counts(tmp_path):
    src = write_folder(tmp_path / "corpus")
    (src / "valid.txt").write_text("ünïcode wörds here\n\nthe cat\n", "utf-8")  # a blank line
    out = prep("mycorpus", {"format": "text", "path": str(src)}, tmp_path / "prepared")
    card = json.loads((out / "card.json").read_text())
    data = load_prepared(out)
    assert out.name == "mycorpus" and card["name"] == "mycorpus" == data.name
    assert card["kind"] == "text" and "published_counts" not in card
    # independent count: whitespace words plus one <eos> per line
    for part in ("train", "valid", "test"):
        lines = (src / f"{part}.txt").read_text("utf-8").splitlines()
        assert card["counts"][part] == sum(len(ln.split()) + 1 for ln in lines) == len(
            getattr(data, part)
        )
    assert card["lines"]["valid"] == 3
    words = {w for part in ("train", "valid", "test")
             for w in (src / f"{part}.txt").read_text("utf-8").split()}  # fmt: skip
    assert set(data.vocab) == words | {"<eos>"} and "wörds" in data.vocab
    assert card["source"]["format"] == "text" and card["source"]["path"] == str(src)
    assert set(card["source"]["sha256"]) == {"train.txt", "valid.txt", "test.txt"}


def test_one_file_is_cut_by_line_fractions_in_order(tmp_path):
    lines = sentences(50, 3)
    f = tmp_path / "all.txt"
    f.write_bytes(("\ufeff" + "\r\n".join(lines) + "\r\n").encode("utf-8"))  # BOM, CRLF
    spec = {"format": "text", "path": str(f), "split": [0.6, 0.2, 0.2]}
    data = load_prepared(prep("notes", spec, tmp_path / "prepared"))
    assert data.card["lines"] == {"train": 30, "valid": 10, "test": 10}
    assert data.card["source"]["lines_per_part"] == [30, 10, 10]
    decoded = [data.vocab[i] for i in data.test]
    assert decoded == [w for ln in lines[40:] for w in [*ln.split(), "<eos>"]]
    assert data.vocab[data.train[0]] == lines[0].split()[0]  # the BOM is not part of a word
    # the default split is 80/10/10
    data = load_prepared(prep("notes", {"format": "text", "path": str(f)}, tmp_path / "p2"))
    assert data.card["lines"] == {"train": 40, "valid": 5, "test": 5}


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: (d / "test.txt").unlink(), r"lacks test\.txt: a text folder holds"),
        (lambda d: (d / "valid.txt").write_text("  \n\n"), r"valid\.txt has no words"),
        (lambda d: (d / "train.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00"),
         r"train\.txt is a binary file \(a NUL byte at offset 8\)"),
        (lambda d: (d / "test.txt").write_bytes("caf\u00e9 au lait\n".encode("latin-1")),
         r"test\.txt is not UTF-8 text \(byte 0xe9 at offset 3\)"),
    ],
)  # fmt: skip
def test_bad_text_folders_are_one_message(tmp_path, make, message):
    src = write_folder(tmp_path / "corpus")
    make(src)
    out = tmp_path / "prepared"
    prep("ok", {"format": "text", "path": str(write_folder(tmp_path / "ok"))}, out)
    before = {f.name: f.read_bytes() for f in (out / "ok").iterdir()}
    with pytest.raises(UserError, match=message) as err:
        prep("bad", {"format": "text", "path": str(src)}, out)
    assert "\n" not in str(err.value) and "prepare.custom.bad.path" in str(err.value)
    assert not (out / "bad").exists()
    assert {f.name: f.read_bytes() for f in (out / "ok").iterdir()} == before


def test_a_file_too_short_for_its_split_and_a_missing_path_are_one_message(tmp_path):
    f = tmp_path / "short.txt"
    f.write_text("one line\ntwo lines\nthree\n")
    short = r"has 3 lines; split \[0.8, 0.1, 0.1\] leaves the test part \(no lines\)"
    with pytest.raises(UserError, match=short):
        prep("short", {"format": "text", "path": str(f)}, tmp_path)
    with pytest.raises(UserError, match=r"does not exist; point it at a folder with train\.txt"):
        prep("gone", {"format": "text", "path": str(tmp_path / "nope")}, tmp_path)


def test_validate_checks_a_text_folder_before_prepare_runs(tmp_path):
    """`check_prepare` (the validate stage) refuses a folder that lacks a part, or a split on
    a folder, before DVC deletes the prepared data; a missing path is left to prepare."""
    src = write_folder(tmp_path / "corpus")
    spec = {"format": "text", "path": str(src)}
    p = Prepare.model_validate({"datasets": ["digits", "c"], "custom": {"c": spec}})
    check_prepare(p)  # a complete folder passes
    (src / "valid.txt").unlink()
    with pytest.raises(UserError, match=r"prepare.custom.c.path = .* lacks valid\.txt"):
        check_prepare(p)
    write_folder(src)
    split = {**spec, "split": [0.5, 0.25, 0.25]}
    p = Prepare.model_validate({"datasets": ["c"], "custom": {"c": split}})
    with pytest.raises(UserError, match=r"prepare.custom.c.split cuts one file, but .* a folder"):
        check_prepare(p)
    gone = {"format": "text", "path": str(tmp_path / "unmounted")}
    check_prepare(Prepare.model_validate({"datasets": ["c"], "custom": {"c": gone}}))


def test_image_keys_on_text_and_split_on_images_are_refused():
    raw = {"prepare": {"datasets": ["t"], "custom": {"t": {"format": "text", "path": "x"}}}}
    raw["prepare"]["custom"]["t"]["size"] = 16
    with pytest.raises(UserError, match="prepare.custom.t: size: for images"):
        parse_params(raw)
    raw["prepare"]["custom"]["t"] = {"format": "npz", "path": "x", "split": [0.8, 0.1, 0.1]}
    with pytest.raises(UserError, match="split: for a format: text corpus in one file"):
        parse_params(raw)


def test_a_text_corpus_of_ones_own_goes_with_the_rnn_space_only():
    custom = {"mine": {"format": "text", "path": "x"}}
    with pytest.raises(UserError, match="search.dataset is 'mine', a text corpus"):
        parse_params({"prepare": {"datasets": ["digits", "mine"], "custom": custom},
                      "search": {"dataset": "mine"}})  # fmt: skip
    with pytest.raises(UserError, match=r"needs a text corpus \(ptb, wt2, pydoc, mine"):
        parse_params({"prepare": {"datasets": ["digits"], "custom": custom},
                      "search": {"space": "rnn", "rnn": {}}})  # fmt: skip


def _run(module: str, *args: str) -> None:
    import importlib

    old = sys.argv
    sys.argv = [module, *args]
    try:
        importlib.import_module(module).main()
    finally:
        sys.argv = old


def test_the_language_model_track_runs_on_ones_own_text(tmp_path, monkeypatch):
    """prepare -> search (space rnn) -> train -> evaluate through the stages, on a corpus
    named as the user named it."""
    write_folder(tmp_path / "corpus")
    rnn = {"bptt": 6, "emsize": 8, "nhid": 8}
    params = {
        "common": {"device": "cpu"},
        "prepare": {"datasets": ["toy"], "custom": {"toy": {"format": "text", "path": "corpus"}}},
        "search": {"dataset": "toy", "space": "rnn", "epochs": 1, "batch_size": 8, "lr": 20.0,
                   "grad_clip": 0.25, "arch_lr": 3.0e-3, "tau_max": 10.0, "tau_min": 1.0,
                   "rnn": rnn},  # fmt: skip
        "train": {"dataset": "toy", "epochs": 2, "batch_size": 8, "lr": 5.0, "grad_clip": 0.25,
                  "rnn": {**rnn, "eval_batch_size": 4, "test_batch_size": 1}},  # fmt: skip
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    _run("stages.prepare", "--dataset", "toy")
    card = json.loads(Path("data/prepared/toy/card.json").read_text())
    assert card["name"] == "toy" and card["counts"]["train"] == 120 * 8
    _run("stages.search")
    genotype = json.loads(Path("genotype.json").read_text())
    assert genotype["space"] == "rnn"
    _run("stages.train")
    _run("stages.evaluate")
    metrics = json.loads(Path("metrics/eval.json").read_text())
    vocab = card["vocab_size"]
    # a trained model beats the uniform baseline, whose perplexity is the vocabulary size
    assert 1 < metrics["test"]["ppl"] < vocab
