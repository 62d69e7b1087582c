"""The search algorithms by name: the one place that lists them (`search.algorithm`).

Adding an algorithm: one module of `dnas.search` with an `Algorithm` subclass
(`dnas.search.algorithm`), one line here, a preset and a test
(docs/architecture.md#search-algorithms).
"""

from __future__ import annotations

from dnas.search.algorithm import Algorithm
from dnas.search.darts import DARTS
from dnas.search.drnas import DrNAS
from dnas.search.gdas import GDAS
from dnas.search.random_search import RandomSearch
from dnas.search.snas import SNAS

ALGORITHMS: dict[str, type[Algorithm]] = {
    cls.name: cls for cls in (GDAS, DARTS, SNAS, DrNAS, RandomSearch)
}


def get_algorithm(name: str) -> type[Algorithm]:
    try:
        return ALGORITHMS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; known: {', '.join(ALGORITHMS)}") from None
