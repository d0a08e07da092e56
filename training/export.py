"""Export a fusion_ros model file to ONNX, with a JSON sidecar and a parity check.

    python -m training.export [MODEL.pt] [--out model.onnx] [--size 640x512] [--dynamic]
    fusion-export ...                     (the same, as a console script)

One graph of the whole FusedPerceptionNet: inputs `thermal` (B×1×H×W float32 0..1) and `rgb`
(B×3×H×W float32 0..1); outputs `fused`, `cls_logits`, `box_ltrb`, `centerness`, `seg_logits`. Box decode,
NMS and the mask argmax stay outside the graph (fusion_ros.postprocess), so every backend shares them.

Exporter: torch.onnx's torch.export-based ("dynamo") exporter, the default and the maintained one since
torch 2.9, opset 18, weights embedded in the one .onnx file (external_data=False: one file, one sha256).
The legacy TorchScript exporter (`--exporter torchscript`, opset 17) is kept as a fallback: it is ~5×
faster to run but deprecated. Both give the same graph ops for this network (Conv, PRelu, Resize,
InstanceNormalization for GroupNorm, ...) and both pass the parity check.

Parity: the exported file is run with ONNX Runtime (CPU) and compared with PyTorch on the same random
inputs (and, for --dynamic, a second batch size and image size). The export fails (exit status 1, no
.onnx left behind) when any output's max-abs-diff exceeds tolerance·max(1, max|reference|).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

import fusion_ros
from fusion_ros.checkpoint import DEFAULT_MODEL, load_model
from fusion_ros.engine.base import FUSION_MAP_OUTPUT, INPUT_NAMES, OUTPUT_NAMES
from fusion_ros.engine.sidecar import ONNX_FORMAT, relative_path, sha256_file, write_sidecar
from fusion_ros.model import FPN_STRIDES, FusedPerceptionNet

DEFAULT_TOLERANCE = 1e-3
DYNAMIC_MIN, DYNAMIC_MAX = 32, 4096
OPSETS = {"dynamo": 18, "torchscript": 17}

OUTPUT_LAYOUT = {
    "fused": "(B, 3, H, W) fused RGB, float 0..1",
    "cls_logits": "(B, N, K) detection class logits per FCOS point (K = len(det_classes))",
    "box_ltrb": "(B, N, 4) distances left, top, right, bottom from each point, in input pixels",
    "centerness": "(B, N, 1) centerness logits; score = sqrt(sigmoid(cls_logits) * sigmoid(centerness))",
    "seg_logits": "(B, C, H, W) segmentation logits (C = len(seg_classes)); argmax -> class id",
    FUSION_MAP_OUTPUT: (
        "(B, 3, h, w) coefficients (a, b, c) of the fused luminance Y = clamp(a*IR + b*Y_visible + c, 0, 1) "
        "(extremes head: a*max(IR, Y_visible) + b*min(IR, Y_visible) + c), at 1/fusion.stride of the input size; "
        "bilinearly upsampled they fuse the cameras at any resolution (fusion_ros.fusion_map); only models with a "
        "map head (fusion.output blend, affine or extremes) have it"
    ),
    "points": (
        "N = sum over strides (8, 16, 32) of ceil(H/s)*ceil(W/s); point centres and order are "
        "fusion_ros.model.fcos_points(H, W) (per level, row-major); decode with "
        "fusion_ros.postprocess.decode_detections"
    ),
}


class ExportError(RuntimeError):
    """The export could not be done or failed its parity check."""


def graph_output_names(model: FusedPerceptionNet) -> tuple[str, ...]:
    """The exported graph's outputs: OUTPUT_NAMES, plus the coefficient map of a map-head model."""
    return OUTPUT_NAMES + ((FUSION_MAP_OUTPUT,) if model.fusion.has_map else ())


class _Graph(nn.Module):
    """FusedPerceptionNet with the deployed outputs only, as a flat tuple in `output_names` order."""

    def __init__(self, model: FusedPerceptionNet):
        super().__init__()
        self.model = model
        self.output_names = graph_output_names(model)

    def forward(self, thermal: torch.Tensor, rgb: torch.Tensor):
        out = self.model(thermal, rgb)
        return tuple(getattr(out, name) for name in self.output_names)


@dataclass
class ExportResult:
    onnx_path: Path
    sidecar_path: Path
    sidecar: dict
    parity: dict  # output name -> max-abs-diff (worst over the checked shapes)


