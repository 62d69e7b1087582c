"""Stage `train`: retrain the network of `train.genotype` (default: the searched
genotype.json; or a published name, an NB201 string, a genotype file), save models/model.pt.

A recurrent (rnn) genotype is retrained as a language model on a text corpus
(dnas.train.lm); the others as CNNs (dnas.train.loop)."""

from dnas.config import TEXT_DATASETS, load_params
from dnas.data import PREPARED_ROOT, load_prepared
from dnas.errors import UserError, run_main
from dnas.io import write_json
from dnas.runtime import pick_device
from dnas.spaces.published import resolve_genotype


def main() -> None:
    p = load_params()
    device = pick_device(p.common.device)
    genotype = resolve_genotype(p.train.genotype, "genotype.json")
    text = p.train.dataset in TEXT_DATASETS
    if (genotype.space == "rnn") != text:
        kind = "a recurrent cell" if genotype.space == "rnn" else f"a {genotype.space} CNN cell"
        need = "a text corpus" if genotype.space == "rnn" else "an image dataset"
        raise UserError(
            f"train.genotype {p.train.genotype!r} is {kind}: train.dataset "
            f"{p.train.dataset!r} must be {need}"
        )
    data = load_prepared(PREPARED_ROOT / p.train.dataset)
    if text:
        from dnas.models.rnn_lm import save_lm
        from dnas.train.lm import run_lm_train

        model, config, metrics = run_lm_train(
            p, genotype, data, device, "dvclive/train", "checkpoints/train"
        )
        save_lm("models/model.pt", model, genotype, config)
    else:
        from dnas.models import save_model
        from dnas.train.loop import run_train

        model, config, metrics = run_train(
            p, genotype, data, device, "dvclive/train", "checkpoints/train"
        )
        save_model("models/model.pt", model, genotype, config)
    write_json("metrics/train.json", metrics)


if __name__ == "__main__":
    run_main(main)
