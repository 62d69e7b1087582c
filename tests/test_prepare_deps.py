"""Each `prepare@<dataset>` tracks only its own dataset's settings (docs/pipeline.md): adding a
custom dataset, or changing one, leaves the other prepare stages unchanged in `dvc status` and
`dvc repro` skips them. Real DVC, on a temporary git copy of the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from dnas.config import Prepare
from dnas.data.registry import source_settings, write_source_settings
from tests.pipeline_copy import commit_pipeline, copy_pipeline, dvc_env, runner

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.e2e


def _npz(path: Path, seed: int) -> str:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (24, 8, 8), dtype=np.uint8)
    np.savez(path, x=x, y=np.arange(24) % 2)
    return path.name


def test_source_settings_hold_one_datasets_entries_only(tmp_path):
    custom = {"a": {"format": "npz", "path": "a.npz"}, "b": {"format": "npz", "path": "b.npz"}}
    raw = {"datasets": ["digits", "a", "b"], "custom": custom, "search_split": {"b": "random"}}
    p = Prepare.model_validate(raw)
    write_source_settings(p, tmp_path)
    before = {f.name: f.read_bytes() for f in tmp_path.iterdir()}
    assert sorted(before) == ["a.json", "b.json", "digits.json"]
    assert json.loads(before["a.json"])["custom"]["path"] == "a.npz"
    assert json.loads(before["b.json"])["search_split"] == "random"
    assert json.loads(before["digits.json"]) == source_settings("digits", p)
    # another dataset added and b changed: a's and digits' files keep their bytes
    raw["custom"] = {**custom, "b": {**custom["b"], "flip": False}, "c": custom["a"]}
    raw["datasets"] = ["digits", "a", "b", "c"]
    write_source_settings(Prepare.model_validate(raw), tmp_path)
    after = {f.name: f.read_bytes() for f in tmp_path.iterdir()}
    assert after["a.json"] == before["a.json"] and after["digits.json"] == before["digits.json"]
    assert after["b.json"] != before["b.json"] and "c.json" in after
    # a dataset no longer listed loses its file
    raw["datasets"], raw["search_split"] = ["digits", "a"], "stratified"
    write_source_settings(Prepare.model_validate(raw), tmp_path)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.json", "digits.json"]


def test_adding_a_custom_dataset_leaves_the_other_prepare_stages_alone(tmp_path):
    path, home = tmp_path / "repo", tmp_path / "home"
    copy_pipeline(path)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    custom = {n: {"format": "npz", "path": _npz(path / f"{n}.npz", i)} for i, n in enumerate("abc")}
    params["prepare"]["datasets"] = ["digits", "a", "b"]
    params["prepare"]["custom"] = {"a": custom["a"], "b": custom["b"]}
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    advanced = yaml.safe_load((path / "advanced.yaml").read_text())
    del advanced["prepare"]["custom"]  # moved to params.yaml (a knob lives in one file)
    (path / "advanced.yaml").write_text(yaml.safe_dump(advanced, sort_keys=False))
    git_dvc = runner(path, dvc_env(home, OMP_NUM_THREADS="1"))

    def run(*cmd):
        return git_dvc(*cmd)[1]

    def status() -> dict:
        return json.loads(run("dvc", "status", "--json").strip().splitlines()[-1])

    def prepared() -> dict[str, bytes]:
        root = path / "data" / "prepared"
        files = (f for f in root.rglob("*") if f.is_file() and f.name != ".gitignore")
        return {str(f.relative_to(root)): f.read_bytes() for f in files}

    commit_pipeline(path, git_dvc)
    run("dvc", "repro", "prepare")  # validate, prepare@digits, prepare@a, prepare@b
    first = prepared()
    assert {k.split("/")[0] for k in first} == {"digits", "a", "b"}

    # add a third custom dataset
    params["prepare"]["datasets"].append("c")
    params["prepare"]["custom"]["c"] = custom["c"]
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = status()
    assert not {"prepare@digits", "prepare@a", "prepare@b"} & set(changed), changed
    assert "prepare@c" in changed
    out = run("dvc", "repro", "prepare")
    for name in ("digits", "a", "b"):
        assert f"Stage 'prepare@{name}' didn't change, skipping" in out, out
    assert "Running stage 'prepare@c'" in out
    assert not {k for k in status() if k.startswith("prepare")}
    assert {k: v for k, v in prepared().items() if not k.startswith("c/")} == first

    # changing one dataset's own settings reruns that dataset only
    params["prepare"]["custom"]["b"]["flip"] = False
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run("dvc", "repro", "prepare")
    assert "Running stage 'prepare@b'" in out
    for name in ("digits", "a", "c"):
        assert f"Stage 'prepare@{name}' didn't change, skipping" in out, out
    card = json.loads((path / "data/prepared/b/card.json").read_text())
    assert card["augment"]["flip"] is False
