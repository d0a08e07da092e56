"""fusion-eval-pairs (fusion_ros/pairs_eval.py) end to end on a few generated labelled pairs with the bundled
model (torch at a small input size, and the fixed-size ONNX export on onnxruntime), its error cases and the
operating-point / mAP arithmetic on hand-made detections.

    bash scripts/with_ros_env.sh .venv/bin/python -m pytest -q test/test_pairs_eval.py
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusion_ros import pairs_eval
from fusion_ros.checkpoint import DEFAULT_MODEL, SYNTHETIC_MODEL
from fusion_ros.synthetic import SceneGenerator

H, W = 128, 160
NAMES = ("00001N", "00002N", "00003D", "00004D", "00005D")


def scene_folder(root: Path, names=NAMES, det_classes=("person", "car", "bicycle")) -> Path:
    """Generated scenes written as a YOLO-labelled pairs folder (labels/fusion/ + labels/classes.txt)."""
    gen = SceneGenerator(11, H, W)
    gen_names = gen.classes.detection.names
    for d in ("ir", "vi", "labels/fusion"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "labels" / "classes.txt").write_text("".join(f"{i} {n}\n" for i, n in enumerate(det_classes)))
    for i, name in enumerate(names):
        s = gen.generate(i)
        cv2.imwrite(str(root / "ir" / f"{name}.png"), s.thermal)  # 16-bit: read with the model's thermal range
        cv2.imwrite(str(root / "vi" / f"{name}.png"), cv2.cvtColor(s.rgb, cv2.COLOR_RGB2BGR))
        lines = []
        for box, label in zip(s.boxes, s.labels):
            cls = gen_names[int(label)]
            if cls not in det_classes:
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            lines.append(f"{det_classes.index(cls)} {(x1 + x2) / 2 / W:.6f} {(y1 + y2) / 2 / H:.6f} "
                         f"{(x2 - x1) / W:.6f} {(y2 - y1) / H:.6f}")
        if i == 0:
            lines = ["0 0.5 0.5 0.2 0.4"]  # at least one box
        (root / "labels" / "fusion" / f"{name}.txt").write_text("\n".join(lines))
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return scene_folder(tmp_path_factory.mktemp("pairs") / "data")


@pytest.fixture(scope="module")
def torch_run(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval_torch") / "out"
    rc = pairs_eval.main([str(folder), "--backend", "torch", "--input-size", f"{H}x{W}", "--threads", "1",
                          "--subset", "day=D$", "--subset", "night=N$", "--subset", "none=^zzz",
                          "--fusion-samples", "2", "--samples", "3", "--out", str(out), "--quiet"])
    return rc, out


def test_outputs_written(torch_run):
    rc, out = torch_run
    assert rc == 0
    for name in ("metrics.json", "report.md", "samples.png", "errors.png", "pr_curve.png", "latency.png"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text()
    for needle in ("# Labelled-pairs evaluation: data", "![samples](samples.png)", "![PR curves](pr_curve.png)",
                   "## Errors at the operating point", "![errors](errors.png)", "- missed labels: **",
                   "![latency](latency.png)", "mAP@0.5", "| day (`D$`) | 3 |", "| night (`N$`) | 2 |",
                   "| engine.infer |", "## Fusion quality", "segmentation not shown: the model's segmentation head ",
                   "**project** convention (MI in bits)"):
        assert needle in report, needle
    # issue 21 item 8: the bundled model's head never saw a segmentation label: no panel of its noise
    grid = cv2.imread(str(out / "samples.png"))
    assert grid is not None and grid.shape[1] == 4 * W and grid.shape[0] == 24 + 3 * H  # 3 samples x 4 columns


def test_metrics_sane(torch_run, folder):
    _, out = torch_run
    m = json.loads((out / "metrics.json").read_text())
    from fusion_ros.labelled_pairs import read_labelled_pairs

    f = read_labelled_pairs(folder, m["model"]["det_classes"])
    assert m["model"]["backend"].startswith("torch") and m["model"]["input_size"] == [H, W]
    assert m["dataset"]["format"] == "yolo" and m["dataset"]["variant"] == "fusion"
    assert m["dataset"]["pairs_found"] == 5 and m["dataset"]["boxes_found"] == f.counts["boxes"] > 0
    assert m["pairs"] == {**m["pairs"], "selected": 5, "evaluated": 5, "failed": 0,
                          "labelled_objects": f.counts["boxes"]}
    det = m["detection"]
    assert det["images"] == 5 and det["labelled_objects"] == f.counts["boxes"]
    assert 0.0 <= det["mAP50"] <= 1.0 and 0.0 <= det["mAP50_95"] <= det["mAP50"]
    assert set(det["per_class"]) == set(m["model"]["det_classes"])
    assert sum(c["num_gt"] for c in det["per_class"].values()) == f.counts["boxes"]
    op = det["at_default_threshold"]
    assert op["score_threshold"] == m["config"]["default_score_threshold"] == 0.4
    assert m["config"]["score_threshold_map"] == 0.05
    assert op["labelled"] == f.counts["boxes"] and op["boxes"] >= op["true_positives"] >= 0
    assert op["boxes_per_object"] == pytest.approx(op["boxes"] / op["labelled"])
    assert op["boxes"] == sum(c["boxes"] for c in op["per_class"].values())
    subs = m["subsets"]
    assert subs["day"]["pairs"] == 3 and subs["night"]["pairs"] == 2 and subs["none"]["pairs"] == 0
    assert subs["day"]["detection"]["images"] == 3 and "detection" not in subs["none"]
    assert any("subset none" in w for w in m["warnings"])
    for stage in ("read", "engine.pre", "engine.infer", "engine.post", "engine", "total"):
        lat = m["latency_ms"][stage]
        assert lat["count"] == 5 and 0 < lat["p50"] <= lat["p95"] <= lat["max"], stage
    assert m["latency_ms"]["engine"]["p50"] <= m["latency_ms"]["total"]["p50"]
    assert m["fusion_metrics"]["frames"] == 2 and "SSIM" in m["fusion_metrics"]["mean"]
    assert m["fusion_metrics"]["convention"] == "project"  # every number names its definitions
    assert m["pictures"] == {"samples": "samples.png", "errors": "errors.png", "pr_curve": "pr_curve.png",
                             "latency": "latency.png"}
    assert m["model"]["segmentation_labels"] in ("none", "unknown")
    # every box at the operating point is a true positive or a false positive, every label taken or missed
    errors = m["errors"]
    fp, missed = errors["counts"]["false_positives"], errors["counts"]["missed"]
    assert fp["total"] == op["boxes"] - op["true_positives"] == len(errors["false_positives"]) > 0
    assert missed["total"] == op["labelled"] - op["true_positives"] == len(errors["missed"])
    assert sum(v for k, v in fp.items() if k != "total") == fp["total"]
    assert sum(v for k, v in missed.items() if k != "total") == missed["total"]
    scores = [e["score"] for e in errors["false_positives"]]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0.4
    gallery = cv2.imread(str(out / "errors.png"))  # at most 12 + 12 tiles of 2 x 160 px, 4 a row
    tiles = min(12, fp["total"]) + min(12, missed["total"])
    assert gallery.shape == (160 * -(-tiles // 4), 4 * 320, 3)


def test_a_head_trained_on_labels_gets_its_panel(folder, tmp_path):
    """The synthetic-scene model's head learnt from the generator's labels; on generated scenes its masks
    are drawn beside the detections."""
    if not SYNTHETIC_MODEL.is_file():
        pytest.skip(f"{SYNTHETIC_MODEL} is absent")
    out = tmp_path / "out"
    assert pairs_eval.main([str(folder), "--model", str(SYNTHETIC_MODEL), "--backend", "torch", "--input-size",
                            f"{H}x{W}", "--threads", "1", "--samples", "2", "--fusion-samples", "0", "--out",
                            str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"]["segmentation_labels"] == "synthetic"
    assert "segmentation not shown" not in (out / "report.md").read_text()
    assert cv2.imread(str(out / "samples.png")).shape[1] == 5 * W  # ... | detections | segmentation


def test_onnxruntime_split_and_limit(folder, tmp_path):
    pytest.importorskip("onnxruntime")
    onnx = DEFAULT_MODEL.with_suffix(".onnx")
    if not onnx.is_file():
        pytest.skip(f"no ONNX export of the bundled model ({onnx})")
    out = tmp_path / "out"
    args = [str(folder), "--model", str(onnx), "--backend", "onnxruntime", "--threads", "1", "--split", "val",
            "--block", "1", "--gap", "0", "--val-fraction", "0.4", "--heldout-fraction", "0.2", "--limit", "1",
            "--samples", "1", "--fusion-samples", "0", "--error-samples", "0", "--out", str(out), "--quiet"]
    assert pairs_eval.main(args) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["model"]["backend"].startswith("onnxruntime")
    assert m["dataset"]["split"]["counts"] == {"train": 2, "heldout": 1, "val": 2, "gap": 0}
    assert m["pairs"]["selected"] == m["pairs"]["evaluated"] == 1 and m["dataset"]["limit"] == 1
    assert m["latency_ms"]["engine.infer"]["count"] == 1 and m["fusion_metrics"]["frames"] == 0
    assert (out / "samples.png").is_file() and (out / "report.md").is_file()
    assert not (out / "errors.png").exists() and "errors" not in m["pictures"]  # --error-samples 0
    assert "## Errors at the operating point" in (out / "report.md").read_text()  # still counted
    assert pairs_eval.main(args) == 2  # results already there
    assert pairs_eval.main(args + ["--overwrite"]) == 0


def test_errors(folder, tmp_path, capsys):
    def run(*extra, root=folder):
        rc = pairs_eval.main([str(root), "--backend", "torch", "--input-size", f"{H}x{W}", "--threads", "1",
                              "--out", str(tmp_path / "o"), "--quiet", *extra])
        return rc, capsys.readouterr().err

    rc, err = run(root=tmp_path / "missing")
    assert rc == 2 and "does not exist" in err
    empty = tmp_path / "empty"
    (empty / "ir").mkdir(parents=True)
    rc, err = run(root=empty)
    assert rc == 2 and "has no visible image folder" in err
    rc, err = run("--class-map", "car=truck")
    assert rc == 2 and "class 'car' (class_map -> 'truck') is not in the class list" in err
    rc, err = run("--split", "val")  # 5 names in blocks of 16: one block
    assert rc == 2 and "too few for train, heldout and val blocks" in err and "--block" in err
    rc, err = run("--variant", "infrared")
    assert rc == 2 and "no labels/infrared/ folder" in err
    rc, err = run("--model", str(tmp_path / "nope.pt"))
    assert rc == 2 and "cannot load the engine" in err
    rc, err = run("--score-threshold", "0.5")
    assert rc == 2 and "must not exceed the default threshold" in err
    rc, err = run("--error-samples", "-1")
    assert rc == 2 and "--error-samples must be >= 0" in err
    with pytest.raises(SystemExit):
        pairs_eval.build_parser().parse_args([str(folder), "--subset", "day"])
    with pytest.raises(SystemExit):
        pairs_eval.build_parser().parse_args([str(folder), "--input-size", "128"])


def test_a_pair_the_node_would_reject_is_counted_not_scored(folder, tmp_path):
    """Issue 21 item 3: a visible image of another aspect ratio than its thermal (320x200 beside 160x128) was
    scored silently (stretched, `warnings: []`) where the node rejects the pair as unregistrable."""
    bad = tmp_path / "data"
    for d in ("ir", "vi", "labels"):
        shutil.copytree(folder / d, bad / d)
    vi = cv2.imread(str(bad / "vi" / "00003D.png"))
    cv2.imwrite(str(bad / "vi" / "00003D.png"), cv2.resize(vi, (320, 200)))
    out = tmp_path / "out"
    assert pairs_eval.main([str(bad), "--backend", "torch", "--input-size", f"{H}x{W}", "--threads", "1",
                            "--samples", "0", "--fusion-samples", "0", "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["pairs"]["failed"] == 1 and m["pairs"]["failed_names"] == ["00003D"]
    assert m["pairs"]["evaluated"] == len(NAMES) - 1
    assert any("00003D: the node would reject this pair: thermal 160x128 and RGB 320x200 (WxH) differ in aspect "
               "ratio" in w for w in m["warnings"]), m["warnings"]


def test_an_unreadable_image_is_reported_without_decoder_lines_on_stderr(folder, tmp_path, capfd):
    """Issue 21 item 4: OpenCV's and libpng's own lines (`[ERROR:0@4.594] global grfmt_png.cpp ...`, `libpng
    error: Read Error`) reached stderr for an unreadable image; they belong in the pair's failure reason, as
    the node routes them into its message."""
    broken = tmp_path / "data"
    for d in ("ir", "vi", "labels"):
        shutil.copytree(folder / d, broken / d)
    png = broken / "vi" / "00002N.png"
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])  # a copy cut off half-way (libpng: Read Error)
    out = tmp_path / "out"
    capfd.readouterr()
    assert pairs_eval.main([str(broken), "--backend", "torch", "--input-size", f"{H}x{W}", "--threads", "1",
                            "--samples", "0", "--fusion-samples", "0", "--out", str(out), "--quiet"]) == 0
    err = capfd.readouterr().err
    stray = [line for line in err.splitlines() if line.lower().startswith(("libpng", "[error:", "[ warn:"))]
    assert not stray, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["pairs"]["failed_names"] == ["00002N"] and m["pairs"]["evaluated"] == len(NAMES) - 1
    reason = next(w for w in m["warnings"] if "could not be evaluated" in w)
    assert f"00002N: cannot decode visible image {png}: " in reason, reason
    assert "png" in reason.split(f"{png}: ", 1)[1].lower(), reason  # the decoder's own words
    assert "could not be evaluated" in err  # the CLI's own warning line says it


def test_operating_point_and_map_on_known_detections():
    names = ("person", "car")
    gt = [(np.array([[0, 0, 10, 10], [20, 20, 40, 40]], float), np.array([0, 1])),
          (np.array([[5, 5, 15, 25]], float), np.array([0]))]
    perfect = [(g[0], np.full(len(g[1]), 0.9), g[1]) for g in gt]
    det, report = pairs_eval.detection_metrics(perfect, gt, names, 0.3, 100)
    assert det["mAP50"] == pytest.approx(1.0) and det["mAP50_95"] == pytest.approx(1.0) and report is not None
    op = det["at_default_threshold"]
    assert (op["boxes"], op["labelled"], op["true_positives"]) == (3, 3, 3)
    assert op["precision"] == op["recall"] == op["boxes_per_object"] == 1.0
    # a duplicate (counts once), a low-score box (below the threshold) and a wrong-class box
    preds = [(np.array([[0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 40, 40], [20, 20, 40, 40]], float),
              np.array([0.9, 0.8, 0.2, 0.7]), np.array([0, 0, 1, 0])),
             (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))]
    op = pairs_eval.operating_point(preds, gt, names, 0.3)
    assert (op["boxes"], op["labelled"], op["true_positives"]) == (3, 3, 1)
    assert op["per_class"]["person"] == {"boxes": 3, "labelled": 2, "true_positives": 1, "boxes_per_object": 1.5,
                                         "precision": pytest.approx(1 / 3), "recall": 0.5}
    assert op["per_class"]["car"]["boxes"] == 0 and op["per_class"]["car"]["precision"] is None
    none, report = pairs_eval.detection_metrics(preds, [(np.zeros((0, 4)), np.zeros(0, np.int64))] * 2, names, 0.3, 100)
    assert none["mAP50"] is None and "no boxes" in none["skipped"] and report is None


MSRS_DET = Path(__file__).resolve().parents[2] / "shared/data/msrs_det"


@pytest.mark.skipif(not MSRS_DET.is_dir(), reason=f"real labelled pairs not available ({MSRS_DET} is absent)")
def test_real_folder_smoke(tmp_path):
    """Three real msrs_det pairs (one day, two night, spread over the names) through the ONNX export."""
    pytest.importorskip("onnxruntime")
    onnx = DEFAULT_MODEL.with_suffix(".onnx")
    if not onnx.is_file():
        pytest.skip(f"no ONNX export of the bundled model ({onnx})")
    out = tmp_path / "out"
    assert pairs_eval.main([str(MSRS_DET), "--model", str(onnx), "--backend", "onnxruntime", "--threads", "1",
                            "--limit", "3", "--subset", "day=D$", "--subset", "night=N$", "--samples", "1",
                            "--fusion-samples", "0", "--out", str(out), "--quiet"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"]["pairs_found"] == 241 and m["dataset"]["boxes_found"] == 1014
    assert m["pairs"]["evaluated"] == 3 and m["subsets"]["day"]["pairs"] + m["subsets"]["night"]["pairs"] == 3
    assert m["detection"]["labelled_objects"] > 0 and m["detection"]["mAP50"] is not None
