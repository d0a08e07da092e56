"""Fusion quality of a model beside four simple baselines, on folders of registered thermal/visible pairs.

    fusion-eval-fusion DIR [DIR ...] [--out DIR] [--convention both|cddfuse|project] [--reference cddfuse]
                       [--model PATH] [--backend auto|onnxruntime|torch|tensorrt] [--device auto|cpu|cuda]
                       [--input-size HxW] [--threads N] [--fused-resolution camera|network]
                       [--split all|train|heldout|val] [--block 16] [--gap 1] [--val-fraction 0.2]
                       [--heldout-fraction 0.1] [--limit N] [--unpaired error|skip] [--samples 3]
                       [--night-crops 2] [--overwrite] [--quiet]

Each DIR is one set: ``ir/`` and ``vi/`` images matched by file stem (fusion_ros.labelled_pairs.find_image_pairs;
labels, where a folder has them, are not read; ``--split`` picks the same val/train/heldout blocks as
fusion-eval-pairs and the trainer's ``kind: pairs``). Every pair is scored at its native size, nothing
resized: the model's fused image is what ``Engine.infer`` returns at the visible image's size (with
``--fused-resolution network``, the engine's network-size image scaled to the pair's size, as a viewer of
such a node shows it: the comparison of what fusing at the camera's resolution gains); the
baselines are the pixel average and the pixel max of the grey IR and the visible image's grey, the IR
image alone and the visible grey alone, each rounded to an 8-bit image as it would be saved (the
average's .5 to even). A pair that cannot be scored (an unreadable or damaged file, IR and visible of
different sizes, smaller than 41x41, an engine error) is skipped, named and counted with its reason.

Metrics (fusion_ros.metrics.fusion): EN, SD, SF, AG, MI, SCD, VIF, Qabf, SSIM, under each convention
asked for: ``cddfuse`` (the evaluator behind CDDFuse's and many later published tables: compare those
rows with these numbers) and ``project`` (the project's MATLAB-like definitions, the ones
fusion-eval-bag and fusion-eval-pairs print). Each convention also converts colour to grey its own way.
``--reference cddfuse`` adds the published CDDFuse row (fusion_ros/metrics/published_fusion.json, with
its source) to a set's cddfuse table and counts the metrics the model beats, only for a set that is the
one the row was measured on (the same pair names and image bytes, every pair scored).

Outputs in --out (default ./quality_eval):
  metrics.json        per set: folder, pairs found / scored / skipped (with reasons), split, and under
                      each convention's name the mean of every metric per method, the number of pairs
                      where a metric is undefined (cddfuse's NaN), and every pair's values; the model,
                      the reference comparison, timings; the detail (SF, AG) of the model and of the pixel
                      average on the pairs larger than the network input in both dimensions
  report.md           a table per set and convention (headed with the convention; MI with its unit), the
                      reference row and what the model beats, the skipped pairs, the picture grid
  grid_<SET>.png      IR | visible | model | pixel average | pixel max for a few pairs spread over the set,
                      then the darkest visible images (night) with the window of strongest thermal
                      contrast marked, and that window enlarged
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .labelled_pairs import ImagePairs, LabelledPair, LabelledPairsError, find_image_pairs, load_pair_images, natural_key
from .metrics.fusion import CONVENTIONS, METRIC_KEYS, convention_named, fusion_metrics_of_many, grey_image
from .pairs_eval import (
    SPLITS,
    add_engine_arguments,
    add_split_arguments,
    ir_view,
    open_engine,
    select_pairs,
    spread,
)
from .paths import PACKAGE_ROOT
from .summary import fmt_num, json_safe, latency_stats, prepare_output_dir

METHODS = {"model": "model", "pixel_average": "pixel average", "pixel_max": "pixel max", "ir_only": "IR only",
           "visible_only": "visible only"}
BOTH_CONVENTIONS = ("cddfuse", "project")  # cddfuse first: the one published rows are compared with
CONVENTION_CHOICES = ("both", *BOTH_CONVENTIONS)
REFERENCES_FILE = PACKAGE_ROOT / "metrics" / "published_fusion.json"
MIN_SIZE = max(c.min_size for c in CONVENTIONS.values())
GRID_COLUMNS = (("ir", "IR"), ("rgb", "visible"), ("fused", "model"), ("pixel_average", "pixel average"),
                ("pixel_max", "pixel max"))
ZOOM = 3  # night crops show a third of each side, enlarged to the tile
CROP_COLOR = (0, 255, 255)  # BGR: the crop window drawn on the full night rows


class FusionEvalError(ValueError):
    """A folder, option or model that stops the evaluation (the message says what to change)."""


@dataclass
class FusionEvalOptions:
    roots: list[str]
    out: str = "quality_eval"
    conventions: tuple[str, ...] = BOTH_CONVENTIONS
    reference: str | None = None
    model: str | None = None
    backend: str = "auto"
    device: str | None = None
    input_size: tuple | None = None
    threads: int = 0
    fused_resolution: str = "camera"
    split: str = "all"
    block: int = 16
    gap: int = 1
    val_fraction: float = 0.2
    heldout_fraction: float = 0.1
    limit: int | None = None
    unpaired: str = "error"
    samples: int = 3
    night_crops: int = 2
    overwrite: bool = False
    progress: bool = True


@dataclass
class PairSet:
    """One folder to score: its name in the outputs, the pairs found there and the names selected."""

    name: str
    pairs: ImagePairs
    names: list[str]
    split: dict


@dataclass
class _Pictures:
    """The pairs the grid shows: a few spread over the set, and the darkest visible images seen so far."""

    sample_at: set
    night_count: int
    samples: list = field(default_factory=list)
    darkest: list = field(default_factory=list)  # (visible mean, name, images), brightest last

    def offer(self, index: int, name: str, ir8: np.ndarray, vi_bgr: np.ndarray, fused_bgr: np.ndarray) -> None:
        """Keep this pair's pictures when it is a sample or among the darkest so far."""
        vi_grey = grey_image(vi_bgr, "project")
        brightness = float(np.mean(vi_grey))
        dark = self.night_count and (len(self.darkest) < self.night_count or brightness < self.darkest[-1][0])
        if index not in self.sample_at and not dark:
            return
        average, maximum = (cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) for img in baseline_images(ir8, vi_grey)[:2])
        images = {"ir": ir8, "rgb": vi_bgr, "fused": fused_bgr, "pixel_average": average, "pixel_max": maximum}
        if index in self.sample_at:
            self.samples.append({"caption": name, **images})
        if dark:
            self.darkest = sorted(self.darkest + [(brightness, name, images)], key=lambda t: t[0])[:self.night_count]


