"""Checks that need a CUDA GPU (marker `cuda`; skipped without one). `bench/gpu_check.sh` runs
them first on a GPU machine: `pytest -m cuda`.

- the pipeline's stages end to end on a synthetic CIFAR-sized dataset written in the real
  CIFAR-10 binary format, every fast-path switch on (compile, bf16, channels-last, cuDNN
  autotuning), then a SIGKILL in the middle of the search and its resume;
- GDAS search steps in the NAS-Bench-201 and DARTS spaces: finite, and the node function's
  gradients equal the straight-through formula's on the GPU;
- DARTS's second-order architecture gradient under bf16 autocast points where fp32's does;
- the compiled retraining network computes what the eager one does;
- the device-held loader, the host-held one and the CPU one give the same batches;
- one torchrun process runs a search step.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

FAST = {"compile": True, "bf16": True, "channels_last": True, "cudnn_benchmark": True}


def _env() -> dict:
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "DVC_NO_ANALYTICS": "1",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="module")
def cifar_repo(tmp_path_factory):
    """A copy of the stages with params for a synthetic CIFAR-10 (real binary format, 32x32x3,
    2,000 training and 500 test images), tiny search and retraining, every fast switch on."""
    import numpy as np

    from dnas.data import cifar
    from tests.test_cifar import write_bin_dir

    path = tmp_path_factory.mktemp("cuda_pipeline")
    for item in ("src", "stages"):
        shutil.copytree(ROOT / item, path / item, ignore=shutil.ignore_patterns("__pycache__"))
    rng = np.random.default_rng(0)
    sizes = [400] * len(cifar.TRAIN_BATCHES) + [500]
    batches = {
        name: (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist())
        for name, n in zip([*cifar.TRAIN_BATCHES, cifar.TEST_BATCH], sizes)
    }
    raw = write_bin_dir(path / "raw", batches)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["common"].update(device="cuda", **FAST)
    params["prepare"].update(datasets=["cifar10"], paths={"cifar10": str(raw)})
    params["search"].update(dataset="cifar10", epochs=3, channels=8, layers=3, batch_size=64)
    params["train"].update(dataset="cifar10", epochs=2, channels=8, layers=4, batch_size=64)
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _stage(path: Path, *args: str, timeout: int = 600) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(args)} failed ({proc.returncode}):\n{out[-4000:]}"
    return out


def test_pipeline_end_to_end_on_cifar_format_with_the_fast_path(cifar_repo):
    import json

    path = cifar_repo
    _stage(path, "stages.prepare", "--dataset", "cifar10")
    for stage in ("search", "train", "evaluate"):
        _stage(path, f"stages.{stage}")
    search = json.loads((path / "metrics" / "search.json").read_text())
    evaluation = json.loads((path / "metrics" / "eval.json").read_text())
    assert search["epochs"] == 3
    assert 0 <= evaluation["test"]["top1"] <= 100, evaluation
    assert (path / "genotype.json").exists() and (path / "models" / "model.pt").exists()


def test_search_resumes_after_sigkill(cifar_repo):
    path = cifar_repo
    if not (path / "data" / "prepared" / "cifar10").exists():
        _stage(path, "stages.prepare", "--dataset", "cifar10")
    shutil.rmtree(path / "checkpoints" / "search", ignore_errors=True)
    proc = subprocess.Popen(
        [sys.executable, "-m", "stages.search"],
        cwd=path,
        env=_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpt = path / "checkpoints" / "search" / "last.pt"
    deadline = time.monotonic() + 300
    while not ckpt.exists():
        assert proc.poll() is None, "the search ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # into the next epoch
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    out = _stage(path, "stages.search")
    assert "resuming at epoch" in out


def _search_net(space: str):
    from dnas.search.gdas import GDAS
    from dnas.search.supernet import DartsSupernet, Nb201Supernet

    torch.manual_seed(0)
    gen = torch.Generator(device="cuda").manual_seed(0)
    if space == "darts":
        net = DartsSupernet(3, 10, 16, 8, algorithm=GDAS(sample_per="cell"), generator=gen)
    else:
        net = Nb201Supernet(3, 10, 16, 5, algorithm=GDAS(unselected_grad=True), generator=gen)
    return net.cuda().to(memory_format=torch.channels_last)


@pytest.mark.parametrize("space", ["nb201", "darts"])
def test_gdas_search_steps_on_the_gpu(space):
    """A few bilevel GDAS iterations at the papers' supernet sizes under bf16: finite losses,
    the weights and the alphas move; and in float32 the node function's gradients equal the
    straight-through formula's (the same check as tests/test_gdas.py, on the GPU)."""
    from tests.straight_through import straight_through

    net = _search_net(space)
    w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.025, momentum=0.9)
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=3e-4, betas=(0.5, 0.999))
    x = torch.randn(64, 3, 32, 32, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (64,), device="cuda")
    alphas = [a.detach().clone() for a in net.arch_parameters()]
    for _ in range(3):
        for detach, opt in ((True, w_opt), (False, a_opt)):
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.cross_entropy(net(x, 10.0, detach_alpha=detach), y)
            assert torch.isfinite(loss)
            loss.backward()
            opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(alphas, net.arch_parameters()))

    def grads(seed):
        net.zero_grad(set_to_none=True)
        net.generator.manual_seed(seed)
        F.cross_entropy(net(x, 10.0), y).backward()
        return [p.grad.clone() for p in net.parameters() if p.grad is not None]

    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.allow_tf32 = False  # float32 products: only the order differs
    try:
        got = grads(1)
        with straight_through():
            ref = grads(1)
    finally:
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.allow_tf32 = True
    assert len(got) == len(ref)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)


