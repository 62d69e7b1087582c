"""No import cycle inside src/dnas: imports point downwards (docs/architecture.md#layers)."""

from tests.importgraph import SRC, cycles, dnas_modules, import_graph, imports_of


def _graph_of(tmp_path, files: dict[str, str]):
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return import_graph(tmp_path)


def test_no_import_cycle_in_dnas():
    graph = import_graph()
    found = cycles(graph)
    detail = [{m: sorted(graph[m] & set(c)) for m in c} for c in found]
    assert not found, f"import cycles in src/dnas (module -> its imports in the cycle): {detail}"


def test_graph_sees_the_package():
    graph = import_graph()
    assert len(graph) > 50 and "dnas.data.registry" in graph
    # a function-level (lazy) import is an edge, as a module-level one is
    assert "dnas.data.text" in graph["dnas.data.registry"]
    assert "dnas.spaces.registry" in graph["dnas.spaces.genotype"]


def test_finds_lazy_relative_and_package_cycles(tmp_path):
    graph = _graph_of(
        tmp_path,
        {
            "dnas/__init__.py": "",
            "dnas/a/__init__.py": "from dnas.a.low import x\n",
            "dnas/a/low.py": "def f():\n    from .high import y\n",
            "dnas/a/high.py": "from dnas.a import low\n",
            "dnas/b.py": "import dnas.c\n",
            "dnas/c.py": "from dnas import b\n",
            "dnas/d.py": "from dnas.a import x\n",
        },
    )
    assert graph["dnas.a.low"] == {"dnas.a.high"}
    assert graph["dnas.a.high"] == {"dnas.a.low"}
    assert graph["dnas.d"] == {"dnas.a"}  # a name, not a submodule: the package
    assert cycles(graph) == [["dnas.a.high", "dnas.a.low"], ["dnas.b", "dnas.c"]]


def test_a_package_reexporting_its_submodules_is_no_cycle(tmp_path):
    graph = _graph_of(
        tmp_path,
        {
            "dnas/__init__.py": "",
            "dnas/p/__init__.py": "from dnas.p.m import f\n",
            "dnas/p/m.py": "from dnas.p.n import g\n",
            "dnas/p/n.py": "import numpy\n",
        },
    )
    assert cycles(graph) == []


def test_stage_scripts_resolve_to_dnas_modules():
    modules = dnas_modules()
    found = imports_of(SRC.parent / "stages" / "prepare.py", modules)
    assert "dnas.data" in found and all(m in modules for m in found)