# ---------------------------------------------------------------------------------------------- sets
def find_sets(opts: FusionEvalOptions) -> list[PairSet]:
    """Every DIR's pairs and selection, checked before any work (a bad folder fails at once)."""
    if not opts.roots:
        raise FusionEvalError("name at least one folder of ir/ and vi/ pairs")
    if opts.split not in SPLITS:
        raise FusionEvalError(f"--split must be one of {', '.join(SPLITS)}, got {opts.split!r}")
    if opts.limit is not None and opts.limit < 1:
        raise FusionEvalError(f"--limit must be >= 1, got {opts.limit}")
    sets: list[PairSet] = []
    for root in opts.roots:
        try:
            found = find_image_pairs(root, unpaired=opts.unpaired, what="pairs folder")
        except LabelledPairsError as exc:
            raise FusionEvalError(str(exc)) from None
        names, split = select_pairs(found.stems, opts, found.root, FusionEvalError)
        name = found.root.resolve().name or "pairs"
        taken = {s.name for s in sets}
        unique, n = name, 2
        while unique in taken:
            unique, n = f"{name}_{n}", n + 1
        sets.append(PairSet(unique, found, spread(names, opts.limit), split))
    return sets


def pairs_fingerprint(pairs: ImagePairs, names) -> str:
    """sha256 over the pair names and their files' bytes: what says a folder is a published test set."""
    digest = hashlib.sha256()
    for name in sorted(names, key=natural_key):
        digest.update(name.encode() + b"\0")
        for path in (pairs.ir[name], pairs.vi[name]):
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


