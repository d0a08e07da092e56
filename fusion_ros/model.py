"""The fused-perception network: fusion F_alpha, then detection + segmentation on the fused image.

One graph, exportable to ONNX as a whole (no data-dependent Python control flow in `forward`):

    thermal (B,1,H,W) ─┐
    rgb     (B,3,H,W) ─┼─► FusionNet ─► fused Y ─► YCbCr→RGB ─► fused (B,3,H,W)
                       │                                          │
                       └──────────────────────────────────────────┴─► backbone+FPN ─┬─► FCOS head
                                                                                    └─► seg head

All inputs are float in [0, 1]. Sizes come from `ModelConfig`: the "fast" default keeps
full-resolution layers thin and does the heavy work at stride >= 2 (DESIGN.md §2 budget); the "paper"
fusion size matches the authors' 64-channel dense blocks at full resolution.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .fusion_map import MAP_HEADS
from .head_points import FPN_STRIDES, head_points
from .yolox import WIDTHS as YOLOX_WIDTHS, YOLOXNano

YOLOX_P3_CHANNELS = YOLOX_WIDTHS[2]


@dataclass
class FusionConfig:
    stem_channels: int = 8  # full-resolution features (texture path)
    width: int = 32  # body width
    body_stride: int = 4  # the dense blocks run at 1/body_stride resolution; 1 = full resolution (paper)
    num_blocks: int = 2  # residual dense blocks
    growth: int = 16
    block_layers: int = 3
    dilation: int = 2
    body_out_channels: int = 8  # body features projected (at low resolution) before upsampling
    head_channels: int = 8
    # True: the network outputs a correction to the thermal image (in logit space, last layer zero at
    # init), so the fused image starts as the sharp thermal frame instead of a blurred re-drawing of it;
    # models saved before this option existed load as False (the authors' direct output)
    thermal_skip: bool = False
    # what the head outputs: "image" = the fused Y itself (the authors'); a *coefficient map* otherwise:
    # per pixel, fused Y = a·IR + b·Y + c, with (a, b, c) predicted at 1/`stride` resolution and upsampled,
    # so the full-resolution work is a few element-wise ops (the "image" head's full-resolution convs were
    # 60 % of the whole graph's time on CPU), the detail comes from both cameras at full resolution, and
    # the same map fuses the cameras at their own resolution after the graph (fusion_ros.fusion_map).
    # "blend": b = 1 - a in [0, 1] (a weighting of the two sources) and |c| <= BLEND_MAX_OFFSET;
    # "affine": a, b in [0, AFFINE_MAX_GAIN] each and |c| <= AFFINE_MAX_OFFSET, so the fused image may
    # carry both sources' full contrast at once (their sum) or stretch it. Both start as the plain pixel
    # average. "extremes": the map weighs the brighter and the darker source per pixel, fused Y =
    # a·max(IR, Y) + b·min(IR, Y) + c, and starts as a contrast-stretched maximum (`stretched_max_map`);
    # the network predicts bounded corrections to it (see EXTREMES_*). Models saved before this option
    # existed load as "image".
    output: str = "image"
    stride: int = 1  # resolution of the stem and head (map heads only: an "image" head must draw at full resolution)


FUSION_OUTPUTS = ("image", "blend", "affine", "extremes")
CHROMA_MODES = ("visible", "denoised")
DETECTORS = ("fcos", "yolox_nano")
THERMAL_SKIP_EPS = 1e-3  # the thermal image is clamped to [eps, 1 - eps] before its logit
BLEND_MAX_OFFSET = 0.25  # a "blend" head may lift or lower the mix by at most this (of the [0, 1] range)
AFFINE_MAX_GAIN = 2.0  # an "affine" head's gain on each source: 0 (drop it) .. 2 (twice its contrast)
AFFINE_MAX_OFFSET = 1.0  # ... and its offset (of the [0, 1] range): the sum of two bright sources needs -1
# The "extremes" head's prior, a contrast-stretched pixel maximum: the brighter source per pixel (a warm
# pedestrian on a dark road, a lit sign on a cool wall), its local contrast x1.2 around the mean over
# STRETCH_WINDOW map pixels (23 at 1/2 of 640x480: 7 % of the width), then the whole image's contrast
# x1.25 around its mean. Chosen as a fixed rule on RoadScene-50 / TNO-25 (docs/fusion.md): the smallest
# stretch whose detail (SD, SF) passes CDDFuse's published rows while the sources' edges (Qabf) still do.
STRETCH_LOCAL = 1.2
STRETCH_GLOBAL = 1.25
STRETCH_WINDOW = 23
# ... and the corrections the network may make to it: gain on the maximum, gain on the minimum, offset
EXTREMES_MAX_CORRECTION = (0.5, 0.5, 0.25)


@dataclass
class ModelConfig:
    num_det_classes: int = 6
    num_seg_classes: int = 10
    fusion: FusionConfig = field(default_factory=FusionConfig)
    backbone_channels: tuple[int, ...] = (16, 32, 64, 96, 128)  # strides 2, 4, 8, 16, 32
    fpn_channels: int = 64
    head_convs: int = 1
    seg_channels: int = 32
    # the fused image's colour: "visible" = the visible Cb/Cr as they are (the authors'), "denoised" =
    # the same, cleaned of the camera's colour noise (see `fused_chroma`); models saved before this
    # option existed load as "visible"
    chroma: str = "visible"
    # the semantic module's detector: "fcos" (a small FCOS trained from scratch; models saved before this
    # option existed load as it) or "yolox_nano" (YOLOX-nano, seeded from COCO weights: fusion_ros/yolox.py)
    detector: str = "fcos"

    @classmethod
    def from_dict(cls, raw: dict) -> "ModelConfig":
        raw = dict(raw)
        fusion = FusionConfig(**raw.pop("fusion", {}))
        if "backbone_channels" in raw:
            raw["backbone_channels"] = tuple(raw["backbone_channels"])
        cfg = cls(fusion=fusion, **raw)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict:
        out = asdict(self)
        out["backbone_channels"] = list(self.backbone_channels)
        return out

    def validate(self) -> None:
        if self.num_det_classes < 1 or self.num_seg_classes < 2:
            raise ValueError("need >= 1 detection class and >= 2 segmentation classes")
        if len(self.backbone_channels) != 5:
            raise ValueError("backbone_channels needs 5 entries (strides 2..32)")
        self._validate_fusion()
        if self.chroma not in CHROMA_MODES:
            raise ValueError(f"chroma must be one of {', '.join(CHROMA_MODES)}, got {self.chroma!r}")
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {self.detector!r}")

    def _validate_fusion(self) -> None:
        fusion = self.fusion
        if fusion.output not in FUSION_OUTPUTS:
            raise ValueError(f"fusion.output must be one of {', '.join(FUSION_OUTPUTS)}, got {fusion.output!r}")
        if fusion.stride not in (1, 2, 4) or (fusion.output == "image" and fusion.stride != 1):
            raise ValueError(f"fusion.stride must be 1, 2 or 4 (1 for output: image), got {fusion.stride!r}")
        if fusion.body_stride not in (1, 2, 4, 8) or fusion.body_stride % fusion.stride:
            raise ValueError(f"fusion.body_stride must be 1, 2, 4 or 8 and a multiple of fusion.stride, "
                             f"got {fusion.body_stride!r}")
        if not isinstance(fusion.thermal_skip, bool):  # a YAML "false" string would read as true
            raise ValueError(f"fusion.thermal_skip must be true or false, got {fusion.thermal_skip!r}")
        if fusion.thermal_skip and fusion.output != "image":
            raise ValueError("fusion.thermal_skip corrects a drawn image: it needs fusion.output: image")


PAPER_FUSION = FusionConfig(
    stem_channels=64, width=64, body_stride=1, num_blocks=2, growth=32, block_layers=5, body_out_channels=64,
    head_channels=32,
)

# FCOS levels P3..P5 (FPN_STRIDES): the object size each level is responsible for (pixels, max side of the box).
SIZE_RANGES = ((0.0, 64.0), (64.0, 128.0), (128.0, float("inf")))


# ---------------------------------------------------------------------------------------------- colour
def rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 full-range RGB -> YCbCr, all channels in [0, 1] (Cb/Cr centred on 0.5)."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = (b - y) * 0.564 + 0.5
    cr = (r - y) * 0.713 + 0.5
    return torch.cat([y, cb, cr], dim=1)


def ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    """Inverse of `rgb_to_ycbcr`, clipped to [0, 1] (no per-frame normalisation: output is stable)."""
    y, cb, cr = ycbcr[:, 0:1], ycbcr[:, 1:2] - 0.5, ycbcr[:, 2:3] - 0.5
    r = y + 1.403 * cr
    g = y - 0.714 * cr - 0.344 * cb
    b = y + 1.773 * cb
    return torch.cat([r, g, b], dim=1).clamp(0.0, 1.0)


def fused_chroma(cbcr: torch.Tensor, vis_y: torch.Tensor, fused_y: torch.Tensor, block: int = 4) -> torch.Tensor:
    """The visible Cb/Cr cleaned for a fused image whose luminance may come from the thermal camera.

    At night a visible camera's colour is mostly gain noise, several times the thermal image's noise;
    laid over thermal luminance it buries small warm objects. So: colour at 1/`block` resolution
    (block means, bilinear back: noise / block, as 4:2:0 video keeps it), faded by mean Y_vis / mean
    Y_fused over the block where the fused image is brighter than the visible one (colour measured in
    the dark is not trusted). All of it at the block resolution: applied to a camera-size frame
    (fusion_ros.fusion_map) it costs one small image and one upsampling.
    """
    pooled = block_mean(torch.cat([cbcr - 0.5, vis_y, fused_y], dim=1), block)
    trust = (pooled[:, 2:3] / pooled[:, 3:4].clamp_min(1e-3)).clamp(max=1.0)
    offset = F.interpolate(pooled[:, 0:2] * trust, size=cbcr.shape[-2:], mode="bilinear", align_corners=False)
    return 0.5 + offset


# ---------------------------------------------------------------------------------------------- fusion
def conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation)


class ResidualDenseBlock(nn.Module):
    """Dense dilated 3x3 convs, a 1x1 fuse and a residual add (the authors' RDB)."""

    def __init__(self, channels: int, growth: int, layers: int, dilation: int):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Sequential(conv3x3(channels + i * growth, growth, dilation=dilation), nn.PReLU(growth))
            for i in range(layers)
        )
        self.fuse = nn.Conv2d(channels + layers * growth, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in self.convs:
            features.append(conv(torch.cat(features, dim=1)))
        return x + self.fuse(torch.cat(features, dim=1))


class FusionNet(nn.Module):
    """F_alpha: (infrared, visible Y) -> fused Y in [0, 1].

    A thin full-resolution stem keeps texture; the residual dense blocks decide which source wins where
    at 1/body_stride resolution, are projected to a few channels there (cheap) and upsampled; a small
    full-resolution head merges both. With body_stride=1 and PAPER_FUSION this is the authors' network.
    With thermal_skip the head's output is added to logit(IR): the thin full-resolution path need not
    re-draw the thermal image's edges (it blurred small animals), only what the visible image adds.
    A map head ("blend", "affine") gives, at 1/stride resolution, the coefficients (a, b, c) of
    fused Y = a·IR + b·Y + c (`coefficients`); they are upsampled and applied to the full-resolution inputs
    (`apply_coefficients`), here at the network size and, after the graph, at the camera's.
    """

    def __init__(self, cfg: FusionConfig):
        super().__init__()
        self.stem = nn.Sequential(conv3x3(2, cfg.stem_channels), nn.PReLU(cfg.stem_channels))
        body_pool = cfg.body_stride // cfg.stride  # the stem already runs at 1/stride
        self.body = nn.Sequential(
            conv3x3(cfg.stem_channels, cfg.width),
            nn.PReLU(cfg.width),
            *[ResidualDenseBlock(cfg.width, cfg.growth, cfg.block_layers, cfg.dilation) for _ in range(cfg.num_blocks)],
            nn.Conv2d(cfg.width, cfg.body_out_channels, 1),
        )
        head_out = {"blend": 2, "affine": 3, "extremes": 3}.get(cfg.output, 1)
        self.head = nn.Sequential(
            conv3x3(cfg.stem_channels + cfg.body_out_channels, cfg.head_channels),
            nn.PReLU(cfg.head_channels),
            conv3x3(cfg.head_channels, head_out),
        )
        self.stride, self.body_pool, self.output = cfg.stride, body_pool, cfg.output
        self.thermal_skip = cfg.thermal_skip
        # start exactly at the thermal image / the average / the stretched maximum
        if self.thermal_skip or self.output in MAP_HEADS:
            nn.init.zeros_(self.head[-1].weight)
            nn.init.zeros_(self.head[-1].bias)
        if self.output == "affine":  # a = b = AFFINE_MAX_GAIN·sigmoid(bias) = 0.5: the pixel average
            with torch.no_grad():
                self.head[-1].bias[:2] = math.log(0.5 / (AFFINE_MAX_GAIN - 0.5))

    @property
    def has_map(self) -> bool:
        return self.output in MAP_HEADS

    def _head(self, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        sources = torch.cat([ir, vis_y], dim=1)
        if self.stride > 1:
            sources = block_mean(sources, self.stride)
        stem = self.stem(sources)
        if self.body_pool > 1:
            body = F.interpolate(self.body(block_mean(stem, self.body_pool)), size=stem.shape[-2:], mode="bilinear",
                                 align_corners=False)
        else:
            body = self.body(stem)
        return self.head(torch.cat([stem, body], dim=1))

    def coefficients(self, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) map of (a, b, c) at 1/stride resolution (map heads only)."""
        out = self._head(ir, vis_y)
        if self.output == "blend":
            weight = torch.sigmoid(out[:, 0:1])
            return torch.cat([weight, 1.0 - weight, BLEND_MAX_OFFSET * torch.tanh(out[:, 1:2])], dim=1)
        if self.output == "affine":
            return torch.cat([AFFINE_MAX_GAIN * torch.sigmoid(out[:, :2]), AFFINE_MAX_OFFSET * torch.tanh(out[:, 2:])],
                             dim=1)
        if self.output == "extremes":
            correction = torch.tensor(EXTREMES_MAX_CORRECTION, dtype=out.dtype, device=out.device).view(1, 3, 1, 1)
            return stretched_max_map(ir, vis_y, self.stride) + correction * torch.tanh(out)
        raise ValueError(f"a fusion head with output {self.output!r} has no coefficient map")

    def forward(self, ir: torch.Tensor, vis_y: torch.Tensor) -> torch.Tensor:
        if self.has_map:
            return apply_coefficients(self.coefficients(ir, vis_y), ir, vis_y, self.output)
        out = self._head(ir, vis_y)
        if self.thermal_skip:
            ir = ir.clamp(THERMAL_SKIP_EPS, 1.0 - THERMAL_SKIP_EPS)
            out = out + torch.log(ir) - torch.log1p(-ir)  # + logit(IR): sigmoid(0 + logit(IR)) = IR
        return torch.sigmoid(out)


def apply_coefficients(coefficients: torch.Tensor, ir: torch.Tensor, vis_y: torch.Tensor, output: str) -> torch.Tensor:
    """fused Y = clamp(a·IR + b·Y + c, 0, 1), or for the "extremes" head clamp(a·max(IR, Y) +
    b·min(IR, Y) + c, 0, 1), with (a, b, c) bilinearly upsampled to the images' size (the numpy twin for
    camera-size frames is fusion_ros.fusion_map.fuse_luminance)."""
    if coefficients.shape[-2:] != ir.shape[-2:]:
        coefficients = F.interpolate(coefficients, size=ir.shape[-2:], mode="bilinear", align_corners=False)
    a, b, c = coefficients[:, 0:1], coefficients[:, 1:2], coefficients[:, 2:3]
    if output == "extremes":
        ir, vis_y = torch.maximum(ir, vis_y), torch.minimum(ir, vis_y)
    return (a * ir + b * vis_y + c).clamp(0.0, 1.0)


def stretched_max_map(ir: torch.Tensor, vis_y: torch.Tensor, stride: int, local: float = STRETCH_LOCAL,
                      overall: float = STRETCH_GLOBAL, window: int = STRETCH_WINDOW) -> torch.Tensor:
    """(B, 3, h, w) coefficients at 1/stride of the "extremes" head's prior: with M = max(IR, Y), m its
    local mean over `window` map pixels and μ its image mean,
    F = μ + g·(m + l·(M − m) − μ) = g·l·M + g·(1 − l)·m + (1 − g)·μ   (l = local, g = overall),
    i.e. a = g·l, b = 0 and a smooth offset c. Only the offset depends on the images, at the map's size."""
    brightest = torch.maximum(ir, vis_y)
    if stride > 1:
        brightest = block_mean(brightest, stride)
    mean_local = _box_mean(_box_mean(brightest, window, 3), window, 2)
    mean = brightest.mean(dim=(2, 3), keepdim=True)
    offset = overall * (1.0 - local) * mean_local + (1.0 - overall) * mean
    return torch.cat([torch.full_like(offset, overall * local), torch.zeros_like(offset), offset], dim=1)


def block_mean(x: torch.Tensor, block: int) -> torch.Tensor:
    """Means over block x block tiles, a partial tile at an edge whose size is not a multiple of the block
    (avg_pool2d's ceil mode). Where the size is known (eager, a fixed-size export) and a multiple, the floor
    mode gives the same means, and ONNX Runtime runs it 3x faster (0.47 vs 1.46 ms, 4 x 480 x 640)."""
    height, width = x.shape[-2:]
    whole = isinstance(height, int) and isinstance(width, int) and height % block == 0 and width % block == 0
    return F.avg_pool2d(x, block, ceil_mode=not whole)


def _box_mean(x: torch.Tensor, window: int, dim: int) -> torch.Tensor:
    """Mean over `window` (odd) samples centred on each one along dim 2 or 3, edges replicated: by a running
    sum, a dozen times faster than avg_pool2d with a long kernel (measured 0.3 vs 3.4 ms on a 240x320 map)."""
    pad = window // 2
    padding = [pad, pad, 0, 0] if dim == 3 else [0, 0, pad, pad]
    total = torch.cumsum(F.pad(x, padding, mode="replicate"), dim)
    total = F.pad(total, [1, 0, 0, 0] if dim == 3 else [0, 0, 1, 0])  # a zero before the first sum
    return (total.narrow(dim, window, x.shape[dim]) - total.narrow(dim, 0, x.shape[dim])) / window


# -------------------------------------------------------------------------------------- backbone + FPN
class ConvBNAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResidualBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            ConvBNAct(channels, channels),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


class Backbone(nn.Module):
    """A small ResNet-style backbone; returns C3, C4, C5 (strides 8, 16, 32)."""

    def __init__(self, channels: tuple[int, ...]):
        super().__init__()
        c1, c2, c3, c4, c5 = channels
        self.stem = nn.Sequential(ConvBNAct(3, c1, 2), ConvBNAct(c1, c2, 2))
        self.stage3 = nn.Sequential(ConvBNAct(c2, c3, 2), ResidualBlock(c3))
        self.stage4 = nn.Sequential(ConvBNAct(c3, c4, 2), ResidualBlock(c4))
        self.stage5 = nn.Sequential(ConvBNAct(c4, c5, 2), ResidualBlock(c5))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c3 = self.stage3(self.stem(x))
        c4 = self.stage4(c3)
        return [c3, c4, self.stage5(c4)]


class FPN(nn.Module):
    def __init__(self, in_channels: tuple[int, ...], out_channels: int):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [lat(f) for lat, f in zip(self.lateral, features)]
        for i in range(len(laterals) - 2, -1, -1):  # top-down; `size=` keeps odd input sizes aligned
            laterals[i] = laterals[i] + F.interpolate(laterals[i + 1], size=laterals[i].shape[-2:], mode="nearest")
        return [out(lat) for out, lat in zip(self.output, laterals)]


# ------------------------------------------------------------------------------------------------ heads
class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class FCOSHead(nn.Module):
    """Anchor-free head shared across FPN levels: class logits, box distances (l,t,r,b) and centerness."""

    def __init__(self, channels: int, num_classes: int, num_convs: int, prior: float = 0.01):
        super().__init__()

        def tower() -> nn.Sequential:
            layers: list[nn.Module] = []
            for _ in range(num_convs):
                layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(8, channels), nn.ReLU(inplace=True)]
            return nn.Sequential(*layers)

        self.cls_tower, self.box_tower = tower(), tower()
        self.cls_logits = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.box_pred = nn.Conv2d(channels, 4, 3, padding=1)
        self.centerness = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.ModuleList(Scale() for _ in FPN_STRIDES)
        nn.init.constant_(self.cls_logits.bias, -torch.log(torch.tensor((1 - prior) / prior)).item())

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cls_out, box_out, ctr_out = [], [], []
        for feature, scale, stride in zip(features, self.scales, FPN_STRIDES):
            cls_feat, box_feat = self.cls_tower(feature), self.box_tower(feature)
            cls_out.append(_flatten(self.cls_logits(cls_feat)))
            # distances in pixels: relu keeps them >= 0, the stride sets each level's scale
            box_out.append(_flatten(F.relu(scale(self.box_pred(box_feat))) * stride))
            ctr_out.append(_flatten(self.centerness(box_feat)))
        return torch.cat(cls_out, 1), torch.cat(box_out, 1), torch.cat(ctr_out, 1)


