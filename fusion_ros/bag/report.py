"""Pictures and the markdown report of a bag evaluation (fusion_ros.bag.evaluate); the grid and the latency
histogram also serve fusion-eval-pairs (fusion_ros.pairs_eval), the grid fusion-eval-fusion (fusion_ros.quality_eval).

``save_sample_grid``: one row per sample frame, columns IR | RGB | fused | detections | segmentation (the
last only for a segmentation head trained on labels: ``sample_columns``).
``save_latency_histogram``: per-pair latency histograms (total, engine, and its inference part).
``write_report``: report.md from the metrics dict, linking the PNGs beside it.
Matplotlib is used through Figure + the Agg canvas (no pyplot state, no display needed).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..summary import fmt_num as _num, fusion_table, latency_table

COLUMNS = (("ir", "IR (registered)"), ("rgb", "RGB"), ("fused", "fused"), ("detections", "detections"),
           ("segmentation", "segmentation"))
TILE_WIDTH = 320


def sample_columns(segmentation_trained: bool, columns=COLUMNS) -> tuple:
    """``columns`` without the segmentation panel for a head trained on no labels (its masks are noise)."""
    return columns if segmentation_trained else tuple(c for c in columns if c[0] != "segmentation")


def _tile(image: np.ndarray | None, width: int, height: int) -> np.ndarray:
    """The image scaled to fit width x height with its aspect kept (black bars where it differs from the
    grid's: pairs of one folder may differ in size); grey images through the INFERNO colour map."""
    tile = np.zeros((height, width, 3), np.uint8)
    if image is None:
        return tile
    if image.ndim == 2:
        image = cv2.applyColorMap(image, cv2.COLORMAP_INFERNO)
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    fit_w, fit_h = min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale)))
    y, x = (height - fit_h) // 2, (width - fit_w) // 2
    tile[y:y + fit_h, x:x + fit_w] = cv2.resize(image, (fit_w, fit_h), interpolation=cv2.INTER_AREA)
    return tile