# -------------------------------------------------------------------------------------------- scoring
def baseline_images(ir_grey: np.ndarray, vi_grey: np.ndarray) -> tuple[np.ndarray, ...]:
    """(pixel average, pixel max, IR only, visible only) of one pair, 8-bit as they would be saved
    (np.rint: .5 to even, as OpenCV rounds converting to 8 bits)."""
    ir, vi = ir_grey.astype(np.float64), vi_grey.astype(np.float64)
    return (np.rint((ir + vi) / 2).astype(np.uint8), np.maximum(ir, vi).astype(np.uint8), ir.astype(np.uint8),
            vi.astype(np.uint8))


def score_pair(ir8: np.ndarray, vi_bgr: np.ndarray, fused_bgr: np.ndarray, conventions) -> dict:
    """{convention: {method: {metric: value}}} for one pair: each convention takes its own grey of the
    visible and the fused images, and forms the baselines from its greys."""
    out = {}
    for name in conventions:
        ir_grey, vi_grey = grey_image(ir8, name), grey_image(vi_bgr, name)
        images = dict(zip(METHODS, (grey_image(fused_bgr, name), *baseline_images(ir_grey, vi_grey))))
        out[name] = fusion_metrics_of_many(images, ir_grey, vi_grey, name)
    return out


def summarize(per_pair: dict, conventions) -> dict:
    """Per convention: the mean of each metric per method over the pairs where it is defined, and how
    many pairs it was undefined for (NaN under cddfuse; a mean of None when it never was)."""
    out = {}
    for name in conventions:
        means, undefined = {}, {}
        for method in METHODS:
            values = {k: np.array([p[name][method][k] for p in per_pair.values()], np.float64) for k in METRIC_KEYS}
            means[method] = {k: float(np.nanmean(v)) if np.isfinite(v).any() else None for k, v in values.items()}
            missing = {k: int(np.isnan(v).sum()) for k, v in values.items() if np.isnan(v).any()}
            if missing:
                undefined[method] = missing
        out[name] = {"mean": means, "undefined": undefined}
    return out


# -------------------------------------------------------------------------------------------- references
def load_references() -> dict:
    """The published rows this command can compare with (REFERENCES_FILE)."""
    return json.loads(REFERENCES_FILE.read_text())


def compare_with_reference(pair_set: PairSet, scored: list[str], summary: dict, reference: dict) -> dict:
    """Whether ``reference`` was measured on this set and, when it was, how the model's mean compares with
    each published metric (the model's value rounded to the printed decimals; higher is better for all)."""
    entry = {"name": reference["name"], "title": reference["title"], "source": reference["source"],
             "convention": reference["convention"], "applies": False}
    names = sorted(pair_set.pairs.stems, key=natural_key)
    for set_name, published in reference["sets"].items():
        if sorted(published["names"], key=natural_key) != names:
            continue
        entry["set"] = set_name
        if sorted(scored, key=natural_key) != names:
            entry["why_not"] = (f"{set_name} has {len(names)} pairs, {len(scored)} were scored here: a published mean "
                                "compares only with all of them")
        elif pairs_fingerprint(pair_set.pairs, names) != published["fingerprint"]:
            entry["why_not"] = f"the names are {set_name}'s but the image files differ from the ones it was measured on"
        elif reference["convention"] not in summary:
            entry["why_not"] = f"the {reference['convention']} convention was not computed (--convention)"
        else:
            entry.update(applies=True, row=published["row"], decimals=published["decimals"])
            model = summary[reference["convention"]]["mean"]["model"]
            verdict: dict[str, list] = {"beats": [], "ties": [], "below": []}
            for key, value in published["row"].items():
                ours = round(model[key], published["decimals"])
                verdict["beats" if ours > value else "ties" if ours == value else "below"].append(key)
            entry.update(verdict)
        return entry
    entry["why_not"] = f"this folder's pair names are none of {', '.join(reference['sets'])}"
    return entry


# --------------------------------------------------------------------------------------------- pictures
def strongest_thermal_window(ir: np.ndarray, height: int, width: int) -> tuple[int, int]:
    """(y, x) of the height x width window where the IR image varies most (largest standard deviation)."""
    f = ir.astype(np.float64)
    s1, s2 = cv2.integral(f), cv2.integral(f * f)

    def window_sums(s):
        return s[height:, width:] - s[:-height, width:] - s[height:, :-width] + s[:-height, :-width]

    n = height * width
    variance = window_sums(s2) / n - (window_sums(s1) / n) ** 2
    y, x = np.unravel_index(int(np.argmax(variance)), variance.shape)
    return int(y), int(x)


