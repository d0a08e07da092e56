"""Engine benchmark: latency, throughput and memory per backend, image size and batch size.

    python benchmarks/engine_bench.py OUT_PREFIX [--model MODEL.pt] [--sizes 640x512 1024x768]
           [--backends torch onnxruntime tensorrt] [--batches 1 4] [--threads 2] [--device cpu|cuda]
           [--segmentation] [--camera-sizes 640x480 1280x1024 1920x1080]
           [--baseline-model OLD.pt] [--rounds 3]

Writes OUT_PREFIX.json (every number) and OUT_PREFIX.md (a Markdown table for docs/engines.md). Every
configuration runs in a fresh process (spawn), so peak RSS is that backend's alone and thread settings do
not leak between backends. Frames are synthetic camera frames at the network size (uint16 thermal, uint8
RGB): "pre"/"post" are the shared fusion_ros.preprocess/postprocess costs, "infer" the backend's network
call. Times are per pair (a batch-4 call's time divided by 4). "vs torch" is the throughput ratio to
PyTorch eager measured in the same run, same size and batch. Without --model a random-weight model is
used (timing does not depend on the weights, but detection post-processing then sees ~no detections).
Like the node with its default parameters (no segmentation topic published), the engine is asked for no
segmentation mask; --segmentation measures with it (argmax + resize to the frame in "post").

ONNX Runtime runs the fixed-shape export (what the node deploys) at batch 1 and a dynamic export at
batch > 1. TensorRT needs a GPU and an engine: pass --engine-dir with <size>.engine files built by
fusion-build-engine from the exports this script writes to --work-dir.

--camera-sizes: the network runs at the model's own size and the frames come at each camera size, each
configuration twice: the fused image at the camera's resolution (the coefficient map applied to the
full-resolution frames, the node's default) and at the network's (fused_resolution: network): the
difference in "pre" + "post" is what fusing at the camera's resolution costs.

--baseline-model: every configuration also runs with that model (say the previously shipped one), the
two alternating so that both see the same machine state; "vs baseline" is the model's throughput over
the baseline's. --rounds N runs the whole list N times, interleaved, and keeps each configuration's
median-throughput round (all rounds' pairs/s are in the JSON).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(ROOT))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[index]


def _worker(job: dict) -> dict:
    """One (backend, size, batch) configuration, in its own process."""
    import numpy as np

    threads = job["threads"]
    if threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    torch = None
    if job["backend"] == "torch" or job["device"] == "cuda":  # the ONNX Runtime path runs (and is measured) torch-free
        import torch

        if threads:
            torch.set_num_threads(threads)
    from fusion_ros.engine import create_engine

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    height, width = job["size"]
    opts = dict(input_size=(height, width), fused_resolution=job["fused_resolution"])
    if threads:
        opts["num_threads"] = threads
    engine = create_engine(job["artifact"], backend=job["backend"], device=job["device"], **opts)
    rng = np.random.default_rng(0)
    batch = job["batch"]
    height, width = job["camera_size"] or job["size"]  # the frames: the camera's size, else the network's
    thermals = [rng.integers(26000, 34000, (height, width), dtype=np.uint16) for _ in range(batch)]
    rgbs = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(batch)]
    cuda = job["device"] == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    segmentation = job["segmentation"]
    for _ in range(job["warmup"]):
        engine.infer_batch(thermals, rgbs, segmentation=segmentation)
    latencies, splits = [], {"pre": [], "infer": [], "post": []}
    started = time.perf_counter()
    for _ in range(job["iters"]):
        t0 = time.perf_counter()
        results = engine.infer_batch(thermals, rgbs, segmentation=segmentation)
        latencies.append((time.perf_counter() - t0) * 1e3)
        for key in splits:
            splits[key].append(results[0].timings[key])
        if time.perf_counter() - started > job["max_seconds"] and len(latencies) >= 3:
            break
    total = time.perf_counter() - started
    out = {
        "backend": engine.backend,
        "segmentation": segmentation,
        "requested_backend": job["backend"],
        "size": f"{job['size'][1]}x{job['size'][0]}",
        "camera_size": f"{width}x{height}" if job["camera_size"] else None,
        "fused_resolution": job["fused_resolution"],
        "fused_shape": list(results[0].fused.shape),
        "batch": batch,
        "iterations": len(latencies),
        "latency_ms_median": statistics.median(latencies),
        "latency_ms_p95": _percentile(latencies, 95),
        "per_pair_ms": {k: statistics.median(v) for k, v in splits.items()},
        "throughput_pairs_per_s": batch * len(latencies) / total,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "rss_before_model_mb": rss_before,
        "detections_last_frame": len(results[0].detections),
    }
    if cuda:
        out["cuda_max_memory_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    engine.close()
    return out


def _run_job(job: dict) -> dict:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_worker, (job,))


def _prepare_model(args, work: Path) -> tuple[Path, bool]:
    if args.model:
        return Path(args.model), False
    from fusion_ros.checkpoint import DEFAULT_MODEL, ModelMeta, save_model
    from fusion_ros.classes import load_classes

    if DEFAULT_MODEL.is_file():
        return DEFAULT_MODEL, False
    import torch

    from fusion_ros.model import FusedPerceptionNet, ModelConfig

    path = work / "random_weights.pt"
    if not path.is_file():
        torch.manual_seed(0)
        cfg = ModelConfig()
        try:
            classes = load_classes()
            det, seg = list(classes.detection.names), list(classes.segmentation.names)
            cfg = ModelConfig(num_det_classes=len(det), num_seg_classes=len(seg))
        except (FileNotFoundError, ValueError):
            det, seg = [f"det{i}" for i in range(6)], [f"seg{i}" for i in range(10)]
        save_model(path, FusedPerceptionNet(cfg), ModelMeta(det, seg, info={"version": "random-weights"}))
    return path, True


def _export(model: Path, work: Path, size: tuple[int, int], dynamic: bool) -> Path:
    from fusion_ros.engine.sidecar import read_sidecar, sha256_file
    from training.export import export_onnx

    height, width = size
    path = work / (f"{model.stem}_dynamic.onnx" if dynamic else f"{model.stem}_{width}x{height}.onnx")
    try:  # reuse an export of exactly this model
        sidecar = read_sidecar(path)
        if sidecar["source_model"]["sha256"] == sha256_file(model) and sidecar["onnx_sha256"] == sha256_file(path):
            return path
    except Exception:
        pass
    print(f"exporting {path.name} ...", flush=True)
    return export_onnx(model, path, size=size, dynamic=dynamic).onnx_path


def _table(results: list[dict]) -> str:
    if any(r["camera_size"] for r in results):
        return _camera_table(results)
    lines = [
        "| backend | size (WxH) | batch | median ms/call | p95 ms/call | pairs/s | vs torch "
        "| pre ms | infer ms | post ms | peak memory MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with_baseline = any(r.get("vs_baseline") is not None for r in results)
    if with_baseline:
        lines[0] = "| model " + lines[0] + " vs baseline |"
        lines[1] = "|---" + lines[1] + "---:|"
    for r in results:
        memory = r.get("cuda_max_memory_allocated_mb")
        mem = f"{memory:.0f} (CUDA)" if memory is not None else f"{r['peak_rss_mb']:.0f} (RSS)"
        ratio = r.get("vs_torch")
        lines.append(
            f"| {r['backend']} | {r['size']} | {r['batch']} | {r['latency_ms_median']:.1f} | {r['latency_ms_p95']:.1f} "
            f"| {r['throughput_pairs_per_s']:.2f} | {'' if ratio is None else f'{ratio:.2f}x'} "
            f"| {r['per_pair_ms']['pre']:.1f} | {r['per_pair_ms']['infer']:.1f} "
            f"| {r['per_pair_ms']['post']:.1f} | {mem} |"
        )
        if with_baseline:
            ratio = r.get("vs_baseline")
            lines[-1] = f"| {r['model_role']} " + lines[-1] + (f" {ratio:.3f}x |" if ratio is not None else " |")
    return "\n".join(lines)


def _camera_table(results: list[dict]) -> str:
    """One row per (model, backend, camera size): pre + post with the fused image at the network's size and at
    the camera's, what the camera's costs on top, and the throughput (over the baseline's, where one ran)."""
    with_baseline = any(r.get("vs_baseline") is not None for r in results)
    lines = [
        "| model | backend | network (WxH) | camera (WxH) | pre+post ms, fused at network size | pre+post ms, fused "
        "at camera size | added ms | pairs/s at network size | pairs/s at camera size |"
        + (" vs baseline at network / camera size |" if with_baseline else ""),
        "|---|---|---|---|---:|---:|---:|---:|---:|" + ("---:|" if with_baseline else ""),
    ]
    pairs = {}
    for r in results:
        key = (r.get("model_role", "model"), r["backend"], r["size"], r["camera_size"], r["batch"])
        pairs.setdefault(key, {})[r["fused_resolution"]] = r
    for (role, backend, size, camera, _), by_mode in pairs.items():
        net, cam = by_mode.get("network"), by_mode.get("camera")
        if net is None or cam is None:
            continue
        cost = {k: v["per_pair_ms"]["pre"] + v["per_pair_ms"]["post"] for k, v in by_mode.items()}
        row = (f"| {role} | {backend} | {size} | {camera} | {cost['network']:.1f} | {cost['camera']:.1f} "
               f"| {cost['camera'] - cost['network']:+.1f} | {net['throughput_pairs_per_s']:.2f} "
               f"| {cam['throughput_pairs_per_s']:.2f} |")
        if with_baseline:
            ratios = [r.get("vs_baseline") for r in (net, cam)]
            row += (" " + " / ".join(f"{x:.3f}x" for x in ratios) + " |") if None not in ratios else " |"
        lines.append(row)
    return "\n".join(lines)


def _key(result: dict, role: str | None = None, backend: str | None = None) -> tuple:
    """A configuration's identity across rounds (optionally that of another model or backend)."""
    return (role or result["model_role"], backend or result["requested_backend"], result["size"],
            result["camera_size"], result["fused_resolution"], result["batch"])


def _median_round(rounds: list[dict]) -> dict:
    """The round with the median throughput (the lower middle one for an even count), with every round's."""
    ordered = sorted(rounds, key=lambda r: r["throughput_pairs_per_s"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["rounds_pairs_per_s"] = [r["throughput_pairs_per_s"] for r in rounds]
    return chosen


def _run_config(args, work: Path, config: tuple, backend: str, batch: int, role: str, model: Path,
                skipped: list[str]) -> dict | None:
    """One configuration of one model, in a fresh process; None (and a line in ``skipped``) where it cannot run."""
    text, camera_text, fused_resolution = config
    width, height = (int(v) for v in text.lower().split("x"))
    size = (height, width)
    camera_size = None
    if camera_text:
        cam_w, cam_h = (int(v) for v in camera_text.lower().split("x"))
        camera_size = (cam_h, cam_w)
    if model.suffix == ".onnx" and backend != "onnxruntime":
        skipped.append(f"{role} {backend}: {model.name} is an ONNX file")
        return None
    if backend == "torch" or model.suffix == ".onnx":  # an ONNX file (a shipped export) runs as it is
        artifact = model
    elif backend == "onnxruntime":
        artifact = _export(model, work / role, size, dynamic=batch > 1)
    else:
        engine = Path(args.engine_dir or work) / f"{width}x{height}.engine"
        if args.device != "cuda" or not engine.is_file():
            skipped.append(f"tensorrt {text} batch {batch}: needs --device cuda and {engine}")
            return None
        artifact = engine
    job = dict(backend=backend, artifact=str(artifact), size=size, batch=batch, threads=args.threads,
               device=args.device, iters=args.iters, warmup=args.warmup, max_seconds=args.max_seconds,
               segmentation=args.segmentation, camera_size=camera_size, fused_resolution=fused_resolution)
    label = f"{text} frames {camera_text} fused at {fused_resolution}" if camera_text else text
    print(f"{role:<8} {backend:<12} {label:<9} batch {batch} ...", end=" ", flush=True)
    try:
        result = _run_job(job)
    except Exception as exc:  # report and go on: one backend failing must not lose the others
        skipped.append(f"{role} {backend} {text} batch {batch}: {exc}")
        print(f"FAILED: {exc}")
        return None
    print(f"{result['latency_ms_median']:.1f} ms, {result['throughput_pairs_per_s']:.2f} pairs/s")
    return result


def _model_input_size(model: Path) -> tuple[int, int]:
    from fusion_ros.checkpoint import load_model

    return tuple(load_model(model)[1].input_size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output prefix: writes OUT.json and OUT.md")
    parser.add_argument("--model", help="model .pt (default: the bundled model, else random weights)")
    parser.add_argument("--sizes", nargs="+", default=["640x512", "1024x768"], help="WIDTHxHEIGHT ...")
    parser.add_argument("--backends", nargs="+", default=["torch", "onnxruntime", "tensorrt"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--threads", type=int, default=2, help="torch / onnxruntime intra-op threads")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--max-seconds", type=float, default=60.0, help="time cap per configuration")
    parser.add_argument("--segmentation", action="store_true",
                        help="also compute the segmentation mask (the node does only when it publishes one)")
    parser.add_argument("--work-dir", help="where exports go (default: beside OUT)")
    parser.add_argument("--engine-dir", help="folder with WIDTHxHEIGHT.engine TensorRT engines")
    parser.add_argument("--baseline-model", help="a second model (.pt, or a shipped .onnx for onnxruntime) run on "
                                                 "every configuration, alternating")
    parser.add_argument("--rounds", type=int, default=1, help="run the list N times, keep each median round")
    parser.add_argument("--camera-sizes", nargs="+", metavar="WxH",
                        help="frames at these sizes, the network at the model's own size, the fused image at the "
                             "camera's and at the network's resolution (replaces --sizes)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    if args.baseline_model and not Path(args.baseline_model).is_file():
        parser.error(f"--baseline-model {args.baseline_model}: no such file")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(args.work_dir) if args.work_dir else out.parent / "bench_work"
    work.mkdir(parents=True, exist_ok=True)
    model, random_weights = _prepare_model(args, work)
    models = [("model", model)] + ([("baseline", Path(args.baseline_model))] if args.baseline_model else [])
    if args.camera_sizes:  # (network size, camera size, fused resolution) per configuration
        net_h, net_w = _model_input_size(model)
        configs = [(f"{net_w}x{net_h}", text, mode) for text in args.camera_sizes for mode in ("network", "camera")]
    else:
        configs = [(text, None, "camera") for text in args.sizes]
    jobs = [(c, backend, batch, role, path) for c in configs for backend in args.backends for batch in args.batches
            for role, path in models]
    runs, skipped = {}, []
    for round_index in range(args.rounds):
        for job in jobs:
            result = _run_config(args, work, *job, skipped if round_index == 0 else [])
            if result is not None:
                result["model_role"] = job[3]
                runs.setdefault(_key(result), []).append(result)
    results = [_median_round(rounds) for rounds in runs.values()]
    for r in results:
        base = runs.get(_key(r, backend="torch"))
        r["vs_torch"] = r["throughput_pairs_per_s"] / _median_round(base)["throughput_pairs_per_s"] if base else None
        twin = runs.get(_key(r, role="baseline")) if r["model_role"] == "model" else None
        r["vs_baseline"] = r["throughput_pairs_per_s"] / _median_round(twin)["throughput_pairs_per_s"] if twin else None
    meta = {
        "model": str(model),
        "baseline_model": args.baseline_model,
        "rounds": args.rounds,
        "random_weights": random_weights,
        "threads": args.threads,
        "device": args.device,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "python": platform.python_version(),
        "versions": _versions(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "skipped": skipped,
        "segmentation": args.segmentation,
    }
    Path(f"{out}.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    notes = [
        f"Device: {args.device}, {args.threads} intra-op threads, {os.cpu_count()} CPU cores "
        f"(load average at end {meta['load_average_at_end'][0]:.2f}); model: "
        + ("random weights (timing only)" if random_weights else Path(model).name)
        + ". Times per call; pre/infer/post per pair (medians); segmentation mask "
        + ("computed" if args.segmentation else "not computed (the node's default: no segmentation topic)")
        + ". Peak memory: process RSS (CPU) or torch.cuda.max_memory_allocated (CUDA).",
    ]
    if skipped:
        notes.append("Skipped: " + "; ".join(skipped))
    Path(f"{out}.md").write_text(_table(results) + "\n\n" + "\n".join(notes) + "\n")
    print(_table(results))
    print(f"wrote {out}.json and {out}.md")
    return 0


def _versions() -> dict:
    versions = {}
    for name in ("torch", "onnxruntime", "onnx", "numpy", "cv2", "tensorrt"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:
            versions[name] = None
    return versions


if __name__ == "__main__":
    sys.exit(main())
