"""Stage `evaluate` -> metrics/eval.json and metrics/eval_per_class.json. CNNs: test accuracy
(top-1, top-5, balanced), loss, parameters and multiply-adds in eval.json; per-class accuracy,
test examples per class and the confusion matrix in eval_per_class.json (not a DVC metric: one
column per class would swamp `dvc exp show`; docs/pipeline.md). Language models (a text
train.dataset): validation and test perplexity (test with the model's test_batch_size, 1 as in
the papers) and parameters; their eval_per_class.json holds no classes."""

from dnas.config import is_text, load_params
from dnas.data import PREPARED_ROOT, load_prepared
from dnas.errors import run_main
from dnas.io import write_json
from dnas.runtime import pick_device

PER_CLASS = "metrics/eval_per_class.json"


def evaluate_cnn(p, device) -> None:
    from dnas.evaluate import (
        class_names,
        class_results,
        count_macs,
        count_parameters,
        eval_loader,
        evaluate_loader,
    )
    from dnas.models import load_model

    model, _ = load_model("models/model.pt", device)
    data = load_prepared(PREPARED_ROOT / p.train.dataset)
    loader = eval_loader(data, device, p.evaluate.batch_size)
    result = evaluate_loader(model, loader, num_classes=data.num_classes)
    per_class = class_results(result["confusion"], class_names(data))
    h, w, c = data.card["shape"]
    test = {k: result[k] for k in ("top1", "top5", "loss")}
    metrics = {
        "test": {**test, "balanced_acc": per_class["balanced_acc"]},
        "test_size": loader.num_examples,
        "params": count_parameters(model),
        "macs": count_macs(model, (c, h, w)),
    }
    if loader.num_examples < len(data.test_y):  # test_half: scored on the x-test half only
        metrics["test_split"] = {"x_test_only": 1, "test_set_size": len(data.test_y)}
    write_json(PER_CLASS, per_class)
    write_json("metrics/eval.json", metrics)
    worst = min((a, n) for n, a in per_class["accuracy"].items() if a is not None)
    print(
        f"test top-1 {result['top1']:.2f}%  balanced {per_class['balanced_acc']:.2f}%  "
        f"worst class {worst[1]!r} {worst[0]:.2f}%  params {metrics['params']:,}"
    )


def evaluate_language_model(p, device) -> None:
    from dnas.evaluate import evaluate_perplexity
    from dnas.models import load_model

    model, config = load_model("models/model.pt", device)
    data = load_prepared(PREPARED_ROOT / p.train.dataset)
    metrics = evaluate_perplexity(model, data, config, device)
    write_json(PER_CLASS, {"classes": []})  # a language model: no classes to score
    write_json("metrics/eval.json", metrics)
    print(
        f"valid perplexity {metrics['valid']['ppl']:.2f}  test perplexity "
        f"{metrics['test']['ppl']:.2f}  params {metrics['params']:,}"
    )


def main() -> None:
    p = load_params()
    device = pick_device(p.common.device, p.common.threads)
    if is_text(p.train.dataset, p.prepare):
        evaluate_language_model(p, device)
    else:
        evaluate_cnn(p, device)


if __name__ == "__main__":
    run_main(main)
