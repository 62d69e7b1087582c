"""Hostile input and failing machines (docs/failure-modes.md).

Every case runs the real stage in a subprocess, the way DVC runs it, and asserts: a non-zero
exit that is not a signal (no segfault), exactly one `error:` line naming the file or key, no
`Traceback`, and every file produced earlier byte-identical afterwards. A full disk or a
read-only directory is a tmpfs mount where the machine allows it (root), else a writer that
raises ENOSPC / EROFS at every write site under a path (`_FAULTS`, installed before the stage
runs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dnas.config import parse_params
from dnas.errors import UserError
from tests.pipeline_copy import checkout_env

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "search": {"epochs": 1, "channels": 4, "layers": 3, "batch_size": 256},
    "train": {"epochs": 2, "channels": 4, "layers": 3, "batch_size": 256},
}

# Installed in the stage's process: every write under DNAS_FAULT_PATH (a path prefix) fails
# with DNAS_FAULT (ENOSPC or EROFS): open() / io.open() for writing, os.open() with a write
# flag (mkstemp, TemporaryFile), and for EROFS also creating a directory.
_FAULTS = textwrap.dedent(
    """
    import builtins, errno, io, os, runpy, sys
    code = getattr(errno, os.environ["DNAS_FAULT"])
    prefix = os.path.abspath(os.environ["DNAS_FAULT_PATH"])

    def hit(path):
        try:
            return os.path.abspath(os.fsdecode(os.fspath(path))).startswith(prefix)
        except TypeError:
            return False

    def fail(path):
        raise OSError(code, os.strerror(code), os.fspath(path))

    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def open_(file, mode="r", *args, **kwargs):
        if not isinstance(file, int) and set(mode) & set("wax+") and hit(file):
            fail(file)
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and hit(path):
            fail(path)
        return real_os_open(path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if code == errno.EROFS and hit(path) and not os.path.exists(path):
            fail(path)
        return real_mkdir(path, *args, **kwargs)

    builtins.open = io.open = open_
    os.open, os.mkdir = os_open, mkdir
    module, *sys.argv[1:] = sys.argv[1:]
    sys.argv[0] = module
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    """
)


def stage(project: Path, module: str, *args: str, fault: tuple[str, Path] | None = None):
    """Run `python -m module args` in `project`, with an injected write fault if given."""
    env = checkout_env()
    if fault is None:
        cmd = [sys.executable, "-m", module, *args]
    else:
        env["DNAS_FAULT"], env["DNAS_FAULT_PATH"] = fault[0], str(fault[1])
        cmd = [sys.executable, "-c", _FAULTS, module, *args]
    return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True, timeout=600)


def assert_clean_failure(proc, *names: str) -> str:
    """Exit status > 0 (a signal would be negative), one `error:` line naming every one of
    `names`, and no traceback; returns that line."""
    out = proc.stdout + proc.stderr
    assert proc.returncode > 0, f"exit {proc.returncode}:\n{out}"
    assert "Traceback" not in out, out
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    for name in names:
        assert name in errors[0], errors[0]
    return errors[0]


def snapshot(project: Path, skip: tuple[str, ...] = ("checkpoints",)) -> dict[str, str]:
    """SHA-256 of every file in the project but `skip` (a stage's own checkpoints) and `logs/`
    (every stage run appends its output there by design: a log, not a product)."""
    out = {}
    for f in sorted(project.rglob("*")):
        rel = f.relative_to(project).as_posix()
        if f.is_file() and not rel.startswith((*skip, "logs/")) and "__pycache__" not in rel:
            out[rel] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def write_params(project: Path, **sections) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in {**TINY, **sections}.items():
        params.setdefault(section, {}).update(values)  # evaluate, plots: advanced.yaml's
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A project after prepare, search and train on tiny params (the reference run)."""
    project = tmp_path_factory.mktemp("project")
    write_params(project)
    for module, args in (("stages.prepare", ("--dataset", "digits")), ("stages.search", ())):
        proc = stage(project, module, *args)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = stage(project, "stages.train")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("train epoch") == 2
    return project


@pytest.fixture
def project(finished, tmp_path) -> Path:
    copy = tmp_path / "project"
    shutil.copytree(finished, copy)
    return copy


@contextlib.contextmanager
def full_tmpfs(directory: Path, size: str = "4k"):
    """A tiny tmpfs over `directory` (root only); yields False where it cannot be mounted."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = (
        os.geteuid() == 0
        and not os.environ.get("DNAS_TEST_NO_TMPFS")  # to run the injected fault instead
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
            capture_output=True,
        ).returncode
        == 0
    )
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(directory)], check=True)


# --- 1. a full disk, a read-only directory ------------------------------------------------


def test_full_disk_at_model_save_keeps_the_run_and_the_rerun_does_not_retrain(project, finished):
    shutil.rmtree(project / "checkpoints" / "train")  # so the run below trains from scratch
    before = snapshot(project)
    with full_tmpfs(project / "models") as mounted:
        # without a mount: every write of the model's temporary file fails
        fault = None if mounted else ("ENOSPC", project / "models" / ".model.pt.")
        proc = stage(project, "stages.train", fault=fault)
    line = assert_clean_failure(proc, "models/model.pt", "checkpoints/train/finished.pt")
    assert "no space left" in line
    assert proc.stdout.count("train epoch") == 2  # it did train
    assert snapshot(project, skip=("checkpoints", "dvclive/train")) == {
        k: v for k, v in before.items() if not k.startswith("dvclive/train")
    }
    (project / "models" / "model.pt").unlink()  # as DVC removes the output before the rerun
    rerun = stage(project, "stages.train")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "train epoch" not in rerun.stdout  # not one epoch trained again
    assert "finished; writing its outputs" in rerun.stderr
    for rel in ("models/model.pt", "metrics/train.json", "checkpoints/train/last.pt"):
        assert (project / rel).read_bytes() == (finished / rel).read_bytes(), rel
    assert not (project / "checkpoints" / "train" / "finished.pt").exists()


def test_a_forced_rerun_after_success_trains_again(project):
    """A finished run is reused only when its outputs were never written: a rerun after a
    successful one (a code change) starts from scratch, as before."""
    proc = stage(project, "stages.train")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("train epoch") == 2


def test_full_disk_at_a_checkpoint_keeps_the_earlier_one(project):
    checkpoint = project / "checkpoints" / "search" / "last.pt"
    earlier = checkpoint.read_bytes()
    before = snapshot(project)
    proc = stage(project, "stages.search", fault=("ENOSPC", checkpoint.with_name(".last.pt.")))
    assert_clean_failure(proc, "checkpoints/search/last.pt", "no space left")
    assert checkpoint.read_bytes() == earlier
    assert snapshot(project, skip=("checkpoints", "dvclive/search")) == {
        k: v for k, v in before.items() if not k.startswith("dvclive/search")
    }
    assert not list(checkpoint.parent.glob(".last.pt.*"))


def test_read_only_checkpoint_dir_stops_before_the_first_epoch(project):
    shutil.rmtree(project / "checkpoints" / "search")
    before = snapshot(project)
    proc = stage(project, "stages.search", fault=("EROFS", project / "checkpoints" / "search"))
    assert_clean_failure(proc, "checkpoints/search", "read-only")
    assert "search epoch" not in proc.stdout
    assert snapshot(project) == before


def test_full_disk_in_prepare_keeps_the_prepared_data(project):
    before = snapshot(project)
    fault = ("ENOSPC", project / "data" / "prepared" / ".digits.")
    proc = stage(project, "stages.prepare", "--dataset", "digits", fault=fault)
    assert_clean_failure(proc, "data/prepared/digits", "no space left")
    assert snapshot(project) == before
    assert sorted(p.name for p in (project / "data" / "prepared").iterdir()) == ["digits"]


# --- 4. values that passed validation and then crashed ------------------------------------


@pytest.mark.parametrize(
    "raw, key, hint",
    [
        ({"common": {"seed": 2**32}}, "common.seed", "less than 4294967296"),
        ({"prepare": {"seed": 2**40}}, "prepare.seed", "less than"),
        ({"search": {"channels": 100000}}, "search.channels", "less than or equal to 2048"),
        ({"train": {"channels": 100000}}, "train.channels", "less than or equal"),
        ({"train": {"batch_size": 10**9}}, "train.batch_size", "less than or equal"),
        ({"search": {"tau_max": float("inf")}}, "search.tau_max", "finite"),
        ({"search": {"weight_decay": "1e999"}}, "search.weight_decay", "finite"),
        ({"train": {"lr": float("nan")}}, "train.lr", "finite"),
        ({"search": {"arch_betas": [0.5, float("inf")]}}, "search.arch_betas", "finite"),
        ({"train": {"epochs": True}}, "train.epochs", "boolean"),
        ({"search": {"order": True}}, "search.order", "boolean"),
        ({"train": {"lr": True}}, "train.lr", "boolean"),
        ({"search": {"partial_channels": [True]}}, "search.partial_channels", "boolean"),
    ],
)
def test_values_with_a_real_bound_are_refused(raw, key, hint):
    with pytest.raises(UserError) as err:
        parse_params(raw)
    assert key in str(err.value) and hint in str(err.value)


def test_the_largest_allowed_seed_runs():
    p = parse_params({"common": {"seed": 2**32 - 1}})
    from dnas.runtime import seed_everything

    seed_everything(p.common.seed)  # numpy's limit


def test_a_boolean_epoch_count_stops_the_stage(project):
    write_params(project, train={**TINY["train"], "epochs": True})
    before = snapshot(project)
    proc = stage(project, "stages.train")
    assert_clean_failure(proc, "train.epochs")
    assert snapshot(project) == before


def test_out_of_memory_names_the_params_that_set_the_size(project):
    """The widest supernet allowed, in a process whose address space is capped at 6 GiB."""
    write_params(project, search={**TINY["search"], "channels": 2048})
    before = snapshot(project)
    env = checkout_env()
    cap = "import resource; resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))"
    run = f"{cap}; import runpy; runpy.run_module('stages.search', run_name='__main__')"
    proc = subprocess.run(
        [sys.executable, "-c", run], cwd=project, env=env, capture_output=True, text=True
    )
    assert_clean_failure(proc, "out of memory", "search.channels = 2048", "search.batch_size")
    assert snapshot(project) == before


# --- 5. files read back -------------------------------------------------------------------


def _break_card(card: Path, how: str) -> None:
    data = json.loads(card.read_text())
    if how == "no sha256":
        del data["sha256"]
        card.write_text(json.dumps(data))
    elif how == "a list":
        card.write_text(json.dumps([data]))
    elif how == "sha256 a list":
        data["sha256"] = list(data["sha256"])
        card.write_text(json.dumps(data))
    else:
        card.write_bytes(b"\xff\xfe" + card.read_bytes())


@pytest.mark.parametrize("how", ["no sha256", "a list", "sha256 a list", "not UTF-8"])
def test_a_damaged_card_names_the_file_and_the_fix(project, how):
    card = project / "data" / "prepared" / "digits" / "card.json"
    _break_card(card, how)
    before = snapshot(project)
    proc = stage(project, "stages.search")
    assert_clean_failure(proc, "data/prepared/digits/card.json", "dvc repro -f -s prepare@digits")
    assert snapshot(project) == before


def test_a_params_file_that_is_not_utf8(project):
    params = project / "params.yaml"
    text = params.read_bytes()
    assert b"digits" in text
    params.write_bytes(text.replace(b"digits", b"\xe9digits", 1))
    before = snapshot(project)
    proc = stage(project, "stages.search")
    assert_clean_failure(proc, "params.yaml", "UTF-8")
    assert snapshot(project) == before


# --- 7. own images ------------------------------------------------------------------------


def _png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def _image_folder(root: Path, per_class: int = 4) -> None:
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        for i in range(per_class):
            _png(root / cls / f"{i}.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))


def _custom_params(project: Path, spec: dict) -> None:
    write_params(project, prepare={"datasets": ["digits", "mine"], "custom": {"mine": spec}})


def test_a_flipped_byte_in_a_png_is_a_message_not_a_segfault(project, tmp_path):
    _image_folder(tmp_path / "imgs")
    bad = tmp_path / "imgs" / "dog" / "2.png"
    data = bytearray(bad.read_bytes())
    data[data.index(b"IDAT") + 12] ^= 0xFF  # inside the compressed image data
    bad.write_bytes(bytes(data))
    _custom_params(project, {"path": str(tmp_path / "imgs"), "format": "folder"})
    before = snapshot(project)
    proc = stage(project, "stages.prepare", "--dataset", "mine")
    assert_clean_failure(proc, str(bad), "not a readable image")
    assert snapshot(project) == before


def test_16_bit_pngs_are_scaled_not_cut_to_their_low_byte(tmp_path):
    from dnas.config import Custom
    from dnas.data import custom

    rng = np.random.default_rng(1)
    originals = []
    for cls in ("a", "b"):
        for i in range(3):
            wide = rng.integers(0, 65536, (8, 8), dtype=np.uint16)
            _png(tmp_path / "imgs" / cls / f"{i}.png", wide)
            originals.append(wide)
    spec = Custom(path=str(tmp_path / "imgs"), format="folder")
    arrays, _ = custom.load("mine", spec, 0.34, 0)
    got = np.concatenate([arrays["train_x"], arrays["test_x"]])[..., 0]
    expected = np.rint(np.stack(originals).astype(np.float64) * 255 / 65535).astype(np.uint8)
    # the split shuffles the images: compare as sets of images
    key = sorted(map(bytes, got))
    assert key == sorted(map(bytes, expected))
    assert key != sorted(map(bytes, (np.stack(originals) & 0xFF).astype(np.uint8)))


def test_size_resizes_npz_images_as_it_does_a_folder(tmp_path):
    from dnas.config import Custom
    from dnas.data import custom

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (6, 16, 12, 3), dtype=np.uint8)
    y = np.array([0, 0, 0, 1, 1, 1])
    np.savez(tmp_path / "d.npz", x=x, y=y, x_test=x[:2], y_test=y[:2])
    for i, img in enumerate(x):
        _png(tmp_path / "imgs" / "train" / str(y[i]) / f"{i}.png", img)
    for i, img in enumerate(x[:2]):
        _png(tmp_path / "imgs" / "test" / str(y[i]) / f"{i}.png", img)
    npz, _ = custom.load("a", Custom(path=str(tmp_path / "d.npz"), format="npz", size=8), 0.2, 0)
    folder, _ = custom.load(
        "b", Custom(path=str(tmp_path / "imgs"), format="folder", size=8), 0.2, 0
    )
    assert npz["train_x"].shape == (6, 8, 8, 3)
    np.testing.assert_array_equal(npz["train_x"], folder["train_x"])
    np.testing.assert_array_equal(npz["test_x"], folder["test_x"])


def test_a_one_image_class_gets_advice_that_fixes_it(project, tmp_path):
    _image_folder(tmp_path / "imgs")
    for extra in sorted((tmp_path / "imgs" / "dog").iterdir())[1:]:
        extra.unlink()
    _custom_params(project, {"path": str(tmp_path / "imgs"), "format": "folder"})
    before = snapshot(project)
    for module, args in (("stages.prepare", ("--dataset", "mine")), ("stages.validate", ())):
        proc = stage(project, module, *args)
        line = assert_clean_failure(proc, "prepare.custom.mine", "a test set of your own")
        assert "search_split" not in line
    assert snapshot(project) == before


# --- 10. messages -------------------------------------------------------------------------


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo ran",))


def test_a_pickle_refusal_does_not_advise_weights_only_false(tmp_path):
    from dnas.models import load_model

    torch.save({"genotype": _RunsCode()}, tmp_path / "model.pt")
    with pytest.raises(UserError) as err:
        load_model(tmp_path / "model.pt")
    assert "weights_only" not in str(err.value) and "could run code" in str(err.value)


def test_a_bad_genotype_file_of_the_users_is_not_blamed_on_the_search(tmp_path):
    from dnas.spaces.published import resolve_genotype

    (tmp_path / "mine.json").write_text("[1, 2]")
    with pytest.raises(UserError) as err:
        resolve_genotype(str(tmp_path / "mine.json"))
    assert "search" not in str(err.value) and "correct the file" in str(err.value)


# --- the validate stage (run before every other stage by dvc.yaml) -------------------------


@pytest.mark.parametrize(
    "sections, names",
    [
        ({"prepare": {"test_fraction": 0.99}}, ("prepare.test_fraction = 0.99",)),
        ({"prepare": {"test_fraction": 0.996}}, ("prepare.test_fraction = 0.996",)),
        ({"prepare": {"datasets": []}}, ("prepare.datasets",)),
        ({"search": {**TINY["search"], "dataset": "cifar10"}}, ("search.dataset", "add it")),
        ({"train": {**TINY["train"], "dataset": "mnist"}}, ("train.dataset", "unknown")),
    ],
)
def test_validate_stops_a_bad_param_with_one_line(tmp_path, sections, names):
    write_params(tmp_path, **sections)
    proc = stage(tmp_path, "stages.validate")
    assert_clean_failure(proc, *names)


def test_validate_accepts_the_shipped_params(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    proc = stage(tmp_path, "stages.validate")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "params.yaml: ok (datasets digits)" and not proc.stderr


def test_validate_writes_the_same_stamp_every_time(tmp_path):
    """The stamp other stages may depend on: written only when valid, always the same bytes."""
    write_params(tmp_path)
    assert stage(tmp_path, "stages.validate", "--out", "validated.txt").returncode == 0
    stamp = (tmp_path / "validated.txt").read_bytes()
    write_params(tmp_path, plots={"dpi": 90})
    assert stage(tmp_path, "stages.validate", "--out", "validated.txt").returncode == 0
    assert (tmp_path / "validated.txt").read_bytes() == stamp
    write_params(tmp_path, prepare={"test_fraction": 0.99})
    (tmp_path / "validated.txt").unlink()
    assert_clean_failure(stage(tmp_path, "stages.validate", "--out", "validated.txt"))
    assert not (tmp_path / "validated.txt").exists()


@pytest.mark.parametrize(
    "exc",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 120.00 GiB"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"
        ),
        MemoryError(),
    ],
)
def test_out_of_memory_at_a_step_names_the_params(exc):
    """The GPU's and the CPU allocator's errors, raised where a step would raise them."""
    from dnas.runtime import out_of_memory_hint

    with pytest.raises(UserError) as err:
        with out_of_memory_hint("train", {"train.channels": 16, "train.batch_size": 64}):
            raise exc
    assert "train: out of memory" in str(err.value)
    assert "train.channels = 16, train.batch_size = 64" in str(err.value)


def test_other_runtime_errors_pass_through_the_memory_hint():
    from dnas.runtime import out_of_memory_hint

    with pytest.raises(RuntimeError, match="shape mismatch"):
        with out_of_memory_hint("train", {"train.channels": 16}):
            raise RuntimeError("shape mismatch")


def test_the_readme_quotes_an_nb201_string_for_dvc_set_param(tmp_path):
    """The README's `dvc exp run -S "train.genotype='|...|'"`, through DVC's own override
    parser and the shell's word splitting, sets the architecture string in params.yaml."""
    import re
    import shlex

    from dvc.utils.hydra import apply_overrides

    from dnas.spaces.published import resolve_genotype

    readme = (ROOT / "README.md").read_text()
    line = next(
        x for x in readme.splitlines() if re.match(r"dvc exp run -S \"train.genotype='\|", x)
    )
    override = shlex.split(line, comments=True)[-1]
    params = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", params)
    apply_overrides(params, [override])
    p = parse_params(yaml.safe_load(params.read_text()))
    genotype = resolve_genotype(p.train.genotype)
    assert genotype.space == "nb201" and p.train.genotype == genotype.arch


def test_ctrl_c_while_a_stage_starts_is_one_line_not_a_traceback(tmp_path):
    """SIGINT during the stage's imports (torch takes about a second to import) and SIGINT
    once it runs both end with one line and status 130."""
    import signal
    import subprocess
    import sys
    import time

    for delay in (0.3, 0.8):
        proc = subprocess.Popen(
            [sys.executable, "-m", "stages.prepare", "--dataset", "digits"],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"},
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
        assert len([line for line in err.splitlines() if line.strip()]) <= 1, err
        # 130: the stage's own Ctrl-C line; 2: it had already stopped on the missing params
        # file; -SIGINT: the signal came while Python itself was starting or shutting down
        # (before the stage's handler, or after its one line was written), where the default
        # action ends the process silently: still one line at most and no traceback.
        assert proc.returncode in (130, 2, -signal.SIGINT), (proc.returncode, err)
