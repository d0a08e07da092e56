"""Engines: one interface over ONNX Runtime and PyTorch, shared pre/post-processing, clear errors.

The ONNX files here come from the legacy TorchScript exporter because it runs ~5x faster; the default
(dynamo) exporter is covered by test_export.py. Everything is a random-weight model at 64x80.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion_ros.checkpoint import ModelMeta, save_model
from fusion_ros.engine import (
    BackendUnavailableError,
    EngineError,
    InputError,
    ModelFileError,
    Perception,
    SidecarError,
    create_engine,
    resolve_artifacts,
)
from fusion_ros.engine.sidecar import read_sidecar, sha256_file, sidecar_path, write_sidecar
from fusion_ros.model import FusedPerceptionNet
from fusion_ros.paths import DEFAULT_MODEL
from fusion_ros.postprocess import Detections, PostprocessConfig
from fusion_ros.preprocess import Preprocessor, fused_to_image, scale_boxes
from fusion_ros.registration import Registration
from training.export import export_onnx

H, W = 64, 80
DET = [f"det{i}" for i in range(6)]
SEG = [f"seg{i}" for i in range(10)]
LOW_SCORE = dict(postprocess=PostprocessConfig(score_threshold=0.05, max_detections=1000, pre_nms_top_k=5000))


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    torch.manual_seed(0)
    model_path = root / "model.pt"
    save_model(model_path, FusedPerceptionNet(), ModelMeta(DET, SEG, input_size=(H, W)))
    fixed = export_onnx(model_path, exporter="torchscript").onnx_path  # model.onnx, beside the .pt
    dynamic = export_onnx(model_path, root / "dynamic.onnx", dynamic=True, exporter="torchscript").onnx_path
    return {"pt": model_path, "onnx": fixed, "dynamic": dynamic, "root": root}


@pytest.fixture(scope="module")
def engines(artifacts):
    ort_engine = create_engine(artifacts["onnx"], backend="onnxruntime", num_threads=1, **LOW_SCORE)
    torch_engine = create_engine(artifacts["pt"], backend="torch", device="cpu", **LOW_SCORE)
    return {"onnxruntime": ort_engine, "torch": torch_engine}


def frames(seed=0, rgb_size=(128, 160), thermal_size=(96, 120)):
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (*rgb_size, 3), dtype=np.uint8)
    thermal = rng.integers(26000, 34000, thermal_size, dtype=np.uint16)
    return thermal, rgb


def match_detections(a: Detections, b: Detections, threshold: float, margin=1e-3, box_tol=1e-2):
    """Every detection of `a` clearly above the threshold has a twin in `b` (same class, box, score)."""
    for box, score, label in zip(a.boxes, a.scores, a.labels):
        if score < threshold + margin:
            continue
        same = (b.labels == label) & (np.abs(b.scores - score) < 1e-4)
        same &= np.all(np.abs(b.boxes - box) < box_tol, axis=1)
        assert same.any(), f"no twin for class {label} score {score:.5f} box {box}"


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_perception_types_and_shapes(engines, backend):
    engine = engines[backend]
    thermal, rgb = frames()
    result = engine.infer(thermal, rgb)
    assert isinstance(result, Perception)
    assert result.backend.startswith(backend) and result.backend.endswith("cpu")
    assert result.fused.shape == (128, 160, 3) and result.fused.dtype == np.uint8
    assert result.segmentation.shape == (128, 160) and result.segmentation.dtype == np.uint8
    assert int(result.segmentation.max()) < len(SEG)
    dets = result.detections
    assert isinstance(dets, Detections) and len(dets) > 0
    assert dets.boxes.dtype == np.float32 and dets.scores.dtype == np.float32 and dets.labels.dtype == np.int64
    assert dets.boxes.shape == (len(dets), 4)
    assert (dets.boxes[:, 0::2] >= 0).all() and (dets.boxes[:, 0::2] <= 160).all()
    assert (dets.boxes[:, 1::2] >= 0).all() and (dets.boxes[:, 1::2] <= 128).all()
    assert set(result.timings) == {"pre", "infer", "post"} and all(v >= 0 for v in result.timings.values())
    assert engine.det_classes == tuple(DET) and engine.seg_classes == tuple(SEG)
    assert engine.input_size == (H, W)


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_segmentation_can_be_skipped_without_changing_the_rest(engines, backend):
    """infer(segmentation=False) (the node publishing no segmentation topic) returns no mask and the very
    same fused image and detections as a call that computes the mask."""
    engine = engines[backend]
    thermal, rgb = frames(seed=3)
    full = engine.infer(thermal, rgb)
    lean = engine.infer(thermal, rgb, segmentation=False)
    assert lean.segmentation is None and full.segmentation.shape == (128, 160)
    np.testing.assert_array_equal(lean.fused, full.fused)
    np.testing.assert_array_equal(lean.detections.boxes, full.detections.boxes)
    np.testing.assert_array_equal(lean.detections.scores, full.detections.scores)
    np.testing.assert_array_equal(lean.detections.labels, full.detections.labels)
    batch = engine.infer_batch([thermal, thermal], [rgb, rgb], segmentation=False)
    assert [r.segmentation for r in batch] == [None, None]


def test_onnxruntime_and_torch_agree(engines):
    thermal, rgb = frames(seed=1)
    a = engines["onnxruntime"].infer(thermal, rgb)
    b = engines["torch"].infer(thermal, rgb)
    assert np.abs(a.fused.astype(int) - b.fused.astype(int)).max() <= 1
    assert (a.segmentation == b.segmentation).mean() > 0.999
    assert len(a.detections) > 5
    match_detections(a.detections, b.detections, LOW_SCORE["postprocess"].score_threshold)
    match_detections(b.detections, a.detections, LOW_SCORE["postprocess"].score_threshold)


def test_results_are_mapped_back_to_the_input_rgb_size(engines):
    """An RGB image at exactly 2x the network size (nearest upscaled) gives the same network input, so
    boxes must be exactly 2x and the mask the 2x nearest upscale."""
    engine = engines["onnxruntime"]
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    thermal = rng.random((H, W), dtype=np.float32)
    small = engine.infer(thermal, rgb)
    big = engine.infer(thermal, rgb.repeat(2, axis=0).repeat(2, axis=1))
    assert big.fused.shape == (2 * H, 2 * W, 3)
    np.testing.assert_allclose(big.detections.boxes, 2 * small.detections.boxes, atol=1e-3)
    np.testing.assert_array_equal(big.detections.labels, small.detections.labels)
    np.testing.assert_array_equal(big.segmentation, small.segmentation.repeat(2, axis=0).repeat(2, axis=1))


def test_scale_boxes():
    boxes = np.array([[0, 0, 80, 64], [10, 20, 30, 40]], np.float32)
    out = scale_boxes(boxes, (64, 80), (512, 640))
    np.testing.assert_allclose(out, [[0, 0, 640, 512], [80, 160, 240, 320]])
    assert scale_boxes(np.zeros((0, 4)), (64, 80), (10, 10)).shape == (0, 4)
    # clipped to the target image
    assert scale_boxes(np.array([[0, 0, 90, 70]]), (64, 80), (64, 80)).max() <= 90  # same size: untouched
    assert scale_boxes(np.array([[0, 0, 90, 70]]), (64, 80), (128, 160))[0, 2] == 160


def test_fused_image_conversion():
    fused = np.array([0.0, 0.5, 1.0, 1.5, -0.2], np.float32).reshape(1, 1, 5).repeat(3, axis=0)
    image = fused_to_image(fused, (1, 5))
    assert image.dtype == np.uint8 and image.shape == (1, 5, 3)
    np.testing.assert_array_equal(image[0, :, 0], [0, 128, 255, 255, 0])
    assert fused_to_image(np.zeros((3, 4, 5), np.float32), (8, 10)).shape == (8, 10, 3)


def test_registration_is_composed_with_the_resize():
    """A thermal->RGB homography shifting 16 RGB px right becomes an 8 px shift at half resolution."""
    thermal = np.zeros((128, 160), np.float32)
    thermal[40:60, 50:70] = 1.0
    rgb = np.zeros((128, 160, 3), np.uint8)
    shift = Registration.from_config({"homography": [[1, 0, 16], [0, 1, 0], [0, 0, 1]]})
    plain = Preprocessor((64, 80))(thermal, rgb)
    moved = Preprocessor((64, 80), registration=shift)(thermal, rgb)
    assert plain.thermal.shape == moved.thermal.shape == (1, 64, 80)
    columns = lambda t: np.nonzero(t[0].max(axis=0) > 0.5)[0]  # noqa: E731
    assert columns(moved.thermal).min() - columns(plain.thermal).min() == 8
    # equals warping at full size then resizing (up to interpolation)
    full = shift.warp_thermal(thermal, (160, 128))
    reference = Preprocessor((64, 80))(full, rgb).thermal
    assert np.abs(reference - moved.thermal).mean() < 0.02


def test_thermal_normalisation_uses_the_model_range(engines):
    prep = engines["onnxruntime"].preprocessor
    counts = np.array([[25315, 30315, 35315, 40000]], np.uint16).repeat(16, 0).repeat(4, 1)
    rgb = np.zeros((16, 16, 3), np.uint8)
    pair = Preprocessor((16, 16), thermal_range=prep.thermal_range)(counts, rgb)
    np.testing.assert_allclose(pair.thermal[0, 0, [0, 4, 8, 12]], [0.0, 0.5, 1.0, 1.0], atol=1e-6)
    eight_bit = Preprocessor((16, 16))(np.full((16, 16), 255, np.uint8), rgb)
    assert float(eight_bit.thermal.min()) == 1.0


def test_thresholds_change_at_runtime(artifacts):
    engine = create_engine(artifacts["onnx"], backend="onnxruntime", **LOW_SCORE)
    thermal, rgb = frames(seed=3)
    assert len(engine.infer(thermal, rgb).detections) > 3
    engine.set_thresholds(max_detections=3.0)  # ROS may hand a double over
    assert len(engine.infer(thermal, rgb).detections) == 3
    engine.set_thresholds(score_threshold=0.999)
    assert len(engine.infer(thermal, rgb).detections) == 0
    assert engine.postprocess_config.max_detections == 3  # untouched fields are kept
    with pytest.raises(ValueError, match="score_threshold"):
        engine.set_thresholds(score_threshold=1.5)
    with pytest.raises(ValueError, match="max_detections"):
        engine.set_thresholds(max_detections=0)


def test_onnxruntime_threads_sleep_between_frames_unless_asked(artifacts):
    """Spinning pool threads would take the CPU the node needs to publish a frame (config: onnxruntime.*)."""
    for allow, expected in ((None, "0"), (True, "1"), (False, "0")):
        options = {} if allow is None else {"allow_spinning": allow}
        engine = create_engine(artifacts["onnx"], backend="onnxruntime", **options)
        session_options = engine.session.get_session_options()
        assert session_options.get_session_config_entry("session.intra_op.allow_spinning") == expected
        assert session_options.enable_mem_pattern is False
        assert engine.infer(*frames()).fused.shape == (128, 160, 3)


def test_batch_inference_matches_single_frames(artifacts):
    engine = create_engine(artifacts["dynamic"], backend="onnxruntime", **LOW_SCORE)
    pairs = [frames(seed=s) for s in range(3)]
    batched = engine.infer_batch([p[0] for p in pairs], [p[1] for p in pairs])
    for (thermal, rgb), result in zip(pairs, batched):
        single = engine.infer(thermal, rgb)
        np.testing.assert_array_equal(result.segmentation, single.segmentation)
        match_detections(result.detections, single.detections, LOW_SCORE["postprocess"].score_threshold)
    # a dynamic graph runs at another size; a fixed one only at its own
    other = create_engine(artifacts["dynamic"], backend="onnxruntime", input_size=(96, 128))
    assert other.infer(*frames()).fused.shape == (128, 160, 3)
    with pytest.raises(EngineError, match="fixed input size"):
        create_engine(artifacts["onnx"], backend="onnxruntime", input_size=(96, 128))
    # the fixed batch-1 graph runs a batch one pair at a time
    fixed = create_engine(artifacts["onnx"], backend="onnxruntime", **LOW_SCORE)
    assert len(fixed.infer_batch([p[0] for p in pairs], [p[1] for p in pairs])) == 3


def test_auto_backend_prefers_onnxruntime_over_torch(artifacts, tmp_path):
    engine = create_engine(artifacts["pt"])  # model.onnx beside model.pt was exported from it
    assert engine.backend.startswith("onnxruntime")
    lone = tmp_path / "lone.pt"
    lone.write_bytes(artifacts["pt"].read_bytes())
    assert create_engine(lone).backend.startswith("torch")
    # from the ONNX, torch is reachable through the sidecar's source model
    assert create_engine(artifacts["onnx"], backend="torch").backend == "torch-cpu"
    # a truncated export beside the model: auto falls back to torch and says why
    (tmp_path / "broken").mkdir()
    model = tmp_path / "broken" / "model.pt"
    model.write_bytes(artifacts["pt"].read_bytes())
    broken = model.with_suffix(".onnx")
    broken.write_bytes(artifacts["onnx"].read_bytes()[:1000])
    write_sidecar(broken, read_sidecar(artifacts["onnx"]))
    engine = create_engine(model)
    assert engine.backend == "torch-cpu"
    assert "onnxruntime" in engine.fallback_reasons[0] and "does not match its sidecar" in engine.fallback_reasons[0]


BAD_INPUTS = {
    "thermal 3-channel": (lambda t, r: (np.stack([t] * 3, axis=-1), r), "thermal must be a single-channel"),
    "rgb not HxWx3": (lambda t, r: (t, r[:, :, 0]), "'rgb8' image must be a non-empty H×W×3"),
    "rgb float": (lambda t, r: (t, r.astype(np.float32)), "'rgb8' needs a uint8 array"),
    "rgb BGRA": (lambda t, r: (t, np.dstack([r, r[:, :, :1]])), "'rgb8' image must be a non-empty H×W×3"),
    "thermal NaN": (lambda t, r: (np.where(t > 30000, np.nan, 0.5).astype(np.float32), r), "NaN"),
    "thermal float not 0..1": (lambda t, r: (t.astype(np.float32), r), "normalised to 0..1"),
    "thermal int32": (lambda t, r: (t.astype(np.int32), r), "uint8, uint16 or float"),
    "thermal list": (lambda t, r: (t.tolist(), r), "numpy array"),
    "empty rgb": (lambda t, r: (t, r[:0]), "empty"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_raise_input_error(engines, case):
    make, message = BAD_INPUTS[case]
    thermal, rgb = make(*frames())
    with pytest.raises(InputError, match=message):
        engines["onnxruntime"].infer(thermal, rgb)


def _copy_export(artifacts, tmp_path, name="copy.onnx"):
    onnx_path = tmp_path / name
    onnx_path.write_bytes(artifacts["onnx"].read_bytes())
    sidecar = read_sidecar(artifacts["onnx"])
    write_sidecar(onnx_path, sidecar)
    return onnx_path, sidecar


def test_missing_truncated_and_corrupt_onnx(artifacts, tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        create_engine(tmp_path / "nope.onnx")
    onnx_path, sidecar = _copy_export(artifacts, tmp_path)
    data = onnx_path.read_bytes()
    onnx_path.write_bytes(data[: len(data) // 2])  # truncated: the sidecar's sha256 catches it
    with pytest.raises(SidecarError, match="does not match its sidecar"):
        create_engine(onnx_path, backend="onnxruntime")
    onnx_path.write_bytes(b"not an onnx graph at all")  # corrupt, with a sidecar claiming it: ORT refuses it
    write_sidecar(onnx_path, dict(sidecar, onnx_sha256=sha256_file(onnx_path)))
    with pytest.raises(ModelFileError, match=f"onnxruntime cannot load .*{onnx_path.name}"):
        create_engine(onnx_path, backend="onnxruntime")


def test_missing_or_broken_sidecar(artifacts, tmp_path):
    onnx_path, sidecar = _copy_export(artifacts, tmp_path)
    sidecar_path(onnx_path).write_text("{ not json")
    with pytest.raises(SidecarError, match="not readable JSON"):
        create_engine(onnx_path, backend="onnxruntime")
    write_sidecar(onnx_path, {k: v for k, v in sidecar.items() if k != "det_classes"})
    with pytest.raises(SidecarError, match="lacks det_classes"):
        create_engine(onnx_path, backend="onnxruntime")
    write_sidecar(onnx_path, dict(sidecar, format="something/9"))
    with pytest.raises(SidecarError, match="format"):
        create_engine(onnx_path, backend="onnxruntime")
    os.remove(sidecar_path(onnx_path))
    with pytest.raises(SidecarError, match="sidecar .* is missing.*fusion-export"):
        create_engine(onnx_path, backend="onnxruntime")


def test_bad_model_file_and_unknown_kinds(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(ModelFileError, match="bad.pt"):
        create_engine(bad, backend="torch")
    other = tmp_path / "model.xyz"
    other.write_bytes(b"x")
    with pytest.raises(ModelFileError, match="don't know how to run"):
        create_engine(other)


def test_options_a_backend_does_not_use_are_refused(artifacts):
    """create_engine never drops an option silently: the backend that would run must use it."""
    with pytest.raises(ValueError, match="allow_spinning not used by the torch backend"):
        create_engine(artifacts["pt"], backend="torch", allow_spinning=True)
    with pytest.raises(ValueError, match="check_compat not used by the onnxruntime backend"):
        create_engine(artifacts["pt"], check_compat=False)  # auto picks the ONNX export beside the model
    with pytest.raises(EngineError, match="postprocess must be a PostprocessConfig"):
        create_engine(artifacts["onnx"], postprocess={"score_threshold": 0.5})
    both = create_engine(artifacts["pt"], backend="torch", num_threads=1)  # a thread count suits either
    assert both.backend == "torch-cpu"


def test_bgr_camera_frames_are_reordered_once_at_the_network_size(engines):
    engine = engines["onnxruntime"]
    thermal, rgb = frames(seed=4)
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    reference = engine.infer(thermal, rgb)
    direct = engine.infer(thermal, bgr, color_encoding="bgr8", fused_encoding="bgr8")
    np.testing.assert_array_equal(direct.fused, reference.fused[:, :, ::-1])
    np.testing.assert_array_equal(direct.detections.boxes, reference.detections.boxes)
    np.testing.assert_array_equal(direct.segmentation, reference.segmentation)
    mono = engine.infer(thermal, rgb[:, :, 1], color_encoding="mono8")
    assert mono.fused.shape == (128, 160, 3)
    with pytest.raises(InputError, match="fused_encoding"):
        engine.infer(thermal, rgb, fused_encoding="mono8")
    with pytest.raises(InputError, match="yuv422"):
        engine.infer(thermal, rgb, color_encoding="yuv422")


def test_unavailable_backends_are_named(artifacts):
    with pytest.raises(EngineError, match="unknown backend"):
        create_engine(artifacts["onnx"], backend="openvino")
    with pytest.raises(EngineError, match="unknown engine option"):
        create_engine(artifacts["onnx"], nonsense=1)
    lone = artifacts["root"] / "lone_model.pt"  # a model never exported: no ONNX to run
    lone.write_bytes(artifacts["pt"].read_bytes())
    with pytest.raises(BackendUnavailableError, match="fusion-export"):
        create_engine(lone, backend="onnxruntime")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="no CUDA GPU"):
            create_engine(artifacts["pt"], backend="torch", device="cuda")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu"):
            create_engine(artifacts["onnx"], backend="onnxruntime", device="cuda")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailableError, match="'tensorrt' Python package.*onnxruntime"):
            create_engine(artifacts["onnx"], backend="tensorrt")


def test_onnxruntime_engine_runs_without_importing_torch():
    """A vehicle on ONNX Runtime or TensorRT must not pay torch's import time and memory: the bundled export
    runs end to end (pre-processing, network, decode, NMS) in a fresh process that never imports torch, and
    the TensorRT backend's module and its CUDA queries (libcudart, the auto backend's GPU check) add none."""
    code = textwrap.dedent("""
        import json, sys
        import numpy as np
        from fusion_ros.engine import create_engine
        from fusion_ros.paths import DEFAULT_MODEL
        engine = create_engine(DEFAULT_MODEL.with_suffix(".onnx"), backend="onnxruntime", num_threads=1)
        rng = np.random.default_rng(0)
        thermal = rng.integers(26000, 34000, (512, 640), dtype=np.uint16)
        rgb = rng.integers(0, 256, (512, 640, 3), dtype=np.uint8)
        result = engine.infer(thermal, rgb, color_encoding="bgr8", fused_encoding="bgr8")
        import fusion_ros.engine.tensorrt_backend
        from fusion_ros.engine import _cuda_gpu_problem
        _cuda_gpu_problem()
        print(json.dumps({"backend": engine.backend, "fused": list(result.fused.shape),
                          "torch": sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))}))
    """)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["backend"] == "onnxruntime-cpu" and out["fused"] == [512, 640, 3]
    assert out["torch"] == [], f"torch was imported: {out['torch'][:5]}"


def test_a_copied_export_finds_its_model_file_on_any_machine(artifacts, tmp_path):
    """Issue 21 item 1: the sidecar names its source model relative to itself, not by the exporting
    machine's absolute path, so a copied folder (a vehicle, another checkout) resolves the copy beside it."""
    data = json.loads(sidecar_path(artifacts["onnx"]).read_text())
    assert data["source_model"]["file"] == "model.pt"
    moved = tmp_path / "vehicle"
    moved.mkdir()
    for name in ("model.pt", "model.onnx", "model.onnx.json"):
        (moved / name).write_bytes((artifacts["root"] / name).read_bytes())
    assert resolve_artifacts(moved / "model.onnx")["torch"] == moved / "model.pt"
    assert create_engine(moved / "model.onnx", backend="torch").info.source == str(moved / "model.pt")
    # exported into another folder: the path leads back from there
    elsewhere = export_onnx(artifacts["pt"], tmp_path / "exports" / "m.onnx", exporter="torchscript")
    recorded = elsewhere.sidecar["source_model"]["file"]
    assert not Path(recorded).is_absolute() and recorded.startswith("../")
    assert resolve_artifacts(elsewhere.onnx_path)["torch"].resolve() == artifacts["pt"].resolve()


