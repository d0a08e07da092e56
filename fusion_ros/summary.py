"""Numbers into metrics.json and report.md, one way for the bag and the pairs evaluators."""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np


def latency_stats(values) -> dict:
    """count, mean, p50, p95, p99 and max of the finite values (None and NaN are left out)."""
    values = np.asarray([v for v in values if v is not None and math.isfinite(v)], np.float64)
    if not values.size:
        return {"count": 0}
    return {"count": int(values.size), "mean": float(values.mean()), "p50": float(np.percentile(values, 50)),
            "p95": float(np.percentile(values, 95)), "p99": float(np.percentile(values, 99)),
            "max": float(values.max())}


def json_safe(value):
    """Plain JSON types all the way down: numpy numbers as Python ones, NaN/inf as None, paths as text."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def prepare_output_dir(out: Path, names, overwrite: bool, error: type[Exception]) -> Path:
    """Create `out` for an evaluation's files `names`: a previous run's files are an `error` naming them
    unless `overwrite`, which removes just those (a user's other files in the folder stay)."""
    existing = [out / n for n in names if (out / n).exists()]
    if existing and not overwrite:
        raise error(f"{out} already holds results ({', '.join(p.name for p in existing)}): pass --overwrite "
                    "or choose another --out")
    for p in existing:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def fmt_num(value, digits: int = 3) -> str:
    """A number for a Markdown table: n/a for None, floats to `digits` places."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def latency_table(latency_ms: dict, title: str) -> list[str]:
    """Markdown lines: a `## title` heading and one row of latency_stats per stage that has values."""
    lines = [f"## {title}", "", "| stage | p50 | p95 | p99 | mean | n |", "|---|---:|---:|---:|---:|---:|"]
    for stage, s in latency_ms.items():
        if s.get("count"):
            lines.append(f"| {stage} | {fmt_num(s['p50'], 2)} | {fmt_num(s['p95'], 2)} | {fmt_num(s['p99'], 2)} | "
                         f"{fmt_num(s['mean'], 2)} | {s['count']} |")
    return lines


def fusion_summary(rows: list[dict]) -> dict:
    """metrics.json's ``fusion_metrics`` of the bag and pairs evaluators: how many frames were scored, under
    which convention of fusion_ros.metrics.fusion (the project's: fusion_metrics' default) and each metric's mean."""
    return {"frames": len(rows), "convention": "project",
            "mean": {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}}


def fusion_table(fusion: dict, scored: str) -> list[str]:
    """Markdown lines: a ``## Fusion quality`` heading and the means of fusion_summary, naming what was
    scored and the convention."""
    lines = ["## Fusion quality", ""]
    if not fusion["frames"]:
        return lines + ["Not computed.", ""]
    mean = fusion["mean"]
    return lines + [f"Mean over {fusion['frames']} {scored}; fusion_ros.metrics.fusion_metrics, "
                    f"**{fusion.get('convention', 'project')}** convention (MI in bits):", "",
                    "| " + " | ".join(mean) + " |", "|" + "---:|" * len(mean),
                    "| " + " | ".join(fmt_num(v) for v in mean.values()) + " |", ""]
