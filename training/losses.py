"""Every training loss in one place: fusion (upper level), visual critic and semantic tasks (lower level).

Weights come from the `loss:` section of the training config (`LossWeights`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fusion_ros.model import FPN_STRIDES, SIZE_RANGES, PerceptionOutput, fcos_points, rgb_to_ycbcr


FUSION_TARGETS = ("saliency", "max", "detail")


@dataclass
class LossWeights:
    intensity: float = 1.0  # |F - T|_1 to the salient-target intensity map
    ssim: float = 1.1  # 1 - SSIM(F, T) (the authors' weight)
    texture: float = 1.0  # |grad F - max(|grad IR|, |grad Y|)|_1 (SeAFusion/TarDAL texture term)
    adversarial: float = 0.1  # the visual critic's say in the fusion objective (authors: 0.1)
    gradient_penalty: float = 10.0  # WGAN-GP
    detection: float = 1.0
    segmentation: float = 1.0
    real_fusion: float = 1.0  # L_fuse on data.fusion_pairs (unlabelled real pairs), when configured
    target: str = "saliency"  # the fusion target T: "saliency" (authors), "max" or "detail" (see fusion_target)
    # detail target: visible detail weaker than this (in [0, 1] intensity) is dropped as clutter, stronger
    # detail shrunk by it (soft threshold), in the target and in the texture term's visible edges; 0 keeps
    # all of it and the texture term's raw visible edges (how models before this option were trained)
    detail_threshold: float = 0.0

    def __post_init__(self):
        if self.target not in FUSION_TARGETS:
            raise ValueError(f"loss.target must be one of {', '.join(FUSION_TARGETS)}, got {self.target!r}")
        if not 0.0 <= self.detail_threshold < 1.0:
            raise ValueError(f"loss.detail_threshold must be in [0, 1), got {self.detail_threshold}")


# --------------------------------------------------------------------------------------------- fusion
def rgb_to_luma(rgb: torch.Tensor) -> torch.Tensor:
    return rgb_to_ycbcr(rgb)[:, 0:1]


def fusion_target(
    ir: torch.Tensor, vis_y: torch.Tensor, saliency: torch.Tensor, kind: str = "saliency", detail_threshold: float = 0.0
) -> torch.Tensor:
    """The image the fused Y is pulled toward.

    saliency (the authors'): T = M*IR + (1-M)*Y -- infrared inside salient (warm) targets, visible
    elsewhere; at night or in fog "elsewhere" is a dark, flat visible image.
    max (SeAFusion's intensity term): T = max(IR, Y) per pixel -- the brighter source wins everywhere,
    so the thermal scene survives where the visible one is dark, but a bright fog veil or glare bloom
    also wins over the thermal objects behind it.
    detail: T = IR + D(Y), D = Y - blur(Y) -- the thermal image as the base, the visible image's detail
    laid on top (what thermal cameras' visible-edge overlays do): thermal objects keep their full
    contrast in every condition, and what only the visible camera shows (signs, lane paint, lights) is
    added as local contrast; a fog veil or the dark of night carries no detail and so adds nothing.
    With `detail_threshold` the detail is soft-thresholded first (see `visible_detail`).
    """
    if kind == "max":
        return torch.maximum(ir, vis_y)
    if kind == "detail":
        return (ir + visible_detail(vis_y, detail_threshold)).clamp(0.0, 1.0)
    return saliency * ir + (1.0 - saliency) * vis_y


def visible_detail(vis_y: torch.Tensor, threshold: float = 0.0, noise_sigma: float = 1.0,
                   base_sigma: float = 8.0) -> torch.Tensor:
    """Y minus its large-scale base (Gaussian, `base_sigma` px) after a light denoise (`noise_sigma`), so
    that night-time gain noise is not taken for detail; then soft-thresholded, sign(D) max(|D| - t, 0):
    weak detail (residual noise, fog texture, glare gradients) around a warm object cost it more
    contrast against its surroundings than it added, while signs and lane paint are far above t."""
    smooth = _gaussian_blur(vis_y, noise_sigma)
    detail = smooth - _gaussian_blur(smooth, base_sigma)
    if threshold > 0:
        detail = torch.sign(detail) * (detail.abs() - threshold).clamp_min(0.0)
    return detail


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of every channel of a (B, C, H, W) batch, reflect-padded (6 sigma + 1 taps)."""
    channels = x.shape[1]
    g = _gaussian_kernel(2 * math.ceil(3 * sigma) + 1, sigma, device=x.device, dtype=x.dtype)
    pad = g.numel() // 2
    x = F.pad(x, [pad] * 4, mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(channels, 1, 1, -1).contiguous(), groups=channels)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(channels, 1, -1, 1).contiguous(), groups=channels)


def _gaussian_kernel(size: int, sigma: float, device=None, dtype=torch.float32) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Mean SSIM (Wang et al. 2004; 11x11 Gaussian, sigma 1.5) of single-channel batches, differentiable.

    The five local statistics are blurred in one separable (11 + 11 taps) pass.
    """
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    stats = _gaussian_blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), sigma=1.5)
    mu_x, mu_y, xx, yy, xy = stats.unbind(dim=1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean()


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device, dtype=x.dtype)
    kernels = torch.stack([kx, kx.t()])[:, None]
    g = F.conv2d(F.pad(x, [1, 1, 1, 1], mode="replicate"), kernels)
    return g.abs().sum(dim=1, keepdim=True)


def fusion_loss(
    fused_y: torch.Tensor, ir: torch.Tensor, vis_y: torch.Tensor, saliency: torch.Tensor, w: LossWeights
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_fuse = w_i |F-T|_1 + w_s (1-SSIM(F,T)) + w_t |grad F - max(|grad IR|,|grad V|)|_1.

    V is the visible Y, or, for the detail target with a detail_threshold, the visible detail that target
    keeps: otherwise the texture term would ask for the very clutter edges the threshold leaves out."""
    target = fusion_target(ir, vis_y, saliency, w.target, w.detail_threshold)
    intensity = F.l1_loss(fused_y, target)
    structure = 1.0 - ssim(fused_y, target)
    thresholded = w.target == "detail" and w.detail_threshold > 0
    vis_edges = visible_detail(vis_y, w.detail_threshold) if thresholded else vis_y
    texture = F.l1_loss(sobel_magnitude(fused_y), torch.maximum(sobel_magnitude(ir), sobel_magnitude(vis_edges)))
    total = w.intensity * intensity + w.ssim * structure + w.texture * texture
    return total, {"fuse_intensity": intensity.item(), "fuse_ssim": structure.item(), "fuse_texture": texture.item()}


def ir_saliency(ir: torch.Tensor, blur: int = 7) -> torch.Tensor:
    """Salient-target mask estimated from the infrared image when a dataset has no labels.

    Pixels much warmer than the frame's mean (> mean + 1 std) after a small blur, softened to [0, 1].
    """
    smooth = F.avg_pool2d(ir, blur, stride=1, padding=blur // 2, count_include_pad=False)
    mean = smooth.mean(dim=(2, 3), keepdim=True)
    std = smooth.std(dim=(2, 3), keepdim=True).clamp_min(1e-3)
    return torch.sigmoid(4.0 * ((smooth - mean) / std - 1.0)).detach()


# --------------------------------------------------------------------------------- visual-effect module
class PixelCritic(nn.Module):
    """D_y1: a pixel-level (PatchGAN with a 3x3 receptive field) critic scoring fused Y against the target."""

    def __init__(self, channels: int = 16):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, channels, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(channels, 1, 1),
        )

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.net(y)


def critic_loss(critic: PixelCritic, fused_y: torch.Tensor, target: torch.Tensor, gp_weight: float) -> torch.Tensor:
    """Lower-level f_visual: WGAN-GP critic loss (real = fusion target T, fake = fused Y).

    The critic scores every pixel, so the gradient penalty holds each pixel's score 1-Lipschitz in its
    input (|d score_p / d input_p| -> 1 per pixel) rather than the norm over the whole image.
    """
    real, fake = target.detach(), fused_y
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    mixed = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
    grad = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)[0]
    penalty = ((grad.abs() - 1.0) ** 2).mean()
    return critic(fake).mean() - critic(real).mean() + gp_weight * penalty


def adversarial_loss(critic: PixelCritic, fused_y: torch.Tensor) -> torch.Tensor:
    """Upper-level F_visual: the fusion network wants the critic to score its output as real."""
    return -critic(fused_y).mean()


# -------------------------------------------------------------------------------------- semantic module
def fcos_targets(
    boxes: list[torch.Tensor], labels: list[torch.Tensor], height: int, width: int, center_radius: float = 1.5
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Assign every head location of every image a class (or background = -1) and a box.

    FCOS rules: a location is positive for a box if it lies within `center_radius` strides of the box
    centre (centre sampling) and inside the box, and the box's largest distance fits the level's size
    range; ties go to the smallest box. Returns labels (B, N), box targets l,t,r,b (B, N, 4), and
    centerness targets (B, N).
    """
    points, strides = fcos_points(height, width, device=boxes[0].device if boxes else None)
    level_lo = torch.empty_like(strides)
    level_hi = torch.empty_like(strides)
    for stride, (lo, hi) in zip(FPN_STRIDES, SIZE_RANGES):
        level_lo[strides == stride], level_hi[strides == stride] = lo, hi
    all_labels, all_ltrb, all_ctr = [], [], []
    for gt_boxes, gt_labels in zip(boxes, labels):
        n = points.shape[0]
        if gt_boxes.numel() == 0:
            all_labels.append(torch.full((n,), -1, dtype=torch.long, device=points.device))
            all_ltrb.append(torch.zeros(n, 4, device=points.device))
            all_ctr.append(torch.zeros(n, device=points.device))
            continue
        x, y = points[:, 0:1], points[:, 1:2]  # (N, 1)
        ltrb = torch.stack([x - gt_boxes[:, 0], y - gt_boxes[:, 1], gt_boxes[:, 2] - x, gt_boxes[:, 3] - y], dim=2)
        inside = ltrb.min(dim=2).values > 0
        centre = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        radius = strides[:, None] * center_radius
        near_centre = ((x - centre[:, 0]).abs() < radius) & ((y - centre[:, 1]).abs() < radius)
        reach = ltrb.max(dim=2).values
        in_level = (reach >= level_lo[:, None]) & (reach <= level_hi[:, None])
        area = ((gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1]))[None].expand_as(inside)
        area = torch.where(inside & near_centre & in_level, area, torch.full_like(area, float("inf")))
        min_area, match = area.min(dim=1)
        positive = torch.isfinite(min_area)
        cls = torch.where(positive, gt_labels[match], torch.full_like(match, -1))
        target = ltrb[torch.arange(n, device=points.device), match]
        lr, tb = target[:, 0::2], target[:, 1::2]
        ctr = torch.sqrt(
            (lr.min(1).values / lr.max(1).values.clamp_min(1e-6)) * (tb.min(1).values / tb.max(1).values.clamp_min(1e-6))
        )
        all_labels.append(cls)
        all_ltrb.append(target)
        all_ctr.append(torch.where(positive, ctr, torch.zeros_like(ctr)))
    return torch.stack(all_labels), torch.stack(all_ltrb), torch.stack(all_ctr)


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0):
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    return (alpha_t * ce * (1 - p_t) ** gamma).sum()


def giou_loss(pred_ltrb: torch.Tensor, target_ltrb: torch.Tensor) -> torch.Tensor:
    """1 - GIoU for boxes given as distances from the same point (per-element)."""
    pred_area = (pred_ltrb[:, 0] + pred_ltrb[:, 2]) * (pred_ltrb[:, 1] + pred_ltrb[:, 3])
    target_area = (target_ltrb[:, 0] + target_ltrb[:, 2]) * (target_ltrb[:, 1] + target_ltrb[:, 3])
    inter_w = torch.minimum(pred_ltrb[:, 0], target_ltrb[:, 0]) + torch.minimum(pred_ltrb[:, 2], target_ltrb[:, 2])
    inter_h = torch.minimum(pred_ltrb[:, 1], target_ltrb[:, 1]) + torch.minimum(pred_ltrb[:, 3], target_ltrb[:, 3])
    inter = inter_w.clamp_min(0) * inter_h.clamp_min(0)
    union = pred_area + target_area - inter
    hull_w = torch.maximum(pred_ltrb[:, 0], target_ltrb[:, 0]) + torch.maximum(pred_ltrb[:, 2], target_ltrb[:, 2])
    hull_h = torch.maximum(pred_ltrb[:, 1], target_ltrb[:, 1]) + torch.maximum(pred_ltrb[:, 3], target_ltrb[:, 3])
    hull = (hull_w * hull_h).clamp_min(1e-6)
    iou = inter / union.clamp_min(1e-6)
    return 1.0 - (iou - (hull - union) / hull)


def detection_loss(
    cls_logits: torch.Tensor, box_ltrb: torch.Tensor, centerness: torch.Tensor, targets
) -> tuple[torch.Tensor, dict[str, float]]:
    """FCOS loss: focal (classes) + GIoU weighted by centerness target (boxes) + BCE (centerness)."""
    labels, ltrb_t, ctr_t = targets
    positive = labels >= 0
    num_pos = max(float(positive.sum()), 1.0)
    onehot = torch.zeros_like(cls_logits)
    onehot[positive, labels[positive]] = 1.0
    cls = sigmoid_focal_loss(cls_logits, onehot) / num_pos
    if positive.any():
        weights = ctr_t[positive]
        box = (giou_loss(box_ltrb[positive], ltrb_t[positive]) * weights).sum() / weights.sum().clamp_min(1e-6)
        ctr = F.binary_cross_entropy_with_logits(centerness[positive][:, 0], ctr_t[positive])
    else:
        box = ctr = cls_logits.sum() * 0.0
    return cls + box + ctr, {"det_cls": cls.item(), "det_box": box.item(), "det_ctr": ctr.item()}


def semantic_loss(out: PerceptionOutput | tuple, batch: dict, det_targets, w: LossWeights):
    """Lower-level f_semantic: detection + segmentation losses of the semantic module on fused images.

    `out` is (cls_logits, box_ltrb, centerness, seg_logits); images without a mask skip segmentation.
    """
    cls_logits, box_ltrb, centerness, seg_logits = out
    det, logs = detection_loss(cls_logits, box_ltrb, centerness, det_targets)
    total = w.detection * det
    if batch.get("mask") is not None:
        seg = F.cross_entropy(seg_logits, batch["mask"], ignore_index=255)
        total = total + w.segmentation * seg
        logs["seg_ce"] = seg.item()
    return total, logs