def test_darts_second_order_under_bf16_points_where_fp32_does():
    from dnas.search.architect import MomentumUnroll, arch_gradient
    from dnas.search.registry import make_algorithm
    from dnas.search.steps import cross_entropy_loss
    from dnas.search.supernet import DartsSupernet

    torch.manual_seed(0)
    results = []
    for bf16 in (False, True):
        torch.manual_seed(0)
        net = DartsSupernet(3, 10, 8, 5, algorithm=make_algorithm("darts")).cuda()
        w_opt = torch.optim.SGD(net.weight_parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
        gen = torch.Generator(device="cuda").manual_seed(0)
        xt, xv = (torch.randn(32, 3, 32, 32, device="cuda", generator=gen) for _ in "tv")
        yt, yv = (torch.randint(0, 10, (32,), device="cuda", generator=gen) for _ in "tv")
        ctx = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16)
        with ctx:
            unroll = MomentumUnroll(w_opt)
            grads, _, _ = arch_gradient(net, cross_entropy_loss, (xt, yt), (xv, yv), None, unroll)
        results.append(torch.cat([g.float().flatten() for g in grads]))
    fp32, bf16 = results
    assert torch.isfinite(bf16).all()
    assert F.cosine_similarity(fp32, bf16, dim=0) > 0.95


def test_compiled_retraining_network_matches_eager():
    from dnas.models import build_network
    from dnas.spaces.published import resolve_genotype

    torch.manual_seed(0)
    net = build_network(resolve_genotype("GDAS_V1", "-"), 3, 10, 16, 8, True).cuda().eval()
    x = torch.randn(16, 3, 32, 32, device="cuda")
    compiled = torch.compile(net)
    with torch.no_grad():
        eager_out, compiled_out = net(x), compiled(x)
    eager_out = eager_out[0] if isinstance(eager_out, tuple) else eager_out
    compiled_out = compiled_out[0] if isinstance(compiled_out, tuple) else compiled_out
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-3, atol=1e-3)
    net.train()
    compiled = torch.compile(net)
    y = torch.randint(0, 10, (16,), device="cuda")
    grads = []
    for model in (net, compiled):
        net.zero_grad(set_to_none=True)
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        F.cross_entropy(out, y).backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]))
    assert F.cosine_similarity(grads[0], grads[1], dim=0) > 0.999


def test_device_loader_host_loader_and_cpu_loader_give_the_same_batches():
    import numpy as np

    from dnas.data.loader import Augment, DeviceLoader

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 300)
    kw = dict(mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3], shuffle=True, seed=3)
    kw["augment"] = Augment(pad=4, flip=True, cutout=8)
    loaders = [
        DeviceLoader(x, y, 64, device="cuda", hold_on_device=True, **kw),
        DeviceLoader(x, y, 64, device="cuda", hold_on_device=False, **kw),
        DeviceLoader(x, y, 64, device="cpu", **kw),
    ]
    for _ in range(2):  # two passes: reshuffled
        for batches in zip(*loaders):
            (xa, ya), *others = batches
            for xb, yb in others:
                torch.testing.assert_close(xa.cpu(), xb.cpu(), rtol=1e-6, atol=1e-6)
                assert torch.equal(ya.cpu(), yb.cpu())


def test_torchrun_with_one_process(cifar_repo):
    """The search stage under torchrun, one process on the GPU (NCCL), to the end."""
    path = cifar_repo
    if not (path / "data" / "prepared" / "cifar10").exists():
        _stage(path, "stages.prepare", "--dataset", "cifar10")
    shutil.rmtree(path / "checkpoints" / "search", ignore_errors=True)
    _stage(path, "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m",
           "stages.search")  # fmt: skip
    assert (path / "genotype.json").exists()
