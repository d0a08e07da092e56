"""YOLOX-nano (Ge et al. 2021) as the semantic module S_y2: a detector that starts from real-world weights.

A detector trained from scratch on a few hundred real pairs does not transfer (mAP@0.5 0.009 on real
road pairs); the COCO-pretrained YOLOX-nano does (0.39-0.47 zero-shot on the same pairs). This is its
architecture, written out so the graph takes any batch size and exports cleanly: CSPDarknet with
depthwise convs (depth 0.33, width 0.25, SiLU), PAFPN, decoupled head. Its BatchNorms arrive folded
into the convolutions (the published ONNX file), so every conv carries a bias and there is no BN:
fine-tuning a few hundred pairs at batch 2-8 gains nothing from batch statistics anyway.
Weights are loaded by training/yolox_weights.py; nothing here reads a file.

The head's outputs are given in the interface every backend and the post-processing share
(`cls_logits`, `box_ltrb` from the FCOS points, `centerness`): YOLOX's centre offsets and log sizes
become distances from the same points FCOS uses (the centre of each stride cell), and its objectness
logit takes the centerness slot. The shared score, sqrt(sigmoid(cls) * sigmoid(obj)), is the square
root of YOLOX's own score: the same ranking, so the same mAP.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STRIDES = (8, 16, 32)
WIDTHS = (16, 32, 64, 128, 256)  # stem, dark2..dark5 output channels at width 0.25
HEAD_WIDTH = 64
MAX_LOG_SIZE = 10.0  # exp(10) * 32 px: far beyond any image; keeps a diverging early step finite


class Conv(nn.Sequential):
    """Conv (BN folded into its bias) + SiLU: YOLOX's BaseConv after export."""

    def __init__(self, cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1):
        super().__init__(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups), nn.SiLU(inplace=True))


