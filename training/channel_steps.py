"""Per-output-channel step sizes for a detector whose BatchNorms are folded into its convolutions.

The COCO YOLOX-nano comes as an ONNX graph with every BatchNorm folded into the conv before it, so one
conv's output channels carry weights of very different scales (channel RMS from 5e-5 in the stem to 37).
Adam moves every weight by about ``lr`` a step whatever its scale: a rate that lets the typical channel
learn rewrites the smallest ones (the stem) within a few steps, and a rate safe for those leaves the rest
frozen. Training each conv weight as ``W = s * V`` (``s``: the channel's RMS at the start, fixed; ``V``:
the trained tensor, RMS 1) makes Adam's step a *relative* one, the same fraction of every channel, as it
would be on the network before folding. Nothing changes at inference: ``fold`` writes ``s * V`` back.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize


class ChannelScale(nn.Module):
    """The parametrization W = scale * V, one fixed scale per output channel."""

    def __init__(self, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", scale)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return v * self.scale

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        return w / self.scale


def scale_conv_weights(module: nn.Module) -> int:
    """Parametrize every Conv2d weight in ``module`` as channel RMS * V; the number of convs changed."""
    count = 0
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d) and not parametrize.is_parametrized(conv, "weight"):
            w = conv.weight.detach()
            rms = w.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-12)
            parametrize.register_parametrization(conv, "weight", ChannelScale(rms.view(-1, *[1] * (w.dim() - 1))))
            count += 1
    return count


def fold(module: nn.Module) -> nn.Module:
    """``module`` with every parametrized weight written back as a plain tensor (in place)."""
    for sub in module.modules():
        if parametrize.is_parametrized(sub):
            for name in list(sub.parametrizations):
                parametrize.remove_parametrizations(sub, name, leave_parametrized=True)
    return module
