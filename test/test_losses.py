"""Training losses: SSIM, fusion target, FCOS target assignment, focal/GIoU, critic."""
import numpy as np
import pytest
import torch

from fusion_ros.metrics import ssim as ssim_metric
from fusion_ros.model import fcos_points
from training import losses as L


def test_ssim_matches_the_metric_and_identity():
    torch.manual_seed(0)
    x = torch.rand(1, 1, 48, 48)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert float(L.ssim(x, x)) == pytest.approx(1.0, abs=1e-5)
    # same definition as the evaluation metric (which skips the border instead of reflecting)
    assert float(L.ssim(x, y)) == pytest.approx(ssim_metric(x[0, 0].numpy() * 255, y[0, 0].numpy() * 255), abs=0.01)
    assert float(L.ssim(x, y)) < 0.99


def test_fusion_target_and_loss_prefer_the_right_source():
    ir, vis = torch.full((1, 1, 16, 16), 0.9), torch.full((1, 1, 16, 16), 0.2)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:8, 4:8] = 1.0
    target = L.fusion_target(ir, vis, mask)
    assert float(target[0, 0, 5, 5]) == pytest.approx(0.9) and float(target[0, 0, 0, 0]) == pytest.approx(0.2)
    w = L.LossWeights()
    good, _ = L.fusion_loss(target, ir, vis, mask, w)
    bad, _ = L.fusion_loss(vis, ir, vis, mask, w)
    assert float(good) < float(bad)


def test_max_target_keeps_the_brighter_source_everywhere():
    ir = torch.tensor([[[[0.9, 0.1], [0.5, 0.3]]]])
    vis = torch.tensor([[[[0.2, 0.6], [0.5, 0.8]]]])
    mask = torch.zeros_like(ir)
    np.testing.assert_allclose(L.fusion_target(ir, vis, mask, "max").numpy(), [[[[0.9, 0.6], [0.5, 0.8]]]])
    assert torch.equal(L.fusion_target(ir, vis, mask, "saliency"), vis)  # no salient pixel: all visible
    with pytest.raises(ValueError, match="loss.target"):
        L.LossWeights(target="min")


def test_detail_target_keeps_thermal_contrast_and_adds_only_visible_detail():
    torch.manual_seed(0)
    ir = torch.full((1, 1, 96, 96), 0.3)
    ir[..., 10:40, 10:20] = 0.6  # a warm person, invisible in the visible image
    flat_vis = torch.full_like(ir, 0.8)  # a fog veil: bright, no detail
    np.testing.assert_allclose(L.fusion_target(ir, flat_vis, None, "detail").numpy(), ir.numpy(), atol=1e-6)
    noisy_night = (0.05 + 0.03 * torch.randn_like(ir)).clamp(0, 1)  # dark, gain noise only
    assert float((L.fusion_target(ir, noisy_night, None, "detail") - ir).abs().mean()) < 0.01
    sign = flat_vis.clone()
    sign[..., 60:76, 60:76] = 1.0  # a bright sign, at ambient temperature (no thermal contrast)
    target = L.fusion_target(ir, sign, None, "detail")
    assert float(target[0, 0, 68, 68]) > 0.3 + 0.1  # the sign stands out of the thermal background
    assert float(target[0, 0, 25, 15] - target[0, 0, 25, 30]) == pytest.approx(0.3, abs=1e-3)  # person intact
    assert float(target.min()) >= 0.0 and float(target.max()) <= 1.0


def test_detail_threshold_drops_weak_visible_detail_and_keeps_signs():
    torch.manual_seed(0)
    ir = torch.full((1, 1, 96, 96), 0.3)
    ir[..., 10:40, 10:20] = 0.6  # a warm person
    night = (0.05 + 0.03 * torch.randn_like(ir)).clamp(0, 1)  # gain noise and a retro-reflective sign
    night[..., 60:76, 60:76] = 0.5
    loose, strict = (L.fusion_target(ir, night, None, "detail", t) for t in (0.0, 0.04))
    background = (slice(None), slice(None), slice(45, 96), slice(0, 50))  # noise only
    assert float((strict - ir)[background].abs().mean()) < 0.2 * float((loose - ir)[background].abs().mean())
    assert float(strict[0, 0, 68, 68]) > 0.3 + 0.1  # the sign still stands out
    assert float(strict[0, 0, 25, 15] - strict[0, 0, 25, 30]) == pytest.approx(0.3, abs=1e-3)  # person intact
    # the texture term asks for the edges the target keeps, not for the noise it drops
    fused = strict.clone()
    w_detail, w_max = L.LossWeights(target="detail", detail_threshold=0.04), L.LossWeights(target="max")
    _, logs_detail = L.fusion_loss(fused, ir, night, None, w_detail)
    _, logs_max = L.fusion_loss(fused, ir, night, None, w_max)
    assert logs_detail["fuse_texture"] < 0.5 * logs_max["fuse_texture"]
    with pytest.raises(ValueError, match="detail_threshold"):
        L.LossWeights(detail_threshold=-0.1)


