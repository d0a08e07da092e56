"""fusion-calibrate: known warps of real pairs are undone, unrelated frames refused, the file loads into the node.

Real sequences come from ../shared/data/msrs_det (skipped without it), at half resolution so each calibration
takes a few seconds; benchmarks/calibration_bench.py measures the full-size behaviour.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusion_ros.calibration.cli import EXIT_BAD_INPUT, EXIT_REFUSED, main
from fusion_ros.calibration.output import registration_params, write_params_file
from fusion_ros.calibration.scene import CalibrationRefused, SceneOptions, calibrate_scene, corner_distance
from fusion_ros.calibration.target import Target, calibrate_target
from fusion_ros.calibration.warped_rig import make_rig, render_board, thermal_standin
from fusion_ros.node_params import load_node_params

MSRS = Path(__file__).resolve().parents[2] / "shared" / "data" / "msrs_det"
needs_msrs = pytest.mark.skipif(not (MSRS / "ir").is_dir(), reason=f"{MSRS} (real registered pairs) is not there")
RGB_WH = (320, 240)  # msrs_det at half size
THERMAL_WH = (160, 120)
FRAMES = 16
# the rigs here are drawn from the benchmark's ranges; the search is narrowed around them to keep tests quick
OPTIONS = SceneOptions(fov_ratio=(0.7, 0.9), max_rotation_deg=4.0)
CLI_SEARCH = ["--fov-ratio", "0.7", "0.9", "--max-rotation", "4"]


def msrs_sequence(first: int, count: int = FRAMES) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """``count`` consecutive real pairs from the ``first``-th name on, at half size: names, thermal, RGB."""
    names = sorted(p.stem for p in (MSRS / "ir").glob("*.png"))[first:first + count]
    thermal = [cv2.resize(cv2.imread(str(MSRS / "ir" / f"{n}.png"), cv2.IMREAD_GRAYSCALE), RGB_WH,
                          interpolation=cv2.INTER_AREA) for n in names]
    rgb = [cv2.resize(cv2.cvtColor(cv2.imread(str(MSRS / "vi" / f"{n}.png")), cv2.COLOR_BGR2RGB), RGB_WH,
                      interpolation=cv2.INTER_AREA) for n in names]
    return names, thermal, rgb


def write_folder(root: Path, names, thermal, rgb) -> Path:
    (root / "ir").mkdir(parents=True)
    (root / "vi").mkdir()
    for name, t, c in zip(names, thermal, rgb):
        cv2.imwrite(str(root / "ir" / f"{name}.png"), t)
        cv2.imwrite(str(root / "vi" / f"{name}.png"), cv2.cvtColor(c, cv2.COLOR_RGB2BGR))
    return root


def written_homography(path: Path) -> tuple[np.ndarray, tuple[int, int] | None]:
    """The registration the node would configure from a params file (its own parameter code)."""
    cfg = load_node_params(str(path), {}, None, None, None)
    return cfg.registration.homography, cfg.calibrated_size("thermal")


# ------------------------------------------------------------------------------------------- scene mode
@needs_msrs
def test_a_warped_real_sequence_is_refused_as_no_homography_and_undone_when_the_compromise_is_accepted(tmp_path, capsys):
    """msrs_det's own registration is a few pixels off any homography (docs/calibration.md): the regions of the
    view, aligned on their own, sit a median 1.6-1.8 px (at 640 px width) from the best fit. By default that is
    refused; --max-regional accepts the compromise, which undoes most of the warp."""
    names, thermal, rgb = msrs_sequence(48, 24)
    rig = make_rig(np.random.default_rng(3), RGB_WH, thermal_wh=THERMAL_WH)
    folder = write_folder(tmp_path / "pairs", names, [rig.thermal(t) for t in thermal], rgb)
    out, check = tmp_path / "registration.yaml", tmp_path / "check.png"
    assert main(["--pairs", str(folder), "--out", str(out), *CLI_SEARCH]) == EXIT_REFUSED
    assert "not related by one homography" in capsys.readouterr().err and not out.exists()
    assert main(["--pairs", str(folder), "--out", str(out), "--check", str(check), "--max-regional", "5",
                 *CLI_SEARCH]) == 0
    printed = capsys.readouterr().out
    assert "residual" in printed and "confidence" in printed and "regions of the view" in printed
    homography, thermal_size = written_homography(out)
    assert thermal_size == THERMAL_WH
    # against the pairs as registered the compromise keeps an error: a fraction of what the warp moved the corners
    stretched = np.diag([RGB_WH[0] / THERMAL_WH[0], RGB_WH[1] / THERMAL_WH[1], 1.0])
    assert corner_distance(homography, rig.truth, THERMAL_WH) < 0.4 * corner_distance(stretched, rig.truth, THERMAL_WH)
    picture = cv2.imread(str(check))
    assert picture is not None and picture.shape[1] == 2 * RGB_WH[0]


@needs_msrs
def test_frames_that_no_homography_relates_are_refused():
    """Thermal frames rendered from the RGB ones, then displaced back and forth across the view (3 px waves at
    320 px, like the few-pixel offsets msrs_det's own registration leaves, docs/calibration.md): the joint fit is
    a compromise, the regions each sit away from it, and nothing is given. The same frames unbent pass."""
    _, _, rgb = msrs_sequence(150, 12)
    rng = np.random.default_rng(8)
    standins = [thermal_standin(c, rng) for c in rgb]
    height, width = standins[0].shape
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    map_x = (xs + 3.0 * np.sin(2 * np.pi * xs / width)).astype(np.float32)
    map_y = (ys + 3.0 * np.sin(2 * np.pi * ys / height)).astype(np.float32)
    bent = [cv2.remap(t, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT) for t in standins]
    rig = make_rig(rng, RGB_WH, thermal_wh=THERMAL_WH)
    with pytest.raises(CalibrationRefused, match="not related by one homography") as refused:
        calibrate_scene([rig.thermal(t) for t in bent], rgb, OPTIONS)
    assert refused.value.calibration.regional_px > 2 * OPTIONS.max_regional_px * RGB_WH[0] / 640
    assert calibrate_scene([rig.thermal(t) for t in standins], rgb, OPTIONS).regional_px < 0.1


@needs_msrs
def test_exactly_registered_standin_is_recovered_within_half_a_pixel():
    """Thermal frames rendered from the real RGB ones: exact ground truth, real scene structure."""
    _, _, rgb = msrs_sequence(150, 12)
    rng = np.random.default_rng(8)
    rig = make_rig(rng, RGB_WH, thermal_wh=THERMAL_WH)
    result = calibrate_scene([rig.thermal(thermal_standin(c, rng)) for c in rgb], rgb, OPTIONS)
    assert corner_distance(result.homography, rig.truth, THERMAL_WH) <= 0.5
    assert result.frames_agreeing >= 10 and result.halves_px <= 1.0 and result.regional_px < 0.1


@needs_msrs
def test_thermal_frames_of_other_scenes_are_refused():
    _, _, rgb = msrs_sequence(48)
    _, other_thermal, _ = msrs_sequence(150)
    rig = make_rig(np.random.default_rng(4), RGB_WH, thermal_wh=THERMAL_WH)
    with pytest.raises(CalibrationRefused, match="agree on their own") as refused:
        calibrate_scene([rig.thermal(t) for t in other_thermal], rgb, OPTIONS)
    assert refused.value.calibration.frames_agreeing < FRAMES // 2


def test_frames_without_structure_are_refused_with_the_reason(tmp_path, capsys):
    rng = np.random.default_rng(0)
    sky = [np.clip(rng.normal(120, 2, (120, 160)), 0, 255).astype(np.uint8) for _ in range(8)]
    street = [rng.integers(0, 255, (240, 320, 3), dtype=np.uint8) for _ in range(8)]
    street = [cv2.GaussianBlur(s, (0, 0), 3) for s in street]
    folder = write_folder(tmp_path / "night_sky", [f"{i:03d}" for i in range(8)], sky, street)
    out = tmp_path / "registration.yaml"
    assert main(["--pairs", str(folder), "--out", str(out)]) == EXIT_REFUSED
    assert "show edges in both images" in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------------------------------- the file
def test_written_file_is_what_the_node_configures(tmp_path):
    homography = np.array([[1.9, 0.03, 41.5], [-0.02, 1.95, 17.25], [1.2e-5, -3e-6, 1.0]])
    path = write_params_file(tmp_path / "sub" / "registration.yaml",
                             registration_params(2.0 * homography, (320, 256), (640, 512)), ["a comment line"])
    text = path.read_text()
    assert text.startswith("# a comment line\n/**:\n  ros__parameters:\n")
    loaded, thermal_size = written_homography(path)
    np.testing.assert_allclose(loaded, homography, rtol=0, atol=1e-15)
    assert thermal_size == (320, 256)
    assert load_node_params(str(path), {}, None, None, None).calibrated_size("rgb") == (640, 512)
    # layered after the vehicle's file, as --params-file twice: the registration comes from this one
    cfg = load_node_params(str(Path(__file__).resolve().parents[1] / "config" / "fusion.yaml"), {}, None, None, None)
    assert cfg["registration.mode"] == "identity"


def test_the_node_configures_with_the_written_file(tmp_path):
    """The real node, started as the README says (its parameter file, then the calibration), configures the
    homography."""
    pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")
    from test_node_integration import NodeProcess, _node_env

    from fusion_ros.checkpoint import save_untrained_model

    model = save_untrained_model(tmp_path / "random.pt", input_size=(64, 80))
    homography = np.array([[2.0, 0.01, 12.5], [-0.01, 2.0, 7.0], [1e-5, 0.0, 1.0]])
    calibrated = write_params_file(tmp_path / "registration.yaml",
                                   registration_params(homography, (320, 256), (640, 512)), [])
    node = NodeProcess(tmp_path, "calibrated_node", [
        "--params-file", str(Path(__file__).resolve().parents[1] / "config" / "fusion.yaml"),
        "--params-file", str(calibrated), "-p", f"model_path:={model}", "-p", "backend:=torch",
        "-p", "num_threads:=1", "-p", "lifecycle:=false"], _node_env(60 + os.getpid() % 40, tmp_path / "ros_log"))
    try:
        assert node.wait_log("configured:", timeout=60.0), node.log()
    finally:
        node.stop()
    log = node.log()
    assert "registration homography" in log and "configure failed" not in log, log


# ------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("case, message", [
    ("missing", "is not a folder"),
    ("empty", "holds no images"),
    ("mismatched", "must pair up by name"),
    ("unreadable", "cannot decode infrared image"),
    ("mixed_sizes", "calibrate each size apart"),
])
def test_bad_folders_are_named(tmp_path, capsys, case, message):
    root = tmp_path / "pairs"
    if case != "missing":
        frame = np.full((48, 64), 100, np.uint8)
        colour = np.full((48, 64, 3), 100, np.uint8)
        names = ["a", "b", "c"] if case != "empty" else []
        write_folder(root, names, [frame] * len(names), [colour] * len(names))
        if case == "mismatched":
            (root / "vi" / "c.png").rename(root / "vi" / "d.png")
        elif case == "unreadable":
            (root / "ir" / "b.png").write_bytes(b"not a png")
        elif case == "mixed_sizes":
            cv2.imwrite(str(root / "ir" / "c.png"), np.zeros((40, 64), np.uint8))
    code = main(["--pairs", str(root), "--out", str(tmp_path / "out.yaml")])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT and message in err, err
    if case == "mismatched":
        assert "c" in err and "d" in err


def test_bag_without_the_thermal_topic_is_named(tmp_path, capsys):
    from fusion_ros.bag.reader import IMAGE, BagWriter, image_message

    bag = tmp_path / "rgb_only"
    with BagWriter(bag) as writer:
        writer.add_topic("/cam/image_raw", IMAGE)
        for i in range(3):
            writer.write("/cam/image_raw", 10**9 + i * 10**8,
                         image_message(np.zeros((24, 32, 3), np.uint8), "rgb8", 10**9 + i * 10**8, "cam"))
    code = main(["--bag", str(bag), "--thermal-topic", "/flir/image_raw", "--rgb-topic", "/cam/image_raw",
                 "--out", str(tmp_path / "out.yaml")])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert "thermal topic '/flir/image_raw' is not in" in err and "/cam/image_raw" in err


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_a_regional_limit_that_is_not_a_positive_number_is_named(tmp_path, capsys, value):
    assert main(["--pairs", str(tmp_path), "--out", str(tmp_path / "r.yaml"), "--max-regional", value]) == EXIT_BAD_INPUT
    assert "--max-regional needs a positive number of pixels" in capsys.readouterr().err


@needs_msrs
def test_bag_pairs_come_through_the_node_synchroniser(tmp_path):
    from fusion_ros.bag.reader import IMAGE, BagWriter, image_message

    names, _, rgb = msrs_sequence(48)
    rng = np.random.default_rng(5)
    thermal = [thermal_standin(c, rng) for c in rgb]
    rig = make_rig(rng, RGB_WH, thermal_wh=THERMAL_WH)
    bag = tmp_path / "drive"
    start = 10**18
    with BagWriter(bag) as writer:
        writer.add_topic("/flir/image_raw", IMAGE)
        writer.add_topic("/cam/image_raw", IMAGE)
        for i, (t, c) in enumerate(zip(thermal, rgb)):
            stamp = start + i * 100_000_000
            writer.write("/flir/image_raw", stamp + 1000, image_message(rig.thermal(t), "mono8", stamp + 3_000_000, "ir"))
            writer.write("/cam/image_raw", stamp + 2000, image_message(c, "rgb8", stamp, "cam"))
    out = tmp_path / "registration.yaml"
    assert main(["--bag", str(bag), "--thermal-topic", "/flir/image_raw", "--rgb-topic", "/cam/image_raw",
                 "--out", str(out), *CLI_SEARCH]) == 0
    homography, thermal_size = written_homography(out)
    assert thermal_size == THERMAL_WH
    # ApproximateTime emits a pair once a later frame proves it best, as in the node: the last one never is
    assert f"{len(names) - 1} synchronised pairs" in out.read_text()
    # the same frames handed over directly: the bag path only adds the node's decoding and normalisation
    direct = calibrate_scene([rig.thermal(t) for t in thermal[:-1]], rgb[:-1], OPTIONS)
    assert corner_distance(homography, direct.homography, THERMAL_WH) <= 0.5


# ------------------------------------------------------------------------------------------- target mode
@pytest.mark.parametrize("pattern", ["chessboard:9x6", "circles:4x6"])
def test_rendered_targets_give_the_homography_within_half_a_pixel(pattern):
    rng = np.random.default_rng(11)
    target = Target.parse(pattern)
    rig = make_rig(rng, (640, 480), thermal_wh=(320, 240))
    boards = [render_board(rng, (640, 480), target.cols, target.rows, target.kind) for _ in range(8)]
    result = calibrate_target([rig.thermal(t) for t, _ in boards], [c for _, c in boards], target)
    assert corner_distance(result.homography, rig.truth, rig.thermal_wh) <= 0.5
    assert result.frames >= 4 and result.rms_px < 0.5


def test_target_mode_says_where_the_board_was_not_found(tmp_path, capsys):
    names, frames = ["a", "b"], [np.full((48, 64), 90, np.uint8)] * 2
    folder = write_folder(tmp_path / "pairs", names, frames, [np.full((48, 64, 3), 90, np.uint8)] * 2)
    assert main(["--pairs", str(folder), "--target", "chessboard:9x6", "--out", str(tmp_path / "o.yaml")]) == EXIT_REFUSED
    assert "found in 0 thermal and 0 RGB frames of 2" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["chessboard", "checker:9x6", "chessboard:6x6", "circles:1x4"])
def test_bad_target_names_are_refused_by_the_parser(text):
    with pytest.raises(ValueError):
        Target.parse(text)


# ------------------------------------------------------------------------------------------- the evaluators
def test_eval_bag_takes_the_registration_of_a_calibration_file(tmp_path, capsys):
    from fusion_ros.bag import evaluate
    from fusion_ros.bag.sample import make_sample_bag
    from fusion_ros.checkpoint import save_untrained_model

    make_sample_bag(tmp_path / "bag", seconds=1.0, height=64, width=80, seed=3)
    model = save_untrained_model(tmp_path / "random.pt", input_size=(64, 80))
    common = [str(tmp_path / "bag"), "--model", str(model), "--backend", "torch", "--no-output-bag", "--quiet",
              "--samples", "0", "--fusion-samples", "0", "--max-pairs", "3"]
    shift = np.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0], [0.0, 0.0, 1.0]])
    calibrated = write_params_file(tmp_path / "registration.yaml", registration_params(shift, (80, 64), (80, 64)), [])
    assert evaluate.main([*common, "--registration", str(calibrated), "--out", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["config"]["registration.mode"] == "homography" and metrics["pairs"]["processed"] > 0
    other_size = write_params_file(tmp_path / "other.yaml", registration_params(shift, (160, 128), (80, 64)), [])
    assert evaluate.main([*common, "--registration", str(other_size), "--out", str(tmp_path / "out2")]) == 2
    assert "rejected {'thermal_size'" in capsys.readouterr().err
    assert evaluate.main([*common, "--registration", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o3")]) == 2


def test_eval_pairs_maps_unregistered_thermal_with_the_file(tmp_path, capsys):
    from fusion_ros import pairs_eval
    from test_pairs_eval import H, W, scene_folder

    folder = scene_folder(tmp_path / "data")
    for path in (folder / "ir").glob("*.png"):  # a thermal camera of half the resolution
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(path), cv2.resize(image, (W // 2, H // 2), interpolation=cv2.INTER_AREA))
    doubling = np.array([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])
    calibrated = write_params_file(tmp_path / "registration.yaml",
                                   registration_params(doubling, (W // 2, H // 2), (W, H)), [])
    common = [str(folder), "--backend", "torch", "--input-size", f"{H}x{W}", "--threads", "1", "--quiet",
              "--samples", "1", "--fusion-samples", "1"]
    assert pairs_eval.main([*common, "--registration", str(calibrated), "--out", str(tmp_path / "out")]) == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["pairs"]["evaluated"] == 5
    wrong = write_params_file(tmp_path / "wrong.yaml", registration_params(doubling, (W, H), (W, H)), [])
    assert pairs_eval.main([*common, "--registration", str(wrong), "--out", str(tmp_path / "out2")]) == 2
    assert f"calibrated for {W}x{H}" in capsys.readouterr().err
