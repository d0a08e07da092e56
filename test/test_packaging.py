"""What a user gets: the wheel holds every file the product reads at run time, and `make demo` writes what
the README says it writes.

The wheel is built from a copy of the repository's files (as test_colcon_build does), so the working tree
is never written to. Takes about half a minute.
"""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

from test_colcon_build import _copy_repo

from fusion_ros import demo
from fusion_ros.bag.evaluate import OUTPUT_FILES as BAG_EVAL_OUTPUTS
from fusion_ros.pairs_eval import OUTPUT_FILES as PAIRS_EVAL_OUTPUTS

ROOT = Path(__file__).resolve().parents[1]
PKG = "fusion_ros"
# requirements.txt name -> the key package.xml lists for it (rosdep keys as in ros/rosdistro
# rosdep/python.yaml, read 2026-12-02 at 8468e88), or None where rosdep cannot install it: then the README's
# dependency paragraph must name it as what `pip install -r requirements.txt` adds
ROSDEP_KEYS = {
    "torch": "python3-torch", "numpy": "python3-numpy", "opencv-python-headless": "python3-opencv",
    "onnxruntime": "python3-onnxruntime-pip", "rosbags": "python3-rosbags-pip", "PyYAML": "python3-yaml",
    "tqdm": "python3-tqdm", "matplotlib": "python3-matplotlib", "pytest": "python3-pytest",
    "faster-coco-eval": None, "onnx": None, "onnxscript": None,
    "numba": None,  # python3-numba is keyed for Debian and Ubuntu bionic/focal only, not Kilted's noble
    "ros-rclpy": "rclpy", "ros-sensor-msgs": "sensor_msgs", "ros-std-msgs": "std_msgs",
    "ros-geometry-msgs": "geometry_msgs", "ros-diagnostic-msgs": "diagnostic_msgs",
    "ros-lifecycle-msgs": "lifecycle_msgs",
    "ros-rmw-fastrtps-cpp": None,  # a ROS install brings its middleware; the PyPI wheels need it named
}
PIP_ONLY_IN_README = ("numba", "faster-coco-eval", "onnx", "onnxscript")
NODE_RUNS_WITHOUT = ("faster-coco-eval", "onnx", "onnxscript")  # numba applies the fused image's map: needed


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


def _requirements() -> list[str]:
    names = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.append(re.split(r"[=<>!~\[; ]", line, maxsplit=1)[0])
    return names


def test_package_xml_lists_every_requirement_by_its_rosdep_key():
    """Issue 21 item 9: package.xml named no key for torch, onnxruntime, rosbags, tqdm, matplotlib, so
    `rosdep install` left the package unable to start. Every requirement is mapped here; a new one without a
    mapping, a mapped key missing from package.xml, or a Python key there without a requirement fails."""
    requirements = _requirements()
    unmapped = sorted(set(requirements) - set(ROSDEP_KEYS))
    assert not unmapped, f"requirements.txt has {unmapped}: add their rosdep keys to package.xml and ROSDEP_KEYS"
    xml = ET.parse(ROOT / "package.xml").getroot()
    depends = {e.text.strip() for e in xml if e.tag in ("exec_depend", "depend", "test_depend")}
    missing = sorted(f"{name} -> {ROSDEP_KEYS[name]}" for name in requirements
                     if ROSDEP_KEYS[name] and ROSDEP_KEYS[name] not in depends)
    assert not missing, f"package.xml lacks {missing}"
    stale = sorted(key for key in depends if key.startswith("python3-") and key not in ROSDEP_KEYS.values())
    assert not stale, f"package.xml names {stale}, which requirements.txt does not hold"
    assert {e.text.strip() for e in xml if e.tag == "test_depend"} == {"python3-pytest"}
    readme = " ".join((ROOT / "README.md").read_text().split())
    paragraph = re.search(r"Dependencies: `rosdep install`.*?`pip install -r requirements.txt` adds them", readme)
    assert paragraph, "README: the paragraph on what rosdep covers and what pip adds is gone"
    pip_only = {name for name in requirements if ROSDEP_KEYS[name] is None and not name.startswith("ros-")}
    assert pip_only == set(PIP_ONLY_IN_README)
    assert all(name in paragraph.group(0) for name in PIP_ONLY_IN_README), paragraph.group(0)


def test_the_node_and_its_engine_need_no_evaluation_or_export_library():
    """rosdep + numba is enough for the node: with faster-coco-eval, onnx and onnxscript unimportable, the
    node module imports and the bundled model runs on ONNX Runtime, at the camera's size too."""
    code = textwrap.dedent(f"""
        import sys
        for name in {NODE_RUNS_WITHOUT!r}:
            sys.modules[name.replace("-", "_")] = None  # import raises ImportError
        import numpy as np
        import fusion_ros.nodes.fusion_node
        from fusion_ros.engine import create_engine
        engine = create_engine(backend="auto", num_threads=1)
        result = engine.infer(np.full((600, 800), 29000, np.uint16), np.zeros((600, 800, 3), np.uint8))
        print(engine.backend, result.fused.shape)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[0] == "onnxruntime-cpu", proc.stdout
    assert proc.stdout.split(maxsplit=1)[1].strip() == "(600, 800, 3)", proc.stdout


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
