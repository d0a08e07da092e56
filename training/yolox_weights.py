"""Seed the YOLOX-nano semantic module from the published COCO-pretrained ONNX file.

    load_yolox_onnx(module, "yolox_nano.onnx", class_names)

The file (YOLOX's own export, BatchNorm folded) names its convolutions by number, not by module, so
convolutions are paired by execution order: the graph's Conv nodes in topological order against this
module's Conv2d layers in the order a forward pass calls them, every shape checked. The 80 COCO class
rows of the three class predictors are cut down to the model's classes (`COCO_IDS`); a class with no
COCO counterpart keeps its fresh initialisation. Training-time only (needs the `onnx` package).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from fusion_ros.yolox import YOLOXNano

# The model's class names -> the COCO class id whose predictor row seeds it.
COCO_IDS = {
    "person": 0, "pedestrian": 0, "people": 0, "bicycle": 1, "bike": 1, "car": 2, "motorcycle": 3, "bus": 5,
    "truck": 7, "traffic_light": 9, "traffic light": 9, "stop_sign": 11, "dog": 16, "animal": 16,
}
COCO_CLASSES = 80


def onnx_convs(path: str | Path) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(weight, bias) of every Conv node of an ONNX graph, in graph (topological) order."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    convs = []
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        weight = inits.get(node.input[1])
        if weight is None:
            raise ValueError(f"{path}: Conv node {node.name!r} has no constant weight")
        bias = inits.get(node.input[2]) if len(node.input) > 2 else None
        convs.append((weight, bias))
    return convs


def execution_order(module: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Conv2d]]:
    """The module's Conv2d layers in the order one forward pass calls them."""
    names = {m: n for n, m in module.named_modules()}
    order: list[tuple[str, nn.Conv2d]] = []
    hooks = [m.register_forward_pre_hook(lambda m, _: order.append((names[m], m)))
             for m in module.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            module(example)
    finally:
        for h in hooks:
            h.remove()
    return order


@torch.no_grad()
def load_yolox_onnx(module: YOLOXNano, path: str | Path, class_names) -> dict:
    """Copy the ONNX file's weights into `module` (in place). Returns what was mapped, for the model card."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"YOLOX weights {path} not found (model.detector_init)")
    source = onnx_convs(path)
    target = execution_order(module, torch.zeros(1, 3, 64, 64))
    if len(source) != len(target):
        raise ValueError(f"{path}: {len(source)} convolutions, YOLOX-nano has {len(target)}: not a YOLOX-nano export")
    class_rows = [COCO_IDS.get(name.lower()) for name in class_names]
    for (weight, bias), (name, conv) in zip(source, target):
        weight, bias = torch.from_numpy(weight.copy()), None if bias is None else torch.from_numpy(bias.copy())
        if name.endswith("cls_pred") and weight.shape[0] == COCO_CLASSES:
            for row, coco in enumerate(class_rows):  # unmapped classes keep their prior-initialised row
                if coco is not None:
                    conv.weight[row] = weight[coco]
                    conv.bias[row] = bias[coco]
            continue
        if tuple(weight.shape) != tuple(conv.weight.shape):
            raise ValueError(f"{path}: conv for {name} has shape {tuple(weight.shape)}, expected {tuple(conv.weight.shape)}")
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return {"source": path.name, "convs": len(target),
            "coco_ids": {n: c for n, c in zip(class_names, class_rows)}}