def _night_rows(darkest: list) -> tuple[list[dict], list[dict]]:
    """(two grid rows per dark pair: the whole images with the crop window marked, and the window enlarged;
    what metrics.json says of each)."""
    rows, described = [], []
    for brightness, name, images in darkest:
        h, w = images["ir"].shape[:2]
        ch, cw = max(h // ZOOM, 1), max(w // ZOOM, 1)
        y, x = strongest_thermal_window(images["ir"], ch, cw)
        described.append({"name": name, "visible_mean": brightness, "crop_xywh": [x, y, cw, ch]})
        tiles = {key: images[key] for key, _ in GRID_COLUMNS}
        marked = {}
        for key, img in tiles.items():
            colour = cv2.applyColorMap(img, cv2.COLORMAP_INFERNO) if key == "ir" else img.copy()
            cv2.rectangle(colour, (x, y), (x + cw - 1, y + ch - 1), CROP_COLOR, 2)
            marked[key] = colour
        rows.append({"caption": f"{name}: darkest visible (mean {brightness:.0f})", **marked})
        rows.append({"caption": f"{name}: x{ZOOM} at x={x}, y={y}, {cw}x{ch} (strongest thermal contrast)",
                     **{key: img[y:y + ch, x:x + cw] for key, img in tiles.items()}})
    return rows, described


# ----------------------------------------------------------------------------------------------- run
def evaluate_fusion(opts: FusionEvalOptions) -> dict:
    """Run the evaluation described by ``opts``; writes --out and returns the metrics dict."""
    conventions = tuple(convention_named(c).name for c in opts.conventions)
    references = load_references()
    if opts.reference is not None and opts.reference not in references:
        raise FusionEvalError(f"unknown --reference {opts.reference!r}: known are {', '.join(references)}")
    sets = find_sets(opts)
    engine, model_path = open_engine(opts.model, opts.backend, opts.device, opts.threads, opts.input_size,
                                     FusionEvalError, fused_resolution=opts.fused_resolution)
    try:
        out = prepare_output_dir(Path(opts.out), ("metrics.json", "report.md", *(f"grid_{s.name}.png" for s in sets)),
                                 opts.overwrite, FusionEvalError)
        results = {s.name: _evaluate_set(s, engine, conventions, opts, out) for s in sets}
        model = {"path": str(model_path), "file": engine.info.source, "version": engine.info.model_version,
                 "backend": engine.backend, "input_size": list(engine.input_size),
                 "fused_resolution": engine.fused_resolution,
                 "fallback": list(getattr(engine, "fallback_reasons", []))}
    finally:
        engine.close()
    if opts.reference is not None:
        for s in sets:
            r = results[s.name]
            r["reference"] = compare_with_reference(s, list(r["per_pair"]), r["conventions"],
                                                    {"name": opts.reference, **references[opts.reference]})
    metrics = json_safe({
        "tool": "fusion-eval-fusion",
        "conventions": {c: CONVENTIONS[c].summary for c in conventions},
        "mi_unit": {c: CONVENTIONS[c].mi_unit for c in conventions},
        "methods": METHODS,
        "model": model,
        "sets": results,
    })
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    write_report(metrics, out / "report.md")
    return metrics


def _evaluate_set(pair_set: PairSet, engine, conventions, opts: FusionEvalOptions, out: Path) -> dict:
    from .engine import InputError
    from .progress import progress

    names = pair_set.names
    n = len(names)
    pictures = _Pictures(set(np.linspace(0, n - 1, min(opts.samples, n)).round().astype(int).tolist())
                         if opts.samples > 0 else set(), max(opts.night_crops, 0))
    per_pair: dict[str, dict] = {}
    sizes: dict[str, tuple[int, int]] = {}
    skipped: dict[str, str] = dict(pair_set.pairs.unpaired)
    timings: dict[str, list[float]] = {"read": [], "engine": [], "metrics": []}
    started = time.perf_counter()
    for index, name in enumerate(progress(names, desc=f"fusion {pair_set.name}", unit="pair", disable=not opts.progress)):
        t0 = time.perf_counter()
        try:
            ir, rgb = load_pair_images(LabelledPair(name, pair_set.pairs.ir[name], pair_set.pairs.vi[name]))
        except ValueError as exc:
            skipped[name] = str(exc)
            continue
        if ir.shape[:2] != rgb.shape[:2]:
            skipped[name] = (f"IR {ir.shape[1]}x{ir.shape[0]} and visible {rgb.shape[1]}x{rgb.shape[0]} differ: "
                             "registered pairs of one size expected (nothing is resized here)")
            continue
        if min(ir.shape[:2]) < MIN_SIZE:
            skipped[name] = f"{ir.shape[1]}x{ir.shape[0]} is smaller than the metrics' {MIN_SIZE}x{MIN_SIZE}"
            continue
        t1 = time.perf_counter()
        try:
            fused_bgr = engine.infer(ir, rgb, color_encoding="rgb8", fused_encoding="bgr8", segmentation=False).fused
        except InputError as exc:
            skipped[name] = f"engine input: {exc}"
            continue
        except Exception as exc:  # count and continue, as fusion-eval-pairs does
            skipped[name] = f"engine: {type(exc).__name__}: {exc}"
            continue
        if fused_bgr.shape[:2] != rgb.shape[:2]:  # fused_resolution "network": shown at the pair's size
            fused_bgr = cv2.resize(fused_bgr, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
        t2 = time.perf_counter()
        ir8, vi_bgr = ir_view(ir, rgb.shape[:2], engine.info.thermal_range), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        try:
            per_pair[name] = score_pair(ir8, vi_bgr, fused_bgr, conventions)
            sizes[name] = rgb.shape[:2]
        except ValueError as exc:
            skipped[name] = f"metrics: {exc}"
            continue
        timings["read"].append((t1 - t0) * 1e3)
        timings["engine"].append((t2 - t1) * 1e3)
        timings["metrics"].append((time.perf_counter() - t2) * 1e3)
        pictures.offer(index, name, ir8, vi_bgr, fused_bgr)
    wall_s = time.perf_counter() - started
    if not per_pair:
        first = next(iter(skipped.items()), ("", "none selected"))
        raise FusionEvalError(f"no pair of {pair_set.pairs.root} could be scored ({len(skipped)} skipped; first: "
                              f"{first[0]}: {first[1]})")
    result = {
        "root": str(pair_set.pairs.root), "pairs_found": len(pair_set.pairs.stems), "split": pair_set.split,
        "limit": opts.limit, "pairs_selected": n, "pairs_scored": len(per_pair), "pairs_skipped": len(skipped),
        "skipped": dict(sorted(skipped.items(), key=lambda kv: natural_key(kv[0]))),
        "conventions": summarize(per_pair, conventions),
        "timing": {"wall_s": wall_s, "ms_per_pair": {k: latency_stats(v) for k, v in timings.items()}},
        "larger_than_network": detail_on_large_pairs(per_pair, sizes, engine.input_size, conventions),
        "per_pair": per_pair,
    }
    night_rows, night = _night_rows(pictures.darkest)
    dark_names = {n["name"] for n in night}
    rows = [row for row in pictures.samples if row["caption"] not in dark_names] + night_rows
    if rows:
        from .bag.report import save_sample_grid

        grid = save_sample_grid(rows, out / f"grid_{pair_set.name}.png", columns=GRID_COLUMNS)
        result["grid"] = {"file": grid.name, "samples": [row["caption"] for row in pictures.samples], "night": night}
    return result


DETAIL_KEYS = ("SF", "AG")


def detail_on_large_pairs(per_pair: dict, sizes: dict, input_size: tuple, conventions) -> dict:
    """The pairs larger than the network input (H, W) in both dimensions -- where fusing at the network's size
    and scaling up would lose detail -- and, per convention, the mean SF and AG of the model and of the pixel
    average over them."""
    names = [n for n in per_pair if sizes[n][0] > input_size[0] and sizes[n][1] > input_size[1]]
    entry: dict = {"pairs": names, "network_input": list(input_size)}
    if names:
        entry["mean"] = {c: {m: {k: float(np.mean([per_pair[n][c][m][k] for n in names])) for k in DETAIL_KEYS}
                             for m in ("model", "pixel_average")} for c in conventions}
    return entry


def _detail_line(s: dict, fused_resolution: str) -> str | None:
    large = s.get("larger_than_network")
    if not large or not large["pairs"]:
        return None
    (convention, mean), *_ = large["mean"].items()
    h, w = large["network_input"]
    cells = ", ".join(f"{k} {fmt_num(mean['model'][k])} vs {fmt_num(mean['pixel_average'][k])}" for k in DETAIL_KEYS)
    return (f"{len(large['pairs'])} pairs larger than the network input ({w}x{h}), fused at the "
            f"{fused_resolution}'s resolution: model vs pixel average ({convention}) {cells}")


# ------------------------------------------------------------------------------------------------ report
def _table(summary: dict, convention: str, mi_unit: str, reference: dict | None) -> list[str]:
    means, undefined = summary["mean"], summary["undefined"]
    head = [k if k != "MI" else f"MI ({mi_unit})" for k in METRIC_KEYS]
    lines = ["| method | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for method, title in METHODS.items():
        cells = []
        for k in METRIC_KEYS:
            mark = "*" if undefined.get(method, {}).get(k) and means[method][k] is not None else ""
            cells.append(fmt_num(means[method][k]) + mark)
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    if reference and reference.get("applies") and reference["convention"] == convention:
        row = reference["row"]
        lines.append(f"| *{reference['title']}, published* | "
                     + " | ".join(f"{row[k]:.{reference['decimals']}f}" if k in row else "–" for k in METRIC_KEYS) + " |")
    notes = [f"{METHODS[m]}: {', '.join(f'{k} undefined for {c}' for k, c in ks.items())}"
             for m, ks in undefined.items()]
    if notes:
        lines += ["", "n/a, *: undefined (NaN in this convention's evaluator) for some pairs; * the mean of the others. "
                  + "; ".join(notes) + "."]
    return lines


def write_report(metrics: dict, path: str | Path) -> Path:
    """report.md from the metrics dict, linking the grid PNGs beside it."""
    path = Path(path)
    m = metrics
    lines = ["# Fusion quality: " + ", ".join(m["sets"]), "",
             f"- model: `{m['model']['file']}` ({m['model']['version'] or 'no version'}; asked for "
             f"`{m['model']['path']}`) on **{m['model']['backend']}** (network input "
             f"{m['model']['input_size'][1]}x{m['model']['input_size'][0]}); its fused image as `Engine.infer` returns it "
             + ("at the visible image's size" if m['model'].get('fused_resolution', 'camera') == "camera" else
                "at the network's size (`--fused-resolution network`), scaled to the visible image's size"),
             "- baselines: pixel average and pixel max of the grey IR and visible images, IR only, visible only "
             "(8-bit, as saved); every pair at its native size",
             "- conventions (each table names its own):"]
    lines += [f"  - **{c}**: {text}" for c, text in m["conventions"].items()]
    lines.append("")
    for set_name, s in m["sets"].items():
        split = "" if s["split"]["name"] == "all" else f", split **{s['split']['name']}**"
        limit = f", limited to {s['limit']}" if s.get("limit") else ""
        lines += [f"## {set_name}", "",
                  f"`{s['root']}`: {s['pairs_scored']} pairs scored of {s['pairs_selected']} selected "
                  f"({s['pairs_found']} found{split}{limit}), {s['pairs_skipped']} skipped; "
                  f"{fmt_num(s['timing']['wall_s'], 1)} s.", ""]
        detail = _detail_line(s, m["model"].get("fused_resolution", "camera"))
        if detail:
            lines += [f"Detail: {detail}.", ""]
        reference = s.get("reference")
        for convention, summary in s["conventions"].items():
            note = " (compare published rows with this one)" if convention == "cddfuse" else ""
            lines += [f"### {set_name}, {convention} convention{note}", ""]
            lines += _table(summary, convention, m["mi_unit"][convention], reference) + [""]
        if reference:
            if reference.get("applies"):
                lines += [f"Model vs {reference['title']} ({reference['set']}, {reference['convention']} convention; "
                          f"source: {reference['source']}): beats **{len(reference['beats'])} of {len(reference['row'])}**"
                          f" ({', '.join(reference['beats']) or 'none'}), ties {', '.join(reference['ties']) or 'none'}, "
                          f"below on {', '.join(reference['below']) or 'none'} (the model's means rounded to "
                          f"{reference['decimals']} decimals, as published).", ""]
            else:
                lines += [f"{reference['title']} not compared: {reference['why_not']}.", ""]
        if s["skipped"]:
            lines += ["Skipped pairs:", ""] + [f"- {k}: {v}" for k, v in list(s["skipped"].items())[:20]]
            if len(s["skipped"]) > 20:
                lines.append(f"- ... {len(s['skipped']) - 20} more in metrics.json")
            lines.append("")
        if s.get("grid"):
            lines += [f"![{set_name}]({s['grid']['file']})", "",
                      "Rows: pairs spread over the set, then the darkest visible images with the window of strongest "
                      f"thermal contrast marked and enlarged x{ZOOM}.", ""]
    path.write_text("\n".join(lines))
    return path


# ---------------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fusion-eval-fusion",
        description="Score a model's fused images and four baselines (pixel average, pixel max, IR only, visible "
                    "only) on folders of registered IR/visible pairs: EN, SD, SF, AG, MI, SCD, VIF, Qabf, SSIM "
                    "under the cddfuse and project conventions; metrics.json, report.md and picture grids.")
    p.add_argument("roots", metavar="DIR", nargs="+", help="folder with ir/ and vi/ images of the same names")
    p.add_argument("--out", default="quality_eval", help="output folder (default ./quality_eval)")
    p.add_argument("--convention", choices=CONVENTION_CHOICES, default="both",
                   help="metric definitions: cddfuse (published tables), project, or both (default)")
    p.add_argument("--reference", help="compare with a published row on the set it was measured on: cddfuse")
    add_engine_arguments(p)
    p.add_argument("--fused-resolution", choices=("camera", "network"), default="camera",
                   help="the model's fused image at the camera's (pair's) resolution, as the node publishes it by "
                        "default, or at the network's, scaled to the pair's size (default camera)")
    add_split_arguments(p)
    p.add_argument("--limit", type=int, help="score N pairs per folder, spread evenly over its selection")
    p.add_argument("--unpaired", choices=("error", "skip"), default="error",
                   help="an image without its partner: error (default) or skip it, named in the report")
    p.add_argument("--samples", type=int, default=3, help="pairs spread over each set in its grid (default 3)")
    p.add_argument("--night-crops", type=int, default=2,
                   help="darkest pairs shown whole and enlarged where the IR varies most (default 2)")
    p.add_argument("--overwrite", action="store_true", help="replace the results of a previous run in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def options_from_args(args: argparse.Namespace) -> FusionEvalOptions:
    return FusionEvalOptions(
        roots=args.roots, out=args.out,
        conventions=BOTH_CONVENTIONS if args.convention == "both" else (args.convention,),
        reference=args.reference, model=args.model, backend=args.backend,
        device=None if args.device == "auto" else args.device, input_size=args.input_size, threads=args.threads,
        fused_resolution=args.fused_resolution, split=args.split, block=args.block, gap=args.gap, val_fraction=args.val_fraction,
        heldout_fraction=args.heldout_fraction, limit=args.limit, unpaired=args.unpaired, samples=args.samples,
        night_crops=args.night_crops, overwrite=args.overwrite, progress=not args.quiet)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        metrics = evaluate_fusion(options_from_args(args))
    except FusionEvalError as exc:
        print(f"fusion-eval-fusion: error: {exc}", file=sys.stderr)
        return 2
    for set_name, s in metrics["sets"].items():
        first = next(iter(s["conventions"]))
        model = s["conventions"][first]["mean"]["model"]
        line = (f"fusion-eval-fusion: {set_name}: {s['pairs_scored']} pairs scored, {s['pairs_skipped']} skipped; "
                f"model ({first}) " + ", ".join(f"{k} {fmt_num(model[k])}" for k in METRIC_KEYS))
        reference = s.get("reference")
        if reference and reference.get("applies"):
            line += f"; beats {reference['title']} on {len(reference['beats'])} of {len(reference['row'])}"
        print(line)
        detail = _detail_line(s, metrics["model"]["fused_resolution"])
        if detail:
            print(f"fusion-eval-fusion: {set_name}: {detail}")
    print(f"fusion-eval-fusion: report: {Path(args.out) / 'report.md'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
