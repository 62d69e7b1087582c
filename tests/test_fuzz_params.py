"""Property-based hostile input (Hypothesis): params files, `dvc exp run -S` overrides,
genotype files and `train.genotype` strings, through the real entry points.

For every generated example the entry point must either succeed (exit 0) or fail the way the
project promises (docs/failure-modes.md): exit status 2 (a `UserError` under `run_main`, never
a signal), exactly one line on stderr starting `error:`, no traceback, within a time bound,
and every file written before byte-identical afterwards.

Most examples call the entry points in-process (the validate stage's `validate_params` under
`run_main`, the `dnas` CLI's `main` with argv), because a subprocess costs seconds (the torch
import); a few go through real subprocesses (`python -m stages.validate`, `python -m dnas.cli`).

Profiles (docs/failure-modes.md#fuzzing): `ci`, the default, is deterministic and bounded so
that the file runs in about a minute on one core; `DNAS_FUZZ_PROFILE=thorough` runs many more
random examples.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dnas.config import with_advanced

ROOT = Path(__file__).resolve().parents[1]
# Every knob: params.yaml with advanced.yaml under it, as the stages read them (written here
# as one standalone file, which reads the same).
BASE = with_advanced(yaml.safe_load((ROOT / "params.yaml").read_text()), ROOT / "params.yaml")[0]
TIME_BOUND = 20  # seconds for one example, in-process or as a subprocess

_COMMON = dict(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
settings.register_profile("ci", max_examples=25, derandomize=True, **_COMMON)
settings.register_profile("thorough", max_examples=2000, derandomize=False, **_COMMON)
PROFILE = os.environ.get("DNAS_FUZZ_PROFILE", "ci")
settings.load_profile(PROFILE)
SUBPROCESS_EXAMPLES = 1 if PROFILE == "ci" else 30


class _Hang(BaseException):
    """Raised by the timer when an example runs past TIME_BOUND (a BaseException, so neither
    run_main nor the code under test can take it for an ordinary error)."""


@contextlib.contextmanager
def _time_bound(seconds: float = TIME_BOUND):
    def expire(*_):
        raise _Hang(f"ran past {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _snapshot(directory: Path) -> dict[str, str]:
    """SHA-256 of every file under `directory` but `logs/` (every stage run appends its output
    there by design: a log, not a product)."""
    return {
        p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.relative_to(directory).as_posix().startswith("logs/")
    }


def _check_outcome(code: int, err: str, what: str) -> None:
    """Exit 0, or exit 2 with one `error:` line and no traceback."""
    assert "Traceback" not in err, f"{what}:\n{err}"
    if code == 0:
        return
    assert code == 2, f"{what}: exit {code}:\n{err}"
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"{what}: {len(errors)} error lines:\n{err}"


def _in_process(fn, what: str) -> None:
    """Run `fn` under `run_main` with stderr captured and a time bound; any exception other
    than the SystemExit of run_main is a failure (it would have been a traceback)."""
    from dnas.errors import run_main

    err = io.StringIO()
    code = 0
    try:
        with (
            _time_bound(),
            contextlib.redirect_stderr(err),
            contextlib.redirect_stdout(io.StringIO()),
        ):
            run_main(fn)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except _Hang:
        pytest.fail(f"{what}: ran past {TIME_BOUND} s")
    except BaseException:  # noqa: BLE001 - this is what the fuzzer looks for
        pytest.fail(f"{what}: traceback:\n{traceback.format_exc()}")
    _check_outcome(code, err.getvalue(), what)


def _subprocess(cmd: list[str], cwd: Path, what: str) -> None:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "OMP_NUM_THREADS": "1"}
    try:
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIME_BOUND * 3
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what}: ran past {TIME_BOUND * 3} s")
    _check_outcome(proc.returncode, proc.stderr, what)


# --- strategies -----------------------------------------------------------------------------

_HOSTILE_TEXT = [
    "", " ", "1e300", "-1e300", "1e-320", "nan", ".nan", "inf", "-.inf", "0x10", "1_000",
    "true", "null", "~", "[]", "{}", "[1,", "{a: 1", "'", '"', "\\", "\n", "mine\n", "é",
    "\x00", "\u202e", "a" * 300, "../../etc/passwd", "/dev/null", ".", "-", "!!int 1",
    "!!python/object:os.system", "*alias", "&anchor x", "2001-12-14", "GDAS_V1", "searched",
    "|", "|+|", "genotype.json",
]  # fmt: skip


def _nested(depth: int, leaf):
    for _ in range(depth):
        leaf = [leaf]
    return leaf


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e300, -1e300, 3.4e38, 3.5e38, 1e-320, float("nan"), float("inf")]),
    st.text(max_size=40),
    st.sampled_from(_HOSTILE_TEXT),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
hostile_values = st.one_of(
    values,
    st.builds(_nested, st.integers(1, 300), scalars),  # nesting (deeper: the "deep" edit)
    st.builds(lambda n, v: [v] * n, st.sampled_from([65, 100, 3000]), scalars),  # long lists
)

_LEAVES = [
    (section, key) for section, body in BASE.items() for key in body
]  # every key of params.yaml


@st.composite
def params_texts(draw) -> str:
    """A params file: params.yaml with a few mutations, written as YAML text."""
    raw = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["value", "value", "value", "delete", "extra", "section"]))
        section, key = draw(st.sampled_from(_LEAVES))
        if not isinstance(raw.get(section), dict) or key not in raw[section]:
            continue  # replaced or deleted by an earlier mutation
        if kind == "value":
            raw[section][key] = draw(hostile_values)
        elif kind == "delete":
            del raw[section][key]
        elif kind == "extra":
            raw[section][draw(st.text(min_size=1, max_size=12))] = draw(values)
        else:
            raw[section] = draw(st.one_of(values, st.just(None), st.just({})))
    try:
        text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=draw(st.booleans()))
    except (yaml.YAMLError, RecursionError):
        assume(False)
    edit = draw(
        st.sampled_from(["none", "none", "duplicate", "empty", "truncate", "garble", "deep"])
    )
    lines = text.splitlines(keepends=True)
    if edit == "duplicate":  # a key given twice, as a hand edit would
        i = draw(st.integers(0, len(lines) - 1))
        lines.insert(i, lines[i])
    elif edit == "empty":
        lines = []
    elif edit == "truncate":
        lines = lines[: draw(st.integers(0, len(lines)))]
    elif edit == "garble":
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = draw(st.sampled_from(_HOSTILE_TEXT)) + "\n"
    elif edit == "deep":  # a value nested thousands deep, in YAML's flow style
        i = draw(st.integers(0, len(lines) - 1))
        depth = draw(st.integers(500, 20000))
        key = lines[i].partition(":")[0]
        lines[i] = f"{key}: {'[' * depth}{']' * depth}\n"
    return "".join(lines)


_DOTTED = [f"{s}.{k}" for s, k in _LEAVES] + ["search.rnn.bptt", "search.nope", "nope", "a.b.c"]


@st.composite
def overrides(draw) -> str:
    """A `dvc exp run -S key=value` override."""
    key = draw(st.sampled_from(_DOTTED))
    value = draw(
        st.one_of(
            st.sampled_from(_HOSTILE_TEXT),
            st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20),
            st.integers(-(2**70), 2**70).map(str),
            st.floats().map(repr),
        )
    )
    return f"{key}={value}"


_NB201_TOKENS = ["|", "|", "+", "~", "0", "1", "2", "3", "-1", "1.5", " ", "nor_conv_3x3",
                 "nor_conv_1x1", "avg_pool_3x3", "skip_connect", "none", "conv"]  # fmt: skip
genotype_strings = st.one_of(
    st.lists(st.sampled_from(_NB201_TOKENS), max_size=30).map("".join),
    st.sampled_from(_HOSTILE_TEXT),
    st.text(max_size=30),
    st.just("x" * 5000 + ".json"),
)


def _valid_genotypes() -> list[dict]:
    from dnas.spaces.published import PUBLISHED, resolve_genotype

    nb201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|none~2|"
    return [p.genotype.to_json() for p in PUBLISHED.values()] + [resolve_genotype(nb201).to_json()]


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@st.composite
def genotype_texts(draw) -> str:
    """A genotype file: a valid genotype with one to three parts replaced by hostile JSON, or
    an oversized, deep or broken text."""
    kind = draw(st.sampled_from(["mutate", "mutate", "mutate", "nodes", "deep", "broken"]))
    g = draw(st.sampled_from(_valid_genotypes()))
    if kind == "deep":
        return '{"space": "darts", "cells": ' + "[" * 20000 + "]" * 20000 + "}"
    if kind == "broken":
        text = json.dumps(g)
        return text[: draw(st.integers(0, len(text)))]
    if kind == "nodes":  # a cell of many nodes
        cell = next(iter(g["cells"].values()))
        n = draw(st.sampled_from([0, 5, 9, 100, 8000]))
        cell["nodes"] = [[["none", 0]]] * n
        return json.dumps(g)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(g))[1:]
        path = draw(st.sampled_from(paths))
        holder = g
        for part in path[:-1]:
            holder = holder[part]
        holder[path[-1]] = draw(hostile_values)
    try:
        return json.dumps(g, allow_nan=draw(st.booleans()))
    except ValueError:  # NaN refused
        return json.dumps(g, allow_nan=True)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A directory with an earlier run's outputs (their bytes are checked after each example)
    and the digits data validate reads; the working directory during the test."""
    for rel in ("models/model.pt", "genotype.json", "metrics/train.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(f"earlier {rel}\n".encode())
    # validate's stamp: a passing run rewrites the same bytes, a failing one leaves it alone
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "params.ok").write_bytes(b"params.yaml: ok\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _validate():
    from stages.validate import validate_params

    return lambda: validate_params("params.yaml")


def _cli(*argv: str):
    from dnas.cli import build_parser

    def run():
        try:
            args = build_parser().parse_args(list(argv))
        except SystemExit as exc:  # argparse: usage errors exit 2 with its own message
            raise AssertionError(f"argparse refused {argv}") from exc
        args.func(args)

    return run


# --- properties -----------------------------------------------------------------------------


@given(text=params_texts())
def test_params_files(project, text):
    (project / "params.yaml").write_text(text, encoding="utf-8")
    before = _snapshot(project)
    _in_process(_validate(), f"validate on:\n{text[:2000]}")
    _in_process(_cli("params", "check", "params.yaml"), "params check")
    assert _snapshot(project) == before


@given(override=overrides())
def test_set_param_overrides(project, override):
    """`-S key=value` written into params.yaml by DVC's own override code, then validated."""
    from dvc.utils.hydra import apply_overrides

    shutil.copy(ROOT / "params.yaml", project / "params.yaml")
    try:
        apply_overrides(project / "params.yaml", [override])
    except Exception:  # noqa: BLE001 - DVC refused the override itself: not ours to judge
        assume(False)
    before = _snapshot(project)
    _in_process(_validate(), f"validate after -S {override!r}")
    assert _snapshot(project) == before


@given(text=genotype_texts())
def test_genotype_files(project, text):
    (project / "mine.json").write_text(text, encoding="utf-8")
    raw = json.loads(json.dumps(BASE))
    raw["train"]["genotype"] = "mine.json"
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    before = _snapshot(project)
    _in_process(_cli("genotype", "show", "mine.json"), f"genotype show on {text[:500]}")
    _in_process(
        _cli("genotype", "info", "mine.json", "--channels", "4", "--layers", "3"),
        f"genotype info on {text[:500]}",
    )
    _in_process(_validate(), f"validate with train.genotype = a file holding {text[:500]}")
    assert _snapshot(project) == before


@given(spec=genotype_strings)
def test_train_genotype_strings(project, spec):
    raw = json.loads(json.dumps(BASE))
    raw["train"]["genotype"] = spec
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    before = _snapshot(project)
    what = f"train.genotype = {spec[:200]!r}"
    _in_process(_validate(), f"validate with {what}")
    if spec.strip() and not spec.startswith("-"):  # argparse would read -x as an option
        _in_process(_cli("genotype", "info", spec, "--channels", "4", "--layers", "3"), what)
    assert _snapshot(project) == before


@settings(max_examples=SUBPROCESS_EXAMPLES)
@given(text=params_texts(), genotype=genotype_texts())
def test_real_subprocesses(project, text, genotype):
    """The same properties through real processes, as DVC and a user run them."""
    (project / "params.yaml").write_text(text, encoding="utf-8")
    (project / "mine.json").write_text(genotype, encoding="utf-8")
    before = _snapshot(project)
    py = sys.executable
    _subprocess([py, "-m", "stages.validate", "--out", "data/params.ok"], project, "validate")
    _subprocess([py, "-m", "dnas.cli", "genotype", "info", "mine.json"], project, "info")
    after = _snapshot(project)
    assert after == before


def test_the_ci_profile_is_deterministic():
    """CI must not find a new random failure on each run: the default profile is derandomized
    and bounded; the thorough one is chosen by DNAS_FUZZ_PROFILE."""
    ci = settings.get_profile("ci")
    assert ci.derandomize and ci.max_examples <= 100
    assert settings.get_profile("thorough").max_examples > ci.max_examples