def _flatten(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C), row-major over locations (matches `fcos_points`)."""
    return x.flatten(2).transpose(1, 2)


class SegHead(nn.Module):
    """Per-pixel class logits from the stride-8 FPN level, upsampled to the input size."""

    def __init__(self, in_channels: int, mid: int, num_classes: int):
        super().__init__()
        self.body = nn.Sequential(ConvBNAct(in_channels, mid), nn.Conv2d(mid, num_classes, 1))

    def forward(self, p3: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(self.body(p3), size=size, mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------------------- full model
def fcos_points(height: int, width: int, device=None, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres (N, 2) in pixels and the stride (N,) of every head location, in head output order, as
    tensors (the grid itself is `head_points.head_points`, shared with the torch-free runtime)."""
    points, strides = head_points(height, width)
    return torch.tensor(points, device=device, dtype=dtype), torch.tensor(strides, device=device, dtype=dtype)


class PerceptionOutput(NamedTuple):
    fused: torch.Tensor  # (B, 3, H, W) fused RGB in [0, 1]
    fused_y: torch.Tensor  # (B, 1, H, W) fused luminance (what the fusion loss and discriminator see)
    cls_logits: torch.Tensor  # (B, N, K)
    box_ltrb: torch.Tensor  # (B, N, 4) distances in pixels from each point
    centerness: torch.Tensor  # (B, N, 1) logits: FCOS centerness, or YOLOX objectness (same role in the score)
    seg_logits: torch.Tensor  # (B, C, H, W)
    fusion_map: torch.Tensor | None = None  # (B, 3, h, w) coefficients (a, b, c) of a map head, else None