def parse_size(text: str) -> tuple[int, int]:
    """'640x512' (W×H, as cameras are quoted) -> (height, width)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT like 640x512, got {text!r}") from None
    if width < 32 or height < 32:
        raise argparse.ArgumentTypeError(f"size must be at least 32x32, got {text!r}")
    return height, width


def _inputs(batch: int, height: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, height, width, generator=gen), torch.rand(batch, 3, height, width, generator=gen)


def _reference_outputs(graph: nn.Module, thermal: torch.Tensor, rgb: torch.Tensor) -> list[np.ndarray]:
    with torch.inference_mode():
        return [t.numpy() for t in graph(thermal, rgb)]


def check_parity(
    onnx_path: str | Path,
    graph: nn.Module,
    shapes: list[tuple[int, int, int]],
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, float]:
    """Max-abs-diff per output of ONNX Runtime vs PyTorch over `shapes` (batch, h, w); ExportError above
    tolerance·max(1, max|ref|)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    names = list(graph.output_names)
    worst = {name: 0.0 for name in names}
    failures = []
    for index, (batch, height, width) in enumerate(shapes):
        thermal, rgb = _inputs(batch, height, width, seed=index)
        reference = _reference_outputs(graph, thermal, rgb)
        got = session.run(names, {"thermal": thermal.numpy(), "rgb": rgb.numpy()})
        for name, ref, out in zip(names, reference, got):
            if ref.shape != out.shape:
                failures.append(f"{name} at {batch}x{height}x{width}: shape {out.shape} != torch {ref.shape}")
                continue
            diff = float(np.max(np.abs(out.astype(np.float64) - ref))) if ref.size else 0.0
            worst[name] = max(worst[name], diff)
            allowed = tolerance * max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
            if not diff <= allowed:  # also catches NaN
                failures.append(f"{name} at {batch}x{height}x{width}: max-abs-diff {diff:.3g} > {allowed:.3g}")
    if failures:
        raise ExportError(
            f"ONNX Runtime disagrees with PyTorch for {onnx_path}: " + "; ".join(failures)
            + " — the export is wrong (try --exporter torchscript, or report the op)"
        )
    return worst


