"""The retraining recipes' pieces: LR schedules against the sources' formulas, warm-up,
best-epoch reporting, and a default run that fingerprints as before."""

import math

import pytest
import torch

from dnas.config import Train, parse_params
from dnas.errors import UserError
from dnas.optim import sgd_cosine
from dnas.train import loop as train_loop
from dnas.train.schedule import lr_factor, sgd_schedule


def _lrs(t: Train) -> list[float]:
    opt, sched = sgd_schedule([torch.nn.Parameter(torch.zeros(1))], t)
    out = []
    for _ in range(t.epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_step_schedule_is_gamma_per_epoch():
    t = Train(epochs=6, lr=0.1, schedule="step", lr_gamma=0.97)
    assert _lrs(t) == pytest.approx([0.1 * 0.97**e for e in range(6)])


def test_linear_schedule_follows_drnas_adjust_lr():
    """DrNAS ImageNet (docs/algorithms.md#cnn-retraining): lr (E-5-e)/(E-5) while more than 5 epochs
    remain, then lr (E-e)/(5(E-5)); at E=250 both pieces give lr/245 at the joint (e=244, e=245)."""
    t = Train(epochs=250, lr=0.5, schedule="linear")
    assert lr_factor(t, 0) == 1.0
    assert lr_factor(t, 244) == pytest.approx(1 / 245)
    assert lr_factor(t, 245) == pytest.approx(5 / (245 * 5))
    assert lr_factor(t, 249) == pytest.approx(1 / 1225)
    slopes = [lr_factor(t, e) - lr_factor(t, e + 1) for e in (10, 100, 200, 246)]
    assert slopes[0] == pytest.approx(slopes[2]) and slopes[3] == pytest.approx(slopes[0] / 5)


def test_warmup_replaces_the_schedule_for_its_epochs():
    t = Train(epochs=10, lr=0.5, schedule="linear", warmup_epochs=5)
    lrs = _lrs(t)
    assert lrs[:5] == pytest.approx([0.5 * (e + 1) / 5 for e in range(5)])
    assert lrs[5] == pytest.approx(0.5 * (10 - 5) / ((10 - 5) * 5))  # the last 5: slope / 5


def test_cosine_with_warmup_matches_torch_cosine_afterwards():
    plain = Train(epochs=12, lr=0.025, lr_min=1.0e-4)
    warm = Train(epochs=12, lr=0.025, lr_min=1.0e-4, warmup_epochs=2)
    opt, sched = sgd_cosine([torch.nn.Parameter(torch.zeros(1))], plain)
    reference = []
    for _ in range(12):
        reference.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert _lrs(warm)[2:] == pytest.approx(reference[2:])
    assert _lrs(warm)[:2] == pytest.approx([0.025 / 2, 0.025])


def test_default_schedule_is_the_unchanged_cosine():
    opt, sched = sgd_schedule([torch.nn.Parameter(torch.zeros(1))], Train())
    assert type(sched) is torch.optim.lr_scheduler.CosineAnnealingLR


def test_bad_recipe_values_name_the_key():
    with pytest.raises(UserError, match="train: warmup_epochs"):
        parse_params({"train": {"epochs": 3, "warmup_epochs": 3}})
    with pytest.raises(UserError, match="train.schedule"):
        parse_params({"train": {"schedule": "exponential"}})


def test_knobs_at_their_default_leave_the_fingerprint_alone():
    """A knob at its default is not part of a checkpoint's fingerprint, so adding one (with a
    default that keeps the old behaviour) keeps every in-progress checkpoint valid; a knob
    set to anything else is."""
    from dnas.checkpoint import changed_settings, run_fingerprint

    assert changed_settings(Train()) == {}
    changed = changed_settings(Train(report="best", genotype="GDAS_V1"))
    assert changed == {"report": "best", "genotype": "GDAS_V1"}
    base = parse_params({})
    same = parse_params({"train": {"epochs": base.train.epochs}})
    other = parse_params({"train": {"epochs": base.train.epochs + 1}})
    assert run_fingerprint(base, "train", "sha") == run_fingerprint(same, "train", "sha")
    assert run_fingerprint(base, "train", "sha") != run_fingerprint(other, "train", "sha")
    assert run_fingerprint(base, "search", "sha") != run_fingerprint(base, "train", "sha")
    # A nested section (the recurrent track's) counts by its changed values too.
    rnn = parse_params({"search": {"rnn": {"bptt": 7}}})
    assert changed_settings(rnn.search) == {"rnn": {"bptt": 7}}


def test_a_checkpoint_of_a_run_under_an_old_default_is_not_resumed_under_the_new_one():
    """The alphas' schedule and decay changed by default (constant, 1e-3 -> cosine, 0): a
    default search checkpointed before (whose fingerprint left both out, as knobs at their
    defaults) must not match a default search now, nor a constant-step one."""
    from dnas.checkpoint import fingerprint, run_fingerprint

    default = parse_params({})
    old_default_run = fingerprint(default.common.seed, "search", {}, "sha")
    assert run_fingerprint(default, "search", "sha") != old_default_run
    papers = parse_params({"search": {"arch_lr_schedule": "constant"}})
    assert run_fingerprint(papers, "search", "sha") != run_fingerprint(default, "search", "sha")


def test_best_report_is_the_maximum_over_the_logged_epochs(tmp_path, digits_prepared):
    from dnas.spaces.published import PUBLISHED

    tiny = {"epochs": 4, "channels": 4, "layers": 3, "batch_size": 128, "lr": 0.2}
    p = parse_params({"train": {**tiny, "report": "best"}})
    _, _, metrics = train_loop.run_train(
        p, PUBLISHED["DARTS_V2"].genotype, digits_prepared, torch.device("cpu"), tmp_path / "l"
    )
    logged = [
        float(line.split("\t")[-1])
        for line in (tmp_path / "l/plots/metrics/acc/test.tsv").read_text().splitlines()[1:]
    ]
    assert len(logged) == 4
    assert metrics["best_test_acc"] == max(logged)
    assert logged[metrics["best_epoch"] - 1] == max(logged)
    assert metrics["test_acc"] == logged[-1]  # test_acc stays the final model's
    assert math.isfinite(metrics["train_loss"])
