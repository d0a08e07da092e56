"""fusion-play-bag on real rclpy / Fast DDS: a subscriber receives the bag's messages with the bag's
stamps at about the recorded rate, /clock follows the bag, --loop restarts it, and --measure reports an
output topic's drops and latency.

    OMP_NUM_THREADS=1 bash scripts/with_ros_env.sh .venv/bin/python -m pytest -q test/test_bag_player.py
"""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ROS 2 wheels) not installed")
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from fusion_ros.bag.reader import BagError, BagReader, stamp_of  # noqa: E402
from fusion_ros.bag.sample import RGB_TOPIC, THERMAL_TOPIC, make_sample_bag  # noqa: E402
from fusion_ros.nodes import bag_player  # noqa: E402
from fusion_ros.nodes.spinning import BackgroundSpin  # noqa: E402

SECONDS = 1.0


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("play") / "bag"
    make_sample_bag(path, seconds=SECONDS, height=48, width=64, seed=4)
    with BagReader(path) as reader:
        recorded = {t: [(m.log_ns, stamp_of(m.msg.header)) for m in reader.messages([t])]
                    for t in (THERMAL_TOPIC, RGB_TOPIC)}
        start = reader.start_ns
    return path, recorded, start


class Session:
    """One rclpy context with a player node and a listener node spun in a background thread."""

    def __init__(self):
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.player_node = rclpy.create_node("test_player", context=self.ctx)
        self.listener = rclpy.create_node("test_listener", context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.player_node)
        self.executor.add_node(self.listener)
        self.received: dict = {}
        self.lock = threading.Lock()
        self.spinner = BackgroundSpin(self.executor)

    def listen(self, topic, cls):
        qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)

        def on_msg(msg, topic=topic):
            with self.lock:
                self.received.setdefault(topic, []).append((time.monotonic(), msg))

        self.listener.create_subscription(cls, topic, on_msg, qos)

    def close(self):
        self.spinner.stop()
        self.player_node.destroy_node()
        self.listener.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


@pytest.fixture
def session():
    s = Session()
    yield s
    s.close()


def _wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.02)
    return predicate()


@pytest.mark.parametrize("rate", [1.0, 2.0])
def test_publishes_with_bag_stamps_at_the_rate(bag, session, rate):
    path, recorded, start = bag
    for topic in (THERMAL_TOPIC, RGB_TOPIC):
        session.listen(topic, Image)
    session.listen("/clock", Clock)
    player = bag_player.BagPlayer(session.player_node, path, rate=rate, topics=[THERMAL_TOPIC, RGB_TOPIC])
    try:
        assert player.wait_for_subscribers(10.0)
        stats = player.run()
    finally:
        player.close()
    expected = {t: len(v) for t, v in recorded.items()}
    assert stats.published == expected and stats.loops == 1
    assert _wait_for(lambda: all(len(session.received.get(t, [])) == n for t, n in expected.items()))
    for topic, rec in recorded.items():
        got = session.received[topic]
        assert [stamp_of(m.header) for _, m in got] == [stamp for _, stamp in rec], topic
        # arrival times follow the recorded log times / rate. DDS adds ~ms, but CI's 2 cores can stall a
        # thread for 100+ ms now and then, so judge the schedule by most frames, not the worst one: a player
        # that ignored the rate (offsets grow to the bag's length) or flushed the bag at once (offsets go to
        # minus its length) fails both checks by far.
        arrival = np.array([t for t, _ in got])
        logged = np.array([log for log, _ in rec]) * 1e-9 / rate
        offsets = (arrival - arrival[0]) - (logged - logged[0])
        on_time = np.abs(offsets) < 0.05
        detail = (topic, np.round(offsets, 3).tolist(), f"player max lag {stats.max_lag_ms:.0f} ms")
        assert abs(np.median(offsets)) < 0.03 and on_time.mean() >= 0.75, detail
    # /clock: bag log time, monotonic, ticking while waiting
    clocks = [m.clock.sec * 10**9 + m.clock.nanosec for _, m in session.received.get("/clock", [])]
    assert len(clocks) >= sum(expected.values())
    assert clocks == sorted(clocks) and start <= clocks[0] and clocks[-1] <= start + int(SECONDS * 1.1e9)
    sample = session.received[THERMAL_TOPIC][0][1]
    assert (sample.encoding, sample.height, sample.width) == ("mono16", 48, 64)


