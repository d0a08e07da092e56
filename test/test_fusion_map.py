"""The fused image at the camera's resolution: the coefficient map of a map head, applied after the graph."""
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import torch

from fusion_ros.checkpoint import ModelMeta, save_model
from fusion_ros.engine import FUSION_MAP_OUTPUT, EngineError, create_engine
from fusion_ros.fusion_map import fuse_luminance, fused_image
from fusion_ros.model import (AFFINE_MAX_GAIN, STRETCH_GLOBAL, STRETCH_LOCAL, STRETCH_WINDOW, FusedPerceptionNet,
                              FusionConfig, ModelConfig)

NET = (96, 128)  # (h, w) the test models run at


def small_model(output="affine", chroma="denoised", seed=0, head_std=0.5) -> FusedPerceptionNet:
    """A small map-head model whose last fusion layer is perturbed by N(0, head_std) (a varied map, as a
    trained one; head_std 0 keeps the initialisation)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(num_det_classes=2, num_seg_classes=3, chroma=chroma, backbone_channels=(8, 8, 16, 16, 16),
                      fpn_channels=16, seg_channels=8,
                      fusion=FusionConfig(output=output, stride=2, body_stride=8, width=8, growth=4, block_layers=2))
    model = FusedPerceptionNet(cfg).eval()
    with torch.no_grad():
        for p in model.fusion.head[-1].parameters():
            p.add_(head_std * torch.randn_like(p))
    return model


def save(model, path):
    save_model(path, model, ModelMeta(["a", "b"], ["bg", "a", "b"], input_size=NET))
    return path


def textured_pair(size, seed=0):
    """A thermal frame and an rgb8 frame with detail at every scale down to single pixels."""
    rng = np.random.default_rng(seed)
    h, w = size
    base = cv2.resize(rng.random((8, 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    thermal = np.clip(0.6 * base + 0.4 * rng.random((h, w), dtype=np.float32), 0, 1).astype(np.float32)
    rgb = np.clip(rng.random((h, w, 3)) * 200 + 30 * base[:, :, None], 0, 255).astype(np.uint8)
    return thermal, rgb


def spatial_frequency(grey):
    grey = grey.astype(np.float64)
    return np.sqrt(np.mean(np.diff(grey, axis=1) ** 2) + np.mean(np.diff(grey, axis=0) ** 2))


@pytest.mark.parametrize("output", ["blend", "affine", "extremes"])
@pytest.mark.parametrize("chroma", ["visible", "denoised"])
def test_the_map_applied_after_the_graph_gives_the_graphs_image(output, chroma):
    """At the network size the numpy twin reproduces the graph's fused image within a level or two."""
    model = small_model(output, chroma)
    thermal, rgb8 = textured_pair(NET)
    with torch.no_grad():
        out = model(torch.from_numpy(thermal)[None, None],
                    torch.from_numpy(rgb8.transpose(2, 0, 1)[None].astype(np.float32) / 255))
    assert out.fusion_map.shape == (1, 3, NET[0] // 2, NET[1] // 2)
    graph = np.clip(np.round(out.fused[0].numpy().transpose(1, 2, 0) * 255), 0, 255)
    ours = fused_image(out.fusion_map[0].numpy(), thermal, rgb8, chroma=chroma, net_size=NET,
                       head=output).astype(np.float64)
    diff = np.abs(graph - ours)
    assert diff.max() <= 3 and diff.mean() < 0.75, (diff.max(), diff.mean())
    bgr = fused_image(out.fusion_map[0].numpy(), thermal, rgb8, chroma=chroma, net_size=NET, encoding="bgr8",
                      head=output)
    assert np.array_equal(bgr, ours.astype(np.uint8)[:, :, ::-1])


def test_affine_head_starts_as_the_pixel_average_and_reaches_beyond_a_blend():
    model = small_model("affine", head_std=0.0)
    ir, vis = torch.rand(1, 1, 32, 40), torch.rand(1, 1, 32, 40)
    coefficients = model.fusion.coefficients(ir, vis)
    assert torch.allclose(coefficients[:, :2], torch.full_like(coefficients[:, :2], 0.5), atol=1e-6)
    assert torch.allclose(model.fusion(ir, vis), 0.5 * (ir + vis), atol=1e-6)
    # gains up to AFFINE_MAX_GAIN each: the sum of both sources (full contrast of each) is reachable
    with torch.no_grad():
        model.fusion.head[-1].bias[:2] = 0.0  # a = b = AFFINE_MAX_GAIN / 2 = 1
    assert torch.allclose(model.fusion(ir * 0.4, vis * 0.4), 0.4 * (ir + vis), atol=1e-6)
    assert AFFINE_MAX_GAIN / 2 == 1.0


def test_extremes_head_starts_as_the_stretched_maximum_and_its_map_needs_the_heads_kind():
    """At initialisation the "extremes" head is its prior: the pixel maximum, local contrast x STRETCH_LOCAL
    around its mean over STRETCH_WINDOW map pixels, global contrast x STRETCH_GLOBAL (computed here with
    OpenCV, independently of the graph). The same map read as an affine one is another image."""
    model = small_model("extremes", head_std=0.0)
    thermal, rgb8 = textured_pair(NET, seed=5)
    vis_y = cv2.cvtColor(rgb8, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    brightest = np.maximum(thermal, vis_y)
    half = cv2.resize(brightest, (NET[1] // 2, NET[0] // 2), interpolation=cv2.INTER_AREA)
    local = cv2.blur(half, (STRETCH_WINDOW, STRETCH_WINDOW), borderType=cv2.BORDER_REPLICATE)
    offset = STRETCH_GLOBAL * (1 - STRETCH_LOCAL) * local + (1 - STRETCH_GLOBAL) * half.mean()
    expected = np.clip(STRETCH_GLOBAL * STRETCH_LOCAL * brightest
                       + cv2.resize(offset, (NET[1], NET[0]), interpolation=cv2.INTER_LINEAR), 0, 1)
    with torch.no_grad():
        coefficients = model.fusion.coefficients(torch.from_numpy(thermal)[None, None],
                                                 torch.from_numpy(vis_y)[None, None])
        fused = model.fusion(torch.from_numpy(thermal)[None, None], torch.from_numpy(vis_y)[None, None])
    assert np.abs(fused[0, 0].numpy() - expected).max() < 1e-5
    assert float(np.std(expected)) > 1.2 * float(np.std(brightest))  # it does stretch
    ours = fuse_luminance(coefficients[0].numpy(), thermal, np.round(vis_y * 255).astype(np.uint8), "extremes")
    assert np.abs(ours.astype(np.float64) - expected * 255).max() <= 1.5
    as_affine = fuse_luminance(coefficients[0].numpy(), thermal, np.round(vis_y * 255).astype(np.uint8), "affine")
    assert np.abs(as_affine.astype(np.float64) - expected * 255).mean() > 10
    with pytest.raises(ValueError, match="extremes head, not 'image'"):
        fused_image(coefficients[0].numpy(), thermal, rgb8, net_size=NET, head="image")


@pytest.fixture(scope="module", params=["affine", "extremes"])
def map_model_files(tmp_path_factory, request):
    """A map-head model (.pt) and its ONNX export (a graph with the fusion_map output)."""
    from training.export import export_onnx

    folder = tmp_path_factory.mktemp("fusion_map")
    pt = save(small_model(request.param, "denoised"), folder / f"{request.param}.pt")
    result = export_onnx(pt, folder / f"{request.param}.onnx", size=NET)
    assert FUSION_MAP_OUTPUT in [o["name"] for o in result.sidecar["outputs"]]
    return pt, result.onnx_path


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_the_fused_image_has_the_cameras_resolution_and_detail(map_model_files, backend):
    pt, onnx = map_model_files
    model = onnx if backend == "onnxruntime" else pt
    camera = (NET[0] * 3, NET[1] * 3)
    thermal, rgb8 = textured_pair(camera, seed=1)
    full = create_engine(model, backend=backend, device="cpu")
    small = create_engine(model, backend=backend, device="cpu", fused_resolution="network")
    assert full.has_fusion_map and small.has_fusion_map
    fused = full.infer(thermal, rgb8).fused
    net_fused = small.infer(thermal, rgb8).fused
    assert fused.shape == (*camera, 3) and net_fused.shape == (*NET, 3)
    # the same map at two resolutions: the camera-size image keeps the cameras' pixel detail, the resized
    # network-size image does not
    resized = cv2.resize(net_fused, (camera[1], camera[0]), interpolation=cv2.INTER_LINEAR)
    grey = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)  # noqa: E731
    assert spatial_frequency(grey(fused)) > 2 * spatial_frequency(grey(resized))
    # ... and the same picture at the large scale (for the "extremes" head up to a brightness offset: the
    # maximum of two noisy pixel grids is brighter than the maximum of their smoothed network-size copies,
    # by as much as the pixel noise there: the same picture means correlated)
    coarse = lambda im: cv2.resize(im, (NET[1], NET[0]), interpolation=cv2.INTER_AREA).astype(float)  # noqa: E731
    if full.info.fusion_head == "extremes":
        assert np.corrcoef(coarse(fused).ravel(), coarse(resized).ravel())[0, 1] > 0.9
    else:
        assert np.abs(coarse(fused) - coarse(resized)).mean() < 6
    # at the network size the graph's own image is returned
    thermal_net, rgb_net = textured_pair(NET, seed=2)
    assert np.array_equal(full.infer(thermal_net, rgb_net).fused, small.infer(thermal_net, rgb_net).fused)


def test_backends_agree_on_the_camera_size_image(map_model_files):
    pt, onnx = map_model_files
    thermal, rgb8 = textured_pair((200, 300), seed=3)
    a = create_engine(pt, backend="torch", device="cpu").infer(thermal, rgb8, fused_encoding="bgr8").fused
    b = create_engine(onnx, backend="onnxruntime", device="cpu").infer(thermal, rgb8, fused_encoding="bgr8").fused
    assert a.shape == b.shape == (200, 300, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


@pytest.mark.parametrize("head", ["affine", "extremes"])
@pytest.mark.parametrize("chroma", ["visible", "denoised"])
def test_camera_size_images_are_fresh_arrays_and_take_the_network_size_colour(chroma, head):
    """The working arrays are reused between frames, the returned images are not: two frames in a row keep
    their own pixels. The colour's block means from the caller's network-size frame (the engine passes the
    preprocessor's) give the image the function makes on its own, and bgr8 input is the same picture."""
    model = small_model(head, chroma)
    with torch.no_grad():
        coefficients = model.fusion.coefficients(torch.rand(1, 1, *NET), torch.rand(1, 1, *NET))[0].numpy()
    camera = (288, 384)
    (thermal_a, rgb_a), (thermal_b, rgb_b) = textured_pair(camera, seed=1), textured_pair(camera, seed=2)
    first = fused_image(coefficients, thermal_a, rgb_a, chroma=chroma, net_size=NET, head=head)
    kept = first.copy()
    second = fused_image(coefficients, thermal_b, rgb_b, chroma=chroma, net_size=NET, head=head)
    assert np.array_equal(first, kept) and not np.array_equal(first, second)
    color_net = cv2.resize(rgb_a, (NET[1], NET[0]), interpolation=cv2.INTER_AREA)
    assert np.array_equal(fused_image(coefficients, thermal_a, rgb_a, chroma=chroma, net_size=NET,
                                      color_net=color_net, head=head), first)
    from_bgr = fused_image(coefficients, thermal_a, np.ascontiguousarray(rgb_a[:, :, ::-1]), chroma=chroma,
                           net_size=NET, color_encoding="bgr8",
                           color_net=np.ascontiguousarray(color_net[:, :, ::-1]), head=head)
    assert np.array_equal(from_bgr, first)


def test_the_thermal_frame_is_registered_at_the_cameras_resolution(tmp_path):
    """With a = 1, b = 0, c = 0 the fused image is the registered thermal frame itself: at the camera's
    size it must be the thermal warped by the homography onto the RGB grid, pixel for pixel."""
    model = small_model("affine", "visible", head_std=0.0)
    with torch.no_grad():
        model.fusion.head[-1].bias[:] = torch.tensor([0.0, -40.0, 0.0])  # a = 1, b = 0, c = 0
    pt = save(model, tmp_path / "thermal_only.pt")
    thermal_size, camera = (120, 160), (288, 384)
    rng = np.random.default_rng(4)
    thermal = cv2.resize(rng.random((30, 40)).astype(np.float32), (160, 120), interpolation=cv2.INTER_LINEAR)
    homography = np.array([[2.3, 0.05, 6.0], [-0.04, 2.3, 9.0], [0.0, 0.0, 1.0]])
    grey_rgb = np.full((*camera, 3), 90, np.uint8)  # no colour: the fused image is grey
    engine = create_engine(pt, backend="torch", device="cpu", registration={"homography": homography.tolist()})
    fused = engine.infer(thermal, grey_rgb).fused
    expected = cv2.warpPerspective(thermal, homography, (camera[1], camera[0]), flags=cv2.INTER_LINEAR)
    assert fused.shape == (*camera, 3)
    assert np.abs(fused[:, :, 1].astype(float) - np.round(expected * 255)).max() <= 1
    assert thermal_size == thermal.shape


def test_fused_resolution_is_checked(map_model_files):
    with pytest.raises(EngineError, match="fused_resolution"):
        create_engine(map_model_files[0], backend="torch", device="cpu", fused_resolution="4k")


def test_models_without_a_map_fall_back_to_the_network_size_image(tmp_path):
    """A drawn-image head has no coefficient map: its fused image is resized to the camera's size."""
    torch.manual_seed(0)
    cfg = ModelConfig(num_det_classes=2, num_seg_classes=3, backbone_channels=(8, 8, 16, 16, 16), fpn_channels=16,
                      seg_channels=8, fusion=FusionConfig(width=8, growth=4, block_layers=2))
    pt = save(FusedPerceptionNet(cfg), tmp_path / "image_head.pt")
    engine = create_engine(pt, backend="torch", device="cpu")
    assert not engine.has_fusion_map
    thermal, rgb8 = textured_pair((192, 256))
    result = engine.infer(thermal, rgb8)
    assert result.fused.shape == (192, 256, 3)


def test_camera_size_images_from_several_threads_at_once_are_each_threads_own():
    """The compiled kernels run one at a time per process: numba's workqueue threading layer (its fallback
    where no OpenMP or TBB runtime is found) aborts the process on concurrent parallel calls. Under that
    layer, callbacks on six threads each get the image the same call makes alone."""
    code = textwrap.dedent("""
        from concurrent.futures import ThreadPoolExecutor
        import numba, numpy as np
        from fusion_ros.fusion_map import fused_image
        rng = np.random.default_rng(0)
        coefficients = rng.random((3, 48, 64), dtype=np.float32) - 0.25
        pairs = [(rng.random((200 + 8 * i, 264), dtype=np.float32),
                  rng.integers(0, 256, (200 + 8 * i, 264, 3), dtype=np.uint8)) for i in range(6)]
        run = lambda pair: fused_image(coefficients, *pair, chroma="denoised", net_size=(96, 128), head="extremes")
        alone = [run(pair) for pair in pairs]
        with ThreadPoolExecutor(6) as pool:
            together = list(pool.map(run, pairs * 4))
        assert all(np.array_equal(image, alone[i % 6]) for i, image in enumerate(together))
        print(numba.threading_layer())
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NUMBA_THREADING_LAYER": "workqueue"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["workqueue"]


@pytest.mark.parametrize("encoding", ["rgba8", "bgra8", "mono8"])
def test_other_colour_encodings_give_the_rgb8_image(encoding):
    model = small_model("extremes", "visible")
    with torch.no_grad():
        coefficients = model.fusion.coefficients(torch.rand(1, 1, *NET), torch.rand(1, 1, *NET))[0].numpy()
    thermal, rgb8 = textured_pair((150, 220), seed=3)
    if encoding == "mono8":
        rgb8 = np.repeat(cv2.cvtColor(rgb8, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
        frame = rgb8[:, :, 0].copy()
    else:
        frame = cv2.cvtColor(rgb8, cv2.COLOR_RGB2RGBA if encoding == "rgba8" else cv2.COLOR_RGB2BGRA)
    expected = fused_image(coefficients, thermal, rgb8, chroma="visible", net_size=NET, head="extremes")
    assert np.array_equal(fused_image(coefficients, thermal, frame, color_encoding=encoding, chroma="visible",
                                      net_size=NET, head="extremes"), expected)
