"""A cell of any space (`CellSpec`) and its strict JSON form: the piece below the spaces.

A cell has `inputs` input nodes (0 .. inputs-1); `nodes[i]` is node `inputs + i` and lists its
incoming edges as (op, input node). The cell output concatenates (DARTS), averages (the
recurrent cell) or is (NB201) the nodes in `concat`. What a cell of one space must look like is
that space's (`dnas.spaces.space.Space.check_cell`); `dnas.spaces.genotype` re-exports
`CellSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Edge = tuple[str, int]


@dataclass(frozen=True)
class CellSpec:
    """A cell. A node's incoming edges are summed, so their order carries no meaning: they are
    kept sorted by (input node, op), and two equal architectures are equal objects and write
    byte-equal JSON (so DVC does not retrain an architecture it has already trained)."""

    inputs: int
    nodes: tuple[tuple[Edge, ...], ...]
    concat: tuple[int, ...]

    def __post_init__(self) -> None:
        canonical = tuple(tuple(sorted(node, key=lambda e: (e[1], e[0]))) for node in self.nodes)
        object.__setattr__(self, "nodes", canonical)

    def to_json(self) -> dict:
        return {
            "inputs": self.inputs,
            "nodes": [[[op, j] for op, j in node] for node in self.nodes],
            "concat": list(self.concat),
        }

    @classmethod
    def from_json(cls, d: Any, name: str, max_inputs: int, max_nodes: int) -> CellSpec:
        """A cell from its JSON form. Strict: `inputs`, the input indices and `concat` must be
        JSON integers (not 1.7, true or "2"), each edge an [op, input] pair; a cell larger
        than any space's (`max_inputs` input nodes, `max_nodes` nodes: the registry's largest,
        `dnas.spaces.genotype`) is refused before it is read further."""
        where = f"cell {name!r}"
        if not isinstance(d, dict):
            raise ValueError(f"{where}: expected an object with inputs, nodes, concat")
        missing = [k for k in ("inputs", "nodes", "concat") if k not in d]
        if missing:
            raise ValueError(f"{where}: no {', '.join(map(repr, missing))} entry")
        inputs = strict_int(d["inputs"], f"{where} inputs")
        if not 1 <= inputs <= max_inputs:
            counts = " or ".join(map(str, range(1, max_inputs + 1)))
            raise ValueError(f"{where} inputs: {inputs}; a cell has {counts} input nodes")
        nodes_json, concat_json = d["nodes"], d["concat"]
        for key, value in (("nodes", nodes_json), ("concat", concat_json)):
            if not isinstance(value, list):
                raise ValueError(f"{where} {key}: expected a list, got {type(value).__name__}")
        if len(nodes_json) > max_nodes:
            raise ValueError(
                f"{where}: {len(nodes_json)} nodes; a cell of these spaces has at most {max_nodes}"
            )
        nodes = []
        for i, node in enumerate(nodes_json):
            node_id = inputs + i
            if not isinstance(node, list) or len(node) > max_nodes + max_inputs:
                raise ValueError(f"{where} node {node_id}: expected a short list of [op, input]")
            edges = []
            for edge in node:
                if not (isinstance(edge, list) and len(edge) == 2 and isinstance(edge[0], str)):
                    raise ValueError(
                        f"{where} node {node_id}: {short_repr(edge)} is not an [op, input] pair"
                    )
                edges.append((edge[0], strict_int(edge[1], f"{where} node {node_id} input")))
            nodes.append(tuple(edges))
        if len(concat_json) > max_nodes + max_inputs:
            raise ValueError(f"{where} concat: {len(concat_json)} entries, more than the nodes")
        concat = tuple(strict_int(c, f"{where} concat") for c in concat_json)
        return cls(inputs=inputs, nodes=tuple(nodes), concat=concat)


def strict_int(value: Any, what: str) -> int:
    """A JSON integer: not a bool, a float (1.7, 1e9) or a string."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what}: {short_repr(value)} is not an integer")
    return value


def short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