class DWConv(nn.Sequential):
    """Depthwise k x k then pointwise 1x1, each with SiLU."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1):
        super().__init__(Conv(cin, cin, k, stride, groups=cin), Conv(cin, cout, 1))


class Bottleneck(nn.Module):
    def __init__(self, channels: int, shortcut: bool):
        super().__init__()
        self.conv1 = Conv(channels, channels, 1)
        self.conv2 = DWConv(channels, channels, 3)
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return x + y if self.shortcut else y


class CSPLayer(nn.Module):
    """Cross-stage partial block. Convs run in YOLOX's order (conv1, conv2, blocks, conv3): the weight
    loader pairs this module's convs with the ONNX graph's in execution order."""

    def __init__(self, cin: int, cout: int, n: int, shortcut: bool = True):
        super().__init__()
        hidden = cout // 2
        self.conv1 = Conv(cin, hidden, 1)
        self.conv2 = Conv(cin, hidden, 1)
        self.blocks = nn.Sequential(*[Bottleneck(hidden, shortcut) for _ in range(n)])
        self.conv3 = Conv(2 * hidden, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv1(x)
        b = self.conv2(x)
        return self.conv3(torch.cat([self.blocks(a), b], dim=1))


class SPPBottleneck(nn.Module):
    def __init__(self, cin: int, cout: int, kernels=(5, 9, 13)):
        super().__init__()
        self.conv1 = Conv(cin, cin // 2, 1)
        self.pools = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in kernels)
        self.conv2 = Conv(cin // 2 * (len(kernels) + 1), cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x] + [pool(x) for pool in self.pools], dim=1))


class CSPDarknet(nn.Module):
    """Focus stem + four stages; returns dark3, dark4, dark5 (strides 8, 16, 32)."""

    def __init__(self):
        super().__init__()
        c1, c2, c3, c4, c5 = WIDTHS
        self.stem = Conv(12, c1, 3)
        self.dark2 = nn.Sequential(DWConv(c1, c2, 3, 2), CSPLayer(c2, c2, 1))
        self.dark3 = nn.Sequential(DWConv(c2, c3, 3, 2), CSPLayer(c3, c3, 3))
        self.dark4 = nn.Sequential(DWConv(c3, c4, 3, 2), CSPLayer(c4, c4, 3))
        self.dark5 = nn.Sequential(DWConv(c4, c5, 3, 2), SPPBottleneck(c5, c5), CSPLayer(c5, c5, 1, shortcut=False))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        # Focus: space-to-depth in YOLOX's patch order (top-left, bottom-left, top-right, bottom-right).
        # One zero row/column is added and the patches cut to ceil(H/2) x ceil(W/2): odd sizes work, and
        # for even sizes the added row/column is cut away again (exactly YOLOX's result)
        x = F.pad(x, (0, 1, 0, 1))
        bottom_right = x[..., 1::2, 1::2]
        h, w = bottom_right.shape[-2:]
        x = torch.cat([x[..., ::2, ::2][..., :h, :w], x[..., 1::2, ::2][..., :h, :w], x[..., ::2, 1::2][..., :h, :w],
                       bottom_right], dim=1)
        d3 = self.dark3(self.dark2(self.stem(x)))
        d4 = self.dark4(d3)
        return [d3, d4, self.dark5(d4)]


def _up_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


class PAFPN(nn.Module):
    """Top-down then bottom-up path aggregation; returns P3, P4, P5 with 64, 128, 256 channels."""

    def __init__(self):
        super().__init__()
        _, _, c3, c4, c5 = WIDTHS
        self.lateral_conv0 = Conv(c5, c4, 1)
        self.c3_p4 = CSPLayer(2 * c4, c4, 1, shortcut=False)
        self.reduce_conv1 = Conv(c4, c3, 1)
        self.c3_p3 = CSPLayer(2 * c3, c3, 1, shortcut=False)
        self.bu_conv2 = DWConv(c3, c3, 3, 2)
        self.c3_n3 = CSPLayer(2 * c3, c4, 1, shortcut=False)
        self.bu_conv1 = DWConv(c4, c4, 3, 2)
        self.c3_n4 = CSPLayer(2 * c4, c5, 1, shortcut=False)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        d3, d4, d5 = features
        top5 = self.lateral_conv0(d5)
        mid4 = self.c3_p4(torch.cat([_up_to(top5, d4), d4], dim=1))
        top4 = self.reduce_conv1(mid4)
        p3 = self.c3_p3(torch.cat([_up_to(top4, d3), d3], dim=1))
        p4 = self.c3_n3(torch.cat([self.bu_conv2(p3), top4], dim=1))
        p5 = self.c3_n4(torch.cat([self.bu_conv1(p4), top5], dim=1))
        return [p3, p4, p5]


class HeadLevel(nn.Module):
    """One FPN level of the decoupled head: a 1x1 stem, then class and box towers of two DWConvs."""

    def __init__(self, cin: int, num_classes: int, prior: float = 0.01):
        super().__init__()
        self.stem = Conv(cin, HEAD_WIDTH, 1)
        self.cls_convs = nn.Sequential(DWConv(HEAD_WIDTH, HEAD_WIDTH), DWConv(HEAD_WIDTH, HEAD_WIDTH))
        self.cls_pred = nn.Conv2d(HEAD_WIDTH, num_classes, 1)
        self.reg_convs = nn.Sequential(DWConv(HEAD_WIDTH, HEAD_WIDTH), DWConv(HEAD_WIDTH, HEAD_WIDTH))
        self.reg_pred = nn.Conv2d(HEAD_WIDTH, 4, 1)
        self.obj_pred = nn.Conv2d(HEAD_WIDTH, 1, 1)
        bias = -torch.log(torch.tensor((1 - prior) / prior)).item()
        nn.init.constant_(self.cls_pred.bias, bias)
        nn.init.constant_(self.obj_pred.bias, bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        cls = self.cls_pred(self.cls_convs(x))
        reg_feat = self.reg_convs(x)
        return cls, self.reg_pred(reg_feat), self.obj_pred(reg_feat)


def _flatten(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2)


class YOLOXNano(nn.Module):
    """Backbone + PAFPN + head. `forward(rgb)` takes RGB in [0, 1] (the fused image) and returns
    (cls_logits (B,N,K), box_ltrb (B,N,4) in pixels from the FCOS points, obj logits (B,N,1), P3)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.backbone = CSPDarknet()
        self.neck = PAFPN()
        self.head = nn.ModuleList(HeadLevel(c, num_classes) for c in WIDTHS[2:])

    def forward(self, rgb: torch.Tensor):
        # YOLOX reads BGR 0..255. Every stride-2 step rounds up, as `fusion_ros.model.fcos_points` counts
        # cells, so any input size gives one head location per FCOS point
        x = rgb.flip(1) * 255.0
        pyramid = self.neck(self.backbone(x))
        cls_out, box_out, obj_out = [], [], []
        for level, (feature, stride) in enumerate(zip(pyramid, STRIDES)):
            cls, reg, obj = self.head[level](feature)
            cls_out.append(_flatten(cls))
            obj_out.append(_flatten(obj))
            box_out.append(_flatten(_ltrb(reg, stride)))
        return torch.cat(cls_out, 1), torch.cat(box_out, 1), torch.cat(obj_out, 1), pyramid[0]


def _ltrb(reg: torch.Tensor, stride: int) -> torch.Tensor:
    """YOLOX box (centre = (offset + cell) * stride, size = exp(log size) * stride) as distances from
    the cell centre (cell + 0.5) * stride: l = (0.5 - dx) s + w/2, r = (dx - 0.5) s + w/2 (same for y)."""
    offset = reg[:, 0:2] - 0.5
    half = torch.exp(reg[:, 2:4].clamp(max=MAX_LOG_SIZE)) * (stride / 2.0)
    return torch.cat([half - offset * stride, half + offset * stride], dim=1)
