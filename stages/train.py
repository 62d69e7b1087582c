"""Stage `train`: retrain the network of `train.genotype` (default: the searched
genotype.json; or a published name, an NB201 string, a genotype file), save models/model.pt.

A recurrent (rnn) genotype is retrained as a language model on a text corpus
(dnas.train.lm); the others as CNNs (dnas.train.loop), data-parallel under
`torchrun --nproc_per_node N -m stages.train` (README "Many GPUs"); rank 0 writes the outputs."""

from dnas import distributed
from dnas.config import check_track, load_params
from dnas.data import PREPARED_ROOT, load_prepared
from dnas.errors import UserError, run_main
from dnas.io import write_json
from dnas.models import save_model
from dnas.runner import stage_run
from dnas.runtime import out_of_memory_hint, pick_device
from dnas.spaces.published import genotype_kind, resolve_genotype
from dnas.stage_inputs import check_cells_id


def main() -> None:
    p = load_params()
    with distributed.session(p.common.device):
        device = pick_device(p.common.device, p.common.threads)
        if genotype_kind(p.train.genotype) == "searched":
            check_cells_id("genotype.json")
        genotype = resolve_genotype(
            p.train.genotype, "genotype.json", space=p.search.space, seed=p.common.seed,
            fixed_reduction=p.search.fixed_reduction,
        )  # fmt: skip
        text = check_track(genotype, p.train.genotype, p.train.dataset, p.prepare)
        data = load_prepared(PREPARED_ROOT / p.train.dataset)
        t = p.train
        if text:
            if distributed.world_size() > 1:
                raise UserError("language-model retraining runs in one process; drop torchrun")
            from dnas.train.lm import run_lm_train as run

            sizes = {"train.rnn.nhid": t.rnn.nhid, "train.rnn.bptt": t.rnn.bptt}
            sizes["train.rnn.eval_batch_size"] = t.rnn.eval_batch_size
        else:
            from dnas.train.loop import run_train as run

            sizes = {"train.channels": t.channels, "train.layers": t.layers}
            sizes["evaluate.batch_size"] = p.evaluate.batch_size
        sizes["train.batch_size"] = t.batch_size
        # A full disk at the model save keeps the finished run: the rerun does not retrain.
        with stage_run("train", ("models", "metrics")) as writes:
            with out_of_memory_hint("train", sizes):
                model, config, metrics = run(
                    p, genotype, data, device, "dvclive/train", "checkpoints/train"
                )
            if writes:
                save_model("models/model.pt", model, genotype, config)
                # One metric per fact: the final network's test accuracy is the evaluate
                # stage's (metrics/eval.json); the curve over the epochs is in dvclive/train.
                metrics = {k: v for k, v in metrics.items() if k != "test_acc"}
                write_json("metrics/train.json", metrics)


if __name__ == "__main__":
    run_main(main)
