"""Hostile own data (issue 23's own-data cases) and honest labels and transparency (issue 22):
each case is a source written the way a user writes one (np.savez, Pillow, the file system),
run through validate (`check_prepare`, `check_cutout`) and prepare as the stages run them.
A failure must be one `error:` line naming the file or key and the fix, never a traceback,
and must leave an earlier prepared dataset byte-identical (docs/failure-modes.md)."""

from __future__ import annotations

import io
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dnas.config import Custom, parse_params
from dnas.data import check_prepare, load_prepared, prepare_dataset
from dnas.data import custom as custom_data
from dnas.data.loader import split_loader
from dnas.data.registry import check_cutout
from dnas.errors import UserError
from tests.owndata import attempt, one_error_line, png, prepare_params, tree_hashes


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _xy(n: int = 20, side: int = 8, classes: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, side, side), dtype=np.uint8), np.arange(n) % classes


def _both(p) -> list[tuple[str, str]]:
    """What validate and prepare say about `p`: [(outcome, stderr)] for each."""
    out = []
    root = Path(p.custom["mine"].path).parent / "prepared"
    for fn in (lambda: check_prepare(p), lambda: prepare_dataset("mine", p, root)):
        outcome, err, _ = attempt(fn)
        out.append((outcome, err))
    return out


def _refused(p, *words: str) -> list[str]:
    """Both validate and prepare refuse `p` with one line holding every one of `words`."""
    lines = []
    for outcome, err in _both(p):
        assert outcome == "error", err
        line = one_error_line(err)
        for w in words:
            assert w in line, line
        lines.append(line)
    return lines


# --- validate and prepare on bad .npz files: one line, not a traceback ---------------------


def _bad_npz_cases(tmp: Path):
    x, y = _xy()
    return {
        "2-D labels": (dict(x=x, y=y[:, None]), ("y must be 20 integer labels", "(20, 1)")),
        "uint64 above 2^63": (
            dict(x=x, y=y.astype(np.uint64) + np.uint64(2**63 + 5)),
            ("y has label 9223372036854775814", "0..K-1"),
        ),
        "zero images": (dict(x=x[:0], y=y[:0]), ("x holds no images",)),
        "scalar arrays": (dict(x=np.array(3), y=np.array(1)), ("x has shape ()",)),
        "0x0 images": (dict(x=np.zeros((20, 0, 0), np.uint8), y=y), ("0x0 pixels",)),
        "bool labels": (dict(x=x, y=y.astype(bool)), ("integer labels",)),
    }


@pytest.mark.parametrize(
    "case",
    [
        "2-D labels",
        "uint64 above 2^63",
        "zero images",
        "scalar arrays",
        "0x0 images",
        "bool labels",
    ],
)
def test_a_bad_npz_is_one_line_in_validate_and_prepare(tmp_path, case):
    arrays, words = _bad_npz_cases(tmp_path)[case]
    path = _npz(tmp_path / "bad.npz", **arrays)
    _refused(prepare_params(path), str(path), *words)


def test_a_folder_path_that_is_a_file_and_a_device_say_what_they_are(tmp_path):
    (tmp_path / "file.png").write_bytes(b"not a folder")
    _refused(prepare_params(tmp_path / "file.png", "folder"), "is a file, not a folder")
    _refused(prepare_params("/dev/null", "npz"), "/dev/null is a character device")
    _refused(prepare_params(tmp_path, "npz"), "is a folder, not an .npz file", "format: folder")
    os.symlink(tmp_path / "gone", tmp_path / "link")
    # a missing source (a link to a drive not mounted) is left to prepare (the data may be
    # prepared already and need no rerun): validate passes it, prepare names it
    (validate, _), (prepare, err) = _both(prepare_params(tmp_path / "link", "folder"))
    assert validate == "ok" and prepare == "error"
    assert "is a broken link" in one_error_line(err)


def test_an_npz_member_that_is_not_an_npy_array_is_named(tmp_path):
    x, y = _xy()
    buf = io.BytesIO()
    np.save(buf, x)
    with zipfile.ZipFile(tmp_path / "odd.npz", "w") as z:
        z.writestr("x.npy", buf.getvalue())
        z.writestr("y.npy", b"these are my labels, honestly")
    _refused(prepare_params(tmp_path / "odd.npz"), "member y.npy is not a .npy array")


