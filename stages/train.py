"""Stage `train`: retrain the network of `train.genotype` (default: the searched
genotype.json; or a published name, an NB201 string, a genotype file), save models/model.pt."""

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
    device = pick_device(p.common.device)
    genotype = resolve_genotype(p.train.genotype, "genotype.json")
    data = load_prepared(PREPARED_ROOT / p.train.dataset)
    model, config, metrics = run_train(
        p, genotype, data, device, "dvclive/train", "checkpoints/train"
    )
    save_model("models/model.pt", model, genotype, config)
    write_json("metrics/train.json", metrics)


if __name__ == "__main__":
    run_main(main)
