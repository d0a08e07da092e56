"""Guard of real-world quality: the bundled model on real registered thermal + RGB road pairs it never
trained on, run as the node runs it (the fixed-size ONNX export in ONNX Runtime): detection on the val blocks
of ../shared/data/msrs_det (exactly as config/train_msrs.yaml splits them), scored by fusion-eval-pairs, and
the fused image on the standard RoadScene-50 and TNO-25 test pairs, scored by fusion-eval-fusion.

The floors sit a little under the values measured when the model was shipped (model card,
fusion_ros/models/default.md): a change that makes the model worse on real cameras fails here.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from fusion_ros.checkpoint import DEFAULT_MODEL
from fusion_ros.pairs_eval import PairsEvalOptions, evaluate_pairs
from fusion_ros.quality_eval import FusionEvalOptions, evaluate_fusion

MSRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "msrs_det"
IVF = Path(__file__).resolve().parents[2] / "shared" / "data" / "ivf_samples"
# measured at shipping (2026-12-08, the average of four bi-level seeds, extremes head, stretched_max objective,
# 384x512 crops): mAP@0.5 0.741, night 0.766, 1.62 boxes per labelled object at 0.4. Issue 19 asks 0.77 at
# night; this model does not quite reach it (docs/training.md): the floor guards what was shipped
FLOOR_MAP50 = 0.72
FLOOR_NIGHT_MAP50 = 0.74
MAX_BOXES_PER_OBJECT = 2.0  # at the node's default score_threshold (issue 12: usable scores)


@pytest.mark.skipif(not MSRS.is_dir(), reason=f"{MSRS} absent: the real labelled pairs live in ../shared beside the repo")
def test_bundled_model_on_real_validation_pairs(tmp_path):
    metrics = evaluate_pairs(PairsEvalOptions(
        root=str(MSRS), out=str(tmp_path / "eval"), model=str(DEFAULT_MODEL.with_suffix(".onnx")),
        backend="onnxruntime", labels="yolo", variant="fusion", split="val", subsets={"night": "N$"},
        threads=2, samples=0, fusion_samples=0, progress=False))
    assert metrics["pairs"]["evaluated"] == metrics["pairs"]["selected"] >= 40
    det = metrics["detection"]
    night = metrics["subsets"]["night"]["detection"]
    summary = (det["mAP50"], night["mAP50"], det["at_default_threshold"]["boxes_per_object"])
    assert det["mAP50"] >= FLOOR_MAP50, summary
    assert night["mAP50"] >= FLOOR_NIGHT_MAP50, summary
    assert det["at_default_threshold"]["boxes_per_object"] <= MAX_BOXES_PER_OBJECT, summary


# measured at shipping (fusion_ros/models/default.md, 2026-12-07): above CDDFuse's published row on 5 of 8 on
# RoadScene-50 and on TNO-25 (SD, SF, MI, VIF, Qabf), above the pixel average on 7 of 8 on each (not SSIM); SD
# 54.9 / 49.7 against the average's 28.5 / 26.1; on the 10 TNO pairs larger than the network input SF 14.44 /
# AG 5.43 against the average's 7.18 / 2.79
PUBLISHED_METRICS = ("EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM")  # the eight of CDDFuse's rows
MIN_METRICS_ABOVE_AVERAGE = 7  # of PUBLISHED_METRICS, on each set (issue 19)
MIN_METRICS_ABOVE_CDDFUSE = 5  # of CDDFuse's published row, on each set (issue 19)
CONTRAST_OVER_AVERAGE = 1.5  # SD, the fused image's contrast, at least 1.5x the pixel average's


@pytest.mark.skipif(not IVF.is_dir(), reason=f"{IVF} absent: the standard fusion test pairs live in ../shared beside the repo")
def test_bundled_model_fuses_the_standard_test_pairs_as_well_as_the_published_network(tmp_path):
    metrics = evaluate_fusion(FusionEvalOptions(
        roots=[str(IVF / "RoadScene"), str(IVF / "TNO")], out=str(tmp_path / "quality"), conventions=("cddfuse",),
        reference="cddfuse", model=str(DEFAULT_MODEL.with_suffix(".onnx")), backend="onnxruntime", threads=2,
        samples=0, night_crops=0, progress=False))
    for set_name, pairs in (("RoadScene", 50), ("TNO", 25)):
        s = metrics["sets"][set_name]
        assert s["pairs_scored"] == s["pairs_selected"] == pairs
        means = s["conventions"]["cddfuse"]["mean"]
        model, average = means["model"], means["pixel_average"]
        above = [k for k in PUBLISHED_METRICS if model[k] > average[k]]
        assert len(above) >= MIN_METRICS_ABOVE_AVERAGE, (set_name, model, average)
        assert model["SD"] >= CONTRAST_OVER_AVERAGE * average["SD"], (set_name, model["SD"], average["SD"])
        reference = s["reference"]
        assert reference["applies"], reference
        assert len(reference["beats"]) >= MIN_METRICS_ABOVE_CDDFUSE, (set_name, reference)
    # the pairs larger than the network input keep the camera's detail: SF and AG at least the average's
    large = metrics["sets"]["TNO"]["larger_than_network"]
    assert len(large["pairs"]) == 10
    detail = large["mean"]["cddfuse"]
    assert detail["model"]["SF"] >= detail["pixel_average"]["SF"] and detail["model"]["AG"] >= detail["pixel_average"]["AG"], detail
