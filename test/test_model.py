import pytest
import torch

from fusion_ros.model import (
    PAPER_FUSION,
    FusedPerceptionNet,
    FusionConfig,
    FusionNet,
    ModelConfig,
    block_mean,
    count_parameters,
    fcos_points,
    fused_chroma,
    rgb_to_ycbcr,
    ycbcr_to_rgb,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FusedPerceptionNet(ModelConfig())


@pytest.mark.parametrize("height,width", [(37, 53), (512, 640), (64, 64)])
def test_output_shapes_and_points_agree(model, height, width):
    model.eval()
    with torch.inference_mode():
        out = model(torch.rand(1, 1, height, width), torch.rand(1, 3, height, width))
    points, strides = fcos_points(height, width)
    n = points.shape[0]
    assert out.fused.shape == (1, 3, height, width)
    assert out.fused_y.shape == (1, 1, height, width)
    assert out.cls_logits.shape == (1, n, model.cfg.num_det_classes)
    assert out.box_ltrb.shape == (1, n, 4)
    assert out.centerness.shape == (1, n, 1)
    assert out.seg_logits.shape == (1, model.cfg.num_seg_classes, height, width)
    assert float(out.fused.min()) >= 0.0 and float(out.fused.max()) <= 1.0
    assert bool((out.box_ltrb >= 0).all())
    # every point lies inside the image, and the strides are the FPN's
    assert float(points[:, 0].max()) < width + 16 and float(points[:, 1].max()) < height + 16
    assert set(strides.unique().tolist()) == {8.0, 16.0, 32.0}


@pytest.mark.parametrize("height,width", [(37, 53), (512, 640)])
def test_every_part_gets_gradients(height, width):
    torch.manual_seed(1)
    model = FusedPerceptionNet(ModelConfig()).train()
    out = model(torch.rand(2, 1, height, width), torch.rand(2, 3, height, width))
    loss = sum(t.float().mean() for t in (out.fused_y, out.cls_logits, out.box_ltrb, out.centerness, out.seg_logits))
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without finite gradient: {missing[:5]}"
    assert model.fusion.stem[0].weight.grad.abs().sum() > 0  # detection/seg losses reach the fusion net


def test_fusion_gradient_flows_from_task_heads_only():
    """The bi-level method needs d(task loss)/d(alpha): the semantic heads must backpropagate into F."""
    torch.manual_seed(2)
    model = FusedPerceptionNet(ModelConfig())
    out = model(torch.rand(1, 1, 40, 48), torch.rand(1, 3, 40, 48))
    out.seg_logits.square().mean().backward()
    assert model.fusion.head[-1].weight.grad.abs().sum() > 0


def test_size_budget():
    model = FusedPerceptionNet(ModelConfig())
    assert count_parameters(model) <= 5_000_000
    paper = FusedPerceptionNet(ModelConfig(fusion=PAPER_FUSION))
    # the paper's fusion net: 64-channel dense blocks (~0.48 M parameters in F)
    assert count_parameters(paper.fusion) > 5 * count_parameters(model.fusion)


def test_colour_round_trip_and_luminance_only_change():
    rgb = torch.rand(2, 3, 9, 11)
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=2e-3)
    grey = torch.full((1, 3, 4, 4), 0.4)
    ycc = rgb_to_ycbcr(grey)
    assert torch.allclose(ycc[:, 1:], torch.full_like(ycc[:, 1:], 0.5), atol=1e-6)  # grey has no chroma


def test_denoised_chroma_keeps_lit_colour_and_drops_colour_noise_in_the_dark():
    torch.manual_seed(0)
    lit = torch.cat([torch.full((1, 1, 16, 20), 0.3), torch.full((1, 1, 16, 20), 0.7)], dim=1)
    # a uniformly coloured, well-lit visible image under a fused Y no brighter than it: colour unchanged
    same = fused_chroma(lit, torch.full((1, 1, 16, 20), 0.6), torch.full((1, 1, 16, 20), 0.4))
    assert torch.allclose(same, lit, atol=1e-6)
    # night: dark visible pixels carrying colour noise, under thermal luminance 8x brighter
    noise = 0.5 + 0.03 * torch.randn(1, 2, 64, 80)
    dark = fused_chroma(noise, torch.full((1, 1, 64, 80), 0.05), torch.full((1, 1, 64, 80), 0.4))
    assert float((dark - 0.5).std()) < float((noise - 0.5).std()) / 20
    # the model applies it only when asked; files saved before the option load as "visible"
    thermal, rgb = torch.rand(1, 1, 32, 40), 0.5 + 0.05 * torch.randn(1, 3, 32, 40)
    plain = FusedPerceptionNet(ModelConfig()).eval()
    cleaned = FusedPerceptionNet(ModelConfig(chroma="denoised")).eval()
    cleaned.load_state_dict(plain.state_dict())
    with torch.no_grad():
        (rgb_plain, y_plain), (rgb_clean, y_clean) = plain.fuse(thermal, rgb), cleaned.fuse(thermal, rgb)
    assert torch.equal(y_plain, y_clean) and not torch.allclose(rgb_plain, rgb_clean)
    assert ModelConfig.from_dict({}).chroma == "visible"
    with pytest.raises(ValueError, match="chroma"):
        ModelConfig(chroma="grey").validate()