def test_the_shipped_model_files_hold_no_machine_paths():
    """Issue 21 item 1: the bundled sidecar and metrics were written with the building machine's absolute
    paths, which point nowhere on any other machine (or at another checkout's files)."""
    def strings(node):
        if isinstance(node, dict):
            for value in node.values():
                yield from strings(value)
        elif isinstance(node, list):
            for value in node:
                yield from strings(value)
        elif isinstance(node, str):
            yield node

    onnx = DEFAULT_MODEL.with_suffix(".onnx")
    for path in (sidecar_path(onnx), DEFAULT_MODEL.with_suffix(".metrics.json")):
        absolute = [text for text in strings(json.loads(path.read_text())) if text.startswith(("/", "~"))]
        assert not absolute, f"{path.name} holds machine paths: {absolute}"
    assert resolve_artifacts(onnx)["torch"] == DEFAULT_MODEL
    metrics_model = json.loads(DEFAULT_MODEL.with_suffix(".metrics.json").read_text())["validation_real_pairs"]["model"]
    assert metrics_model["path"] == onnx.name and metrics_model["sha256"] == sha256_file(onnx)


def test_sidecar_describes_the_export(artifacts):
    data = json.loads(sidecar_path(artifacts["onnx"]).read_text())
    assert data["onnx_sha256"] == sha256_file(artifacts["onnx"])
    assert data["source_model"]["sha256"] == sha256_file(artifacts["pt"])
    assert data["inputs"][0]["shape"] == [1, 1, H, W]
