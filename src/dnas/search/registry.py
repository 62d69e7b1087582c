"""The search algorithms' classes by name (`search.algorithm`): the one module of the search
that imports them. Which algorithms exist, and what each combines with, is `dnas.algorithms`'
table; each row's module holds the class this maps its name to.
"""

from __future__ import annotations

from dnas.algorithms import ALGORITHMS as SPECS
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
    if name not in ALGORITHMS:
        known = ", ".join(map(repr, SPECS))
        raise ValueError(f"unknown algorithm {name!r}; known: {known}")
    return ALGORITHMS[name]


def make_algorithm(name: str) -> Algorithm:
    """An instance of algorithm `name` with its defaults (to build a supernet by hand)."""
    return get_algorithm(name).configure(None)
