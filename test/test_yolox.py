"""YOLOX-nano semantic module: the published weights load and match ONNX Runtime, its outputs fit the
shared FCOS-point interface, and SimOTA + the YOLOX loss teach it a box."""
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion_ros.model import FusedPerceptionNet, ModelConfig, fcos_points
from fusion_ros.postprocess import PostprocessConfig, decode_detections
from fusion_ros.yolox import YOLOXNano
from training import losses as L

YOLOX_ONNX = Path(__file__).resolve().parents[2] / "shared" / "weights" / "yolox_nano.onnx"
needs_weights = pytest.mark.skipif(not YOLOX_ONNX.is_file(), reason=f"{YOLOX_ONNX} absent (../shared not beside the repo)")


@needs_weights
def test_loaded_weights_match_onnxruntime_on_the_published_file():
    import onnxruntime as ort

    from training.yolox_weights import load_yolox_onnx

    module = YOLOXNano(3).eval()
    info = load_yolox_onnx(module, YOLOX_ONNX, ["person", "bicycle", "car"])
    assert info["coco_ids"] == {"person": 0, "bicycle": 1, "car": 2}
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (416, 416, 3)).astype(np.float32)
    bgr[100:300, 150:220] = [40, 60, 200]  # some structure, not only noise
    session = ort.InferenceSession(str(YOLOX_ONNX), providers=["CPUExecutionProvider"])
    ref = session.run(None, {session.get_inputs()[0].name: bgr.transpose(2, 0, 1)[None]})[0][0]  # (3549, 85)
    rgb = torch.from_numpy(bgr[..., ::-1].copy()).permute(2, 0, 1)[None] / 255.0
    with torch.no_grad():
        cls, ltrb, obj, _ = module(rgb)
    np.testing.assert_allclose(torch.sigmoid(obj[0, :, 0]).numpy(), ref[:, 4], atol=1e-4)
    np.testing.assert_allclose(torch.sigmoid(cls[0]).numpy(), ref[:, 5:8], atol=1e-4)
    # the ONNX head's raw box (dx, dy, log w, log h) -> x1 = (dx + cell) * s - w / 2, as distance from our points
    points, strides = (t.numpy() for t in fcos_points(416, 416))
    cell_x = points[:, 0] / strides - 0.5
    x1 = (ref[:, 0] + cell_x) * strides - np.exp(ref[:, 2]) * strides / 2
    np.testing.assert_allclose(points[:, 0] - ltrb[0, :, 0].numpy(), x1, atol=0.05)


@needs_weights
def test_a_weights_file_of_another_network_is_refused(tmp_path):
    from training.yolox_weights import load_yolox_onnx

    with pytest.raises(FileNotFoundError, match="not found"):
        load_yolox_onnx(YOLOXNano(3), tmp_path / "missing.onnx", ["person"])
    other = tmp_path / "other.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 4, 3), torch.zeros(1, 3, 8, 8), str(other), dynamo=False)
    with pytest.raises(ValueError, match="not a YOLOX-nano export"):
        load_yolox_onnx(YOLOXNano(3), other, ["person"])


@pytest.mark.parametrize("size", [(64, 96), (70, 90), (35, 45), (480, 640)])
def test_outputs_cover_the_fcos_points_of_any_input_size(size):
    model = FusedPerceptionNet(ModelConfig(num_det_classes=3, num_seg_classes=4, detector="yolox_nano")).eval()
    height, width = size
    with torch.no_grad():
        out = model(torch.rand(2, 1, height, width), torch.rand(2, 3, height, width))
    n = fcos_points(height, width)[0].shape[0]
    assert out.cls_logits.shape == (2, n, 3) and out.box_ltrb.shape == (2, n, 4) and out.centerness.shape == (2, n, 1)
    assert out.seg_logits.shape == (2, 4, height, width)
    widths = out.box_ltrb[..., 0] + out.box_ltrb[..., 2]
    assert bool((widths > 0).all())  # l + r is the box width: always positive, even where l or r is negative
    dets = decode_detections(out.cls_logits[0].numpy(), out.box_ltrb[0].numpy(), out.centerness[0].numpy(),
                             (height, width), PostprocessConfig(score_threshold=0.0))
    assert len(dets) > 0


def test_simota_gives_an_object_the_locations_that_predict_it_best():
    points, strides = fcos_points(64, 64)
    n = points.shape[0]
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]]).repeat(n, 1)  # every location predicts a useless box...
    good = int(((points - torch.tensor([20.0, 20.0])).abs().sum(1)).argmin())
    boxes[good] = torch.tensor([10.0, 10.0, 30.0, 30.0])  # ...except one, which predicts the object exactly
    cls = torch.zeros(n, 2)
    obj = torch.zeros(n, 1)
    fg, matched, ious = L.simota_assign(cls, boxes, obj, points, strides, torch.tensor([[10.0, 10.0, 30.0, 30.0]]),
                                        torch.tensor([1]))
    assert fg[good] and matched[good] == 0 and ious[good] == pytest.approx(1.0)
    assert int(fg.sum()) == 1  # k = round-down of the summed top IoUs = 1
    # no location near any object: nothing assigned
    fg, _, _ = L.simota_assign(cls, boxes, obj, points, strides, torch.tensor([[500.0, 500.0, 510.0, 510.0]]),
                               torch.tensor([0]))
    assert not fg.any()


def test_a_location_claimed_by_two_objects_goes_to_the_cheaper_one():
    points, strides = fcos_points(64, 64)
    n = points.shape[0]
    target_a, target_b = torch.tensor([8.0, 8.0, 40.0, 40.0]), torch.tensor([10.0, 10.0, 42.0, 42.0])
    boxes = target_a.repeat(n, 1)  # every location predicts box a: cheaper for a than for b
    args = (torch.zeros(n, 1), boxes, torch.zeros(n, 1), points, strides)
    alone_a, _, _ = L.simota_assign(*args, target_a[None], torch.tensor([0]))
    alone_b, _, _ = L.simota_assign(*args, target_b[None], torch.tensor([0]))
    both = alone_a & alone_b
    assert both.any()
    fg, matched, _ = L.simota_assign(*args, torch.stack([target_a, target_b]), torch.tensor([0, 0]))
    assert bool(fg[both].all()) and bool((matched[both] == 0).all())
    assert bool((matched[alone_b & ~alone_a] == 1).all())


def test_yolox_loss_teaches_the_detector_one_object():
    torch.manual_seed(0)
    model = FusedPerceptionNet(ModelConfig(num_det_classes=2, num_seg_classes=2, detector="yolox_nano"))
    thermal, rgb = torch.zeros(1, 1, 64, 64), torch.zeros(1, 3, 64, 64)
    thermal[..., 16:48, 20:40] = 1.0
    batch = {"boxes": [torch.tensor([[20.0, 16.0, 40.0, 48.0]])], "labels": [torch.tensor([1])], "mask": None}
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(60):
        fused, _ = model.fuse(thermal, rgb)
        loss, logs = L.semantic_loss(model.perceive(fused), batch, L.LossWeights(), "yolox_nano")
        if step == 0:
            first = loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    model.eval()
    with torch.no_grad():
        out = model(thermal, rgb)
    dets = decode_detections(out.cls_logits[0].numpy(), out.box_ltrb[0].numpy(), out.centerness[0].numpy(), (64, 64),
                             PostprocessConfig(score_threshold=0.2))
    assert len(dets) >= 1 and dets.labels[0] == 1
    iou = L.box_iou_xyxy(torch.from_numpy(dets.boxes[:1]), batch["boxes"][0])[0, 0]
    assert iou > 0.5, (dets.boxes[0], logs)
