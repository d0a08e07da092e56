"""training/soup.py: the average of several seeds' weights is a model file like any other, and runs that are
not seeds of one recipe are refused with the reason.

    bash scripts/with_ros_env.sh .venv/bin/python -m pytest -q test/test_soup.py
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fusion_ros.checkpoint import ModelMeta, load_model, save_model
from fusion_ros.model import FusedPerceptionNet, ModelConfig
from training.ship import training_commands
from training.soup import SoupError, average_runs, main

CONFIG = {"seed": 0, "data": {"kind": "pairs", "crop": [384, 512]}, "schedule": {"steps": 5}}


def make_run(root: Path, seed: int, config: dict | None = None, steps: int = 5) -> Path:
    torch.manual_seed(seed)
    run = root / f"run_s{seed}"
    meta = ModelMeta(["person", "car"], ["road", "person"], input_size=(64, 96),
                     info={"config": {**(config or CONFIG), "seed": seed}, "config_path": "config/x.yaml",
                           "fusion_mode": "bilevel", "steps": steps, "date": "2026-12-07",
                           "validation": {"map50": 0.5 + seed / 10}})
    save_model(run / "model.pt", FusedPerceptionNet(ModelConfig(num_det_classes=2, num_seg_classes=2)), meta)
    return run


def test_the_soup_is_the_mean_of_the_weights(tmp_path):
    runs = [make_run(tmp_path, s) for s in (0, 1, 2)]
    path = average_runs(runs, tmp_path / "soup")
    soup, meta = load_model(path)
    states = [load_model(r / "model.pt")[0].state_dict() for r in runs]
    for key, value in soup.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, sum(s[key] for s in states) / 3, atol=1e-6), key
    weight = next(k for k, v in states[0].items() if v.is_floating_point() and v.dim() == 4)
    assert not torch.equal(states[0][weight], states[1][weight])  # the ingredients differ, so the mean is new
    assert [i["seed"] for i in meta.info["soup"]] == [0, 1, 2] and "validation" not in meta.info
    assert meta.info["soup"][1]["validation"] == {"map50": 0.6} and len(meta.info["soup"][0]["sha256"]) == 64
    assert meta.det_classes == ["person", "car"] and tuple(meta.input_size) == (64, 96)
    text = training_commands(meta, meta.info["config"], tmp_path / "soup")
    assert "3 runs of it, seeds 0, 1, 2" in text and "python -m training.soup" in text and "0.500, 0.600, 0.700" in text


def test_runs_that_are_not_seeds_of_one_recipe_are_refused(tmp_path, capsys):
    a = make_run(tmp_path, 0)
    with pytest.raises(SoupError, match="at least two runs"):
        average_runs([a], tmp_path / "soup")
    with pytest.raises(SoupError, match="repeat a seed"):
        average_runs([a, a], tmp_path / "soup")
    other = make_run(tmp_path / "other", 1, config={**CONFIG, "data": {"kind": "pairs", "crop": [256, 320]}})
    with pytest.raises(SoupError, match="differs from .* in config"):
        average_runs([a, other], tmp_path / "soup")
    longer = make_run(tmp_path / "longer", 2, steps=10)
    with pytest.raises(SoupError, match="in steps"):
        average_runs([a, longer], tmp_path / "soup")
    assert main([str(a), str(tmp_path / "missing"), "--out", str(tmp_path / "soup")]) == 2
    assert "no finished model to average" in capsys.readouterr().err
    assert not (tmp_path / "soup").exists()
