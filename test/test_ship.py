"""training.ship end to end on a tiny run over generated labelled pairs: what it writes beside the model
(the ONNX sidecar, the metrics) must hold for any machine the folder is copied to.

    bash scripts/with_ros_env.sh .venv/bin/python -m pytest -q test/test_ship.py
"""
from __future__ import annotations

import copy
import json
import shutil

import pytest
import yaml

from fusion_ros.checkpoint import load_model
from fusion_ros.engine import resolve_artifacts
from fusion_ros.engine.sidecar import sha256_file, sidecar_path
from test_labelled_pairs import yolo_folder
from test_train import TINY
from training import ship
from training.train import main as train_main


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """(dest folder, run folder) of a tiny `kind: pairs` run shipped as 'tiny'."""
    root = tmp_path_factory.mktemp("ship")
    names = [f"{i:05d}{'D' if i % 2 else 'N'}" for i in range(24)]
    cfg = copy.deepcopy(TINY)
    cfg["classes"] = "config/classes_road.yaml"  # the bundled model's classes: person, bicycle, car
    cfg["data"] = {"kind": "pairs", "root": str(yolo_folder(root / "pairs", names=names)), "height": 64,
                   "width": 96, "crop": [64, 64], "split": {"block": 4, "gap": 1, "val_fraction": 0.2,
                                                           "heldout_fraction": 0.2}}
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = root / "run"
    assert train_main(["--config", str(config), "--out", str(run)]) == 0
    dest = root / "models"
    assert ship.main([str(run), "--dest", str(dest), "--name", "tiny"]) == 0
    return dest, run


def test_shipped_files_name_each_other_relative_to_their_folder(shipped, tmp_path):
    """Issue 21 item 1: the sidecar's source model and the metrics' model were absolute paths of the
    shipping machine; a copy of the folder elsewhere must find its own files."""
    dest, _ = shipped
    sidecar = json.loads(sidecar_path(dest / "tiny.onnx").read_text())
    assert sidecar["source_model"] == {"file": "tiny.pt", "sha256": sha256_file(dest / "tiny.pt")}
    metrics = json.loads((dest / "tiny.metrics.json").read_text())["validation_real_pairs"]
    model = metrics["model"]
    assert model["path"] == "tiny.onnx" and model["sha256"] == sha256_file(dest / "tiny.onnx")
    # the error counts ship, their lists (boxes copied from the data's labels) stay in the run folder
    assert set(metrics["errors"]["counts"]) == {"false_positives", "missed"}
    assert "missed" not in metrics["errors"] and "false_positives" not in metrics["errors"]
    copied = shutil.copytree(dest, tmp_path / "elsewhere")
    assert resolve_artifacts(copied / "tiny.onnx") == {"onnxruntime": copied / "tiny.onnx", "torch": copied / "tiny.pt"}


def test_a_box_only_run_ships_a_segmentation_head_marked_untrained(shipped):
    """Issue 21 item 8: the shipped files say the head never saw a segmentation label, so the node refuses
    to publish it and the card says so."""
    dest, _ = shipped
    assert load_model(dest / "tiny.pt")[1].segmentation_labels == "none"
    assert json.loads(sidecar_path(dest / "tiny.onnx").read_text())["segmentation_labels"] == "none"
    card = " ".join((dest / "tiny.md").read_text().split())
    assert ("its head was trained on no segmentation labels: its masks are noise (`segmentation_labels: none` in the "
            "model files). The node refuses to publish its masks") in card
