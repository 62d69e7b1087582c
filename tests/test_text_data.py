"""Language-model corpora: PTB / WikiText-2 layouts, the embedded pydoc corpus, refusals."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from dnas.config import Prepare, parse_params
from dnas.data import load_prepared, prepare_dataset, text
from dnas.data.download import md5_file
from dnas.errors import UserError

# PTB style: a leading space, lower case, <unk> and N already in the text.
PTB = {
    "train": " the cat sat on the mat \n a <unk> sat N times \n",
    "valid": " the dog sat \n",
    "test": " a cat ran \n\n the end \n",
}


def test_tokenisation_matches_a_hand_count():
    ids, vocab, lines = text.encode(PTB)
    # train: 6 + 1 eos, 5 + 1 eos; valid: 3 + 1; test: 3 + 1, an empty line (eos only), 2 + 1
    assert {k: len(v) for k, v in ids.items()} == {"train": 13, "valid": 4, "test": 8}
    assert lines == {"train": 2, "valid": 1, "test": 3}
    # ids by first appearance over train, valid, test in that order
    assert vocab[:6] == ["the", "cat", "sat", "on", "mat", "<eos>"]
    assert vocab[vocab.index("dog")] == "dog" and vocab.index("dog") < vocab.index("ran")
    assert len(vocab) == len(set(" ".join(PTB.values()).split())) + 1  # + <eos>
    words = [vocab[i] for i in ids["test"]]
    assert words == ["a", "cat", "ran", "<eos>", "<eos>", "the", "end", "<eos>"]


def test_only_newline_characters_end_lines():
    # \r\n and \r end lines (universal newlines), \x0c and \u2028 do not (str.splitlines would)
    ids, vocab, lines = text.encode({"train": "a b\r\nc\rd\x0ce\u2028f\n", "valid": "", "test": ""})
    assert lines["train"] == 3
    assert [vocab[i] for i in ids["train"]] == ["a", "b", "<eos>", "c", "<eos>"] + [
        "d",
        "e",
        "f",
        "<eos>",
    ]


def write_ptb(d, prefix="ptb."):
    d.mkdir(parents=True, exist_ok=True)
    for part, body in PTB.items():
        (d / f"{prefix}{part}.txt").write_text(body)
    return d


@pytest.fixture
def ptb_md5(tmp_path, monkeypatch):
    src = write_ptb(tmp_path / "simple-examples" / "data")
    monkeypatch.setattr(text, "PTB_MD5", {p: md5_file(src / f"ptb.{p}.txt") for p in PTB})
    return src


def test_ptb_from_a_local_directory(tmp_path, ptb_md5):
    # the parent of simple-examples/data is found too
    p = Prepare(datasets=["ptb"], paths={"ptb": str(tmp_path / "simple-examples")})
    d = load_prepared(prepare_dataset("ptb", p, tmp_path / "prep"))
    assert d.card["kind"] == "text" and d.card["counts"] == {"train": 13, "valid": 4, "test": 8}
    assert d.vocab_size == len(d.vocab) == d.card["vocab_size"]
    assert d.train.dtype == np.int32
    assert " ".join(d.vocab[i] for i in d.valid) == "the dog sat <eos>"
    assert d.card["published_counts"] == {"valid": 73_760, "test": 82_430}


def test_awd_lstm_penn_layout_needs_no_checksum(tmp_path):
    write_ptb(tmp_path / "penn", prefix="")
    p = Prepare(datasets=["ptb"], paths={"ptb": str(tmp_path / "penn")})
    d = load_prepared(prepare_dataset("ptb", p, tmp_path / "prep"))
    assert d.card["counts"]["test"] == 8


def test_ptb_checksum_mismatch_keeps_earlier_data(tmp_path, ptb_md5):
    p = Prepare(datasets=["ptb"], paths={"ptb": str(ptb_md5)})
    out = prepare_dataset("ptb", p, tmp_path / "prep")
    before = (out / "card.json").read_bytes()
    (ptb_md5 / "ptb.valid.txt").write_text(" the dog sat down \n")
    with pytest.raises(UserError, match=r"ptb.valid.txt has MD5 \w+, expected"):
        prepare_dataset("ptb", p, tmp_path / "prep")
    assert (out / "card.json").read_bytes() == before


def test_ptb_download_is_checked(tmp_path, ptb_md5, monkeypatch):
    monkeypatch.setattr(
        text, "PTB_URLS", {part: (ptb_md5 / f"ptb.{part}.txt").as_uri() for part in PTB}
    )
    p = Prepare(datasets=["ptb"], raw_dir=str(tmp_path / "raw"))
    d = load_prepared(prepare_dataset("ptb", p, tmp_path / "prep"))
    assert d.card["counts"]["train"] == 13
    assert (tmp_path / "raw" / "ptb" / "ptb.test.txt").read_text() == PTB["test"]


def test_no_network_says_which_files_to_put_where(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(request, timeout=None):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(UserError, match=r"no network.*prepare.paths.ptb to a directory with ptb"):
        prepare_dataset("ptb", Prepare(datasets=["ptb"], raw_dir=str(tmp_path)), tmp_path)
    with pytest.raises(UserError, match=r"no network.*prepare.paths.wt2 to wikitext-2-v1.zip"):
        prepare_dataset("wt2", Prepare(datasets=["wt2"], raw_dir=str(tmp_path)), tmp_path)


def write_wt2_zip(path):
    with zipfile.ZipFile(path, "w") as z:
        for part, body in PTB.items():
            z.writestr(f"wikitext-2/wiki.{part}.tokens", body.replace("N", "= Heading ="))
    return path


def test_wt2_from_zip_and_directory(tmp_path):
    archive = write_wt2_zip(tmp_path / "wt2.zip")
    p = Prepare(datasets=["wt2"], paths={"wt2": str(archive)})
    a = load_prepared(prepare_dataset("wt2", p, tmp_path / "a"))
    # "N" became "= Heading =": three tokens instead of one
    assert a.card["counts"] == {"train": 15, "valid": 4, "test": 8}
    d = tmp_path / "wikitext-2"
    d.mkdir()
    with zipfile.ZipFile(archive) as z:
        for part in PTB:
            (d / f"wiki.{part}.tokens").write_bytes(z.read(f"wikitext-2/wiki.{part}.tokens"))
    b = load_prepared(prepare_dataset("wt2", Prepare(paths={"wt2": str(d)}), tmp_path / "b"))
    assert np.array_equal(a.train, b.train) and a.vocab == b.vocab


def test_wt2_canonical_zip_is_checksummed_and_truncation_caught(tmp_path):
    archive = write_wt2_zip(tmp_path / text.WT2_ZIP)
    with pytest.raises(UserError, match=f"expected {text.WT2_MD5}"):
        prepare_dataset("wt2", Prepare(paths={"wt2": str(archive)}), tmp_path / "p")
    cut = tmp_path / "cut.zip"
    cut.write_bytes(archive.read_bytes()[:-30])
    with pytest.raises(UserError, match="cut.zip is corrupt or truncated"):
        prepare_dataset("wt2", Prepare(paths={"wt2": str(cut)}), tmp_path / "p")
    assert not (tmp_path / "p" / "wt2").exists()


def test_pydoc_corpus_is_real_english_and_reproducible(tmp_path):
    a = load_prepared(prepare_dataset("pydoc", Prepare(datasets=["pydoc"]), tmp_path / "a"))
    b = prepare_dataset("pydoc", Prepare(datasets=["pydoc"]), tmp_path / "b")
    for f in ("card.json", "train.npy", "vocab.txt"):
        assert (tmp_path / "a" / "pydoc" / f).read_bytes() == (b / f).read_bytes()
    texts, _ = text.pydoc_corpus()
    for part in text.PARTS:  # tokens = words + one <eos> per line, counted independently
        lines = texts[part].split("\n")[:-1]
        assert a.card["counts"][part] == sum(len(ln.split()) + 1 for ln in lines)
    counts = a.card["counts"]
    assert counts["train"] > 20_000 and counts["valid"] > 1_000 and counts["test"] > 1_000
    assert 0.7 < counts["train"] / sum(counts.values()) < 0.85
    freq = np.bincount(a.train, minlength=a.vocab_size)
    top = [a.vocab[i] for i in np.argsort(-freq)[:12]]
    assert "the" in top and "<eos>" in top  # English function words dominate


def test_search_and_train_refuse_a_text_dataset(tmp_path):
    raw = {"prepare": {"datasets": ["digits", "pydoc"]}, "train": {"dataset": "pydoc"}}
    with pytest.raises(UserError, match="train.dataset is 'pydoc', a text corpus"):
        parse_params(raw)
    from dnas.data.loader import split_loader

    d = load_prepared(prepare_dataset("pydoc", Prepare(datasets=["pydoc"]), tmp_path))
    with pytest.raises(UserError, match="pydoc is a text corpus"):
        split_loader(d, "train", 8, "cpu")
