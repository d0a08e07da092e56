"""Parameters, GFLOPs and CPU forward time of the fused-perception network: the bundled real-road model's
configuration (blend fusion head, YOLOX-nano detector), the same with the drawn-image fusion head, the
synthetic model's (FCOS) and the paper-size fusion net.

    python benchmarks/model_size.py [--height 512 --width 640 --threads 2 --repeats 10]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dataclasses import replace  # noqa: E402

from fusion_ros.checkpoint import load_model  # noqa: E402
from fusion_ros.model import PAPER_FUSION, FusedPerceptionNet, FusionConfig, ModelConfig, count_parameters  # noqa: E402


def measure(name: str, cfg: ModelConfig, height: int, width: int, repeats: int) -> dict:
    model = FusedPerceptionNet(cfg).eval()
    thermal, rgb = torch.rand(1, 1, height, width), torch.rand(1, 3, height, width)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            model(thermal, rgb)
        fusion_flops = sum(counter.get_flop_counts().get("FusedPerceptionNet.fusion", {}).values())
        model(thermal, rgb)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(thermal, rgb)
            times.append(time.perf_counter() - start)
    return {
        "model": name,
        "params (M)": count_parameters(model) / 1e6,
        "fusion params (M)": count_parameters(model.fusion) / 1e6,
        "GFLOPs": counter.get_total_flops() / 1e9,
        "fusion GFLOPs": fusion_flops / 1e9,
        "torch CPU ms (median)": 1000 * float(np.median(times)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bundled = load_model()[0].cfg
    rows = [
        measure(f"bundled: {bundled.fusion.output} fusion + YOLOX-nano ({bundled.num_det_classes} classes)", bundled,
                args.height, args.width, args.repeats),
        measure("the same with the drawn-image fusion head (output: image)", replace(bundled, fusion=FusionConfig()),
                args.height, args.width, args.repeats),
        measure("synthetic: fast fusion + FCOS (6 classes)", ModelConfig(), args.height, args.width, args.repeats),
        measure("paper-size fusion", ModelConfig(fusion=PAPER_FUSION), args.height, args.width, max(2, args.repeats // 5)),
    ]
    cols = list(rows[0])
    print(f"{args.width}x{args.height}, torch {torch.__version__}, {args.threads} threads (FLOPs = 2 x multiply-adds)")
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else v for v in r.values()) + " |")


if __name__ == "__main__":
    main()
