"""ONNX export: the default (dynamo) exporter, the sidecar, parity with PyTorch, and failures."""
import datetime as dt
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import training.export as export_mod
from fusion_ros.checkpoint import ModelMeta, load_model, save_model
from fusion_ros.engine.base import INPUT_NAMES, OUTPUT_NAMES
from fusion_ros.engine.sidecar import sha256_file, sidecar_path
from fusion_ros.model import FusedPerceptionNet, FusionConfig, ModelConfig, fcos_points
from training.export import ExportError, export_onnx, main

H, W = 64, 80
DET = ["person", "car", "bus", "motorcycle", "lamp", "truck"]
SEG = [f"seg{i}" for i in range(10)]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("export") / "model.pt"
    meta = ModelMeta(DET, SEG, input_size=(H, W), thermal_range=(27000.0, 33000.0), info={"version": "test-1"})
    save_model(path, FusedPerceptionNet(), meta)
    return path


@pytest.fixture(scope="module")
def dynamic_export(model_path):
    return export_onnx(model_path, model_path.with_name("dynamic.onnx"), dynamic=True)  # dynamo, the default


def _run(path, thermal, rgb):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip(OUTPUT_NAMES, session.run(list(OUTPUT_NAMES), {"thermal": thermal, "rgb": rgb})))


def test_dynamic_export_graph_and_parity(dynamic_export, model_path):
    path = dynamic_export.onnx_path
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == list(INPUT_NAMES)
    assert [o.name for o in graph.output] == list(OUTPUT_NAMES)
    assert not path.with_name(path.name + ".data").exists()  # weights inside the one file
    assert all(diff < 1e-3 for diff in dynamic_export.parity.values())
    # another batch size and image size than the export's, against PyTorch
    model, _ = load_model(model_path)
    rng = np.random.default_rng(0)
    thermal = rng.random((3, 1, 72, 100), dtype=np.float32)
    rgb = rng.random((3, 3, 72, 100), dtype=np.float32)
    got = _run(path, thermal, rgb)
    with torch.inference_mode():
        ref = model(torch.from_numpy(thermal), torch.from_numpy(rgb))
    n = fcos_points(72, 100)[0].shape[0]
    assert got["cls_logits"].shape == (3, n, len(DET)) and got["seg_logits"].shape == (3, len(SEG), 72, 100)
    for name in OUTPUT_NAMES:
        np.testing.assert_allclose(got[name], getattr(ref, name).numpy(), atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize("fusion", [FusionConfig(thermal_skip=True),
                                    FusionConfig(output="blend", stride=2, body_stride=8)])
def test_fused_image_options_export_with_parity(tmp_path, fusion):
    """Denoised colour, the thermal skip and the blend head are part of the exported graph, not
    Python-side extras."""
    torch.manual_seed(0)
    path = tmp_path / "options.pt"
    meta = ModelMeta(DET, SEG, input_size=(H, W), thermal_range=(27000.0, 33000.0), info={"version": "test-1"})
    model = FusedPerceptionNet(ModelConfig(num_det_classes=len(DET), chroma="denoised", fusion=fusion))
    torch.nn.init.normal_(model.fusion.head[-1].weight, std=0.1)  # a trained head, not the zero start
    save_model(path, model, meta)
    result = export_onnx(path, tmp_path / "options.onnx")
    loaded = load_model(path)[0].cfg
    assert loaded.chroma == "denoised" and loaded.fusion == fusion
    assert result.parity["fused"] < 1e-4 and all(diff < 1e-3 for diff in result.parity.values())


def test_sidecar_contents(dynamic_export, model_path):
    data = json.loads(sidecar_path(dynamic_export.onnx_path).read_text())
    assert data == dynamic_export.sidecar
    assert data["format"] == "fusion_ros.onnx/1"
    assert data["onnx_sha256"] == sha256_file(dynamic_export.onnx_path)
    assert data["opset"] == 18 and data["exporter"] == "dynamo"
    assert data["torch_version"] == torch.__version__ and data["onnx_version"] == onnx.__version__
    assert dt.datetime.fromisoformat(data["export_date"]).tzinfo is not None
    assert data["det_classes"] == DET and data["seg_classes"] == SEG
    assert data["thermal_range"] == [27000.0, 33000.0] == data["normalisation"]["thermal_range"]
    assert data["model_version"] == "test-1"
    assert data["source_model"]["sha256"] == sha256_file(model_path)
    assert data["segmentation_labels"] == "unknown"  # the model file records none (a bare ModelMeta)
    assert data["dynamic"] is True and data["input_size"] == [H, W]
    inputs = {entry["name"]: entry for entry in data["inputs"]}
    assert inputs["thermal"]["shape"] == ["batch", 1, "height", "width"]
    assert inputs["rgb"]["shape"] == ["batch", 3, "height", "width"]
    assert all(entry["dtype"] == "float32" for entry in data["inputs"] + data["outputs"])
    assert [o["name"] for o in data["outputs"]] == list(OUTPUT_NAMES)
    assert set(OUTPUT_NAMES) <= set(data["output_layout"])
    assert set(data["parity"]["max_abs_diff"]) == set(OUTPUT_NAMES) and data["parity"]["tolerance"] == 1e-3
    assert data["model_config"]["num_det_classes"] == len(DET)


def test_what_the_segmentation_head_learnt_from_travels_with_the_model(tmp_path):
    """Issue 21 item 8: the model file and the ONNX sidecar say what the segmentation head was trained on, the
    engines read it; files written before the record read as unknown."""
    from fusion_ros.engine import create_engine

    path = tmp_path / "labelled.pt"
    save_model(path, FusedPerceptionNet(), ModelMeta(DET, SEG, input_size=(H, W), segmentation_labels="real"))
    assert load_model(path)[1].segmentation_labels == "real"
    onnx_path = export_onnx(path, exporter="torchscript").onnx_path
    assert json.loads(sidecar_path(onnx_path).read_text())["segmentation_labels"] == "real"
    for backend in ("onnxruntime", "torch"):
        assert create_engine(onnx_path, backend=backend).info.segmentation_labels == "real"
    payload = torch.load(path, weights_only=True)
    del payload["segmentation_labels"]  # as written before the record existed
    torch.save(payload, path)
    assert load_model(path)[1].segmentation_labels == "unknown"
    with pytest.raises(ValueError, match="segmentation_labels must be one of real, synthetic, none, unknown"):
        save_model(path, FusedPerceptionNet(), ModelMeta(DET, SEG, segmentation_labels="yes"))


def test_cli_fixed_export(model_path, tmp_path, capsys):
    out = tmp_path / "fixed.onnx"
    assert main([str(model_path), "--out", str(out), "--exporter", "torchscript", "--size", "96x64"]) == 0
    printed = capsys.readouterr().out
    assert "parity cls_logits" in printed and str(out) in printed
    data = json.loads(sidecar_path(out).read_text())
    assert data["input_size"] == [64, 96] and data["dynamic"] is False and data["opset"] == 17
    n = fcos_points(64, 96)[0].shape[0]
    assert data["inputs"][1]["shape"] == [1, 3, 64, 96]
    assert data["outputs"][1]["shape"] == [1, n, len(DET)]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [1, 1, 64, 96]


def test_parity_failure_fails_the_export(model_path, tmp_path, monkeypatch, capsys):
    real = export_mod._reference_outputs
    monkeypatch.setattr(export_mod, "_reference_outputs", lambda *a: [x + 0.5 for x in real(*a)])
    out = tmp_path / "broken.onnx"
    assert main([str(model_path), "--out", str(out), "--exporter", "torchscript"]) == 1
    err = capsys.readouterr().err
    assert "FAILED" in err and "disagrees with PyTorch" in err and "max-abs-diff" in err
    assert not out.exists() and not sidecar_path(out).exists()
    assert not list(tmp_path.glob("*.partial"))


def test_missing_and_bad_model_files(tmp_path, monkeypatch, capsys):
    assert main([str(tmp_path / "nope.pt")]) == 1
    assert "nope.pt" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"truncated")
    with pytest.raises(ExportError, match="bad.pt"):
        export_onnx(bad)
    monkeypatch.setattr(export_mod, "DEFAULT_MODEL", tmp_path / "default.pt")
    with pytest.raises(ExportError, match="bundled default"):
        export_onnx(None)