def test_a_forged_header_claiming_a_tebibyte_is_refused_before_allocating(tmp_path):
    """A 200-odd-byte .npz whose headers declare 1.12 TiB: refused from the header alone,
    quickly, without a MemoryError (an allocation of that size would be one)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|u1", "fortran_order": False, "shape": (1 << 20, 1100, 1100)}
    )
    labels = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        labels, {"descr": "<i8", "fortran_order": False, "shape": (1 << 20,)}
    )
    with zipfile.ZipFile(tmp_path / "forged.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", header.getvalue())
        z.writestr("y.npy", labels.getvalue())
    assert (tmp_path / "forged.npz").stat().st_size < 600
    start = time.monotonic()
    _refused(prepare_params(tmp_path / "forged.npz"), "declares x of shape", "TiB", "truncated")
    assert time.monotonic() - start < 10


def test_an_array_larger_than_memory_is_refused_by_its_header(tmp_path, monkeypatch):
    x, y = _xy(n=40)
    path = _npz(tmp_path / "d.npz", x=x, y=y)
    monkeypatch.setattr(custom_data, "memory_bound", lambda: 1000)
    _refused(prepare_params(path), "more than half this machine's memory")
    _refused(prepare_params(path, size=64), "more than half")


# --- labels: 0..K-1, every class in training, classes named --------------------------------


def test_labels_near_1e9_are_refused_at_once(tmp_path):
    x, y = _xy(n=2000)
    path = _npz(tmp_path / "huge.npz", x=x, y=np.where(y == 0, 0, 10**9 - 1))
    start = time.monotonic()
    _refused(prepare_params(path), "label 999999999", "renumber")
    assert time.monotonic() - start < 10  # prepare allocated per class (hours, or memory)


def test_labels_0_and_999_are_refused_with_the_renumbering(tmp_path):
    x, y = _xy(n=2000)
    path = _npz(tmp_path / "gap.npz", x=x, y=np.where(y == 0, 0, 999))
    (line,) = _refused(prepare_params(path), "2 distinct labels", "998 of them empty")[:1]
    assert "np.unique(y, return_inverse=True)" in line


def test_one_based_labels_are_refused_naming_the_empty_class_0(tmp_path):
    x, y = _xy(n=30, classes=3)
    path = _npz(tmp_path / "one.npz", x=x, y=y + 1)
    _refused(prepare_params(path), "labels are 1..3", "class 0", "subtract 1")


def test_a_class_only_the_test_set_has_is_refused_by_name(tmp_path):
    x, y = _xy(n=20)
    xt, yt = _xy(n=6, classes=3, seed=1)
    names = np.array(["circle", "square", "star"])
    path = _npz(tmp_path / "t.npz", x=x, y=y, x_test=xt, y_test=yt, classes=names)
    _refused(prepare_params(path), "y_test has class 'star' (label 2)", "which y lacks")
    path = _npz(tmp_path / "u.npz", x=x, y=y, x_test=xt, y_test=yt)
    _refused(prepare_params(path), "y_test has labels 2", "training examples")


def test_a_test_folder_class_missing_from_train_is_named(tmp_path):
    rng = np.random.default_rng(0)
    for part, classes in (("train", ("cat", "dog")), ("test", ("cat", "dog", "emu"))):
        for c in classes:
            for i in range(3):
                png(
                    tmp_path / "src" / part / c / f"{i}.png",
                    rng.integers(0, 256, (8, 8, 3), np.uint8),
                )
    _refused(prepare_params(tmp_path / "src", "folder"), "'emu'", "training images")


def test_a_classes_array_names_the_classes_in_the_card_and_the_messages(tmp_path):
    x, y = _xy(n=30, classes=3)
    names = np.array(["circle", "square", "star"])
    path = _npz(tmp_path / "c.npz", x=x, y=y, classes=names)
    d = load_prepared(prepare_dataset("mine", prepare_params(path), tmp_path / "prep"))
    assert d.card["classes"] == ["circle", "square", "star"] and d.num_classes == 3
    # a class named but without examples
    path = _npz(tmp_path / "e.npz", x=x, y=y, classes=np.array([*names, "hexagon"]))
    _refused(prepare_params(path), "class 'hexagon' (label 3) has no training examples")
    # a class with a single example: named, with the fix
    y1 = y.copy()
    y1[y1 == 2] = 1
    y1[0] = 2
    path = _npz(tmp_path / "s.npz", x=x, y=y1, classes=names)
    _refused(prepare_params(path), "class 'star' has a single example", "at least two images")
    path = _npz(tmp_path / "b.npz", x=x, y=y, classes=np.array([1, 2, 3]))
    _refused(prepare_params(path), "classes must be a 1-D array of names")


def test_a_search_split_failure_names_the_class_and_the_fix(tmp_path):
    """A class with two images: the held-out test set takes one, the search split cannot halve
    the other. The message names the class and says to add examples, not only to change the
    split."""
    rng = np.random.default_rng(0)
    for c, n in (("cat", 10), ("dog", 10), ("emu", 2)):
        for i in range(n):
            png(tmp_path / "src" / c / f"{i}.png", rng.integers(0, 256, (8, 8, 3), np.uint8))
    p = prepare_params(tmp_path / "src", "folder").model_copy(update={"search_split": "stratified"})
    _refused(p, "prepare.search_split = stratified", "class 'emu'", "add examples to it")


# --- folders: names, links ------------------------------------------------------------------


def _folder(root: Path, classes=("cat", "dog"), n: int = 4, side: int = 8) -> None:
    rng = np.random.default_rng(0)
    for c in classes:
        for i in range(n):
            png(root / c / f"{i}.png", rng.integers(0, 256, (side, side, 3), np.uint8))


def test_non_utf8_file_and_class_names_prepare(tmp_path):
    src = tmp_path / "src"
    _folder(src)
    odd = os.fsencode(src) + b"/\xffcaf\xe9"
    os.mkdir(odd)
    for i in range(4):
        with open(odd + b"/\xe9t\xe9%d.png" % i, "wb") as f:
            f.write((src / "cat" / f"{i}.png").read_bytes())
    d = load_prepared(prepare_dataset("mine", prepare_params(src, "folder"), tmp_path / "prep"))
    assert d.card["classes"] == ["cat", "dog", "\\xffcaf\\xe9"]
    assert d.card["counts"]["train"] + d.card["counts"]["test"] == 12


def test_a_damaged_image_with_a_newline_and_bad_bytes_in_its_name_is_one_line(tmp_path):
    src = tmp_path / "src"
    _folder(src)
    with open(os.fsencode(src) + b"/dog/bad\nname\xff.png", "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n broken")
    outcome, err = _both(prepare_params(src, "folder"))[1]
    assert outcome == "error"
    assert "bad\\nname\\xff.png is not a readable image" in one_error_line(err)


def test_a_broken_link_is_skipped_with_a_note_naming_it(tmp_path):
    src = tmp_path / "src"
    _folder(src)
    os.symlink(tmp_path / "moved" / "4.png", src / "dog" / "4.png")
    outcome, err, out = attempt(
        lambda: prepare_dataset("mine", prepare_params(src, "folder"), tmp_path / "prep")
    )
    assert outcome == "ok", err
    assert f"note: prepare.custom.mine: skipped 1 broken link: {src / 'dog' / '4.png'}" in out
    card = load_prepared(tmp_path / "prep" / "mine").card
    assert card["counts"]["train"] + card["counts"]["test"] == 8


# --- cutout larger than the image ---------------------------------------------------------


def test_a_cutout_larger_than_the_images_is_refused_in_validate_and_train(tmp_path):
    x, y = _xy(n=40, side=8)
    path = _npz(tmp_path / "d.npz", x=x, y=y)
    raw = {
        "prepare": prepare_params(path).model_dump(),
        "search": {"dataset": "mine"},
        "train": {"dataset": "mine", "cutout": 16},
    }
    with pytest.raises(UserError, match=r"train.cutout = 16 is larger than the 8x8 images of mine"):
        check_cutout(parse_params(raw), tmp_path)
    raw["train"]["cutout"] = 8
    check_cutout(parse_params(raw), tmp_path)  # as large as the image: allowed
    raw["prepare"]["custom"]["mine"]["size"] = 4  # the size it will be prepared at counts
    with pytest.raises(UserError, match=r"larger than the 4x4 images"):
        check_cutout(parse_params(raw), tmp_path)
    raw["train"] = {"dataset": "digits", "cutout": 9}
    with pytest.raises(UserError, match=r"8x8 images of digits"):
        check_cutout(parse_params(raw), tmp_path)
    # train itself, for data prepared earlier: one line before the first step
    d = load_prepared(prepare_dataset("mine", prepare_params(path), tmp_path / "prep"))
    with pytest.raises(UserError, match=r"train.cutout = 9 is larger than the 8x8"):
        split_loader(d, "train", 4, torch.device("cpu"), augment=True, cutout=9)


# --- transparency -------------------------------------------------------------------------


def _icon(shape: str, side: int = 16) -> np.ndarray:
    """A symbolic icon as icon sets ship it: every pixel black, the shape only in alpha."""
    yy, xx = np.mgrid[:side, :side]
    c = (side - 1) / 2
    if shape == "disc":
        mask = (yy - c) ** 2 + (xx - c) ** 2 <= (side / 3) ** 2
    elif shape == "bar":
        mask = np.abs(yy - c) <= side / 8
    else:
        mask = np.abs(xx - c) <= side / 8
    rgba = np.zeros((side, side, 4), np.uint8)
    rgba[..., 3] = np.where(mask, 255, 0)
    return rgba


def test_icons_whose_shape_is_only_in_alpha_prepare_as_visible_shapes(tmp_path):
    src = tmp_path / "icons"
    shapes = ("disc", "bar", "pole")
    for s in shapes:
        for i in range(4):
            png(src / s / f"{i}.png", _icon(s), mode="RGBA")
    outcome, err, out = attempt(
        lambda: prepare_dataset("mine", prepare_params(src, "folder"), tmp_path / "prep")
    )
    assert outcome == "ok", err
    assert "prepare.custom.mine: 12 of 12 images had transparency, composited onto white" in out
    d = load_prepared(tmp_path / "prep" / "mine")
    x = np.concatenate([d.train_x, d.test_x])
    y = np.concatenate([d.train_y, d.test_y])
    for img, label in zip(x, y, strict=True):
        mask = _icon(d.card["classes"][label])[..., 3] == 255
        assert (img[mask] == 0).all() and (img[~mask] == 255).all()  # black shape on white
    assert d.card["source"]["background"] == "white"


@pytest.mark.parametrize("mode", ["LA", "P", "RGB"])
def test_grey_and_palette_transparency_composite_too(tmp_path, mode):
    from PIL import Image

    icon = _icon("disc")
    img = Image.fromarray(icon, mode="RGBA")
    if mode == "LA":
        img = img.convert("LA")
    elif mode == "P":  # a palette with one transparent entry, as GIF and indexed PNG store it
        img = img.convert("RGB").convert("P")
        pal = np.asarray(img).copy()
        pal[icon[..., 3] == 0] = 255
        img = Image.fromarray(pal, mode="P")
        img.putpalette([0, 0, 0] * 255 + [9, 9, 9])
        img.info["transparency"] = 255
    else:  # a colour image with one colour marked transparent (a PNG tRNS chunk)
        rgb = icon[..., :3].copy()
        rgb[icon[..., 3] == 0] = 9
        img = Image.fromarray(rgb)
    (tmp_path / "a").mkdir()
    kw = (
        {"transparency": 255}
        if mode == "P"
        else {"transparency": (9, 9, 9)}
        if mode == "RGB"
        else {}
    )
    img.save(tmp_path / "a" / "0.png", **kw)
    tensor, alpha = custom_data.decode_image(tmp_path / "a" / "0.png", (0, 0, 255))
    mask = icon[..., 3] == 255
    got = tensor.permute(1, 2, 0).numpy()
    assert alpha and got.shape[-1] == 3
    assert (got[~mask] == [0, 0, 255]).all() and (got[mask] == 0).all()


def test_the_background_param_and_npz_alpha(tmp_path):
    x = np.stack([_icon("disc")] * 10 + [_icon("bar")] * 10)
    x[:, 0, 0] = [200, 100, 50, 128]  # one half-transparent coloured pixel per image
    path = _npz(tmp_path / "a.npz", x=x, y=np.repeat([0, 1], 10))
    p = prepare_params(path, background="black")
    outcome, err, out = attempt(lambda: prepare_dataset("mine", p, tmp_path / "prep"))
    assert outcome == "ok", err
    assert "20 of 20 images had transparency, composited onto black" in out
    d = load_prepared(tmp_path / "prep" / "mine")
    assert d.train_x.shape[1:] == (16, 16, 3)
    # round((c * a + 0 * (255 - a)) / 255) with a = 128
    assert d.train_x[0, 0, 0].tolist() == [100, 50, 25]
    assert (d.train_x[:, 8, 8] == 0).all()  # inside both shapes: black on black
    p = prepare_params(path, background=[10, 20, 30])
    arrays, _ = custom_data.load("mine", p.custom["mine"], 0.2, 0)
    assert arrays["train_x"][0, 1, 1].tolist() == [10, 20, 30]
    with pytest.raises(UserError, match="background: 'pink': expected white, black or"):
        parse_params(
            {"prepare": {"custom": {"m": {"path": "x", "format": "npz", "background": "pink"}}}}
        )


def test_opaque_rgba_images_are_not_counted_as_transparent(tmp_path):
    src = tmp_path / "src"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        for i in range(3):
            img = rng.integers(0, 256, (8, 8, 4), np.uint8)
            img[..., 3] = 255
            png(src / c / f"{i}.png", img, mode="RGBA")
    outcome, err, out = attempt(
        lambda: custom_data.load("mine", Custom(path=str(src), format="folder"), 0.34, 0)
    )
    assert outcome == "ok" and "transparency" not in out


# --- a stage run: one line, nothing lost ----------------------------------------------------


def test_stages_on_a_bad_source_keep_the_prepared_data(tmp_path):
    """The validate and prepare stages in their own processes, as DVC runs them, after an
    earlier successful prepare of the same dataset: one line each, and data/ unchanged."""
    from tests.test_hostile import assert_clean_failure, stage, write_params

    x, y = _xy(n=40)
    src = _npz(tmp_path / "mine.npz", x=x, y=y)
    project = tmp_path / "project"
    project.mkdir()
    write_params(
        project,
        prepare={
            "datasets": ["digits", "mine"],
            "custom": {"mine": {"path": str(src), "format": "npz"}},
        },
    )
    proc = stage(project, "stages.prepare", "--dataset", "mine")
    assert proc.returncode == 0, proc.stderr
    before = tree_hashes(project)
    _npz(src, x=x, y=np.where(y == 0, 0, 10**9))
    for module, args in (("stages.validate", ()), ("stages.prepare", ("--dataset", "mine"))):
        assert_clean_failure(stage(project, module, *args), str(src), "label 1000000000")
    assert tree_hashes(project) == before


def test_a_split_file_that_is_a_device_or_a_folder_says_so(tmp_path):
    from dnas.data.splits import read_split_file

    for path, what in (("/dev/null", "is a character device"), (tmp_path, "is a folder")):
        with pytest.raises(UserError, match=f"prepare.split_file = {path} {what}, not a JSON"):
            read_split_file(path, ("train", "valid"), 10)
    with pytest.raises(UserError, match="does not exist"):
        read_split_file(tmp_path / "none.json", ("train", "valid"), 10)


def test_a_single_class_is_refused(tmp_path):
    x, y = _xy(n=10, classes=1)
    _refused(
        prepare_params(_npz(tmp_path / "one.npz", x=x, y=y)),
        "y holds only label 0; a classifier needs at least two",
    )
    _folder(tmp_path / "src", classes=("cat",))
    _refused(prepare_params(tmp_path / "src", "folder"), "a single class folder, 'cat'")


def test_a_pad_larger_than_the_images_is_refused_in_validate_and_prepare(tmp_path):
    x, y = _xy(n=20, side=8)
    path = _npz(tmp_path / "d.npz", x=x, y=y)
    _refused(prepare_params(path, pad=100), "prepare.custom.mine.pad = 100 is larger than the 8")
    _refused(prepare_params(path, pad=5, size=4), "pad = 5 is larger than the 4-pixel images")