def test_ir_saliency_marks_warm_blobs():
    ir = torch.full((1, 1, 64, 64), 0.3)
    ir[..., 20:30, 20:30] = 0.9
    sal = L.ir_saliency(ir)
    assert float(sal[0, 0, 25, 25]) > 0.9 and float(sal[0, 0, 55, 55]) < 0.1


def test_fcos_targets_hand_case():
    # one 40x40 box centred at (52, 52) in a 128x128 image: only stride-8 points (size range 0..64)
    # within 1.5 strides (12 px) of the centre are positive
    boxes = [torch.tensor([[32.0, 32.0, 72.0, 72.0]])]
    labels = [torch.tensor([3])]
    cls, ltrb, ctr = L.fcos_targets(boxes, labels, 128, 128)
    points, strides = fcos_points(128, 128)
    pos = cls[0] >= 0
    assert set(cls[0][pos].tolist()) == {3}
    assert bool((strides[pos] == 8).all())
    assert bool(((points[pos] - 52).abs() < 12).all())
    assert int(pos.sum()) == 9  # the 3x3 stride-8 points at 44, 52, 60
    centre = int(torch.nonzero((points[:, 0] == 52) & (points[:, 1] == 52) & (strides == 8))[0])
    assert ltrb[0, centre].tolist() == [20.0, 20.0, 20.0, 20.0] and float(ctr[0, centre]) == pytest.approx(1.0)
    empty_cls, _, _ = L.fcos_targets([torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.long)], 64, 64)
    assert bool((empty_cls == -1).all())


def test_fcos_targets_pick_smallest_box_and_level_by_size():
    big = torch.tensor([[0.0, 0.0, 200.0, 200.0]])  # reach > 64 -> higher levels
    small = torch.tensor([[90.0, 90.0, 110.0, 110.0]])
    cls, _, _ = L.fcos_targets([torch.cat([big, small])], [torch.tensor([0, 1])], 256, 256)
    points, strides = fcos_points(256, 256)
    at_small_centre = (points[:, 0] == 100) & (points[:, 1] == 100) & (strides == 8)
    assert cls[0][at_small_centre].tolist() == [1]
    assert set(strides[cls[0] == 0].tolist()) <= {16.0, 32.0}


def test_giou_and_focal_basics():
    same = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    assert float(L.giou_loss(same, same)) == pytest.approx(0.0, abs=1e-6)
    far = L.giou_loss(torch.tensor([[1.0, 1.0, 1.0, 1.0]]), torch.tensor([[10.0, 10.0, 10.0, 10.0]]))
    assert 0.9 < float(far) <= 2.0
    confident_right = L.sigmoid_focal_loss(torch.tensor([[6.0]]), torch.tensor([[1.0]]))
    confident_wrong = L.sigmoid_focal_loss(torch.tensor([[-6.0]]), torch.tensor([[1.0]]))
    assert float(confident_right) < 1e-4 < float(confident_wrong)


def test_critic_loss_separates_real_from_fake():
    torch.manual_seed(0)
    critic = L.PixelCritic()
    opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
    real, fake = torch.full((2, 1, 16, 16), 0.8), torch.full((2, 1, 16, 16), 0.2)
    for _ in range(100):
        opt.zero_grad()
        L.critic_loss(critic, fake, real, gp_weight=10.0).backward()
        opt.step()
    assert float(critic(real).mean()) > float(critic(fake).mean())
    assert float(L.adversarial_loss(critic, real)) < float(L.adversarial_loss(critic, fake))


def _complementary_pair(seed=0):
    """IR: a warm square on a cool smooth background; visible: fine stripes and a dark band -- each shows
    what the other does not."""
    g = torch.Generator().manual_seed(seed)
    ir = 0.3 + 0.05 * torch.rand(1, 1, 64, 80, generator=g)
    ir[..., 20:40, 30:50] = 0.85
    x = torch.arange(80, dtype=torch.float32)
    vis = (0.45 + 0.2 * torch.sin(x / 2.0)).expand(1, 1, 64, 80).clone()
    vis[..., 50:, :] *= 0.4
    return ir, vis


def test_quality_criteria_on_hand_checked_images():
    from fusion_ros.metrics import qabf, scd as scd_metric, vifp

    ir, vis = _complementary_pair()
    added = ir + vis - 0.5 * (ir.mean() + vis.mean())  # both sources in full: SCD = 2 by construction
    assert float(L.scd_criterion(added, ir, vis)) == pytest.approx(2.0, abs=1e-5)
    assert float(L.scd_criterion(0.5 * (ir + vis), ir, vis)) < 1.9
    # VIF: a copy keeps all information (1), a contrast gain adds some (> 1), the same as the evaluation metric
    assert float(L.visual_fidelity(vis, vis)) == pytest.approx(1.0, abs=1e-5)
    assert float(L.visual_fidelity(vis, (1.5 * vis - 0.2).clamp(0, 1))) > 1.05
    avg = 0.5 * (ir + vis)
    to8 = lambda t: (t[0, 0] * 255).round().numpy()  # noqa: E731
    for source in (ir, vis):
        unit = lambda a: torch.from_numpy(a / 255.0).float()[None, None]  # noqa: E731
        ours = float(L.visual_fidelity(unit(to8(source)), unit(to8(avg))))
        assert ours == pytest.approx(vifp(to8(source), to8(avg), "cddfuse"), abs=2e-3)
    assert float(L.scd_criterion(avg, ir, vis)) == pytest.approx(scd_metric(to8(avg), to8(ir), to8(vis)), abs=0.02)
    # edges: a copy keeps every edge of its source (the metric's ceiling, ~0.975), a flat image none
    assert float(L.edge_fidelity(vis, vis, vis)) == pytest.approx(qabf(to8(vis), to8(vis), to8(vis), "cddfuse"),
                                                                  abs=3e-3)
    assert float(L.edge_fidelity(torch.full_like(vis, 0.5), ir, vis)) < 0.05