def test_yolox_detector_exports_with_parity_at_another_size(tmp_path):
    """The YOLOX-nano semantic module (padding to a multiple of 32, per-level crops) exports as one graph
    that matches PyTorch at a size that is not a multiple of 32, in a batch of 2."""
    torch.manual_seed(1)
    path = tmp_path / "yolox.pt"
    cfg = ModelConfig(num_det_classes=3, num_seg_classes=4, detector="yolox_nano", chroma="denoised")
    save_model(path, FusedPerceptionNet(cfg), ModelMeta(DET[:3], SEG[:4], input_size=(H, W), thermal_range=(0.0, 1.0)))
    result = export_onnx(path, tmp_path / "yolox.onnx", dynamic=True)
    assert all(diff < 1e-3 for diff in result.parity.values())
    model, _ = load_model(path)
    rng = np.random.default_rng(1)
    thermal, rgb = rng.random((2, 1, 72, 100), dtype=np.float32), rng.random((2, 3, 72, 100), dtype=np.float32)
    got = _run(result.onnx_path, thermal, rgb)
    with torch.inference_mode():
        ref = model(torch.from_numpy(thermal), torch.from_numpy(rgb))
    for name in OUTPUT_NAMES:
        np.testing.assert_allclose(got[name], getattr(ref, name).numpy(), atol=2e-3, rtol=1e-4)
