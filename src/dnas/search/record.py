"""What a search records and returns, shared by the CNN and the recurrent search loops: the
values of every epoch (dvclive metrics, the op probabilities as a plot, the genotype derived
after each epoch in `genotypes.json`), their replay after a resume, the final metrics taken
from the last epoch, and the measured cost (docs/pipeline.md).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from pathlib import Path

import torch

from dnas import distributed as dist
from dnas.io import round_floats, write_json
from dnas.runner import EpochRunner
from dnas.search.budget import settled_report
from dnas.spaces.genotype import Genotype
from dvclive import Live


@dataclass
class SearchResult:
    genotype: Genotype
    metrics: dict


def record_epoch(run: EpochRunner, live_dir, epoch: int, values: dict, current: Genotype) -> dict:
    """Log a search epoch (both search loops): its values to 6 significant digits, as in the
    JSON outputs, the op probabilities and the genotype derived after it."""
    history, prob_rows = run.log
    values = round_floats(values)
    prob_rows.extend(arch_prob_rows(epoch, current))
    history.append({"epoch": epoch, "values": values, "genotype": current.brief()})
    log_epoch(run.live, values, epoch, prob_rows)
    write_genotype_log(live_dir, history)
    return values


def replay_log(run: EpochRunner, live_dir, live: Live) -> None:
    """A resumed search's log, logged again: the same files as an uninterrupted run."""
    history, prob_rows = run.log
    for past in history:
        log_epoch(live, past["values"], past["epoch"], prob_rows)
    write_genotype_log(live_dir, history)


def final_metrics(
    run: EpochRunner, device, epochs: int, size: int, names: dict[str, str], uses_tau: bool
) -> dict:
    """A search's metrics: each of `names` (metric -> key) from the last epoch's values, the
    last temperature (`uses_tau`: for the algorithms that sample with one), the architecture
    summary, whether the cells settled (dnas.search.budget), the genotype's parameters at the
    papers' size (`size`) and the measured cost."""
    summary = run.log[0][-1]["values"]
    tau = {"final_tau": summary["tau"]} if uses_tau else {}
    cells = [h.get("genotype") for h in run.log[0]]
    return {
        **settled_report(cells, epochs, run.log[1]),  # whether the cells settled
        **{metric: summary[key] for metric, key in names.items()},
        **tau,
        "arch_entropy": summary["arch/entropy"],
        "arch_top_prob": summary["arch/top_prob"],
        "epochs": epochs,
        "genotype_params": size,
        "cost": run_cost(run, device),
    }


def run_cost(run: EpochRunner, device: torch.device) -> dict:
    """Measurements of a run, not results: they differ between runs and machines."""
    seconds = run.seconds
    return {
        "seconds_per_epoch": round_floats(sum(seconds) / max(len(seconds), 1)),
        "peak_memory_mb": round_floats(peak_memory_mb(device)),
    }


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: the peak of memory allocated by tensors; CPU: the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def log_epoch(live: Live, values: dict, epoch: int, prob_rows: list[dict]) -> None:
    """One epoch's values and the op probabilities so far, to dvclive (search loops)."""
    for name, value in values.items():
        live.log_metric(name, value)
    rows = [r for r in prob_rows if r["epoch"] <= epoch]
    live.log_plot("arch_probs", rows, x="epoch", y="prob", template="linear")
    live.next_step()


def arch_values(genotype: Genotype) -> dict[str, float]:
    """The per-epoch summary of the op distributions (Genotype.prob_stats), as dvclive
    metrics `arch/entropy` and `arch/top_prob`."""
    return {f"arch/{k}": v for k, v in genotype.prob_stats().items()}


def write_genotype_log(live_dir: str | Path, history: list[dict]) -> None:
    """`genotypes.json` in the dvclive directory: the genotype derived after every epoch, one
    line per cell (as AutoDL and NASLib log it), to see when the architecture settles."""
    if dist.is_main():
        rows = [{"epoch": h["epoch"], **h["genotype"]} for h in history if "genotype" in h]
        write_json(Path(live_dir) / "genotypes.json", rows)


def arch_prob_rows(epoch: int, genotype: Genotype) -> list[dict]:
    """One row per cell type, edge and op: the op's probability after `epoch`."""
    rows = []
    for cell, edges in genotype.probs.items():
        for edge, ops in edges.items():
            for op, prob in ops.items():
                rows.append(
                    {
                        "epoch": epoch,
                        "cell": cell,
                        "edge": edge,
                        "op": op,
                        "prob": round_floats(prob),
                    }
                )
    return rows
