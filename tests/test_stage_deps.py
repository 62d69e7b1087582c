"""Each stage reruns when a source file it can run changes, and not otherwise. The stages do
not list their source files in dvc.yaml (one `dvc exp show` column each): the validate stage
writes data/stages/<stage>.json with the hash of every file the stage can import
(dnas.stage_inputs), and the stage depends on that file. Checked here against the static import
graph of tests/importgraph.py (written apart from dnas.stage_inputs): every dnas module a stage
can import is hashed, and no other. A stage missing a module would not rerun when it changes (a
stale result); one hashing a module it never imports would rerun for nothing."""

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
    """What the dep paths `deps` (files or directories) miss of the stage's modules, and
    which of them name no module the stage imports."""
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


@pytest.mark.parametrize("stage", sorted(set(_stages()) - {"validate"}))
def test_stage_sources_match_imports(stage):
    """The files hashed into data/stages/<stage>.json are the stage's script and exactly the
    dnas modules it can import (with dnas/__init__.py, which every import runs)."""
    from dnas.stage_inputs import stage_sources

    got = stage_sources(stage, ROOT)
    listed = [f for f in got if f != "src/dnas/__init__.py"]
    assert mismatches(stage, listed) == {"missing": [], "unused": [], "script": []}
    assert set(got) == {STAGE_SCRIPT.format(stage), "src/dnas/__init__.py"} | {
        _rel(m) for m in stage_modules(stage) - {"dnas"}
    }


@pytest.mark.parametrize("stage", sorted(_stages()))
def test_each_stage_depends_on_its_own_inputs_file_not_on_source_paths(stage):
    """validate depends on all the code (it writes the hashes); every other stage on its own
    data/stages file and on no source path; and dnas.stage_inputs knows every stage."""
    from dnas.stage_inputs import STAGE_KNOBS

    deps = [d if isinstance(d, str) else next(iter(d)) for d in _stages()[stage]["deps"]]
    if stage == "validate":
        assert {"src/dnas", "stages"} <= set(deps)
        return
    assert stage in STAGE_KNOBS
    assert f"data/stages/{stage}.json" in deps
    assert not [d for d in deps if d.startswith(("src/", "stages/"))], deps


def test_a_source_change_reaches_only_the_stages_that_import_it(tmp_path):
    """data/stages/<stage>.json of a copy of the sources: a change to the plots package changes
    only plots.json, one to config.py every stage's file, one to the search package search's."""
    import shutil

    from dnas.config import load_params
    from dnas.stage_inputs import STAGE_KNOBS, write_stage_inputs

    for item in ("src", "stages"):
        shutil.copytree(ROOT / item, tmp_path / item, ignore=shutil.ignore_patterns("__pycache__"))
    params = load_params(ROOT / "params.yaml").model_dump(mode="json")

    def files() -> dict[str, bytes]:
        write_stage_inputs(params, tmp_path / "out", tmp_path)
        return {s: (tmp_path / "out" / f"{s}.json").read_bytes() for s in STAGE_KNOBS}

    def changed_by(path: str) -> set[str]:
        before = files()
        with open(tmp_path / path, "a") as f:
            f.write("\n# changed\n")
        after = files()
        return {s for s in STAGE_KNOBS if before[s] != after[s]}

    assert files() == files()  # the same bytes for the same inputs
    assert changed_by("src/dnas/plots/__init__.py") == {"plots"}
    assert changed_by("src/dnas/search/__init__.py") == {"search"}
    assert changed_by("stages/evaluate.py") == {"evaluate"}
    assert changed_by("src/dnas/config.py") == set(STAGE_KNOBS)