def test_thermal_skip_starts_at_the_thermal_image_and_learns_a_correction():
    torch.manual_seed(0)
    ir, vis = torch.rand(2, 1, 24, 32), torch.rand(2, 1, 24, 32)
    net = FusionNet(FusionConfig(thermal_skip=True))
    fused = net(ir, vis)
    assert torch.allclose(fused, ir.clamp(1e-3, 1 - 1e-3), atol=1e-5)  # whatever the visible image
    # the zero-initialised last layer still gets a gradient: one step toward the visible image moves it
    loss = (net(ir, vis) - vis).abs().mean()
    loss.backward()
    assert float(net.head[-1].weight.grad.abs().sum()) > 0
    torch.optim.SGD(net.parameters(), lr=0.1).step()
    with torch.no_grad():
        assert float((net(ir, vis) - vis).abs().mean()) < float(loss)
    # without the option the network draws the image itself; old files (no key) load without it
    plain = FusionNet(FusionConfig())
    assert not torch.allclose(plain(ir, vis), ir, atol=1e-2)
    assert ModelConfig.from_dict({"fusion": {"width": 32}}).fusion.thermal_skip is False
    with pytest.raises(ValueError, match="thermal_skip"):
        ModelConfig.from_dict({"fusion": {"thermal_skip": "false"}})


def test_blend_fusion_starts_at_the_average_and_learns_where_each_camera_wins():
    """The fast head mixes the full-resolution inputs with weights drawn at low resolution: it starts as
    the plain pixel average, and training moves the weights (here toward the thermal image)."""
    torch.manual_seed(0)
    ir, vis = torch.rand(2, 1, 37, 53), torch.rand(2, 1, 37, 53)  # odd sizes: pooled with ceil, upsampled back
    net = FusionNet(FusionConfig(output="blend", stride=2, body_stride=8))
    assert torch.allclose(net(ir, vis), (ir + vis) / 2, atol=1e-6)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    with torch.no_grad():
        start = float((net(ir, vis) - ir).abs().mean())
    for _ in range(30):
        optimiser.zero_grad()
        (net(ir, vis) - ir).abs().mean().backward()
        optimiser.step()
    with torch.no_grad():
        fused = net(ir, vis)
    assert fused.shape == ir.shape and float((fused - ir).abs().mean()) < 0.5 * start
    assert float(fused.min()) >= 0.0 and float(fused.max()) <= 1.0


@pytest.mark.parametrize("fusion,message", [
    ({"output": "picture"}, "fusion.output"),
    ({"stride": 2}, "fusion.stride"),  # an image head draws at full resolution
    ({"output": "blend", "stride": 4, "body_stride": 2}, "body_stride"),
    ({"output": "blend", "stride": 2, "body_stride": 8, "thermal_skip": True}, "thermal_skip"),
])
def test_fusion_options_are_checked(fusion, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_dict({"fusion": fusion})


def test_config_round_trip_and_validation():
    cfg = ModelConfig(fusion=PAPER_FUSION, num_det_classes=3)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="body_stride"):
        ModelConfig.from_dict({"fusion": {"body_stride": 3}})


@pytest.mark.parametrize(
    "thermal,rgb,message",
    [
        (torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), "thermal must have shape"),
        (torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32), "rgb must have shape"),
        (torch.rand(1, 1, 32, 32), torch.rand(1, 3, 32, 40), "must share batch size and H, W"),
        (torch.rand(2, 1, 32, 32), torch.rand(1, 3, 32, 32), "must share batch size"),
        (torch.rand(1, 32, 32), torch.rand(1, 3, 32, 32), "thermal must have shape"),
        (torch.zeros(1, 1, 32, 32, dtype=torch.uint8), torch.rand(1, 3, 32, 32), "float tensor"),
        (torch.full((1, 1, 32, 32), float("nan")), torch.rand(1, 3, 32, 32), "1024 NaN/inf"),
        (torch.rand(1, 1, 32, 32), torch.rand(1, 3, 32, 32).index_fill_(2, torch.tensor([3]), float("inf")), "rgb contains"),
        ([[0.0]], torch.rand(1, 3, 32, 32), "torch.Tensor"),
    ],
)
def test_bad_inputs_raise_value_error(model, thermal, rgb, message):
    with pytest.raises(ValueError, match=message):
        model(thermal, rgb)


@pytest.mark.parametrize("size", [(96, 128), (97, 130), (3, 5)])
@pytest.mark.parametrize("block", [2, 4])
def test_block_mean_is_the_ceil_mode_average_pool(size, block):
    """block_mean takes avg_pool2d's floor mode where the size is a multiple of the block (ONNX Runtime runs it
    3x faster): the same means as the ceil mode, partial edge tiles included elsewhere."""
    x = torch.rand(2, 3, *size)
    expected = torch.nn.functional.avg_pool2d(x, block, ceil_mode=True)
    assert block_mean(x, block).shape == expected.shape
    assert torch.allclose(block_mean(x, block), expected, atol=1e-6)