def _export_graph(graph: _Graph, path: Path, size: tuple[int, int], dynamic: bool, exporter: str, opset: int):
    args = _inputs(1, *size, seed=0)
    common = dict(input_names=list(INPUT_NAMES), output_names=list(graph.output_names), opset_version=opset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer/deprecation chatter; parity is the real check
        if exporter == "dynamo":
            dynamic_shapes = None
            if dynamic:
                dim = torch.export.Dim
                batch = dim("batch", min=1, max=64)
                height = dim("height", min=DYNAMIC_MIN, max=DYNAMIC_MAX)
                width = dim("width", min=DYNAMIC_MIN, max=DYNAMIC_MAX)
                axes = {0: batch, 2: height, 3: width}
                dynamic_shapes = {"thermal": axes, "rgb": axes}
            torch.onnx.export(
                graph, args, str(path), dynamo=True, external_data=False, optimize=True, verbose=False,
                dynamic_shapes=dynamic_shapes, **common,
            )
        elif exporter == "torchscript":
            axes = {0: "batch", 2: "height", 3: "width"}
            dynamic_axes = {name: axes for name in INPUT_NAMES} if dynamic else None
            torch.onnx.export(graph, args, str(path), dynamo=False, dynamic_axes=dynamic_axes, **common)
        else:
            raise ExportError(f"unknown exporter {exporter!r} (use 'dynamo' or 'torchscript')")


def _io_spec(size: tuple[int, int], dynamic: bool, model: FusedPerceptionNet) -> tuple[list, list]:
    height, width = size
    b, h, w = ("batch", "height", "width") if dynamic else (1, height, width)
    inputs = [
        {"name": "thermal", "shape": [b, 1, h, w], "dtype": "float32", "layout": "NCHW", "range": [0.0, 1.0],
         "description": "thermal registered to the RGB grid, 0..1 (16-bit counts: see normalisation)"},
        {"name": "rgb", "shape": [b, 3, h, w], "dtype": "float32", "layout": "NCHW", "range": [0.0, 1.0],
         "description": "visible image, RGB channel order, uint8/255"},
    ]
    if dynamic:
        n = "N"
    else:
        n = sum(-(-height // s) * -(-width // s) for s in FPN_STRIDES)
    k, c = model.cfg.num_det_classes, model.cfg.num_seg_classes
    stride = model.cfg.fusion.stride
    map_h, map_w = ("map_height", "map_width") if dynamic else (-(-height // stride), -(-width // stride))
    shapes = {"fused": [b, 3, h, w], "cls_logits": [b, n, k], "box_ltrb": [b, n, 4], "centerness": [b, n, 1],
              "seg_logits": [b, c, h, w], FUSION_MAP_OUTPUT: [b, 3, map_h, map_w]}
    outputs = [{"name": name, "shape": shapes[name], "dtype": "float32", "description": OUTPUT_LAYOUT[name]}
               for name in graph_output_names(model)]
    return inputs, outputs


def export_onnx(
    model_path: str | Path | None = None,
    out_path: str | Path | None = None,
    *,
    size: tuple[int, int] | None = None,
    dynamic: bool = False,
    exporter: str = "dynamo",
    opset: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> ExportResult:
    """Export `model_path` (default: the bundled model) to `out_path` (default: beside it, .onnx)."""
    if model_path is None:
        model_path = DEFAULT_MODEL
        if not Path(model_path).is_file():
            raise ExportError(
                f"no model given and the bundled default {model_path} does not exist: "
                "pass a model file (training writes one) as the first argument"
            )
    model_path = Path(model_path)
    if exporter not in OPSETS:
        raise ExportError(f"unknown exporter {exporter!r} (use 'dynamo' or 'torchscript')")
    try:
        model, meta = load_model(model_path)
    except (FileNotFoundError, ValueError) as exc:
        raise ExportError(str(exc)) from None
    size = tuple(size or meta.input_size)
    opset = opset or OPSETS[exporter]
    out_path = Path(out_path) if out_path is not None else model_path.with_suffix(".onnx")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    graph = _Graph(model.eval()).eval()
    try:
        try:
            _export_graph(graph, partial, size, dynamic, exporter, opset)
        except ExportError:
            raise
        except Exception as exc:  # the exporters raise many types
            raise ExportError(f"torch.onnx.export ({exporter}) failed for {model_path}: {exc}") from exc
        import onnx

        try:
            onnx.checker.check_model(str(partial), full_check=True)
        except Exception as exc:
            raise ExportError(f"exported graph fails the ONNX checker: {exc}") from exc
        height, width = size
        shapes = [(1, height, width)]
        if dynamic:
            shapes.append((2, max(DYNAMIC_MIN, height // 2 + 3), max(DYNAMIC_MIN, width // 2 + 5)))
        parity = check_parity(partial, graph, shapes, tolerance)
        partial.replace(out_path)
    finally:
        partial.unlink(missing_ok=True)
    inputs, outputs = _io_spec(size, dynamic, model)
    model_sha = sha256_file(model_path)
    info = meta.info or {}
    sidecar = {
        "format": ONNX_FORMAT,
        "onnx_file": out_path.name,
        "onnx_sha256": sha256_file(out_path),
        "opset": opset,
        "exporter": exporter,
        "dynamic": dynamic,
        "dynamic_range": {"batch": [1, 64], "height": [DYNAMIC_MIN, DYNAMIC_MAX], "width": [DYNAMIC_MIN, DYNAMIC_MAX]}
        if dynamic else None,
        "input_size": [size[0], size[1]],
        "inputs": inputs,
        "outputs": outputs,
        "output_layout": OUTPUT_LAYOUT,
        "normalisation": {
            "thermal_range": list(meta.thermal_range),
            "thermal": "uint16 counts: (v - low) / (high - low) clipped to 0..1; uint8: v / 255",
            "rgb": "uint8 RGB / 255",
        },
        "thermal_range": list(meta.thermal_range),
        "det_classes": list(meta.det_classes),
        "seg_classes": list(meta.seg_classes),
        "segmentation_labels": meta.segmentation_labels,
        "model_version": str(info.get("version") or info.get("model_version") or f"sha256:{model_sha[:12]}"),
        "model_config": model.cfg.to_dict(),
        "source_model": {"file": relative_path(model_path, out_path.parent), "sha256": model_sha},
        "parity": {"backend": "onnxruntime-cpu", "max_abs_diff": parity, "tolerance": tolerance,
                   "shapes": [list(s) for s in shapes]},
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        "fusion_ros_version": fusion_ros.__version__,
        "export_date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return ExportResult(out_path, write_sidecar(out_path, sidecar), sidecar, parity)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fusion-export", description="Export a fusion_ros model to ONNX (+ JSON sidecar, parity-checked)."
    )
    parser.add_argument("model", nargs="?", help=f"model file (default: the bundled {DEFAULT_MODEL.name})")
    parser.add_argument("--out", "-o", help="output .onnx path (default: beside the model, .onnx)")
    parser.add_argument("--size", type=parse_size, help="WIDTHxHEIGHT (default: the model's, 640x512)")
    parser.add_argument("--dynamic", action="store_true", help="dynamic batch, height and width")
    parser.add_argument("--exporter", choices=sorted(OPSETS), default="dynamo")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: 18 dynamo, 17 torchscript)")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help="max allowed |onnxruntime - torch| per output, relative to max(1, max|torch|)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        result = export_onnx(
            args.model, args.out, size=args.size, dynamic=args.dynamic, exporter=args.exporter,
            opset=args.opset, tolerance=args.tolerance,
        )
    except ExportError as exc:
        print(f"fusion-export: FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {result.onnx_path} and {result.sidecar_path.name}")
    for name, diff in result.parity.items():
        print(f"  parity {name:<11} max-abs-diff {diff:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
