"""What a search algorithm is to the rest of the code: one small interface
(docs/architecture.md#search-algorithms).

Each algorithm is one module of `dnas.search` holding one subclass of `Algorithm`, and one row
of `dnas.algorithms`; `dnas.search.registry` maps names to the classes; nothing else names an
algorithm. The subclass says:

- what it may be combined with: its row in `dnas.algorithms` (read by `dnas.config` before
  any search code is imported), copied onto the class: `uses_tau` (it samples at a Gumbel
  temperature), `second_order` (DARTS's unrolled step), `recurrent` (it can search the
  recurrent cell), `progressive` (several partial-channel stages), `single_level` (weights and
  alphas from one backward pass of the training loss), `baseline`, `tau_schedules`;
- its architecture parameters: `init_alphas`, `searches_none` (whether 'none' is an op of the
  DARTS space for it);
- how an edge mixes its ops: `draw` (one forward pass's weights for every searched cell);
- its architecture step: `arch_weight_decay` and `regulariser` (added to the validation loss),
  `penalty_costs` (single level: a resource penalty's cost tables), `shared_noise` (the
  draws every rank must share under torchrun);
- how it derives the genotype: `derive_all_edges` (the DARTS-space rule over every edge rather
  than the two strongest inputs);
- which knobs it reads: `knobs` (its row's), the `search.*` keys of its own (`SHARED_KNOBS`
  are every algorithm's; a test checks that each key of `search` belongs somewhere);
- its loop: `run`, when it has its own; the others run `dnas.search.loop`'s shared one.

An instance holds the settings it was made with (`configure`), so a supernet is built with
everything it needs and nothing is set on it later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from dnas.algorithms import ALGORITHMS, ARCH_STEP_KNOBS, SHARED_KNOBS, AlgorithmSpec

__all__ = ["ARCH_STEP_KNOBS", "SHARED_KNOBS", "Algorithm", "Draw"]

if TYPE_CHECKING:
    from dnas.config import Search

# One searched cell's draw for one forward pass: the mixing weights (edges, ops); GDAS's
# sampled op per edge (None: every active op runs, weighted); the active ops per edge (None:
# every op but 'none').
Draw = tuple[torch.Tensor, list[int] | None, list[list[int]] | None]


class Algorithm:
    """The base: what every algorithm shares; subclasses override what differs. The facts of
    `dnas.algorithms`' row (uses_tau, second_order, recurrent, progressive, single_level,
    baseline, tau_schedules, knobs) are class attributes of the subclass too."""

    name: ClassVar[str]
    spec: ClassVar[AlgorithmSpec]
    uses_tau: ClassVar[bool]
    second_order: ClassVar[bool]
    recurrent: ClassVar[bool]
    progressive: ClassVar[bool]
    single_level: ClassVar[bool]
    baseline: ClassVar[bool]
    tau_schedules: ClassVar[tuple[str, ...]]
    knobs: ClassVar[tuple[str, ...]]
    # How it treats the space (the search code's own facts, not the params check's):
    searches_none: ClassVar[bool] = True  # 'none' is one of the DARTS space's ops for it
    derive_all_edges: ClassVar[bool] = False  # the genotype rule over every incoming edge
    shared_noise: ClassVar[bool] = False  # its draws must be the same on every rank

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.spec = ALGORITHMS[cls.name]
        for flag in ("uses_tau", "second_order", "recurrent", "progressive", "single_level",
                     "baseline", "tau_schedules", "knobs"):  # fmt: skip
            setattr(cls, flag, getattr(cls.spec, flag))

    def __init__(self, settings: Search | None = None) -> None:
        self.settings = settings

    @classmethod
    def configure(cls, settings: Search | None, space_unselected_grad: bool = False) -> Algorithm:
        """An instance for a search with `settings` (None: the defaults, as tests build
        networks). `space_unselected_grad`: the space's `auto` for GDAS's unselected_grad."""
        return cls(settings)

    # -- the architecture parameters ----------------------------------------------------------

    def init_alphas(self, n_edges: int, n_ops: int) -> torch.Tensor:
        """1e-3 * randn (docs/algorithms.md#darts-cnn-space, #drnas)."""
        return 1e-3 * torch.randn(n_edges, n_ops)

    # -- how an edge mixes its ops --------------------------------------------------------------

    def draw(self, net: Any, tau: float | None, detach_alpha: bool) -> list[Draw]:
        """The draws of one forward pass, one per searched cell in `net.cell_sequence`'s
        order. The all-ops algorithms draw once per cell type (`mix`)."""
        if tau is None and self.uses_tau:
            raise ValueError(f"{self.name} samples at a temperature: pass tau")
        per_type = {}
        active = net.active()
        for t in net.cell_types:
            alpha = net.alphas[t].detach() if detach_alpha else net.alphas[t]
            per_type[t] = (self.mix(alpha, tau, net.mask(t), net.generator), None, active[t])
        return [per_type[t] for t in net.cell_sequence]

    def mix(
        self,
        alpha: torch.Tensor,
        tau: float | None,
        mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Mixing weights (edges, ops) of one cell type's edges; pruned ops (mask False) get
        weight 0."""
        raise NotImplementedError(f"{self.name} does not mix every op")

    def unselected_grad(self) -> bool:
        """GDAS only: whether the unsampled ops' alphas get a gradient."""
        return False

    # -- the architecture step ------------------------------------------------------------------

    def arch_weight_decay(self, s: Search) -> float:
        return s.arch_weight_decay

    def regulariser(self, s: Search) -> Callable[[Any], torch.Tensor] | None:
        """A term added to the validation loss of the architecture step (None: nothing)."""
        return None

    def penalty_costs(self, s: Search, net: Any, example: torch.Tensor) -> dict | None:
        """Single level: the tables its resource penalty reads (None: no penalty)."""
        return None

    def penalty(self, s: Search, weights: dict, costs: dict) -> torch.Tensor:
        raise NotImplementedError(f"{self.name} has no resource penalty")

    # -- the loop ------------------------------------------------------------------------------

        # An algorithm with a loop of its own (random search) defines `run(p, data, device,
    # live_dir, checkpoint_dir)` as a classmethod; the others run the shared CNN loop.
    run: ClassVar[Callable | None] = None

    @classmethod
    def rnn_mixing(cls, gumbel: str) -> str:
        """The recurrent cell's mixing mode (dnas.search.rnn) for `search.rnn.gumbel`."""
        raise NotImplementedError(f"{cls.name} does not search the recurrent cell")