def test_quality_loss_prefers_keeping_both_sources_to_averaging_them():
    w = L.LossWeights(target="quality")
    ir, vis = _complementary_pair()
    averaged, _ = L.fusion_loss(0.5 * (ir + vis), ir, vis, None, w)
    kept, logs = L.fusion_loss((ir + vis - 0.35).clamp(0, 1), ir, vis, None, w)
    assert float(kept) < float(averaged)
    assert set(logs) == {"fuse_ssim", "fuse_scd", "fuse_qabf", "fuse_vif"}
    # it is differentiable all the way (the fusion net learns from it)
    fused = (0.5 * (ir + vis)).requires_grad_(True)
    loss, _ = L.fusion_loss(fused, ir, vis, None, w)
    loss.backward()
    assert torch.isfinite(fused.grad).all() and fused.grad.abs().sum() > 0
    # the critic's real samples are the sources themselves: IR for even, visible Y for odd batch entries
    both = L.fusion_target(torch.cat([ir, ir]), torch.cat([vis, vis]), None, "quality")
    assert torch.equal(both[0], ir[0]) and torch.equal(both[1], vis[0])


def test_dark_visible_noise_earns_nothing_with_a_dark_level():
    """With loss.visible_dark_level the quality terms score the fused image against a visible reference
    denoised where it is dark: at night, copying the camera's gain noise must score worse than leaving it
    out; without the level (the earlier recipe) the noise copy wins. Lit images are left exactly as they are."""
    torch.manual_seed(0)
    lit = (0.5 + 0.3 * torch.rand(1, 1, 64, 64)).clamp(0, 1)
    assert torch.allclose(L.dark_denoised(lit, 0.2), lit, atol=1e-6)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    scene = 0.05 + 0.04 * (xx > 32).float()  # a dark visible scene: one faint edge ...
    noisy_vis = (scene + 0.03 * torch.randn(1, 1, 64, 64)).clamp(0, 1)  # ... under gain noise
    ir = (0.3 + 0.4 * (((yy - 32) ** 2 + (xx - 20) ** 2) < 100).float())[None, None]  # a warm object
    clean = (ir + scene - 0.05).clamp(0, 1)
    with_noise = (ir + noisy_vis - 0.05).clamp(0, 1)
    raw = L.LossWeights(target="quality")
    dark = L.LossWeights(target="quality", visible_dark_level=0.2)
    assert float(L.fusion_loss(with_noise, ir, noisy_vis, None, raw)[0]) < float(L.fusion_loss(clean, ir, noisy_vis, None, raw)[0])
    assert float(L.fusion_loss(clean, ir, noisy_vis, None, dark)[0]) < float(L.fusion_loss(with_noise, ir, noisy_vis, None, dark)[0])
    with pytest.raises(ValueError, match="visible_dark_level"):
        L.LossWeights(target="quality", visible_dark_level=1.5)


def test_extremes_head_starts_at_the_stretched_max_objectives_optimum():
    """The shipped recipe has no warm start because an untrained "extremes" head already draws its target:
    the objective is ~0 there, and any correction the tasks ask for costs it something."""
    from fusion_ros.model import FusionConfig, FusionNet

    torch.manual_seed(0)
    net = FusionNet(FusionConfig(output="extremes", stride=2, body_stride=8, width=8, growth=4, block_layers=2))
    ir = torch.nn.functional.avg_pool2d(torch.rand(2, 1, 64, 96), 3, 1, 1)
    vis = torch.nn.functional.avg_pool2d(torch.rand(2, 1, 64, 96), 3, 1, 1)
    weights = L.LossWeights(target="stretched_max", texture=0.0)
    target = L.fusion_target(ir, vis, torch.zeros_like(ir), "stretched_max")
    assert target.std() > 1.2 * torch.maximum(ir, vis).std()  # a stretch of the pixel maximum
    at_start, _ = L.fusion_loss(net(ir, vis), ir, vis, torch.zeros_like(ir), weights)
    assert float(at_start) < 1e-5
    with torch.no_grad():
        net.head[-1].bias[2] = 0.5  # a brighter offset
    moved, _ = L.fusion_loss(net(ir, vis), ir, vis, torch.zeros_like(ir), weights)
    assert float(moved) > 0.05
