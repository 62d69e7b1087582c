"""Stage `train`: retrain the network of `train.genotype` (default: the searched
genotype.json; or a published name, an NB201 string, a genotype file), save models/model.pt.

Runs data-parallel under `torchrun --nproc_per_node N -m stages.train` (README "Many GPUs");
rank 0 writes the outputs."""

from dnas import distributed
from dnas.config import load_params
from dnas.data import PREPARED_ROOT, load_prepared
from dnas.errors import run_main
from dnas.io import write_json
from dnas.models import save_model
from dnas.runtime import pick_device
from dnas.spaces.published import resolve_genotype
from dnas.train.loop import run_train


def main() -> None:
    p = load_params()
    with distributed.session(p.common.device):
        device = pick_device(p.common.device)
        genotype = resolve_genotype(p.train.genotype, "genotype.json")
        data = load_prepared(PREPARED_ROOT / p.train.dataset)
        model, config, metrics = run_train(
            p, genotype, data, device, "dvclive/train", "checkpoints/train"
        )
        if distributed.is_main():
            save_model("models/model.pt", model, genotype, config)
            write_json("metrics/train.json", metrics)


if __name__ == "__main__":
    run_main(main)
