"""Every training loss in one place: fusion (upper level), visual critic and semantic tasks (lower level).

Weights come from the `loss:` section of the training config (`LossWeights`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fusion_ros.model import (FPN_STRIDES, SIZE_RANGES, PerceptionOutput, apply_coefficients, fcos_points,
                              rgb_to_ycbcr, stretched_max_map)


FUSION_TARGETS = ("saliency", "max", "detail", "mean", "quality", "stretched_max")
STRETCHED_MAX_STRIDE = 2  # the target's local mean at 1/2 resolution, as the "extremes" head (fusion.stride 2) has it


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
    target: str = "saliency"  # the fusion target T: "saliency" (authors), "max", "detail" or "mean" (see
    # fusion_target); "quality": no target image, the fused Y is scored against both sources (quality_loss)
    # detail target: visible detail weaker than this (in [0, 1] intensity) is dropped as clutter, stronger
    # detail shrunk by it (soft threshold), in the target and in the texture term's visible edges; 0 keeps
    # all of it and the texture term's raw visible edges (how models before this option were trained)
    detail_threshold: float = 0.0
    # target "quality": the weights of its four terms (see quality_loss)
    source_ssim: float = 1.0  # structure of each source kept: SSIM(F, IR) + SSIM(F, Y)
    scd: float = 1.0  # each source's content in the fused image: correlation of F - Y with IR, F - IR with Y
    edge_fidelity: float = 1.0  # each source's edges kept in strength and orientation (Qabf)
    visual_fidelity: float = 1.0  # each source's information kept, contrast included (VIF)
    # the visible reference of the "quality" terms is denoised where the visible image is darker than this
    # (local mean Y, 0..1; see dark_denoised): a night camera's gain noise is not information to keep. 0: raw
    visible_dark_level: float = 0.0

    def __post_init__(self):
        if self.target not in FUSION_TARGETS:
            raise ValueError(f"loss.target must be one of {', '.join(FUSION_TARGETS)}, got {self.target!r}")
        if not 0.0 <= self.detail_threshold < 1.0:
            raise ValueError(f"loss.detail_threshold must be in [0, 1), got {self.detail_threshold}")
        if not 0.0 <= self.visible_dark_level < 1.0:
            raise ValueError(f"loss.visible_dark_level must be in [0, 1), got {self.visible_dark_level}")


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
    mean: T = (IR + Y) / 2 -- the pixel average, which a COCO-pretrained detector reads best of the fixed
    rules on real road pairs (msrs_det README); the texture term then asks for the stronger source's
    edges on top, which the average halves.
    stretched_max: the pixel maximum with its local and global contrast stretched (model.stretched_max_map):
    the "extremes" head's starting point, so the objective holds the fused image there unless the tasks'
    hypergradient pays for a change.
    quality has no target image: the visual critic compares the fused Y with the sources themselves (IR
    for the even samples of a batch, Y for the odd), the look the fused image should keep.
    """
    if kind == "quality":
        odd = (torch.arange(ir.shape[0], device=ir.device) % 2 == 1).view(-1, 1, 1, 1)
        return torch.where(odd, vis_y, ir)
    if kind == "mean":
        return 0.5 * (ir + vis_y)
    if kind == "max":
        return torch.maximum(ir, vis_y)
    if kind == "stretched_max":
        return apply_coefficients(stretched_max_map(ir, vis_y, STRETCHED_MAX_STRIDE), ir, vis_y, "extremes")
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

    The five local statistics are blurred in one separable (11 + 11 taps) pass, reflect-padded: the mean is
    over every pixel, so the fused image's borders get a structure gradient too. Why not pytorch-msssim's
    ssim: same window, sigma and K1/K2, but it averages the 'valid' positions only (as the evaluation SSIM in
    fusion_ros.metrics does), 5e-4 to 1e-2 away from this on real IR/VI pairs (TNO, RoadScene; 7.6e-5 on
    noise); fed reflect-padded images it agrees (< 4e-7, float32) but ran 1.7x slower here (five blur
    passes instead of one) for a new dependency.
    """
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    stats = _gaussian_blur(torch.cat([x, y, x * x, y * y, x * y], dim=1), sigma=1.5)
    mu_x, mu_y, xx, yy, xy = stats.unbind(dim=1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean()


def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """|Sobel x| + |Sobel y| (the texture term's edge strength)."""
    gx, gy = sobel_xy(x)
    return gx.abs() + gy.abs()


def sobel_xy(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel x and y responses of a (B, 1, H, W) batch; replicate padding: the frame's border is no edge."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device, dtype=x.dtype)
    g = F.conv2d(F.pad(x, [1, 1, 1, 1], mode="replicate"), torch.stack([kx, kx.t()])[:, None])
    return g[:, 0:1], g[:, 1:2]


def fusion_loss(
    fused_y: torch.Tensor, ir: torch.Tensor, vis_y: torch.Tensor, saliency: torch.Tensor, w: LossWeights
) -> tuple[torch.Tensor, dict[str, float]]:
    """L_fuse = w_i |F-T|_1 + w_s (1-SSIM(F,T)) + w_t |grad F - max(|grad IR|,|grad V|)|_1, or for the
    "quality" target `quality_loss`.

    V is the visible Y, or, for the detail target with a detail_threshold, the visible detail that target
    keeps: otherwise the texture term would ask for the very clutter edges the threshold leaves out."""
    if w.target == "quality":
        return quality_loss(fused_y, ir, vis_y, w)
    target = fusion_target(ir, vis_y, saliency, w.target, w.detail_threshold)
    intensity = F.l1_loss(fused_y, target)
    structure = 1.0 - ssim(fused_y, target)
    thresholded = w.target == "detail" and w.detail_threshold > 0
    vis_edges = visible_detail(vis_y, w.detail_threshold) if thresholded else vis_y
    texture = F.l1_loss(sobel_magnitude(fused_y), torch.maximum(sobel_magnitude(ir), sobel_magnitude(vis_edges)))
    total = w.intensity * intensity + w.ssim * structure + w.texture * texture
    return total, {"fuse_intensity": intensity.item(), "fuse_ssim": structure.item(), "fuse_texture": texture.item()}


def quality_loss(fused_y: torch.Tensor, ir: torch.Tensor, vis_y: torch.Tensor, w: LossWeights
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    """The fused image scored against both sources by four differentiable criteria of the fusion
    literature, each rewarding what a fixed rule gives up (a pixel average halves both sources' contrast,
    a pixel max drops the darker source's content):

    - source SSIM: SSIM(F, IR) + SSIM(F, Y), the local structure of each source;
    - SCD: corr(F - Y, IR) + corr(F - IR, Y), each source's content in what the fused image adds to the
      other (Aslantas & Bendes 2015);
    - edge fidelity: Qabf (Xydeas & Petrovic 2000), the sources' edges kept in strength and orientation,
      weighted by their strength;
    - visual fidelity: VIF (Sheikh & Bovik 2006, four scales) of F against each source: their information
      kept, with local contrast above the source's counted as a gain.

    Loss = sum_k w_k (best_k - criterion_k) with best_k the value of a perfect copy (2, 2, 1, 2), so each
    term is >= 0 at a copy-like optimum; the logs carry the criteria themselves. With
    ``w.visible_dark_level`` the visible reference is `dark_denoised` first."""
    if w.visible_dark_level > 0:
        vis_y = dark_denoised(vis_y, w.visible_dark_level)
    ssim_sum = ssim(fused_y, ir) + ssim(fused_y, vis_y)
    scd = scd_criterion(fused_y, ir, vis_y)
    qabf = edge_fidelity(fused_y, ir, vis_y)
    vif = visual_fidelity(ir, fused_y) + visual_fidelity(vis_y, fused_y)
    total = (w.source_ssim * (2.0 - ssim_sum) + w.scd * (2.0 - scd) + w.edge_fidelity * (1.0 - qabf)
             + w.visual_fidelity * (2.0 - vif))
    return total, {"fuse_ssim": ssim_sum.item(), "fuse_scd": scd.item(), "fuse_qabf": qabf.item(),
                   "fuse_vif": vif.item()}


DARK_DENOISE_SIGMA = 1.5  # pixels: the blur that stands for "denoised" in dark_denoised
DARK_MEAN_SIGMA = 8.0  # pixels: the neighbourhood whose mean brightness decides how dark a pixel is


def dark_denoised(vis_y: torch.Tensor, dark_level: float) -> torch.Tensor:
    """The visible Y with its fine detail faded where the scene is dark: blur + m * (Y - blur), with
    m = (local mean Y / dark_level)^2 clipped to 1 (squared: at a quarter of the level a linear fade still
    kept enough noise for a copy of it to score best). At night a visible camera's fine "detail" is mostly gain
    noise, which the quality terms would otherwise reward the fused image for copying (VIF even counts it
    amplified as information gained); lit areas (m = 1) keep every pixel."""
    blurred = _gaussian_blur(vis_y, DARK_DENOISE_SIGMA)
    keep = (_gaussian_blur(vis_y, DARK_MEAN_SIGMA) / dark_level).clamp(max=1.0) ** 2
    return blurred + keep * (vis_y - blurred)


def _correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation per image of two (B, 1, H, W) batches -> (B,)."""
    x = x.flatten(1) - x.flatten(1).mean(dim=1, keepdim=True)
    y = y.flatten(1) - y.flatten(1).mean(dim=1, keepdim=True)
    return (x * y).sum(dim=1) / torch.sqrt((x * x).sum(dim=1) * (y * y).sum(dim=1) + 1e-12)


def scd_criterion(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sum of the correlations of differences, batch mean: corr(F - B, A) + corr(F - A, B)."""
    return (_correlation(fused - b, a) + _correlation(fused - a, b)).mean()


def edge_fidelity(fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Qabf, differentiable: per pixel, how much of source S's edge survives in F -- strength kept
    (min/max of the Sobel magnitudes) and orientation kept (angle between the gradients, mod pi), each
    through Xydeas & Petrovic's sigmoid -- averaged with the source edge strengths as weights."""
    fx, fy = sobel_xy(fused)
    f_mag = torch.sqrt(fx * fx + fy * fy + eps)
    kept, weight = 0.0, 0.0
    for source in (a, b):
        sx, sy = sobel_xy(source)
        s_mag = torch.sqrt(sx * sx + sy * sy + eps)
        strength = torch.minimum(s_mag, f_mag) / torch.maximum(s_mag, f_mag)
        cos2 = (sx * fx + sy * fy) ** 2 / (s_mag * s_mag * f_mag * f_mag)
        orientation = 1.0 - torch.acos(torch.sqrt(cos2.clamp(1e-4, 1.0 - 1e-4))) / (math.pi / 2)
        q = (0.9994 * torch.sigmoid(15.0 * (strength - 0.5))) * (0.9879 * torch.sigmoid(22.0 * (orientation - 0.8)))
        kept = kept + (q * s_mag).flatten(1).sum(dim=1)
        weight = weight + s_mag.flatten(1).sum(dim=1)
    return (kept / weight).mean()


def visual_fidelity(reference: torch.Tensor, distorted: torch.Tensor, noise: float = 2.0 / 255.0**2) -> torch.Tensor:
    """VIF of `distorted` against `reference` (pixel domain, four scales of Gaussian windows 17, 9, 5, 3,
    'valid' positions, the channel noise `noise` = 2 grey levels^2 as in the usual implementations), batch
    mean. A gain g > 1 of the reference's local contrast counts as information kept, not lost."""
    num, den = 0.0, 0.0
    for scale in range(4):
        size = 2 ** (4 - scale) + 1
        window = _gaussian_kernel(size, size / 5.0, device=reference.device, dtype=reference.dtype)
        if scale:
            reference, distorted = _blur_valid(torch.cat([reference, distorted], dim=1), window)[..., ::2, ::2].split(1, 1)
        stats = _blur_valid(torch.cat([reference, distorted, reference * reference, distorted * distorted,
                                       reference * distorted], dim=1), window)
        mu_r, mu_d, rr, dd, rd = stats.split(1, dim=1)
        var_r, var_d = (rr - mu_r * mu_r).clamp_min(0.0), (dd - mu_d * mu_d).clamp_min(0.0)
        cov = rd - mu_r * mu_d
        gain = cov / (var_r + 1e-12)
        residual = (var_d - gain * cov).clamp_min(1e-12)
        gain = gain.clamp_min(0.0)
        num = num + torch.log10(1.0 + gain * gain * var_r / (residual + noise)).flatten(1).sum(dim=1)
        den = den + torch.log10(1.0 + var_r / noise).flatten(1).sum(dim=1)
    return (num / den.clamp_min(1e-12)).mean()


def _blur_valid(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Every channel of x convolved with the separable window g gᵀ, 'valid' positions only."""
    channels = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(channels, 1, 1, -1).contiguous(), groups=channels)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(channels, 1, -1, 1).contiguous(), groups=channels)


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


# ------------------------------------------------------------------------- YOLOX: SimOTA assignment + loss
def box_iou_xyxy(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of (G, 4) and (N, 4) xyxy boxes -> (G, N)."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp_min(0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp_min(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp_min(0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp_min(1e-9)


@torch.no_grad()
def simota_assign(cls_logits: torch.Tensor, boxes: torch.Tensor, objectness: torch.Tensor, points: torch.Tensor,
                  strides: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor, center_radius: float = 2.5,
                  candidates_k: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """YOLOX's SimOTA for ONE image: which locations learn which object, chosen by the predictions.

    Candidates: locations whose centre lies in a box or within `center_radius` strides of its centre.
    Cost = class BCE + 3 * -log IoU (+ a large penalty outside the box-and-centre region). Each object
    takes its k cheapest candidates, k = the sum of its `candidates_k` best IoUs (at least 1); a location
    claimed twice goes to the cheaper object. Returns (foreground mask (N,), matched object (N,), IoU (N,)).
    """
    n = points.shape[0]
    x, y = points[:, 0], points[:, 1]
    in_box = (x > gt_boxes[:, None, 0]) & (x < gt_boxes[:, None, 2]) & (y > gt_boxes[:, None, 1]) & (y < gt_boxes[:, None, 3])
    centre = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
    r = center_radius * strides
    in_centre = ((x - centre[:, None, 0]).abs() < r) & ((y - centre[:, None, 1]).abs() < r)
    candidate = (in_box | in_centre).any(0)
    fg = torch.zeros(n, dtype=torch.bool, device=points.device)
    matched = torch.zeros(n, dtype=torch.long, device=points.device)
    ious_out = torch.zeros(n, device=points.device)
    if not candidate.any():
        return fg, matched, ious_out
    idx = candidate.nonzero()[:, 0]
    ious = box_iou_xyxy(gt_boxes, boxes[idx].float())  # (G, C)
    scores = (torch.sigmoid(cls_logits[idx].float()) * torch.sigmoid(objectness[idx].float())).sqrt()  # (C, K)
    onehot = F.one_hot(gt_labels, cls_logits.shape[-1]).float()  # (G, K)
    cls_cost = F.binary_cross_entropy(scores[None].expand(len(gt_boxes), -1, -1).clamp(1e-6, 1 - 1e-6),
                                      onehot[:, None].expand(-1, len(idx), -1), reduction="none").sum(-1)
    cost = cls_cost + 3.0 * -torch.log(ious + 1e-8) + 1e5 * ~(in_box[:, idx] & in_centre[:, idx])
    k = torch.topk(ious, min(candidates_k, len(idx)), dim=1).values.sum(1).int().clamp(min=1)
    claim = torch.zeros_like(cost, dtype=torch.bool)
    for g in range(len(gt_boxes)):
        claim[g, torch.topk(cost[g], int(min(k[g], len(idx))), largest=False).indices] = True
    contested = claim.sum(0) > 1
    if contested.any():
        cheapest = cost[:, contested].argmin(0)
        claim[:, contested] = False
        claim[cheapest, contested.nonzero()[:, 0]] = True
    taken = claim.any(0)
    owner = claim.float().argmax(0)
    fg[idx[taken]] = True
    matched[idx[taken]] = owner[taken]
    ious_out[idx[taken]] = ious[owner[taken], taken.nonzero()[:, 0]]
    return fg, matched, ious_out


def yolox_loss(cls_logits: torch.Tensor, box_ltrb: torch.Tensor, objectness: torch.Tensor,
               gt_boxes: list[torch.Tensor], gt_labels: list[torch.Tensor], image_size: tuple[int, int],
               box_weight: float = 5.0):
    """YOLOX loss: 5 * (1 - IoU^2) on assigned boxes, BCE objectness on every location, BCE classes on
    assigned locations with the IoU as the target's strength; normalised by the number assigned."""
    points, strides = _points_like(box_ltrb, image_size)
    boxes = torch.cat([points - box_ltrb[..., :2], points + box_ltrb[..., 2:]], dim=-1)  # (B, N, 4)
    obj_target = torch.zeros_like(objectness[..., 0])
    cls_terms, box_terms, num_fg = [], [], 0
    for i, (gb, gl) in enumerate(zip(gt_boxes, gt_labels)):
        if gb.numel() == 0:
            continue
        fg, matched, ious = simota_assign(cls_logits[i], boxes[i].detach(), objectness[i], points, strides, gb, gl)
        if not fg.any():
            continue
        obj_target[i, fg] = 1.0
        num_fg += int(fg.sum())
        pred_iou = box_iou_xyxy(boxes[i, fg], gb[matched[fg]]).diagonal()
        box_terms.append((1.0 - pred_iou ** 2).sum())
        target = F.one_hot(gl[matched[fg]], cls_logits.shape[-1]).float() * ious[fg, None]
        cls_terms.append(F.binary_cross_entropy_with_logits(cls_logits[i, fg], target, reduction="sum"))
    norm = max(num_fg, 1)
    obj = F.binary_cross_entropy_with_logits(objectness[..., 0], obj_target, reduction="sum") / norm
    zero = cls_logits.sum() * 0.0
    box = box_weight * (torch.stack(box_terms).sum() if box_terms else zero) / norm
    cls = (torch.stack(cls_terms).sum() if cls_terms else zero) / norm
    return obj + box + cls, {"det_cls": cls.item(), "det_box": box.item(), "det_obj": obj.item(), "det_fg": num_fg}


def _points_like(box_ltrb: torch.Tensor, image_size) -> tuple[torch.Tensor, torch.Tensor]:
    height, width = image_size
    points, strides = fcos_points(height, width, device=box_ltrb.device, dtype=box_ltrb.dtype)
    if points.shape[0] != box_ltrb.shape[1]:
        raise ValueError(f"{box_ltrb.shape[1]} head locations, a {height}x{width} image has {points.shape[0]}")
    return points, strides


def semantic_loss(out: PerceptionOutput | tuple, batch: dict, w: LossWeights, detector: str = "fcos"):
    """Lower-level f_semantic: detection + segmentation losses of the semantic module on fused images.

    `out` is (cls_logits, box_ltrb, centerness-or-objectness, seg_logits); images without a mask skip
    segmentation. FCOS assigns locations to objects by geometry, YOLOX by its own predictions (SimOTA).
    """
    cls_logits, box_ltrb, centerness, seg_logits = out
    height, width = seg_logits.shape[-2:]
    if detector == "yolox_nano":
        det, logs = yolox_loss(cls_logits, box_ltrb, centerness, batch["boxes"], batch["labels"], (height, width))
    else:
        targets = fcos_targets(batch["boxes"], batch["labels"], height, width)
        det, logs = detection_loss(cls_logits, box_ltrb, centerness, targets)
    total = w.detection * det
    if batch.get("mask") is not None:
        seg = F.cross_entropy(seg_logits, batch["mask"], ignore_index=255)
        total = total + w.segmentation * seg
        logs["seg_ce"] = seg.item()
    return total, logs
