"""The real launch system and `ros2` command line, as on a vehicle: a colcon workspace with fusion_ros,
`ros2 launch fusion_ros fusion.launch.py` with remapped camera topics, `autostart:=false` driven through
`ros2 lifecycle set`, `replay.launch.py` on a sample bag, and Ctrl-C (SIGINT to the whole process group,
as a terminal sends it) ending every process with exit code 0.

launch, launch_ros and ros2cli are not on PyPI: `make setup` installs them from ../shared/vendor/ros2 and
builds composition_interfaces beside vision_msgs (scripts/install_vendor_ros2.sh, build_interfaces.sh).
Where they are absent these tests skip and say why. Run:
    bash scripts/with_ros_env.sh .venv/bin/python -m pytest -q test/test_ros2_launch.py
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
INTERFACES = ROOT / ".ros_interfaces" / "install"
H, W = 128, 160


def _missing() -> str | None:
    if not (VENV_BIN / "ros2").is_file():
        return f"no `ros2` command in {VENV_BIN} (make setup installs it from ../shared/vendor/ros2 when present)"
    try:
        import launch  # noqa: F401
        import launch_ros  # noqa: F401
    except ImportError as exc:
        return f"the launch system is not importable ({exc}); make setup installs it from ../shared/vendor/ros2"
    if not list(INTERFACES.glob("composition_interfaces/**/package.xml")):
        return f"composition_interfaces is not built in {INTERFACES} (scripts/build_interfaces.sh builds it when " \
               "../shared/vendor/ros2 exists)"
    return None


_REASON = _missing()
if _REASON:
    print(f"SKIP test_ros2_launch.py: {_REASON}")
pytestmark = pytest.mark.skipif(_REASON is not None, reason=str(_REASON))

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")
from test_colcon_build import COLCON, _copy_repo, _run_colcon  # noqa: E402
from test_node_integration import Client, make_image, rgb_frame, stamp_ns, thermal_frame  # noqa: E402

from fusion_ros.topics import RGB_TOPIC, THERMAL_TOPIC  # noqa: E402


class Launched:
    """A `ros2 ...` command in its own process group (like a terminal's foreground job), output to a file."""

    def __init__(self, tmp: Path, name: str, args: list[str], env: dict, workspace: Path):
        self.log_path = tmp / f"{name}.log"
        self._log = open(self.log_path, "w")
        self.shutdown_s = float("nan")
        self.proc = subprocess.Popen(_sourced(args, workspace), env=env, cwd=tmp, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text()

    def ctrl_c(self, timeout: float = 30.0) -> int:
        """SIGINT to the process group (every process launched, as Ctrl-C does); the launch's exit code."""
        started = time.monotonic()
        try:
            os.killpg(self.proc.pid, signal.SIGINT)
            rc = self.proc.wait(timeout)
            self.shutdown_s = time.monotonic() - started
            return rc
        finally:
            self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()


def _sourced(args: list[str], workspace: Path) -> list[str]:
    script = (f'source "{INTERFACES}/setup.bash" && source "{workspace}/install/setup.bash" && exec "$@"')
    return ["bash", "-c", script, "bash", *args]


def _ros2(args: list[str], env: dict, workspace: Path, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(_sourced(["ros2", *args], workspace), env=env, capture_output=True, text=True,
                          timeout=timeout)


def _ros2_retry(args: list[str], env: dict, workspace: Path, timeout: float = 30.0) -> subprocess.CompletedProcess:
    """A `ros2` verb, repeated while it fails: a fresh `--no-daemon` CLI process discovers the node only
    after a moment ("Node not found")."""
    deadline = time.monotonic() + timeout
    while True:
        out = _ros2(args, env, workspace)
        if out.returncode == 0 and out.stdout.strip() or time.monotonic() > deadline:
            return out
        time.sleep(0.5)


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ros2_launch")


@pytest.fixture(scope="module")
def workspace(tmp) -> Path:
    """fusion_ros built by colcon into a workspace (its executables in lib/fusion_ros, as ros2 launch
    needs them), vision_msgs + composition_interfaces from .ros_interfaces as the underlay."""
    if COLCON is None:
        pytest.skip("colcon is not installed")
    ws = tmp / "ws"
    src = _copy_repo(ws / "src" / "fusion_ros")
    _run_colcon(["build", "--base-paths", str(src), "--build-base", str(ws / "build"), "--install-base",
                 str(ws / "install"), "--event-handlers", "console_direct-"], cwd=ws, timeout=300)
    return ws


@pytest.fixture(scope="module")
def domain() -> int:
    return 20 + os.getpid() % 40


@pytest.fixture(scope="module")
def env(tmp, domain) -> dict:
    env = dict(os.environ)
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        AMENT_PREFIX_PATH=str(VENV_BIN.parent),  # the ROS wheels' prefix (rclpy, message packages)
        ROS_DOMAIN_ID=str(domain), ROS_LOG_DIR=str(tmp / "ros_log"), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0", OMP_NUM_THREADS="1",
    )
    return env


@pytest.fixture(scope="module")
def params_file(tmp) -> Path:
    from fusion_ros.checkpoint import save_untrained_model

    model = save_untrained_model(tmp / "random.pt", input_size=(H, W))
    path = tmp / "vehicle.yaml"
    path.write_text("/**:\n  ros__parameters:\n"
                    f"    model_path: {model}\n    backend: torch\n    num_threads: 1\n    diagnostics.period: 0.5\n")
    return path


@pytest.fixture(scope="module")
def client(domain):
    client = Client(domain)
    client.subscribe_outputs()
    client.subscribe_outputs("/managed")
    yield client
    client.close()


def _assert_clean(launched: Launched, rc: int) -> None:
    log = launched.log()
    assert rc == 0, f"ros2 launch exited {rc}:\n{log[-4000:]}"
    assert "process has died" not in log and "Traceback" not in log and "[ERROR]" not in log, log[-4000:]
    assert "process has finished cleanly" in log, log[-4000:]
    assert launched.shutdown_s < 15.0, f"Ctrl-C took {launched.shutdown_s:.1f} s to end every process"


def _feed_until_output(client: Client, thermal_topic: str, rgb_topic: str, timeout: float = 30.0) -> set:
    rng = np.random.default_rng(0)
    thermal, rgb = client.publisher(thermal_topic), client.publisher(rgb_topic)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (thermal.get_subscription_count() and rgb.get_subscription_count()):
        time.sleep(0.1)
    assert thermal.get_subscription_count() and rgb.get_subscription_count(), "the node never subscribed"
    start, sent, stamp = time.monotonic(), set(), 2_000_000_000_000
    while time.monotonic() < deadline:
        stamp += 66_000_000
        thermal.publish(make_image(thermal_frame(rng), "mono16", stamp, "thermal"))
        rgb.publish(make_image(rgb_frame(rng), "bgr8", stamp, "rgb"))
        sent.add(stamp)
        time.sleep(0.07)
        got = {stamp_ns(m.header) for m in client.outputs_since("fused", start)} & sent
        if got and client.outputs_since("detections", start):
            return got
    return set()


def test_fusion_launch_with_remapped_cameras_then_ctrl_c(tmp, workspace, env, params_file, client):
    """`ros2 launch fusion_ros fusion.launch.py thermal_topic:=... rgb_topic:=...` (the README's command):
    the node takes the remapped camera topics, publishes fused/image and detections, exits 0 on Ctrl-C."""
    launched = Launched(tmp, "fusion_launch", [
        "ros2", "launch", "fusion_ros", "fusion.launch.py", "thermal_topic:=/flir/image_raw",
        "rgb_topic:=/camera/image_raw", f"params_file:={params_file}"], env, workspace)
    try:
        got = _feed_until_output(client, "/flir/image_raw", "/camera/image_raw", timeout=60.0)
        assert got, f"no output on /fused/image + /detections; launch log:\n{launched.log()[-4000:]}"
        assert client.publisher(f"/{THERMAL_TOPIC}").get_subscription_count() == 0  # remapped away
        rc = launched.ctrl_c()
    finally:
        launched.kill()
    _assert_clean(launched, rc)


def test_autostart_false_is_driven_by_ros2_lifecycle_set(tmp, workspace, env, params_file, client):
    launched = Launched(tmp, "lifecycle_launch", [
        "ros2", "launch", "fusion_ros", "fusion.launch.py", "autostart:=false", "namespace:=managed",
        f"params_file:={params_file}"], env, workspace)
    try:
        node, state = "/managed/fusion_node", ""
        deadline = time.monotonic() + 60.0  # (the in-process client is quicker than a `ros2 lifecycle get`)
        while time.monotonic() < deadline and launched.proc.poll() is None:
            try:
                state = client.state(node)
                break
            except AssertionError:  # service not up yet
                time.sleep(0.2)
        assert state == "unconfigured", f"{state}\n{launched.log()[-3000:]}"
        for transition in ("configure", "activate"):
            out = _ros2_retry(["lifecycle", "set", node, transition, "--no-daemon"], env, workspace)
            assert out.returncode == 0 and "Transitioning successful" in out.stdout, (out.stdout, out.stderr)
        assert client.state(node) == "active"  # (what `ros2 lifecycle get` prints as "active [3]")
        got = _feed_until_output(client, f"/managed/{THERMAL_TOPIC}", f"/managed/{RGB_TOPIC}", timeout=30.0)
        assert got, f"no output on /managed/fused/image; launch log:\n{launched.log()[-4000:]}"
        rc = launched.ctrl_c()
    finally:
        launched.kill()
    _assert_clean(launched, rc)


def test_replay_launch_plays_a_sample_bag_into_the_node(tmp, workspace, env, params_file, client):
    from fusion_ros.bag.sample import make_sample_bag

    bag = tmp / "drive"
    make_sample_bag(bag, seconds=2.0, height=H, width=W, seed=3)
    start = time.monotonic()
    launched = Launched(tmp, "replay_launch", [
        # loop: the player is still playing when Ctrl-C comes, and must exit 0 as well
        "ros2", "launch", "fusion_ros", "replay.launch.py", f"bag:={bag}", "rate:=1.0", "loop:=true",
        f"params_file:={params_file}"], env, workspace)
    try:
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and len(client.outputs_since("fused", start)) < 5:
            assert launched.proc.poll() is None, launched.log()[-4000:]
            time.sleep(0.2)
        fused = client.outputs_since("fused", start)
        assert len(fused) >= 5, f"{len(fused)} fused images; launch log:\n{launched.log()[-4000:]}"
        from fusion_ros.bag.reader import BagReader

        reader = BagReader(bag)
        rgb_stamps = {stamp_ns(m.msg.header) for m in reader.messages([f"/{RGB_TOPIC}"])}
        reader.close()
        assert {stamp_ns(m.header) for m in fused} <= rgb_stamps  # sim time: outputs carry the bag's stamps
        rc = launched.ctrl_c()
    finally:
        launched.kill()
    _assert_clean(launched, rc)
