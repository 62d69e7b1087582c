"""Each dvc.yaml stage's `deps` name what its script really imports within src/dnas (read
statically, tests/importgraph.py): every dnas module the stage can import is covered by a dep
(the file, or a directory above it), and no src dep names a path the stage never imports. A
stage whose deps miss a module it imports would not rerun when that module changes (a stale
result); one that names a module it never imports reruns for nothing."""

import pytest
import yaml

from tests.importgraph import ROOT, SRC, closure, dnas_modules, import_graph, imports_of

STAGE_SCRIPT = "stages/{}.py"


def _stages() -> dict[str, dict]:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {name: s.get("do", s) for name, s in stages.items()}


def _with_parents(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Importing `dnas.pkg.mod` also runs `dnas/pkg/__init__.py` (and what it imports): add
    that edge. The root `dnas/__init__.py` is left out (checked to import nothing)."""
    out = {m: set(deps) for m, deps in graph.items()}
    for m in graph:
        parent = m.rpartition(".")[0]
        if parent and parent != "dnas":
            out[m].add(parent)
    return out


def stage_modules(stage: str) -> set[str]:
    """The dnas modules stage `stage` can import, from its script, transitively."""
    modules = dnas_modules()
    graph = _with_parents(import_graph())
    direct = imports_of(ROOT / STAGE_SCRIPT.format(stage), modules)
    return closure(direct, graph)


def _rel(module: str) -> str:
    return dnas_modules()[module].relative_to(ROOT).as_posix()


def _covers(dep: str, path: str) -> bool:
    return path == dep or path.startswith(dep.rstrip("/") + "/")


def mismatches(stage: str, deps: list[str]) -> dict[str, list[str]]:
    files = sorted(_rel(m) for m in stage_modules(stage) - {"dnas"})
    src_deps = [d for d in deps if isinstance(d, str) and d.startswith("src/")]
    script = STAGE_SCRIPT.format(stage)
    return {
        "missing": [f for f in files if not any(_covers(d, f) for d in src_deps)],
        "unused": [d for d in src_deps if not any(_covers(d, f) for f in files)],
        "script": [] if script in deps else [script],
    }


def test_root_package_imports_nothing():
    assert imports_of(SRC / "dnas" / "__init__.py", dnas_modules(), "dnas") == set()


def test_every_stage_script_is_found():
    for name, stage in _stages().items():
        assert f"-m stages.{name}" in stage["cmd"], name
        assert (ROOT / STAGE_SCRIPT.format(name)).is_file()
        assert stage_modules(name), name


def test_mismatches_are_seen():
    """The check itself: a dep list without the data package misses its modules, and a dep on
    a package the stage never imports is flagged."""
    got = mismatches("prepare", ["stages/prepare.py", "src/dnas/plots", "src/dnas/config"])
    assert "src/dnas/data/registry.py" in got["missing"]
    assert got["unused"] == ["src/dnas/plots"]
    assert "src/dnas/config/search.py" not in got["missing"]


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_stage_deps_match_imports(stage):
    deps = [d if isinstance(d, str) else next(iter(d)) for d in _stages()[stage]["deps"]]
    got = mismatches(stage, deps)
    assert got == {"missing": [], "unused": [], "script": []}, f"stage {stage}: {got}"
