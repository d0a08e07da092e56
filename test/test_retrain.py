"""Retraining from bags: the `kind: bag` dataset (cache, ground truth, pseudo-labels, time split) and the
`python -m training.retrain` CLI (train -> ONNX -> old-vs-new comparison on a held-out bag).

    OMP_NUM_THREADS=1 bash scripts/with_ros_env.sh .venv/bin/python -m pytest -q test/test_retrain.py

Tiny generated drives (64x96, 2-3 s) and a random-weight model keep it to seconds; the random model's
mAP is ~0, so nothing here judges accuracy, only that every stage runs and reports.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from fusion_ros.bag.reader import BagError, BagReader, detections_from_message, stamp_of
from fusion_ros.bag.sample import GT_DETECTIONS_TOPIC, RGB_TOPIC, THERMAL_TOPIC, make_sample_bag
from fusion_ros.checkpoint import ModelMeta, save_model
from fusion_ros.classes import load_classes
from fusion_ros.image_conversions import image_to_array, thermal_to_float
from fusion_ros.model import FusedPerceptionNet, ModelConfig
from fusion_ros.paths import config_path
from training import retrain
from training.data import build_dataset
from training.bag_datasets import BAG_THERMAL_SCALE, bag_caches, pseudo_class_thresholds, time_block_split

H, W = 64, 96
RANGE = (25315.0, 35315.0)
SPLIT = {"block_seconds": 0.5, "gap_seconds": 0.1}


def random_model(path: Path) -> Path:
    torch.manual_seed(0)
    classes = load_classes()
    save_model(path, FusedPerceptionNet(ModelConfig(chroma="denoised")),
               ModelMeta(list(classes.detection.names), list(classes.segmentation.names), input_size=(H, W),
                         thermal_range=RANGE, info={"config": {"loss": {"target": "detail", "detail_threshold": 0.04}}}))
    return path


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrain")
    make_sample_bag(root / "gt", seconds=3.0, height=H, width=W, seed=3, segment_seconds=1.0)
    make_sample_bag(root / "nogt", seconds=2.5, height=H, width=W, seed=4, segment_seconds=1.0, ground_truth=False)
    make_sample_bag(root / "heldout", seconds=1.5, height=H, width=W, seed=5, segment_seconds=1.0)
    return root, random_model(root / "random.pt")


def data_cfg(root: Path, bag, **extra) -> dict:
    return {"kind": "bag", "root": bag, "height": H, "width": W, "cache_dir": str(root / "cache"), "split": SPLIT,
            "heldout_fraction": 0.2, "val_fraction": 0.2, "progress": False, "thermal_range": list(RANGE), **extra}


# ------------------------------------------------------------------------------------ the dataset
def test_bag_dataset_with_ground_truth(bags):
    root, _ = bags
    cfg = data_cfg(root, str(root / "gt"))
    splits = {s: build_dataset(cfg, s, RANGE) for s in ("train", "heldout", "val")}
    (cache,) = bag_caches(cfg, RANGE)
    assert cache.labels == {"detections": "gt", "segmentation": "gt"}
    assert cache.folder.parent == root / "cache" and (cache.folder / "meta.json").is_file()
    names = {s: set(getattr(d, "base", d).names) for s, d in splits.items()}
    assert all(names.values()) and not (names["train"] & names["val"]) and not (names["train"] & names["heldout"])
    assert sum(map(len, names.values())) <= len(cache.info["samples"])
    boxes = 0
    for i in range(len(splits["val"])):
        s = splits["val"][i]
        assert s["thermal"].shape == (1, H, W) and s["rgb"].shape == (3, H, W) and s["mask"].shape == (H, W)
        assert 0.0 <= float(s["thermal"].min()) and float(s["thermal"].max()) <= 1.0
        boxes += len(s["boxes"])
    assert boxes > 0

    # labels = the ground-truth message with the RGB frame's stamp; thermal = the node's normalisation
    gt, thermal = {}, {}
    with BagReader(root / "gt") as reader:
        for item in reader.messages([GT_DETECTIONS_TOPIC, THERMAL_TOPIC]):
            if item.topic == GT_DETECTIONS_TOPIC:
                gt[stamp_of(item.msg.header)] = detections_from_message(item.msg)
            else:
                thermal[stamp_of(item.msg.header)] = image_to_array(item.msg)
    entry = next(e for e in cache.info["samples"] if e.get("boxes"))
    from fusion_ros.dataset_layout import read_voc_xml

    cached_boxes, _ = read_voc_xml(cache.folder / "labels" / f"{entry['name']}.xml", load_classes().detection.names)
    np.testing.assert_allclose(cached_boxes, gt[entry["stamp_ns"]][0], atol=1e-3)
    stamps = np.array(sorted(thermal))
    partner = int(stamps[np.argmin(np.abs(stamps - entry["stamp_ns"]))])  # the ApproximateTime partner
    expected = thermal_to_float(thermal[partner], "mono16", "fixed", *RANGE)
    ir = cv2.imread(str(cache.folder / "ir" / f"{entry['name']}.png"), cv2.IMREAD_UNCHANGED)
    assert ir.dtype == np.uint16
    np.testing.assert_allclose(ir / BAG_THERMAL_SCALE, expected, atol=1.0 / BAG_THERMAL_SCALE)


def test_cache_reused_rebuilt_on_change(bags):
    root, _ = bags
    cfg = data_cfg(root, str(root / "gt"))
    (first,) = bag_caches(cfg, RANGE)
    stamp = (first.folder / "cache.json").stat().st_mtime_ns
    (again,) = bag_caches(cfg, RANGE)
    assert again.folder == first.folder and (again.folder / "cache.json").stat().st_mtime_ns == stamp
    (other,) = bag_caches({**cfg, "node": {"params": {"sync.slop": 0.02}}}, RANGE)  # a node parameter: new key
    assert other.folder != first.folder
    (forced,) = bag_caches({**cfg, "rebuild_cache": True}, RANGE)
    assert forced.folder == first.folder and (forced.folder / "cache.json").stat().st_mtime_ns != stamp
    assert not list((root / "cache").glob("*.partial-*"))


def test_time_split_is_blocks_with_gaps():
    stamps = (np.arange(0, 60.0, 0.05) * 1e9).astype(np.int64)  # 60 s at 20 Hz
    split = time_block_split(stamps, block_seconds=5.0, gap_seconds=1.0, heldout_fraction=0.2, val_fraction=0.2)
    kinds = [s for s in split if s is not None]
    assert set(kinds) == {"train", "heldout", "val"}
    runs = sum(1 for a, b in zip(kinds, kinds[1:]) if a != b) + 1
    assert runs <= 2 * 12  # contiguous blocks, not a per-frame shuffle
    times = {k: stamps[[s == k for s in split]] for k in ("train", "heldout", "val")}
    for other in ("heldout", "val"):
        gap = np.min(np.abs(times["train"][:, None] - times[other][None, :]))
        assert gap >= 1e9  # no training frame within gap_seconds of a held-out / val frame
    with pytest.raises(ValueError, match="block_seconds"):
        time_block_split(stamps[:40], block_seconds=5.0, gap_seconds=1.0, heldout_fraction=0.2, val_fraction=0.2)


def test_pseudo_labels_without_ground_truth(bags):
    root, model = bags
    cfg = data_cfg(root, [str(root / "nogt")], pseudo_labels={
        "model": str(model), "backend": "torch", "score_threshold": 0.05, "max_per_class": 4, "seg_confidence": 0.2})
    train = build_dataset(cfg, "train", RANGE)
    (cache,) = bag_caches(cfg, RANGE)
    assert cache.labels == {"detections": "pseudo", "segmentation": "pseudo"}
    pseudo = cache.info["pseudo"]
    assert all(n <= 4 for n in pseudo["boxes_per_class"].values()) and sum(pseudo["boxes_per_class"].values()) > 0
    assert all(t >= 0.05 for t in pseudo["class_thresholds"].values())
    samples = [train[i] for i in range(len(train))]
    assert sum(len(s["boxes"]) for s in samples) > 0
    assert all(s["mask"] is not None for s in samples)
    assert any((s["mask"] == 255).any() for s in samples) or any((s["mask"] != 255).all() for s in samples)


def test_no_labels_gives_empty_targets(bags):
    root, _ = bags
    cfg = data_cfg(root, str(root / "nogt"), pseudo_labels=None)
    ds = build_dataset(cfg, "val", RANGE)
    s = ds[0]
    assert len(s["boxes"]) == 0 and s["mask"] is None
    assert bag_caches(cfg, RANGE)[0].labels == {"detections": "none", "segmentation": "none"}


def test_pseudo_class_thresholds_cap_and_floor():
    p = {"score_threshold": 0.5, "class_thresholds": {"c": 0.6}, "class_balanced": True, "max_per_class": 3,
         "min_per_class": 2, "min_score": 0.3}
    scores = {0: np.array([0.9, 0.8, 0.7, 0.6, 0.55]), 1: np.array([0.45, 0.35, 0.2]), 2: np.array([0.65])}
    thr = pseudo_class_thresholds(scores, ["a", "b", "c"], p)
    assert thr["a"] == pytest.approx(0.7)  # frequent: raised to keep its top 3
    assert thr["b"] == pytest.approx(0.35)  # rare: lowered to get 2, not below min_score
    assert thr["c"] == pytest.approx(0.6)  # its own threshold; 1 box < min_per_class but none in [0.3, 0.6)
    assert pseudo_class_thresholds(scores, ["a", "b", "c"], {**p, "class_balanced": False})["a"] == 0.5


def test_bad_bags_give_clear_errors(bags, tmp_path):
    root, _ = bags
    with pytest.raises(BagError, match="bag not found"):
        build_dataset(data_cfg(root, str(tmp_path / "nope")), "train", RANGE)
    with pytest.raises(BagError, match=r"thermal topic '/flir/image' is not in .*topics in the bag: .*/thermal/"):
        build_dataset(data_cfg(root, str(root / "gt"), topics={"thermal": "/flir/image"}), "train", RANGE)
    with pytest.raises(BagError, match="ground-truth detections topic '/labels'"):
        build_dataset(data_cfg(root, str(root / "gt"), topics={"gt_detections": "/labels"}), "train", RANGE)
    with pytest.raises(ValueError, match="no test split|splits train, heldout and val"):
        build_dataset(data_cfg(root, str(root / "gt")), "test", RANGE)


# ------------------------------------------------------------------------------------------- the CLI
def retrain_config(root: Path, **data) -> Path:
    cfg = yaml.safe_load(config_path("retrain_bag.yaml").read_text())
    cfg["data"].update(split=SPLIT, heldout_fraction=0.2, val_fraction=0.2, min_interval_s=0.0, **data)
    cfg["data"]["pseudo_labels"].update(backend="torch", score_threshold=0.05)
    cfg["schedule"].update(steps=2, batch_size=2, fusion_every=1, lr_warmup_steps=0, val_every=100,
                           checkpoint_every=100, log_every=1)
    cfg["export"]["exporter"] = "torchscript"  # ~10x faster to export than dynamo; same graph
    path = root / f"retrain_{len(list(root.glob('retrain_*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_retrain_cli_end_to_end(bags, capsys):
    root, model = bags
    out = root / "run"
    rc = retrain.main(["--bags", str(root / "gt"), str(root / "nogt"), "--heldout-bag", str(root / "heldout"),
                       "--config", str(retrain_config(root)), "--base-model", str(model), "--out", str(out),
                       "--cache-dir", str(root / "cache"), "--quiet"])
    text = capsys.readouterr()
    assert rc == 0, text.err
    for name in ("model.pt", "model.onnx", "model.onnx.json", "comparison.json", "comparison.md", "bag_caches.json",
                 "eval_base/metrics.json", "eval_new/metrics.json"):
        assert (out / name).is_file(), name
    from fusion_ros.checkpoint import load_model
    from fusion_ros.engine import create_engine

    new, meta = load_model(out / "model.pt")
    assert meta.input_size == (H, W) and meta.info["config"]["retrain"]["base_model"] == str(model.resolve())
    # the fine-tune keeps the base model's fused-image recipe: its fusion target and colour handling
    assert meta.info["config"]["loss"]["target"] == "detail" and new.cfg.chroma == "denoised"
    assert meta.info["config"]["loss"]["detail_threshold"] == 0.04
    base, _ = load_model(model)
    assert any(not torch.equal(a, b) for a, b in zip(new.state_dict().values(), base.state_dict().values()))
    engine = create_engine(out / "model.onnx", backend="onnxruntime")
    result = engine.infer(np.full((H, W), 30000, np.uint16), np.zeros((H, W, 3), np.uint8))
    assert result.fused.shape == (H, W, 3) and result.segmentation.shape == (H, W)

    comparison = json.loads((out / "comparison.json").read_text())
    for role in ("base", "new"):
        m = comparison[role]
        assert m["backend"].startswith("onnxruntime") and m["pairs"] > 0
        assert m["mAP50"] is not None and m["fusion"] and m["latency_ms"]["total_p50"] > 0
    # the random base's segmentation head learnt from nothing: not scored; the new one learnt the generated
    # bag's labels (and the base's pseudo-labels): scored (issue 21 item 8)
    assert meta.segmentation_labels == "synthetic"
    assert comparison["base"]["mIoU"] is None and comparison["new"]["mIoU"] is not None
    assert comparison["new"]["model"] == str(out / "model.onnx")
    assert comparison["verdict"].startswith("new model ") and "held-out mAP@0.5" in comparison["verdict"]
    labels = {json.dumps(b["labels"], sort_keys=True) for b in comparison["training"]["bags"]}
    assert len(labels) == 2  # one bag with ground truth, one pseudo-labelled
    md = (out / "comparison.md").read_text()
    assert "**Verdict: new model" in md and "| mAP@0.5 |" in md and "| mIoU |" in md and "latency" in md
    if comparison["artifacts"]["engine"] is None:
        assert "TensorRT is not importable" in text.out and "deployable artifact" in text.out


def test_retrain_cli_bad_inputs(bags, tmp_path, capsys):
    root, model = bags
    config = str(retrain_config(root))
    common = ["--config", config, "--base-model", str(model), "--cache-dir", str(root / "cache"), "--quiet"]

    def err(*args) -> str:
        assert retrain.main([*common, *args, "--out", str(tmp_path / "run")]) == 2  # later options win
        return capsys.readouterr().err

    assert "training bag not found" in err("--bags", str(tmp_path / "missing"), "--heldout-bag", str(root / "heldout"))
    assert "held-out bag not found" in err("--bags", str(root / "gt"), "--heldout-bag", str(tmp_path / "missing"))
    assert "also a training bag" in err("--bags", str(root / "gt"), "--heldout-bag", str(root / "gt"))
    bad = retrain_config(root, topics={"thermal": "/flir/image", "rgb": RGB_TOPIC})
    assert retrain.main(["--bags", str(root / "gt"), "--heldout-bag", str(root / "heldout"), "--config", str(bad),
                         "--base-model", str(model), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    message = capsys.readouterr().err
    assert "thermal topic '/flir/image' is not in" in message and THERMAL_TOPIC in message
    missing = err("--bags", str(root / "gt"), "--heldout-bag", str(root / "heldout"), "--base-model",
                  str(tmp_path / "none.pt"))
    assert "base model not found" in missing
    assert "block_seconds must be > 0" in err("--bags", str(root / "gt"), "--heldout-bag", str(root / "heldout"),
                                              "--block-seconds", "0")
    assert not (tmp_path / "run" / "model.pt").exists()


def test_verdict_lines():
    better, deploy = retrain.verdict({"mAP50": 0.40, "mIoU": 0.5}, {"mAP50": 0.45, "mIoU": 0.5})
    assert better.startswith("new model better on held-out mAP@0.5 by 0.050") and deploy is True
    worse, deploy = retrain.verdict({"mAP50": 0.40, "mIoU": None}, {"mAP50": 0.30, "mIoU": None})
    assert worse.startswith("new model worse on held-out mAP@0.5 by 0.100") and "keep the base model" in worse
    assert deploy is False
    assert retrain.verdict({"mAP50": None, "mIoU": None}, {"mAP50": None, "mIoU": None})[1] is None


def test_retrain_a_yolox_road_model(bags, capsys):
    """The bundled model's kind (YOLOX-nano detector, person / bicycle / car) retrains from bags unchanged:
    the generated drives' other ground-truth classes (animal, traffic_sign, lamp) are an error naming the
    option, and left out with data.unknown_classes: ignore."""
    root, _ = bags
    torch.manual_seed(0)
    road = load_classes(config_path("classes_road.yaml"))
    base = root / "yolox_road.pt"
    save_model(base, FusedPerceptionNet(ModelConfig(num_det_classes=3, num_seg_classes=4, detector="yolox_nano",
                                                    chroma="denoised")),
               ModelMeta(list(road.detection.names), list(road.segmentation.names), input_size=(H, W),
                         thermal_range=RANGE, info={"config": {"loss": {"target": "mean"}}}))
    out = root / "run_yolox"
    args = ["--bags", str(root / "gt"), "--heldout-bag", str(root / "heldout"), "--base-model", str(base),
            "--out", str(out), "--cache-dir", str(root / "cache_yolox"), "--quiet"]
    assert retrain.main([*args, "--config", str(retrain_config(root))]) != 0
    assert "class 'lamp' is not in the class list (person, bicycle, car)" in capsys.readouterr().err
    rc = retrain.main([*args, "--config", str(retrain_config(root, unknown_classes="ignore"))])
    text = capsys.readouterr()
    assert rc == 0, text.err
    from fusion_ros.checkpoint import load_model

    new, meta = load_model(out / "model.pt")
    assert new.cfg.detector == "yolox_nano" and list(meta.det_classes) == ["person", "bicycle", "car"]
    assert meta.info["config"]["loss"]["target"] == "mean"
    assert (out / "model.onnx").is_file() and "**Verdict: new model" in (out / "comparison.md").read_text()
