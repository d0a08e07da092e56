"""fusion_ros builds as an ament_python package with colcon, and colcon's package discovery sees
exactly the packages we mean it to (see the header of scripts/build_interfaces.sh).

The build runs on a copy of the repository's files (what git tracks or would track: .gitignore'd
build outputs, venvs and data stay out), with build, install and log bases in tmp_path, so the
working tree is never written to. Takes a few seconds.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = "fusion_ros"
# Never copied into the scratch source tree, whatever git says (and the only filter without git).
_SKIP_DIRS = {".git", ".venv", ".ros_interfaces", "build", "install", "log", "demo_out", "runs",
              "__pycache__", ".pytest_cache"}


def _colcon() -> str | None:
    here = Path(sys.executable).parent / "colcon"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("colcon")


COLCON = _colcon()
pytestmark = pytest.mark.skipif(
    COLCON is None,
    reason="colcon is not installed (pip install -r requirements-colcon.txt, or `make setup`)")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(COLCON).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run_colcon(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    cmd = [COLCON, "--log-base", str(cwd / "log"), *args]
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def _discover(base_path: Path) -> list[str]:
    """Package names colcon finds under base_path (what `colcon list --base-paths` would print;
    the `list` verb lives in colcon-package-information, which we do not install)."""
    import argparse

    pytest.importorskip("colcon_core", reason="colcon_core is not importable by this python")
    from colcon_core.package_discovery import add_package_discovery_arguments, discover_packages
    from colcon_core.package_identification import get_package_identification_extensions

    parser = argparse.ArgumentParser()
    add_package_discovery_arguments(parser)
    args = parser.parse_args(["--base-paths", str(base_path)])
    return sorted(d.name for d in discover_packages(args, get_package_identification_extensions()))


def _source_files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True, timeout=30).stdout
        files = [Path(p) for p in out.decode().split("\0") if p]
    except (OSError, subprocess.SubprocessError):
        files = [p.relative_to(ROOT) for p in ROOT.rglob("*") if p.is_file()]
    return [f for f in files
            if not _SKIP_DIRS.intersection(f.parts) and not any(
                part.endswith(".egg-info") for part in f.parts)]


def _copy_repo(dest: Path) -> Path:
    for rel in _source_files():
        src = ROOT / rel
        if not src.is_file():  # deleted but still tracked
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    return dest


def test_discovery_from_repo_root_finds_only_fusion_ros():
    """Base path = repo root: the root is the package, colcon does not descend into interfaces/,
    .venv/ (full of package.xml files under share/) or .ros_interfaces/."""
    assert _discover(ROOT) == [PKG]


def test_discovery_from_interfaces_finds_only_interface_packages():
    names = _discover(ROOT / "interfaces")
    assert "vision_msgs" in names
    assert PKG not in names


def test_colcon_build_fusion_ros(tmp_path):
    src = _copy_repo(tmp_path / "src")
    # interfaces/vision_msgs is in the copy: building from the root must still build fusion_ros only
    assert (src / "interfaces" / "vision_msgs" / "package.xml").is_file()
    # A decoy package where a venv would be: must not be discovered (dot-directory).
    decoy = src / ".venv" / "share" / "decoy_pkg"
    decoy.mkdir(parents=True)
    (decoy / "package.xml").write_text(
        '<?xml version="1.0"?><package format="3"><name>decoy_pkg</name><version>0.0.0</version>'
        '<description>d</description><maintainer email="a@b.c">a</maintainer>'
        '<license>MIT</license><export><build_type>ament_cmake</build_type></export></package>')

    build, install = tmp_path / "build", tmp_path / "install"
    proc = _run_colcon(
        ["build", "--base-paths", str(src), "--build-base", str(build),
         "--install-base", str(install), "--event-handlers", "console_direct-"],
        cwd=tmp_path)
    assert "1 package finished" in proc.stdout, proc.stdout
    assert "decoy_pkg" not in proc.stdout and "vision_msgs" not in proc.stdout, proc.stdout

    prefix = install / PKG  # colcon's default isolated install layout
    for rel in (f"share/{PKG}/package.xml",
                f"share/ament_index/resource_index/packages/{PKG}",
                f"share/{PKG}/config/classes.yaml"):
        assert (prefix / rel).is_file(), f"missing {rel} in {prefix}"
    script = prefix / "lib" / PKG / "fusion-demo"
    assert script.is_file() and os.access(script, os.X_OK), f"missing console script {script}"
    site = list(prefix.glob(f"lib/python3*/site-packages/{PKG}/__init__.py"))
    assert site, f"python package {PKG} not installed under {prefix}/lib"
    assert (install / "setup.bash").is_file()
