"""fusion-eval-fusion: the command end to end on small generated folders (bundled ONNX model), its bad-input
handling, and its cddfuse-convention baselines on the real RoadScene-50 against CDDFuse's own evaluator."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusion_ros.engine import create_engine
from fusion_ros.quality_eval import (
    PairSet,
    baseline_images,
    compare_with_reference,
    load_references,
    main,
    strongest_thermal_window,
)
from fusion_ros.labelled_pairs import LabelledPair, find_image_pairs, load_pair_images
from fusion_ros.metrics import METRIC_KEYS, fusion_metrics, fusion_metrics_of_many, grey_image

IVF = Path(__file__).resolve().parents[2] / "shared" / "data" / "ivf_samples"
MSRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "msrs_det"


def _scene(rng, h, w, brightness):
    """A visible frame (BGR) and its thermal frame: a textured background and a warm block."""
    vi = np.clip(cv2.GaussianBlur(rng.uniform(0, 255, (h, w, 3)), (0, 0), 3) * brightness, 0, 255).astype(np.uint8)
    ir = cv2.GaussianBlur(rng.uniform(40, 90, (h, w)), (0, 0), 2)
    ir[h // 4: h // 2, w // 2: w // 2 + w // 5] = 220
    return ir.astype(np.uint8), vi


def _write_set(root: Path, pairs: dict) -> Path:
    for sub in ("ir", "vi"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name, (ir, vi) in pairs.items():
        cv2.imwrite(str(root / "ir" / f"{name}.png"), ir)
        cv2.imwrite(str(root / "vi" / f"{name}.jpg"), vi)
    return root


def _nan_for_none(metrics: dict) -> dict:
    """metrics.json writes NaN (an undefined metric) as null."""
    return {k: float("nan") if v is None else v for k, v in metrics.items()}


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    rng = np.random.default_rng(0)
    pairs = {"day1": _scene(rng, 72, 96, 1.0), "day2": _scene(rng, 60, 80, 0.9), "night1": _scene(rng, 64, 88, 0.15)}
    return _write_set(tmp_path_factory.mktemp("fusion_set") / "street", pairs)


def test_command_scores_model_and_baselines_per_convention(small_set, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([str(small_set), "--out", str(out), "--threads", "1", "--samples", "2", "--night-crops", "1",
                 "--reference", "cddfuse", "--quiet"]) == 0
    assert "street: 3 pairs scored, 0 skipped; model (cddfuse) EN" in capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    s = m["sets"]["street"]
    assert (s["pairs_found"], s["pairs_scored"], s["pairs_skipped"]) == (3, 3, 0)
    assert list(s["conventions"]) == ["cddfuse", "project"] and m["mi_unit"] == {"cddfuse": "nats", "project": "bits"}
    assert m["model"]["file"].endswith("default.onnx") and m["model"]["backend"].startswith("onnxruntime")

    # every number recomputed here from the engine's fused image and the files, under its convention
    engine = create_engine(None, backend="onnxruntime", num_threads=1)
    try:
        for name in ("day2", "night1"):
            ir, rgb = load_pair_images(LabelledPair(name, small_set / "ir" / f"{name}.png", small_set / "vi" / f"{name}.jpg"))
            fused = engine.infer(ir, rgb, fused_encoding="bgr8", segmentation=False).fused
            vi_bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            for convention in ("cddfuse", "project"):
                vi_grey = grey_image(vi_bgr, convention)
                scored = s["per_pair"][name][convention]
                model = fusion_metrics(grey_image(fused, convention), ir, vi_grey, convention)
                assert _nan_for_none(scored["model"]) == pytest.approx(model, rel=1e-9, nan_ok=True)
                maximum = np.maximum(ir, vi_grey.astype(np.uint8))  # SCD NaN (None in JSON) where the max is all IR
                assert _nan_for_none(scored["pixel_max"]) == pytest.approx(
                    fusion_metrics(maximum, ir, vi_grey, convention), rel=1e-9, nan_ok=True)
    finally:
        engine.close()
    for convention in ("cddfuse", "project"):
        means = s["conventions"][convention]["mean"]
        for method in ("model", "pixel_average"):
            assert means[method]["SSIM"] == pytest.approx(
                np.mean([p[convention][method]["SSIM"] for p in s["per_pair"].values()]))
    # F = a source: one SCD term has no variance -- NaN (None in JSON) under cddfuse, 0 under project
    assert s["conventions"]["cddfuse"]["mean"]["ir_only"]["SCD"] is None
    # ... and at night1 the max is the IR image everywhere
    assert s["conventions"]["cddfuse"]["undefined"] == {"pixel_max": {"SCD": 1}, "ir_only": {"SCD": 3},
                                                        "visible_only": {"SCD": 3}}
    assert s["conventions"]["project"]["mean"]["ir_only"]["SCD"] is not None
    assert s["reference"]["applies"] is False and "none of RoadScene-50, TNO-25" in s["reference"]["why_not"]

    # the grid: two spread pairs, then the darkest (night1) whole and its window enlarged, at the warm block
    grid = s["grid"]
    assert grid["samples"] == ["day1", "night1"] and [n["name"] for n in grid["night"]] == ["night1"]
    x, y, w, h = grid["night"][0]["crop_xywh"]
    assert (w, h) == (88 // 3, 64 // 3) and x <= 88 // 2 + 88 // 5 and x + w >= 88 // 2 and y <= 32 and y + h >= 16
    picture = cv2.imread(str(out / grid["file"]))
    assert picture is not None and picture.shape[1] == 5 * 96  # five columns at the first pair's width
    report = (out / "report.md").read_text()
    for text in ("### street, cddfuse convention", "### street, project convention", "| MI (nats) |", "| MI (bits) |",
                 "![street](grid_street.png)", "CDDFuse (Zhao et al., CVPR 2023) not compared"):
        assert text in report


def test_bad_pairs_are_skipped_named_and_counted_without_decoder_lines(small_set, tmp_path, capfd):
    root = tmp_path / "mixed"
    rng = np.random.default_rng(1)
    ir, vi = _scene(rng, 64, 80, 1.0)
    _write_set(root, {"good": (ir, vi), "sizes": (ir[:, :70], vi), "broken": (ir, vi), "lonely": (ir, vi)})
    (root / "vi" / "broken.jpg").write_bytes((root / "vi" / "broken.jpg").read_bytes()[:300])  # truncated JPEG
    (root / "vi" / "lonely.jpg").unlink()
    out = tmp_path / "out"
    assert main([str(root), "--out", str(out), "--quiet"]) == 2  # an IR image without its visible partner
    err = capfd.readouterr().err
    assert "fusion-eval-fusion: error: IR images without a visible image" in err and "--unpaired skip" in err
    assert "Traceback" not in err

    assert main([str(root), "--out", str(out), "--unpaired", "skip", "--quiet", "--threads", "1"]) == 0
    err = capfd.readouterr().err
    assert "JPEG" not in err and "libpng" not in err and "WARN" not in err, err
    s = json.loads((out / "metrics.json").read_text())["sets"]["mixed"]
    assert (s["pairs_scored"], s["pairs_skipped"]) == (1, 3) and list(s["per_pair"]) == ["good"]
    assert "no visible image" in s["skipped"]["lonely"]
    assert "IR 70x64 and visible 80x64 differ" in s["skipped"]["sizes"]
    assert "cannot decode visible image" in s["skipped"]["broken"]
    report = (out / "report.md").read_text()
    assert "- sizes: IR 70x64 and visible 80x64 differ" in report and "- broken: cannot decode" in report


@pytest.mark.parametrize("layout, message", [
    ({"ir": [], "vi": []}, "no IR/visible pairs (0 images in"),
    ({"vi": ["a"]}, "has no infrared image folder (looked for ir/"),
    ({"ir": ["a"]}, "has no visible image folder (looked for vi/"),
    (None, "is not a folder (expected ir/ and vi/)"),
])
def test_folders_without_pairs_are_clear_errors(tmp_path, capfd, layout, message):
    root = tmp_path / "set"
    if layout is not None:
        for sub, names in layout.items():
            (root / sub).mkdir(parents=True)
            for name in names:
                cv2.imwrite(str(root / sub / f"{name}.png"), np.zeros((48, 48), np.uint8))
    assert main([str(root), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capfd.readouterr().err
    assert f"fusion-eval-fusion: error: " in err and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written for a run that could not start


def test_no_scorable_pair_and_unknown_reference_are_errors(tmp_path, capfd):
    root = _write_set(tmp_path / "tiny", {"a": (np.zeros((30, 30), np.uint8), np.zeros((30, 30, 3), np.uint8))})
    assert main([str(root), "--out", str(tmp_path / "out"), "--quiet", "--threads", "1"]) == 2
    assert "no pair of" in capfd.readouterr().err  # 30x30 is below the metrics' 41x41
    assert main([str(root), "--out", str(tmp_path / "out2"), "--reference", "seafusion"]) == 2
    assert "unknown --reference 'seafusion': known are cddfuse" in capfd.readouterr().err


def test_strongest_thermal_window_finds_the_textured_block():
    ir = np.full((60, 90), 50, np.uint8)
    ir[30:45, 10:30] = np.tile([0, 255], (15, 10))  # the only place with contrast
    y, x = strongest_thermal_window(ir, 20, 30)
    assert y <= 30 and y + 20 >= 45 and x <= 10 and x + 30 >= 30


def test_baseline_images_round_the_average_as_an_8bit_save_does():
    ir = np.array([[0, 1, 2, 255]], np.uint8)
    vi = np.array([[1, 2, 2, 0]], np.uint8)
    average, maximum, ir_only, visible_only = baseline_images(ir, vi)
    assert average.tolist() == [[0, 2, 2, 128]]  # 0.5 -> 0, 1.5 -> 2, 127.5 -> 128: halves to even
    assert maximum.tolist() == [[1, 2, 2, 255]] and ir_only.tolist() == ir.tolist()
    assert visible_only.tolist() == vi.tolist() and average.dtype == np.uint8


# ------------------------------------------------------------------------------------ the real test sets
def _need(path: Path):
    if not path.is_dir():
        pytest.skip(f"{path} not found: the real test pairs live in ../shared beside the checkout")


def test_reference_row_applies_only_to_its_own_set():
    _need(IVF)
    references = load_references()
    reference = {"name": "cddfuse", **references["cddfuse"]}
    published = reference["sets"]["TNO-25"]["row"]
    found = find_image_pairs(IVF / "TNO")
    model = {k: published.get(k, 0.0) for k in METRIC_KEYS}
    model.update(EN=published["EN"] + 0.004, SD=published["SD"] + 0.006, SF=published["SF"] - 0.1)
    summary = {"cddfuse": {"mean": {"model": model}}}
    entry = compare_with_reference(PairSet("TNO", found, found.stems, {"name": "all"}), found.stems, summary, reference)
    assert entry["applies"] and entry["set"] == "TNO-25"
    assert entry["beats"] == ["SD"] and entry["below"] == ["SF"] and "EN" in entry["ties"]  # at 2 decimals
    partial = compare_with_reference(PairSet("TNO", found, found.stems[:5], {"name": "all"}), found.stems[:5],
                                     summary, reference)
    assert not partial["applies"] and "25 pairs, 5 were scored" in partial["why_not"]
    roadscene = find_image_pairs(IVF / "RoadScene")
    other = compare_with_reference(PairSet("RoadScene", roadscene, roadscene.stems, {"name": "all"}),
                                   roadscene.stems, {}, reference)
    assert not other["applies"] and "convention was not computed" in other["why_not"]


def test_cddfuse_baselines_on_roadscene_match_cddfuses_evaluator():
    """The pixel average and pixel max of RoadScene-50 under the cddfuse convention, as the command forms
    and scores them, against the same rows measured with CDDFuse's utils/Evaluator.py (to the printed
    precision): EN SD SF MI SCD VIF Qabf SSIM."""
    _need(IVF)
    measured = {"pixel_average": "6.45 28.5 7.53 2.00 1.42 0.570 0.382 0.948",
                "pixel_max": "7.03 44.0 11.6 5.11 1.41 0.853 0.604 0.973"}
    found = find_image_pairs(IVF / "RoadScene")
    assert len(found.stems) == 50
    rows = {k: [] for k in measured}
    for name in found.stems:
        ir, rgb = load_pair_images(LabelledPair(name, found.ir[name], found.vi[name]))
        vi_grey = grey_image(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), "cddfuse")
        average, maximum, *_ = baseline_images(ir, vi_grey)
        scores = fusion_metrics_of_many({"pixel_average": average, "pixel_max": maximum}, ir, vi_grey, "cddfuse")
        for method in measured:
            rows[method].append(scores[method])
    keys = ("EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM")
    for method, printed in measured.items():
        for key, text in zip(keys, printed.split()):
            ours = float(np.mean([r[key] for r in rows[method]]))
            assert f"{ours:.{len(text.split('.')[1])}f}" == text, (method, key, ours, text)


def test_split_val_scores_the_val_blocks_fusion_eval_pairs_uses(tmp_path):
    _need(MSRS)
    from fusion_ros.labelled_pairs import select_split

    out = tmp_path / "out"
    assert main([str(MSRS), "--split", "val", "--limit", "2", "--out", str(out), "--convention", "project",
                 "--samples", "1", "--night-crops", "0", "--quiet", "--threads", "1"]) == 0
    s = json.loads((out / "metrics.json").read_text())["sets"]["msrs_det"]
    val = select_split(find_image_pairs(MSRS).stems, "val")
    assert s["split"]["name"] == "val" and s["pairs_selected"] == 2
    assert set(s["per_pair"]) <= set(val) and s["split"]["counts"]["val"] == len(val)
    assert list(s["conventions"]) == ["project"]


def test_pairs_larger_than_the_network_input_report_the_detail_kept_at_camera_resolution(tmp_path, capsys):
    """Fusing at the pair's size keeps detail that fusing at the network's size and scaling up loses: the
    report names the larger pairs and gives SF / AG of the model beside the pixel average's, per mode."""
    rng = np.random.default_rng(1)
    root = _write_set(tmp_path / "set", {"big": _scene(rng, 144, 192, 1.0), "small": _scene(rng, 60, 80, 0.9)})
    large = {}
    for mode in ("camera", "network"):
        out = tmp_path / mode
        assert main([str(root), "--out", str(out), "--threads", "1", "--quiet", "--input-size", "96x128",
                     "--backend", "torch", "--convention", "cddfuse", "--fused-resolution", mode]) == 0
        m = json.loads((out / "metrics.json").read_text())
        assert m["model"]["fused_resolution"] == mode
        large[mode] = m["sets"]["set"]["larger_than_network"]
        assert large[mode]["pairs"] == ["big"] and large[mode]["network_input"] == [96, 128]
        report = (out / "report.md").read_text()
        assert f"1 pairs larger than the network input (128x96), fused at the {mode}'s resolution" in report
        assert f"fused at the {mode}'s resolution: model vs pixel average (cddfuse) SF" in capsys.readouterr().out
    camera, network = (large[k]["mean"]["cddfuse"] for k in ("camera", "network"))
    assert camera["pixel_average"] == network["pixel_average"]
    assert camera["model"]["SF"] > 1.2 * network["model"]["SF"] and camera["model"]["AG"] > network["model"]["AG"]
