"""The search spaces by name: the one place that maps a space's name (`search.space`, a
genotype's `space`) to its module's `SPACE` (dnas.spaces.space.Space). Everything else asks
the object this returns instead of comparing names; a new space is a module with its `SPACE`
and a line here (and its name in `config.Search.space`, which tests/test_spaces_registry.py
compares).
"""

from __future__ import annotations

from dnas.spaces import darts, nb201, rnn
from dnas.spaces.space import Space

SPACES: dict[str, Space] = {s.name: s for s in (darts.SPACE, nb201.SPACE, rnn.SPACE)}


def find_space(name: object) -> Space | None:
    """The space called `name`, or None (for a name that may be anything, e.g. from a file)."""
    return SPACES.get(name) if isinstance(name, str) else None


def get_space(name: str) -> Space:
    """The space called `name`; a ValueError listing the known names for any other."""
    space = find_space(name)
    if space is None:
        raise ValueError(f"unknown space {name!r}; known: {', '.join(SPACES)}")
    return space
