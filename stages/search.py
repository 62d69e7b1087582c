"""Stage `search`: run the architecture search, write genotype.json and metrics/search.json.

`search.space: rnn` (a space on the text track, `Space.text`) searches the recurrent cell on a
text corpus (dnas.search.rnn_loop); the other spaces search CNN cells (dnas.search.loop),
data-parallel under `torchrun --nproc_per_node N -m stages.search` (README "Many GPUs"); rank 0
writes the outputs."""

from dnas import distributed
from dnas.config import load_params
from dnas.data import PREPARED_ROOT, load_prepared
from dnas.errors import UserError, run_main
from dnas.io import MEASURED, write_json
from dnas.runner import stage_run
from dnas.runtime import out_of_memory_hint, pick_device
from dnas.spaces.registry import get_space
from dnas.stage_inputs import cells_id


def main() -> None:
    p = load_params()
    with distributed.session(p.common.device):
        device = pick_device(p.common.device, p.common.threads)
        data = load_prepared(PREPARED_ROOT / p.search.dataset)
        s = p.search
        if get_space(s.space).text:
            if distributed.world_size() > 1:
                raise UserError("the recurrent search runs in one process; run it without torchrun")
            from dnas.search.rnn_loop import run_rnn_search as run

            sizes = {"search.rnn.nhid": s.rnn.nhid, "search.rnn.bptt": s.rnn.bptt}
        else:
            from dnas.search.loop import run_search as run

            sizes = {"search.channels": s.channels, "search.layers": s.layers}
        sizes["search.batch_size"] = s.batch_size
        with stage_run("search", ("metrics", ".")) as writes:
            with out_of_memory_hint("search", sizes):
                result = run(p, data, device, "dvclive/search", "checkpoints/search")
            if writes:
                # with its short name, which the train stage tracks (dvc.yaml)
                genotype = result.genotype.to_json()
                write_json("genotype.json", {**genotype, "cells_id": cells_id(genotype)})
                # The run's timings and memory are measurements of this machine, not results:
                # they go beside the outputs, in a file DVC does not track (docs/pipeline.md).
                metrics = dict(result.metrics)
                write_json("measurements/search.json", metrics.pop(MEASURED))
                write_json("metrics/search.json", metrics)
                print(f"genotype: {result.genotype.arch or 'genotype.json'}")


if __name__ == "__main__":
    run_main(main)
