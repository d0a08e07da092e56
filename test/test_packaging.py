"""What a user gets: the wheel holds every file the product reads at run time, and `make demo` writes what
the README says it writes.

The wheel is built from a copy of the repository's files (as test_colcon_build does), so the working tree
is never written to. Takes about half a minute.
"""
from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

from test_colcon_build import _copy_repo

from fusion_ros import demo
from fusion_ros.bag.evaluate import OUTPUT_FILES as BAG_EVAL_OUTPUTS
from fusion_ros.pairs_eval import OUTPUT_FILES as PAIRS_EVAL_OUTPUTS

ROOT = Path(__file__).resolve().parents[1]
PKG = "fusion_ros"


def _wheel_contents(tmp_path: Path) -> tuple[set[str], str]:
    """(file names in the wheel, its entry_points.txt)."""
    src = _copy_repo(tmp_path / "src")
    out = tmp_path / "wheel"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--disable-pip-version-check",
         "-q", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    wheels = list(out.glob(f"{PKG}-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
        entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        return names, whl.read(entry_points).decode()


def test_wheel_holds_models_configs_launch_files_and_ament_index(tmp_path):
    names, entry_points = _wheel_contents(tmp_path)
    share = next(n.split("/share/")[0] for n in names if "/share/" in n) + "/share"  # fusion_ros-V.data/data/share
    expected = {f"{PKG}/models/{p.name}" for p in (ROOT / PKG / "models").iterdir() if p.is_file()}
    expected |= {f"{share}/{PKG}/config/{p.name}" for p in (ROOT / "config").iterdir() if p.is_file()}
    expected |= {f"{share}/{PKG}/launch/{p.name}" for p in (ROOT / "launch").glob("*.launch.py")}
    expected |= {f"{share}/{PKG}/package.xml", f"{share}/ament_index/resource_index/packages/{PKG}"}
    # the files the node, the demo and the README's commands open by name
    assert {f"{share}/{PKG}/config/fastdds_large_images.xml", f"{share}/{PKG}/config/fusion.yaml",
            f"{PKG}/models/default.onnx", f"{PKG}/models/default.pt"} <= expected
    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {missing}"
    assert {f"{PKG}/nodes/fusion_node.py", "training/train.py"} <= names
    assert f"{PKG}/metrics/published_fusion.json" in names  # fusion-eval-fusion --reference reads it
    assert "fusion-demo = fusion_ros.demo:main" in entry_points and "fusion_node = " in entry_points
    assert "fusion-eval-fusion = fusion_ros.quality_eval:main" in entry_points


def test_readme_names_what_the_demo_writes():
    """The README's `demo_out/...` paths are exactly the demo's outputs, and the files it lists inside the
    evaluators' folders are ones those evaluators write."""
    text = " ".join((ROOT / "README.md").read_text().split("## What it is")[0].split())
    named = re.findall(r"`demo_out/([\w.]+)/?`(?:\s*\(([^)]*)\))?", text)
    assert sorted(name for name, _ in named) == sorted(demo.OUTPUTS)
    writers = {demo.EVAL_DIR: BAG_EVAL_OUTPUTS, demo.REAL_PAIRS_DIR: PAIRS_EVAL_OUTPUTS}
    for name, listed in named:
        for file in re.findall(r"`([\w.]+)`", listed):
            assert file in writers.get(name, ()), f"README says demo_out/{name}/ holds {file}; nothing writes it"
