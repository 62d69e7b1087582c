"""What a search algorithm is to the rest of the code: one small interface
(docs/architecture.md#search-algorithms).

Each algorithm is one module of `dnas.search` holding one subclass of `Algorithm`, listed in
`dnas.search.registry`; nothing else names an algorithm. The subclass says:

- what it may be combined with (class attributes read by `dnas.config` and the loops):
  `uses_tau` (it samples at a Gumbel temperature), `second_order` (DARTS's unrolled step),
  `recurrent` (it can search the recurrent cell), `progressive` (several partial-channel
  stages), `single_level` (weights and alphas from one backward pass of the training loss),
  `tau_schedules` (the `search.tau_schedule` values that fit it);
- its architecture parameters: `init_alphas`, `searches_none` (whether 'none' is an op of the
  DARTS space for it);
- how an edge mixes its ops: `draw` (one forward pass's weights for every searched cell);
- its architecture step: `arch_weight_decay` and `regulariser` (added to the validation loss),
  `penalty_costs` (single level: a resource penalty's cost tables), `shared_noise` (the
  draws every rank must share under torchrun);
- how it derives the genotype: `derive_all_edges` (the DARTS-space rule over every edge rather
  than the two strongest inputs);
- which knobs it reads: `knobs`, the `search.*` keys of its own (`SHARED_KNOBS` are every
  algorithm's; a test checks that each key of `search` belongs somewhere);
- its loop: `run` (the shared CNN loop, `dnas.search.loop`, unless it has its own).

An instance holds the settings it was made with (`configure`), so a supernet is built with
everything it needs and nothing is set on it later.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from dnas.config import Search

# One searched cell's draw for one forward pass: the mixing weights (edges, ops); GDAS's
# sampled op per edge (None: every active op runs, weighted); the active ops per edge (None:
# every op but 'none').
Draw = tuple[torch.Tensor, list[int] | None, list[list[int]] | None]

# The search.* knobs of every algorithm (or of the search around it: the data, the space, the
# weights' optimiser, the NAS-Bench-201 lookup, the recurrent track's section).
SHARED_KNOBS = (
    "dataset", "space", "algorithm", "epochs", "batch_size", "channels", "layers", "lr",
    "lr_min", "momentum", "nesterov", "weight_decay", "grad_clip", "augment", "zero_grad",
    "drop_path", "fixed_reduction", "benchmark", "rnn",
)  # fmt: skip
# The knobs of the algorithms with an architecture step (all but random search).
ARCH_STEP_KNOBS = (
    "order", "arch_optimizer", "arch_lr", "arch_betas", "arch_weight_decay", "arch_grad_clip",
    "step_order", "partial_channels",
)  # fmt: skip


class Algorithm:
    """The base: what every algorithm shares; subclasses override what differs."""

    name: ClassVar[str]
    doc: ClassVar[str] = ""  # one line for `dnas` messages and the docs
    uses_tau: ClassVar[bool] = False
    second_order: ClassVar[bool] = False
    recurrent: ClassVar[bool] = False
    progressive: ClassVar[bool] = False
    single_level: ClassVar[bool] = False
    baseline: ClassVar[bool] = False  # learns no architecture (the report compares with it)
    tau_schedules: ClassVar[tuple[str, ...]] = ("to_last_epoch", "to_end")
    searches_none: ClassVar[bool] = True
    derive_all_edges: ClassVar[bool] = False
    shared_noise: ClassVar[bool] = False
    knobs: ClassVar[tuple[str, ...]] = ()

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

    @classmethod
    def run(cls, p, data, device, live_dir, checkpoint_dir=None):
        """Search: the shared CNN loop (dnas.search.loop)."""
        from dnas.search.loop import run_search_loop

        return run_search_loop(p, data, device, live_dir, checkpoint_dir)

    @classmethod
    def rnn_mixing(cls, gumbel: str) -> str:
        """The recurrent cell's mixing mode (dnas.search.rnn) for `search.rnn.gumbel`."""
        raise NotImplementedError(f"{cls.name} does not search the recurrent cell")
