"""Stage `evaluate`: test accuracy, loss, parameters and multiply-adds -> metrics/eval.json."""

from dnas.config import load_params
from dnas.data import PREPARED_ROOT, load_prepared
from dnas.errors import run_main
from dnas.evaluate import count_macs, count_parameters
from dnas.io import write_json
from dnas.models import load_model
from dnas.runtime import pick_device
from dnas.train.loop import eval_loader, evaluate_loader


def main() -> None:
    p = load_params()
    device = pick_device(p.common.device)
    model, _ = load_model("models/model.pt", device)
    data = load_prepared(PREPARED_ROOT / p.train.dataset)
    loader = eval_loader(data, device, p.evaluate.batch_size)
    result = evaluate_loader(model, loader)
    h, w, c = data.card["shape"]
    metrics = {
        "test": {"top1": result["top1"], "top5": result["top5"], "loss": result["loss"]},
        "test_size": loader.num_examples,
        "params": count_parameters(model),
        "macs": count_macs(model, (c, h, w)),
    }
    write_json("metrics/eval.json", metrics)
    print(f"test top-1 {result['top1']:.2f}%  params {metrics['params']:,}")


if __name__ == "__main__":
    run_main(main)
