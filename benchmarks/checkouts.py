"""Run a measurement against other checkouts of fusion_ros in the same run, for before/after ratios.

An older commit, exported with ``git archive COMMIT | tar -x -C DIR``, is measured by running a child
process with ``cwd=DIR`` and DIR first on PYTHONPATH, so ``import fusion_ros`` finds DIR's package instead
of this checkout's (installed editable in .venv). The child is the benchmark script itself, from this
checkout: the measuring code is the same for every checkout, only the package under test changes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def checkout_env(source: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(source), env.get("PYTHONPATH", "")) if p)
    return env


def run_json(source: Path, script: Path, args: list[str], timeout: float = 600.0) -> dict:
    """Run ``script --child ARGS`` against ``source``; its last stdout line is a JSON object."""
    proc = subprocess.run([sys.executable, str(script), "--child", *args], cwd=source, env=checkout_env(source),
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} in {source} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def sources(compare: list[str]) -> list[tuple[str, Path]]:
    """(label, folder) for every checkout to measure: the --compare ones first, this checkout last."""
    out = [(Path(c).name, Path(c).resolve()) for c in compare]
    for label, path in out:
        if not (path / "fusion_ros" / "__init__.py").is_file():
            raise SystemExit(f"--compare {path}: no fusion_ros package there")
    return out + [("this checkout", ROOT)]