def test_loop_restarts_and_clock_jumps_back(bag, session):
    path, recorded, _ = bag
    session.listen(RGB_TOPIC, Image)
    session.listen("/clock", Clock)
    player = bag_player.BagPlayer(session.player_node, path, rate=4.0, topics=[RGB_TOPIC], loop=True)
    try:
        assert player.wait_for_subscribers(10.0)
        n = len(recorded[RGB_TOPIC])

        def stop_during_second_pass():  # by progress, not by a timer: a busy machine shifts timers
            if _wait_for(lambda: player.stats.published[RGB_TOPIC] > n, timeout=10.0):
                player.stop()

        stopper = threading.Thread(target=stop_during_second_pass, daemon=True)
        stopper.start()
        stats = player.run()
        stopper.join(timeout=10.0)
    finally:
        player.close()
    assert stats.loops == 2
    assert _wait_for(lambda: len(session.received.get(RGB_TOPIC, [])) == stats.published[RGB_TOPIC])
    stamps = [stamp_of(m.header) for _, m in session.received[RGB_TOPIC]]
    assert stamps[:n] == [s for _, s in recorded[RGB_TOPIC]] and stamps[n] == stamps[0]  # restarted
    clocks = [m.clock.sec * 10**9 + m.clock.nanosec for _, m in session.received["/clock"]]
    assert sum(1 for a, b in zip(clocks, clocks[1:]) if b < a) == 1


def test_measure_drops_and_latency(bag, session, tmp_path):
    """A stand-in for the node that echoes every other RGB frame's header on an output topic: the player
    reports half of the frames dropped and a positive latency, and records the outputs."""
    path, recorded, _ = bag
    out_pub = session.listener.create_publisher(Image, "/detections/image", QoSProfile(depth=50))
    count = {"n": 0}

    def echo(msg):
        count["n"] += 1
        if count["n"] % 2:
            out_pub.publish(Image(header=msg.header, encoding="mono8", height=1, width=1, step=1, data=[0]))

    session.listener.create_subscription(Image, RGB_TOPIC, echo, QoSProfile(depth=50))
    player = bag_player.BagPlayer(session.player_node, path, rate=2.0, topics=[RGB_TOPIC],
                                  measure_topics=["/detections/image"], record=tmp_path / "rec")
    try:
        assert player.wait_for_subscribers(10.0)
        player._subscribe_ready_topics()
        stats = player.run(linger=1.0)
    finally:
        player.close()
    n = len(recorded[RGB_TOPIC])
    m = stats.measure
    assert m["reference_topic"] == RGB_TOPIC and m["reference_frames"] == n
    out = m["topics"]["/detections/image"]
    assert out["subscribed"] and out["matched"] == (n + 1) // 2 and out["dropped"] == n // 2
    assert 0 < out["latency_ms"]["p50"] <= out["latency_ms"]["p99"] < 1000
    with BagReader(tmp_path / "rec") as reader:
        assert reader.topics["/detections/image"].count == out["received"]


def test_cli_and_errors(bag, tmp_path, capsys):
    path, recorded, _ = bag
    summary = tmp_path / "summary.json"
    assert bag_player.main([str(path), "--rate", "4", "--topics", RGB_TOPIC, "--no-clock", "--loop", "false",
                            "--measure-out", str(summary)]) == 0
    data = json.loads(summary.read_text())
    assert data["published"] == {RGB_TOPIC: len(recorded[RGB_TOPIC])} and data["clock_messages"] == 0
    assert bag_player.main([str(path), "--topics", "/nope"]) == 2
    assert "/nope" in capsys.readouterr().err
    assert bag_player.main([str(tmp_path / "missing")]) == 2
    with pytest.raises(ValueError):
        bag_player.BagPlayer(None, path, rate=0.0)
    with pytest.raises(BagError):
        bag_player.BagPlayer(None, tmp_path / "missing")