def check_inputs(thermal: torch.Tensor, rgb: torch.Tensor) -> None:
    """Clear errors for the mistakes callers make, before torch reports them from deep inside a conv."""
    for name, x, channels in (("thermal", thermal, 1), ("rgb", rgb, 3)):
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4 or x.shape[1] != channels:
            raise ValueError(f"{name} must have shape (B, {channels}, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a float tensor scaled to [0, 1], got {x.dtype}")
        if x.shape[-1] < 1 or x.shape[-2] < 1:
            raise ValueError(f"{name} is empty: {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            bad = int((~torch.isfinite(x)).sum())
            raise ValueError(f"{name} contains {bad} NaN/inf values")
    if thermal.shape[0] != rgb.shape[0] or thermal.shape[-2:] != rgb.shape[-2:]:
        raise ValueError(
            f"thermal {tuple(thermal.shape)} and rgb {tuple(rgb.shape)} must share batch size and H, W "
            "(register/resize the thermal image to the RGB camera first)"
        )


class FusedPerceptionNet(nn.Module):
    """F_alpha (fusion) + S_y2 (detection and segmentation) as one network."""

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        self.cfg = cfg or ModelConfig()
        self.cfg.validate()
        self.fusion = FusionNet(self.cfg.fusion)
        if self.cfg.detector == "yolox_nano":
            self.detector = YOLOXNano(self.cfg.num_det_classes)
            seg_in = YOLOX_P3_CHANNELS
        else:
            self.backbone = Backbone(self.cfg.backbone_channels)
            self.fpn = FPN(self.cfg.backbone_channels[2:], self.cfg.fpn_channels)
            self.det_head = FCOSHead(self.cfg.fpn_channels, self.cfg.num_det_classes, self.cfg.head_convs)
            seg_in = self.cfg.fpn_channels
        self.seg_head = SegHead(seg_in, self.cfg.seg_channels, self.cfg.num_seg_classes)

    def fuse(self, thermal: torch.Tensor, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused RGB and fused Y: the fused Y replaces the visible luminance, colour comes from Cb/Cr."""
        fused, fused_y, _ = self.fuse_with_map(thermal, rgb)
        return fused, fused_y

    def fuse_with_map(self, thermal: torch.Tensor, rgb: torch.Tensor):
        """`fuse`, plus the fusion head's coefficient map (None for an "image" head)."""
        ycbcr = rgb_to_ycbcr(rgb)
        vis_y = ycbcr[:, 0:1]
        if self.fusion.has_map:
            coefficients = self.fusion.coefficients(thermal, vis_y)
            fused_y = apply_coefficients(coefficients, thermal, vis_y, self.fusion.output)
        else:
            coefficients, fused_y = None, self.fusion(thermal, vis_y)
        chroma = ycbcr[:, 1:]
        if self.cfg.chroma == "denoised":
            chroma = fused_chroma(chroma, vis_y, fused_y)
        return ycbcr_to_rgb(torch.cat([fused_y, chroma], dim=1)), fused_y, coefficients

    def perceive(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The semantic module on any RGB image (fused, or a single modality for baselines)."""
        if self.cfg.detector == "yolox_nano":
            cls_logits, box_ltrb, objectness, p3 = self.detector(image)
            return cls_logits, box_ltrb, objectness, self.seg_head(p3, image.shape[-2:])
        features = self.fpn(self.backbone(image))
        cls_logits, box_ltrb, centerness = self.det_head(features)
        return cls_logits, box_ltrb, centerness, self.seg_head(features[0], image.shape[-2:])

    def forward(self, thermal: torch.Tensor, rgb: torch.Tensor) -> PerceptionOutput:
        if not _is_exporting():
            check_inputs(thermal, rgb)
        fused, fused_y, coefficients = self.fuse_with_map(thermal, rgb)
        return PerceptionOutput(fused, fused_y, *self.perceive(fused), fusion_map=coefficients)


def _is_exporting() -> bool:
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.compiler.is_compiling()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
