"""Property-based tests of the user's own data (issue 23): Hypothesis writes .npz files and
image folders the way users and their tools do (np.savez, Pillow, the file system), starting
from a valid source and breaking it in one or more ways (dtypes, shapes, 0-size dimensions,
NaN, label ranges, lengths, members, `classes` arrays, damaged bytes; image modes, empty and
non-image files, nested folders, broken links, odd and non-UTF-8 names). For every example,
validate and prepare run as the stages run them and must each end in success or in exactly
one `error:` line with no traceback, within a time bound, with an earlier prepared dataset
byte-identical after a failure; validate must not refuse what prepare accepts, and what
prepare accepts must load with honest labels.

Profiles (`DNAS_FUZZ_PROFILE`): `ci` (default: derandomized, so every run tries the same
examples, bounded to about a minute on a 2-core machine) and `thorough` (random, many more
examples, for local runs: `DNAS_FUZZ_PROFILE=thorough pytest tests/test_fuzz_data.py`).
The settings are applied per test, not loaded as Hypothesis's global profile, so other test
files keep theirs.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from dnas.data import check_prepare, load_prepared, prepare_dataset
from tests.owndata import attempt, one_error_line, prepare_params, tree_hashes

PROFILE = os.environ.get("DNAS_FUZZ_PROFILE", "ci")
if PROFILE not in ("ci", "thorough"):
    raise ValueError(f"DNAS_FUZZ_PROFILE = {PROFILE!r}: expected ci or thorough")
EXAMPLES = {
    "ci": {"npz": 150, "folder": 100, "stage": 2},
    "thorough": {"npz": 5000, "folder": 3000, "stage": 10},
}[PROFILE]
# Seconds for validate + prepare of one tiny example: they take well under one; the bound is
# for hangs (labels near 1e9 took hours), with room for a machine shared by many processes.
TIME_BOUND = 60.0


def _settings(kind: str):
    return settings(
        max_examples=EXAMPLES[kind],
        derandomize=PROFILE == "ci",
        deadline=None,  # the time bound is asserted in the test, on the stages' work alone
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --- the property ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def earlier(tmp_path_factory) -> Path:
    """A prepared root holding an earlier, good `mine` (what a failure must leave alone)."""
    from torchvision.transforms.v2 import functional  # noqa: F401 - imported before timing

    root = tmp_path_factory.mktemp("earlier")
    rng = np.random.default_rng(0)
    np.savez(root / "good.npz", x=rng.integers(0, 256, (12, 4, 4), np.uint8), y=np.arange(12) % 3)
    prepare_dataset("mine", prepare_params(root / "good.npz"), root / "prepared")
    return root / "prepared"


def check_source(path, fmt: str, earlier: Path, **spec) -> str:
    """Validate and prepare the source at `path` into a copy of `earlier`; assert the
    property; returns "ok" or "error" (prepare's outcome)."""
    p = prepare_params(path, fmt, **spec)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "prepared"
        shutil.copytree(earlier, root)
        before = tree_hashes(root)
        start = time.monotonic()
        validated, v_err, _ = attempt(lambda: check_prepare(p))
        prepared, p_err, _ = attempt(lambda: prepare_dataset("mine", p, root))
        took = time.monotonic() - start
        assert took < TIME_BOUND, f"validate + prepare took {took:.1f} s"
        for outcome, err in ((validated, v_err), (prepared, p_err)):
            if outcome == "error":
                one_error_line(err)
        event(f"validate {validated}, prepare {prepared}")  # --hypothesis-show-statistics
        assert not (validated == "error" and prepared == "ok"), (
            f"validate refused what prepare accepts: {v_err}"
        )
        if prepared == "error":
            assert tree_hashes(root) == before, "a failed prepare changed the earlier data"
        else:
            d = load_prepared(root / "mine")
            k = d.num_classes
            assert k == len(d.card["classes"]) >= 2
            assert d.train_x.dtype == np.uint8 and d.train_x.ndim == 4
            assert d.train_x.shape[1:] == d.test_x.shape[1:] and min(d.train_x.shape[1:3]) >= 1
            assert set(np.unique(d.train_y)) == set(range(k)), "a class without training data"
            assert d.test_y.size == 0 or (0 <= d.test_y.min() and d.test_y.max() < k)
            assert all(np.isfinite(d.card["mean"])) and all(np.isfinite(d.card["std"]))
        return prepared


# --- .npz sources ---------------------------------------------------------------------------

DTYPES = ["uint8", "uint16", "int8", "int64", "uint64", "float32", "float64", "bool", "U3", "O"]


@st.composite
def npz_sources(draw) -> dict:
    """Members of an .npz: a valid dataset, then 0-3 of the ways users' files go wrong."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    k = draw(st.sampled_from([2, 2, 3, 4, 1]))  # one class is refused: rarer
    n = draw(st.integers(2 * k, 24))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    shape = (n, h, w) + draw(st.sampled_from([(), (1,), (3,), (2,), (4,)]))
    members = {
        "x": rng.integers(0, 256, shape, dtype=np.uint8),
        "y": rng.permutation(np.arange(n) % k),
    }
    if draw(st.booleans()):
        nt = draw(st.integers(1, 8))
        members["x_test"] = rng.integers(0, 256, (nt, *shape[1:]), dtype=np.uint8)
        members["y_test"] = rng.integers(0, k, nt)
    if draw(st.booleans()):
        members["classes"] = np.array([f"c{i}" for i in range(k)])
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2, 3]))):
        _mutate(draw, rng, members)
    return members


def _mutate(draw, rng, m: dict) -> None:
    how = draw(
        st.sampled_from(
            [
                "dtype", "shape", "labels", "drop", "extra", "nan", "length", "classes",
                "zero", "scalar", "one_based", "huge",
            ]
        )
    )  # fmt: skip
    if not m:
        return
    key = draw(st.sampled_from(sorted(m)))
    if how == "dtype":
        dtype = draw(st.sampled_from(DTYPES))
        try:
            with np.errstate(invalid="ignore", over="ignore"):
                m[key] = m[key].astype(dtype)
        except (ValueError, TypeError, OverflowError):
            m[key] = np.array([None, 1], dtype=object)
    elif how == "shape":
        dims = draw(st.lists(st.integers(0, 5), max_size=5))
        m[key] = rng.integers(0, 256, dims).astype(
            m[key].dtype if m[key].dtype.kind != "U" else "U3"
        )
    elif how == "labels":
        lo = draw(st.sampled_from([-(2**40), -1, 0, 1, 2**31, 10**9]))
        span = draw(st.integers(1, 2000))
        y = "y_test" if key == "y_test" else "y"
        if y in m:
            m[y] = (lo + rng.integers(0, span, m[y].shape)).astype(np.int64)
    elif how == "drop":
        del m[key]
    elif how == "extra":
        m[draw(st.sampled_from(["notes", "x.npy", "meta", "y_test"]))] = rng.random(3)
    elif how == "nan":
        m[key] = np.full(m[key].shape, np.nan)
    elif how == "length":
        m[key] = m[key][: max(0, len(m[key]) - draw(st.integers(1, 3)))] if m[key].ndim else m[key]
    elif how == "classes":
        m["classes"] = draw(
            st.sampled_from(
                [
                    np.array(["a", "a", "b", "c"]), np.array(["", "b"]), np.array([1, 2]),
                    np.array([["a", "b"]]), np.array([b"ca\xfft", b"dog"]), np.array(["x"] * 0),
                    np.array(["a\nb", "c", "d", "e", "f"]),
                ]
            )
        )  # fmt: skip
    elif how == "zero":
        shape = list(m[key].shape) or [0]
        shape[draw(st.integers(0, len(shape) - 1))] = 0
        m[key] = np.zeros(shape, m[key].dtype)
    elif how == "scalar":
        m[key] = np.array(3, dtype=m[key].dtype if m[key].dtype.kind != "U" else "U3")
    elif how == "one_based" and "y" in m and m["y"].dtype.kind in "iu":
        m["y"] = m["y"] + 1
    elif how == "huge" and "y" in m and m["y"].ndim and m["y"].size:
        with np.errstate(invalid="ignore", over="ignore"):
            m["y"] = m["y"].astype(np.uint64)
        m["y"][0] = np.uint64(draw(st.sampled_from([10**9, 2**63 + 1, 2**64 - 1])))


def write_npz(path: Path, members: dict, damage) -> None:
    """np.savez (pickles allowed, as a user's code would write object arrays), then the
    damage: none, a cut at a byte offset, a flipped byte, a member replaced by other bytes."""
    np.savez(path, **members)
    kind, where = damage
    data = bytearray(path.read_bytes())
    if kind == "cut":
        path.write_bytes(bytes(data[: int(where * len(data))]))
    elif kind == "flip" and data:
        data[int(where * (len(data) - 1))] ^= 0xFF
        path.write_bytes(bytes(data))
    elif kind == "garbage" and members:
        # a second member of the same name, as `zip -r` appending to an archive makes
        member = "x_test.npy" if "x_test" in members else "y.npy"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # zipfile: "Duplicate name"
            with zipfile.ZipFile(path, "a") as z, z.open(member, "w") as f:
                f.write(b"\x93NUMPY\x01\x00" + bytes(range(256)) * int(1 + where * 3))


DAMAGE = st.one_of(
    st.just(("none", 0.0)),
    st.just(("none", 0.0)),
    st.just(("none", 0.0)),
    st.tuples(st.sampled_from(["cut", "flip", "garbage"]), st.floats(0, 1)),
)


@_settings("npz")
@given(
    members=npz_sources(),
    damage=DAMAGE,
    size=st.sampled_from([None, None, 3, 5]),
    pad=st.sampled_from([None, None, 0, 2, 100]),
)
def test_any_npz_is_prepared_or_refused_in_one_line(earlier, members, damage, size, pad):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mine.npz"
        write_npz(path, members, damage)
        check_source(path, "npz", earlier, size=size, pad=pad)


# --- image folders --------------------------------------------------------------------------

NAMES = ["a", "b", "Cat", "dog ", "-x", "é", "日本", b"\xff\xfe", b"new\nline", "x.png"]


def _image(draw, rng, side):
    from PIL import Image

    mode = draw(st.sampled_from(["L", "RGB", "RGBA", "P", "Ptrns", "LA", "1", "I;16"]))
    h, w = side if side else (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    if mode in ("L", "P", "Ptrns"):
        im = Image.fromarray(rng.integers(0, 256, (h, w), np.uint8))
        im = im.convert("P") if mode != "L" else im
    elif mode in ("RGB", "RGBA", "LA"):
        c = {"RGB": 3, "RGBA": 4, "LA": 2}[mode]
        im = Image.fromarray(rng.integers(0, 256, (h, w, c), np.uint8))
    elif mode == "1":
        im = Image.fromarray(rng.integers(0, 2, (h, w)).astype(bool))
    else:
        im = Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.uint16))
    fmt = draw(st.sampled_from(["PNG", "PNG", "GIF", "JPEG"]))
    buf = io.BytesIO()
    try:
        save = {"transparency": 0} if mode == "Ptrns" and fmt != "JPEG" else {}
        im.save(buf, format=fmt, **save)
    except (OSError, ValueError):  # a mode the format cannot hold: PNG holds them all
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        fmt = "PNG"
    return buf.getvalue(), {"PNG": ".png", "GIF": ".gif", "JPEG": ".jpg"}[fmt]


@st.composite
def folder_sources(draw) -> list[tuple[bytes, bytes | None, str]]:
    """A folder tree as (relative path, content, kind) entries: class folders of tiny
    images, sometimes train/ and test/, and the odd things users' folders hold."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    same = draw(st.sampled_from([True, True, False]))  # sizes that differ need `size`
    side = (draw(st.integers(1, 5)), draw(st.integers(1, 5))) if same else None
    parts = [b"train/", b"test/"] if draw(st.booleans()) else [b""]
    classes = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    entries = []
    for part in parts:
        for c in classes:
            cname = c if isinstance(c, bytes) else c.encode()
            for i in range(draw(st.integers(0 if part == b"test/" else 1, 4))):
                data, suffix = _image(draw, rng, side)
                entries.append((part + cname + b"/%d" % i + suffix.encode(), data, "file"))
    for _ in range(draw(st.integers(0, 3))):
        c = draw(st.sampled_from(classes))
        where = parts[0] + (c if isinstance(c, bytes) else c.encode()) + b"/"
        odd = draw(
            st.sampled_from(["empty", "text", "nested", "link", "hidden", "oddname", "dirpng"])
        )
        if odd == "empty":
            entries.append((where + b"empty.png", b"", "file"))
        elif odd == "text":
            entries.append((where + b"notes.png", b"not an image at all\n", "file"))
        elif odd == "nested":
            data, suffix = _image(draw, rng, side)
            entries.append((where + b"deeper/0" + suffix.encode(), data, "file"))
        elif odd == "link":
            entries.append((where + b"gone.png", None, "link"))
        elif odd == "hidden":
            entries.append((where + b".hidden.png", b"junk", "file"))
        elif odd == "oddname":
            data, suffix = _image(draw, rng, side)
            entries.append((where + b"\xe9 t\xff\n" + suffix.encode(), data, "file"))
        else:
            entries.append((where + b"folder.png/0.png", b"junk", "file"))
    return entries


def write_folder(root: Path, entries) -> None:
    base = os.fsencode(root)
    os.makedirs(base, exist_ok=True)
    for rel, data, kind in entries:
        full = os.path.join(base, rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        if os.path.lexists(full):  # drawn twice: the first stays
            continue
        if kind == "link":
            os.symlink(os.path.join(base, b"nowhere", rel), full)
        else:
            with open(full, "wb") as f:
                f.write(data)


@_settings("folder")
@given(
    entries=folder_sources(),
    size=st.sampled_from([None, None, 4]),
    background=st.sampled_from(["white", "black", [0, 128, 255]]),
)
def test_any_image_folder_is_prepared_or_refused_in_one_line(earlier, entries, size, background):
    with tempfile.TemporaryDirectory() as tmp:
        write_folder(Path(tmp) / "src", entries)
        check_source(Path(tmp) / "src", "folder", earlier, size=size, background=background)


# --- a few as the stages run: separate processes ----------------------------------------------


@_settings("stage")
@given(members=npz_sources(), damage=DAMAGE)
def test_stage_processes_on_generated_npz(members, damage):
    """validate and prepare@mine in their own processes, as DVC runs them: exit 0, or a
    non-zero exit with one `error:` line and no traceback; a failure leaves data/ as it was."""
    from tests.test_hostile import stage, write_params

    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        write_npz(project / "mine.npz", members, damage)
        mine = {"path": str(project / "mine.npz"), "format": "npz"}
        write_params(project, prepare={"datasets": ["digits", "mine"], "custom": {"mine": mine}})
        (project / "data" / "prepared" / "mine").mkdir(parents=True)
        (project / "data" / "prepared" / "mine" / "card.json").write_text("{}\n")
        before = tree_hashes(project / "data")
        for module, args in (("stages.validate", ()), ("stages.prepare", ("--dataset", "mine"))):
            proc = stage(project, module, *args)
            if proc.returncode != 0:
                assert proc.returncode > 0 and "Traceback" not in proc.stderr, proc.stderr
                one_error_line(proc.stderr)
                assert tree_hashes(project / "data") == before
                break
