"""Each pipeline stage's inputs in one small file: `data/stages/<stage>.json`, written by the
validate stage, holds the resolved values of exactly the knobs the stage reads (from params.yaml
and advanced.yaml together) and a hash of every source file the stage can import (its script
and, read statically, the dnas modules it reaches). Each stage depends on its own file, so a
change to one knob or one source file reruns exactly the stages that read it, while
`dvc exp show` has one column per stage instead of one per knob and per source path
(docs/pipeline.md, "Stage inputs").

The import graph is read with `ast` (nothing is imported): every `import` and `from ... import`
of a `dnas` module, at any nesting level, and the `__init__.py` of every package on the way.
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any

from dnas.errors import UserError
from dnas.io import write_bytes

# What each stage reads of the params (a whole section, or one key). The prepare stage's
# per-dataset entries (prepare.custom, prepare.paths, the split) are in data/sources/<name>.json
# (dnas.data.registry.source_settings) so that adding a dataset re-prepares no other one.
STAGE_KNOBS: dict[str, tuple[str, ...]] = {
    "prepare": ("prepare.seed", "prepare.raw_dir", "prepare.test_fraction"),
    "search": (
        "common.seed",
        "common.threads",  # the order of float sums, so the last digits of results
        "common.device",
        "common.bf16",
        "common.channels_last",
        "common.cudnn_benchmark",
        "search",
    ),
    "train": (
        "common.seed",
        "common.threads",
        "common.device",
        "common.compile",
        "common.bf16",
        "common.channels_last",
        "common.cudnn_benchmark",
        "train",
        "evaluate.batch_size",
    ),
    "evaluate": ("common.device", "common.threads", "evaluate.batch_size", "train.dataset"),
    "plots": ("plots.dpi", "train.genotype"),
}
STAGES_ROOT = Path("data/stages")


def _module_files(src: Path) -> dict[str, Path]:
    """dnas module name -> its file."""
    out = {}
    for path in sorted((src / "dnas").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(path: Path, modules: dict[str, Path], this: str | None) -> set[str]:
    """The dnas modules the file imports: for `from a.b import c`, `a.b.c` when it is a module,
    else `a.b`; a dotted name that is no module counts as its nearest enclosing module."""
    package: list[str] = []
    if this is not None:
        package = this.split(".") if path.name == "__init__.py" else this.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], base]).rstrip(".")
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                     for a in node.names]  # fmt: skip
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name.startswith("dnas"):
                found.add(name)
    return found


def stage_sources(stage: str, root: Path = Path(".")) -> list[str]:
    """The files (relative to `root`, sorted) that `stages/<stage>.py` can run: the script,
    and every dnas module it reaches, with the `__init__.py` of each package above one."""
    src = root / "src"
    modules = _module_files(src)
    todo = list(_imports(root / "stages" / f"{stage}.py", modules, None))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_imports(modules[name], modules, name))
        parent = name.rpartition(".")[0]
        if parent:
            todo.append(parent)
    files = [root / "stages" / f"{stage}.py", *(modules[m] for m in seen)]
    return sorted(p.relative_to(root).as_posix() for p in files)


def _knob(raw: dict, dotted: str) -> Any:
    node: Any = raw
    for part in dotted.split("."):
        node = node[part]
    return node


def stage_inputs(stage: str, params: dict, root: Path = Path(".")) -> dict:
    """The content of `data/stages/<stage>.json`: `params` (the validated params, as
    `Params.model_dump(mode="json")`) cut to the knobs the stage reads, and the MD5 of each
    source file it can run."""
    return {
        "params": {k: _knob(params, k) for k in STAGE_KNOBS[stage]},
        "code": {
            path: hashlib.md5((root / path).read_bytes()).hexdigest()  # noqa: S324
            for path in stage_sources(stage, root)
        },
    }


def write_stage_inputs(params: dict, out: str | Path = STAGES_ROOT, root: Path = Path(".")) -> None:
    """`out/<stage>.json` for every stage of STAGE_KNOBS: the same bytes for the same inputs
    (sorted keys, exact values)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for stage in STAGE_KNOBS:
        text = json.dumps(stage_inputs(stage, params, root), indent=1, sort_keys=True) + "\n"
        write_bytes(out / f"{stage}.json", text.encode())


def cells_id(genotype: dict) -> str:
    """A short name of a genotype's architecture (its JSON form, `Genotype.to_json()`): the
    space and the first 12 hex digits of the SHA-256 of its space and cells as canonical JSON
    (sorted keys, no spaces). The search stage writes it into genotype.json, and the train stage
    tracks that key instead of the cells' lists (one `dvc exp show` column each, the node lists
    hundreds of characters wide) or the op probabilities (a search ending in the same cells with
    other probabilities does not retrain)."""
    text = json.dumps({"space": genotype["space"], "cells": genotype["cells"]}, sort_keys=True,
                      separators=(",", ":"))  # fmt: skip
    return f"{genotype['space']}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def check_cells_id(path: str | Path) -> None:
    """A genotype file whose `cells_id` is not that of its cells (edited by hand) would retrain
    cells DVC does not know changed: refuse it. A file without one (not written by the search
    stage) passes."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        recorded = data.get("cells_id") if isinstance(data, dict) else None
        actual = cells_id(data) if recorded is not None else None
    except (OSError, ValueError, KeyError, TypeError):
        return  # the genotype reader gives the error for a missing or malformed file
    if recorded != actual:
        raise UserError(
            f"{path}: cells_id {recorded!r} is not that of its cells ({actual!r}), and the "
            "train stage tracks the cells by it; rerun the search (`dvc repro -f search`), or "
            "retrain cells of your own with train.genotype=FILE"
        )