def save_sample_grid(samples: list[dict], path: str | Path, columns=COLUMNS) -> Path:
    """PNG grid of sample frames (BGR / grey arrays keyed like COLUMNS), with a title row. Each row is
    captioned with the sample's ``caption`` when it has one (fusion-eval-pairs: the pair's name), else with
    its bag time and stamp (``t_s``, ``stamp_ns``) and ``num_detections``. ``columns``: (key, title) pairs
    (default COLUMNS)."""
    path = Path(path)
    first = next(s["rgb"] for s in samples)
    h0, w0 = first.shape[:2]
    width = min(TILE_WIDTH, w0)
    height = max(int(round(h0 * width / w0)), 1)
    header = np.full((24, width * len(columns), 3), 255, np.uint8)
    for c, (_, title) in enumerate(columns):
        cv2.putText(header, title, (c * width + 6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    rows = [header]
    for sample in samples:
        tiles = [_tile(sample.get(key), width, height) for key, _ in columns]
        row = np.concatenate(tiles, axis=1)
        label = sample.get("caption") or (f"t={sample.get('t_s', 0.0):+.2f} s (stamp {sample['stamp_ns'] / 1e9:.3f}), "
                                          f"{sample.get('num_detections', 0)} detections")
        cv2.putText(row, label, (6, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.concatenate(rows, axis=0)):
        raise OSError(f"cannot write {path}")
    return path


def save_latency_histogram(timings: dict, path: str | Path) -> Path:
    """Histogram of per-pair latencies (ms): total (decode -> outputs written), engine, network only."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    series = [("total", "total per pair"), ("engine", "engine.infer() call"), ("engine.infer", "network only")]
    values = [np.asarray([v for v in timings.get(k, []) if np.isfinite(v)]) for k, _ in series]
    top = max((float(np.percentile(v, 99.5)) for v in values if v.size), default=1.0)
    bins = np.linspace(0.0, top * 1.05 + 1e-6, 40)
    for (key, label), v in zip(series, values):
        if v.size:
            ax.hist(np.clip(v, 0, bins[-1]), bins=bins, alpha=0.5,
                    label=f"{label}: p50 {np.percentile(v, 50):.1f}, p95 {np.percentile(v, 95):.1f} ms")
    ax.set_xlabel("milliseconds")
    ax.set_ylabel("pairs")
    ax.set_title("latency per thermal/RGB pair")
    ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def write_report(metrics: dict, path: str | Path) -> Path:
    path = Path(path)
    m = metrics
    lines = [f"# Bag evaluation: {Path(m['bag']['path']).name}", ""]
    lines += [f"- bag: `{m['bag']['path']}` ({m['bag']['storage']}, {m['bag']['duration_s']:.2f} s, "
              f"{m['bag']['message_count']} messages)",
              f"- model: `{m['model']['path']}` on **{m['model']['backend']}**, network input "
              f"{m['model']['input_size'][1]}x{m['model']['input_size'][0]} (WxH)",
              f"- pairs evaluated: **{m['pairs']['processed']}** of {m['pairs']['paired']} formed by the synchronizer "
              f"(slop {m['config']['sync.slop']} s, queue {m['config']['sync.queue_size']}); "
              f"{m['throughput']['pairs_per_s'] or 0:.2f} pairs/s offline "
              f"(the bag holds {m['throughput']['bag_pairs_per_s'] or 0:.2f} pairs/s)", ""]
    if m.get("read_error"):
        lines += [f"> **The bag could not be read to the end**: {m['read_error']}", ""]
    if m.get("recovered"):
        lines += [f"> **Recovered from a truncated recording**: {m['recovered']['note']}", ""]
    if m["pairs"].get("stopped_at_max_pairs"):
        lines += ["> Stopped at --max-pairs.", ""]

    lines += ["## Inputs", "", "| input | topic | in bag | seen | paired | dropped (total) | of which |",
              "|---|---|---:|---:|---:|---:|---|"]
    for name, inp in m["inputs"].items():
        parts = {**{f"rejected {k}": v for k, v in inp["rejected"].items()},
                 **{k: v for k, v in inp["dropped"].items() if v}}
        lines.append(f"| {name} | `{inp['topic']}` | {inp['messages_in_bag']} | {inp['seen']} | {inp['paired']} | "
                     f"{inp['dropped_total']} | {', '.join(f'{k} {v}' for k, v in parts.items()) or '-'} |")
    skew = m["sync_skew_ms"]
    lines += ["", f"Sync skew |t_thermal - t_rgb|: mean {_num(skew.get('mean'), 2)} ms, "
              f"p95 {_num(skew.get('p95'), 2)} ms, "
              f"max {_num(skew.get('max'), 2)} ms. Synchronizer resets (stamps jumping back): "
              f"{m['pairs']['sync_resets']}. Pairs rejected before the engine: {m['pairs']['rejected'] or 0}; "
              f"engine failures: {m['pairs']['engine_failures']}.", ""]

    lines += latency_table(m["latency_ms"], "Latency (ms per pair, offline, this machine)")
    lines += ["", "read: storage + deserialize; decode: Image -> array; prepare: registration check, thermal "
              "normalisation, RGB conversion; engine: `infer()` (pre / infer / post inside); outputs: annotated bag "
              "messages; total: all of it for one pair.", ""]
    if "latency" in m.get("pictures", {}):
        lines += [f"![latency]({m['pictures']['latency']})", ""]

    det = m.get("detection")
    lines += ["## Detection", ""]
    if det is None:
        lines += ["No detection ground truth (pass --gt-detections TOPIC or --gt-file coco.json).", ""]
    elif det.get("mAP50") is None:
        lines += [f"mAP not computed: {det.get('skipped', 'no ground truth boxes')}", ""]
    else:
        lines += [f"Ground truth `{m['ground_truth']['detections']}`, matched by the RGB stamp on "
                  f"{det['frames_matched']} frames ({det['gt_frames_without_processed_pair']} ground-truth frames had "
                  f"no evaluated pair; {det['processed_pairs_without_gt']} pairs had no ground truth).", "",
                  f"**mAP@0.5 = {_num(det['mAP50'])}, mAP@0.5:0.95 = {_num(det['mAP50_95'])}**", "",
                  "| class | AP@0.5 | AP@0.5:0.95 | GT boxes |", "|---|---:|---:|---:|"]
        for name, c in det["per_class"].items():
            lines.append(f"| {name} | {_num(c['AP50'])} | {_num(c['AP50_95'])} | {c['num_gt']} |")
        if det.get("unknown_gt_classes"):
            lines += ["", f"Ground-truth boxes of classes the model lacks (skipped): {det['unknown_gt_classes']}"]
        lines.append("")
        if "pr_curve" in m.get("pictures", {}):
            lines += [f"![PR curves]({m['pictures']['pr_curve']})", ""]

    seg = m.get("segmentation")
    lines += ["## Segmentation", ""]
    if seg is None:
        lines += ["No segmentation ground truth.", ""]
    elif "not_shown" in seg:
        lines += [f"Not shown: {seg['not_shown']}.", ""]
    else:
        lines += [f"mIoU **{_num(seg['mIoU'])}**, pixel accuracy {_num(seg['pixel_accuracy'])} over {seg['frames']} "
                  f"frames (`{m['ground_truth']['segmentation']}`).", "", "| class | IoU |", "|---|---:|"]
        lines += [f"| {n} | {_num(v)} |" for n, v in seg["iou_per_class"].items()]
        lines.append("")

    lines += fusion_table(m["fusion_metrics"], "sampled frames (fused vs registered IR and RGB luminance)")

    if "samples" in m.get("pictures", {}):
        lines += ["## Sample frames", "", f"![samples]({m['pictures']['samples']})", ""]
    if m.get("outputs"):
        topics = ", ".join(f"`{t}` ({n})" for t, n in m["outputs"]["topics"].items())
        lines += ["## Annotated bag", "", f"`{m['outputs']['bag']}` (mcap; open in Foxglove): {topics}. Stamps are "
                  "the input RGB stamps; log times the RGB frames' log times.", ""]
    if m.get("ignored_topics"):
        lines += ["## Topics not used", ""]
        lines += [f"- `{t}` ({i['type']}, {i['count']} msgs): {i['reason']}" for t, i in m["ignored_topics"].items()]
        lines.append("")
    if m.get("warnings"):
        lines += ["## Warnings", ""] + [f"- {w}" for w in m["warnings"]] + [""]
    path.write_text("\n".join(lines))
    return path
