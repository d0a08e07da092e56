"""Live replay of a rosbag2 through rclpy, with /clock — the project's stand-in for `ros2 bag play --clock`
(rosbag2_py and ros2cli are not installable from PyPI).

    fusion-play-bag BAG [--rate 1.0] [--topics /thermal/image_raw /rgb/image_raw] [--loop] [--no-clock]
                        [--wait-for-subscribers 10] [--measure /detections /fused/image ...]
                        [--measure-out summary.json] [--record DIR]

With the node started for replay (launch/replay.launch.py, use_sim_time:=true), e.g.
    fusion-play-bag drive --wait-for-subscribers 10 --measure /detections --measure-out e2e.json

Messages are published as the bag stores them (raw CDR, never deserialized) on their recorded topics, at
their recorded log times scaled by --rate (2.0 = twice as fast), in log-time order. /clock
(rosgraph_msgs/Clock) carries the bag's log time — at --clock-hz while waiting and just before every
message — so nodes run with use_sim_time:=true follow the recording; with --loop the bag restarts and the
clock jumps back (the fusion node resets its synchroniser on that). A topic whose type cannot be
imported here (e.g. vision_msgs without the workspace sourced) is skipped and reported.

Measuring the node under the real transport (--measure TOPIC ...): the player subscribes to the node's
outputs, matches each output's header stamp to the time it published the input frame with that stamp
(--measure-ref, default the RGB image topic), and reports per output topic: outputs received, input
frames without an output (drops), and end-to-end latency p50/p95/p99 (input published -> output received,
wall clock). --record DIR also writes the outputs it receives to an mcap bag (log time = bag time).
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..bag.reader import IMAGE, IMAGE_TYPES, BagError, BagReader, BagWriter, cdr_stamp

NODE_NAME = "bag_player"


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> sensor_msgs.msg.Image (ImportError/AttributeError when not available)."""
    pkg, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


@dataclass
class TopicMeasure:
    topic: str
    received: int = 0
    matched: int = 0
    stamps: set = field(default_factory=set)
    latencies_ms: list = field(default_factory=list)


@dataclass
class PlayStats:
    published: dict = field(default_factory=dict)  # topic -> messages published
    skipped_topics: dict = field(default_factory=dict)  # topic -> reason
    clock_messages: int = 0
    loops: int = 0
    wall_s: float = 0.0
    bag_s: float = 0.0
    max_lag_ms: float = 0.0  # worst lateness of a publish behind its schedule
    measure: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"published": self.published, "skipped_topics": self.skipped_topics,
                "clock_messages": self.clock_messages, "loops": self.loops, "wall_s": self.wall_s,
                "bag_s": self.bag_s, "max_lag_ms": self.max_lag_ms, "measure": self.measure}


class BagPlayer:
    """Publishes a bag through ``node``'s publishers; ``run()`` blocks until done (or ``stop()``).

    The node must be spun by an executor in another thread when measuring (subscription callbacks); plain
    playback only publishes from the calling thread.
    """

    def __init__(self, node, bag: str | Path, rate: float = 1.0, topics=None, loop: bool = False, clock: bool = True,
                 clock_hz: float = 40.0, reliability: str = "reliable", depth: int = 10,
                 measure_topics=(), measure_ref: str | None = None, record: str | Path | None = None):
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be > 0, got {rate}")
        if not clock_hz > 0:
            raise ValueError(f"clock_hz must be > 0, got {clock_hz}")
        self.node = node
        self.reader = BagReader(bag)
        if self.reader.message_count == 0:
            self.reader.close()
            raise BagError(f"{bag} is empty: nothing to play")
        self.rate, self.loop, self.clock, self.clock_hz = float(rate), bool(loop), bool(clock), float(clock_hz)
        self.stats = PlayStats()
        self._stop = threading.Event()
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth),
                         reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable"
                         else ReliabilityPolicy.BEST_EFFORT)
        wanted = list(topics) if topics else sorted(self.reader.topics)
        missing = [t for t in wanted if t not in self.reader.topics]
        if missing:
            self.reader.close()
            raise BagError(f"topic(s) {', '.join(missing)} not in {bag}; topics in the bag: "
                           f"{self.reader.describe_topics()}")
        self.publishers: dict = {}
        for topic in wanted:
            msgtype = self.reader.topics[topic].msgtype
            try:
                cls = message_class(msgtype)
            except (ImportError, AttributeError, ValueError) as exc:
                self.stats.skipped_topics[topic] = f"type {msgtype} not importable here ({exc})"
                continue
            self.publishers[topic] = node.create_publisher(cls, topic, qos)
            self.stats.published[topic] = 0
        if not self.publishers:
            self.reader.close()
            raise BagError(f"none of the topics can be published: {self.stats.skipped_topics}")
        self._clock_pub = None
        if self.clock:
            from rosgraph_msgs.msg import Clock

            self._Clock = Clock
            self._clock_pub = node.create_publisher(Clock, "/clock", QoSProfile(depth=10))
        # measurement of a node's outputs
        self._measure_ref = measure_ref or self._default_ref()
        self._published_at: OrderedDict = OrderedDict()  # input header stamp -> wall time it was published
        self._ref_count = 0
        self._measures = {t: TopicMeasure(t) for t in measure_topics}
        self._pending_subs = set(measure_topics)
        self._lock = threading.Lock()
        self._writer = None
        self._record_path = Path(record) if record else None
        self._wall0, self._log0 = time.monotonic(), self.reader.start_ns

    def _default_ref(self) -> str | None:
        images = [t for t, meta in self.reader.topics.items() if meta.msgtype == IMAGE and t in self.publishers]
        rgb = [t for t in images if "rgb" in t or "color" in t or "camera" in t]
        return (rgb or images or [None])[0]

    # ------------------------------------------------------------------------------- measuring
    def _subscribe_ready_topics(self) -> None:
        if not self._pending_subs:
            return
        from rclpy.qos import QoSProfile

        known = dict(self.node.get_topic_names_and_types())
        for topic in sorted(self._pending_subs):
            types = known.get(topic)
            if not types:
                continue
            cls = message_class(types[0])
            self.node.create_subscription(cls, topic, lambda raw, t=topic, ty=types[0]: self._on_output(t, ty, raw),
                                          QoSProfile(depth=100), raw=True)
            self._pending_subs.discard(topic)

    def _on_output(self, topic: str, msgtype: str, raw: bytes) -> None:
        now = time.monotonic()
        stamp = cdr_stamp(raw)
        with self._lock:
            m = self._measures[topic]
            m.received += 1
            sent = self._published_at.get(stamp)
            if sent is not None and stamp not in m.stamps:
                m.matched += 1
                m.latencies_ms.append((now - sent) * 1e3)
            m.stamps.add(stamp)
            if len(m.stamps) > 100_000:  # bounded: forget the oldest half
                m.stamps = set(sorted(m.stamps)[50_000:])
            if self._record_path is not None:
                if self._writer is None:
                    self._writer = BagWriter(self._record_path)
                log_ns = self._log0 + int((now - self._wall0) * self.rate * 1e9)
                self._writer.write_raw(topic, log_ns, bytes(raw), msgtype)

    def measurement(self) -> dict:
        with self._lock:
            out = {"reference_topic": self._measure_ref, "reference_frames": self._ref_count, "topics": {}}
            for topic, m in self._measures.items():
                lat = np.asarray(m.latencies_ms)
                out["topics"][topic] = {
                    "received": m.received, "matched": m.matched,
                    "subscribed": topic not in self._pending_subs,
                    "dropped": max(self._ref_count - m.matched, 0),
                    "latency_ms": ({"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95)),
                                    "p99": float(np.percentile(lat, 99)), "mean": float(lat.mean()),
                                    "count": int(lat.size)} if lat.size else {"count": 0}),
                }
        return out

    # -------------------------------------------------------------------------------- playback
    def stop(self) -> None:
        self._stop.set()

    def wait_for_subscribers(self, timeout: float, topics=None) -> bool:
        """Wait until each of ``topics`` (default: the image topics, i.e. the cameras a node under test
        subscribes to; all topics when the bag has no images) has a subscriber, at most ``timeout`` s."""
        if topics is None:
            topics = [t for t in self.publishers if self.reader.topics[t].msgtype in IMAGE_TYPES]
            topics = topics or list(self.publishers)
        pubs = [self.publishers[t] for t in topics if t in self.publishers]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self._stop.is_set():
            if all(p.get_subscription_count() > 0 for p in pubs):
                return True
            time.sleep(0.05)
        return all(p.get_subscription_count() > 0 for p in pubs)

    def _publish_clock(self, log_ns: int) -> None:
        from builtin_interfaces.msg import Time

        sec, nanosec = divmod(int(log_ns), 1_000_000_000)
        self._clock_pub.publish(self._Clock(clock=Time(sec=sec, nanosec=nanosec)))
        self.stats.clock_messages += 1

    def run(self, linger: float = 0.0) -> PlayStats:
        """Play (once, or until stop() with loop); then wait ``linger`` seconds for outputs to arrive."""
        started = time.monotonic()
        period = 1.0 / self.clock_hz
        try:
            while not self._stop.is_set():
                self.stats.loops += 1
                self._wall0, self._log0 = time.monotonic(), self.reader.start_ns
                next_tick = self._wall0
                next_sub_check = self._wall0
                for item in self.reader.messages(list(self.publishers), raw=True):
                    target = self._wall0 + (item.log_ns - self._log0) * 1e-9 / self.rate
                    while not self._stop.is_set():
                        now = time.monotonic()
                        if self._measures and now >= next_sub_check:
                            self._subscribe_ready_topics()
                            next_sub_check = now + 0.5
                        if self._clock_pub is not None and now >= next_tick:
                            clock_ns = self._log0 + int((now - self._wall0) * self.rate * 1e9)
                            self._publish_clock(min(clock_ns, item.log_ns))
                            next_tick += period * max(1, math.ceil((now - next_tick) / period + 1e-9))
                        if now >= target:
                            break
                        wake = min(target, next_tick) if self._clock_pub is not None else target
                        time.sleep(max(min(wake - now, 0.05), 0.0))
                    if self._stop.is_set():
                        break
                    self.stats.max_lag_ms = max(self.stats.max_lag_ms, (time.monotonic() - target) * 1e3)
                    if self._clock_pub is not None:
                        self._publish_clock(item.log_ns)
                    raw = bytes(item.raw)
                    if item.topic == self._measure_ref and self._measures:
                        stamp = cdr_stamp(raw)
                        with self._lock:
                            self._published_at[stamp] = time.monotonic()
                            self._ref_count += 1
                            while len(self._published_at) > 100_000:
                                self._published_at.popitem(last=False)
                    self.publishers[item.topic].publish(raw)
                    self.stats.published[item.topic] += 1
                self.stats.bag_s += self.reader.duration_s
                if not self.loop:
                    break
            deadline = time.monotonic() + linger
            while time.monotonic() < deadline and not self._stop.is_set():
                if self._measures:
                    self._subscribe_ready_topics()
                time.sleep(0.05)
        finally:
            self.stats.wall_s = time.monotonic() - started
            if self._measures:
                self.stats.measure = self.measurement()
        return self.stats

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self.reader.close()


def _flag(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got '{text}'")


def main(argv=None) -> int:
    from rclpy.signals import SignalHandlerOptions

    from .signals import ShutdownOnSignal

    parser = argparse.ArgumentParser(prog="fusion-play-bag", description=__doc__.split("\n\n")[0])
    parser.add_argument("bag", help="rosbag2 folder (or one .mcap / .db3 file)")
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    parser.add_argument("--topics", nargs="+", help="only these topics (default: all)")
    parser.add_argument("--loop", nargs="?", const="true", default="false", type=_flag,
                        help="restart at the end until interrupted (also --loop true|false, for launch files)")
    parser.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    parser.add_argument("--clock-hz", type=float, default=40.0, help="/clock rate while waiting (default 40)")
    parser.add_argument("--qos-reliability", choices=("reliable", "best_effort"), default="reliable")
    parser.add_argument("--qos-depth", type=int, default=10)
    parser.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                        help="wait up to S seconds for every image topic to have a subscriber before playing")
    parser.add_argument("--measure", nargs="+", default=[], metavar="TOPIC",
                        help="output topics of the node under test: count, drops, end-to-end latency")
    parser.add_argument("--measure-ref", metavar="TOPIC", help="input topic whose stamps the outputs carry "
                        "(default: the RGB image topic)")
    parser.add_argument("--measure-out", metavar="FILE", help="write the playback/measurement summary (JSON)")
    parser.add_argument("--linger", type=float, default=None, help="seconds to wait for outputs after the last "
                        "message (default 2 with --measure, else 0)")
    parser.add_argument("--record", metavar="DIR", help="with --measure: record the outputs to this new mcap bag")
    args, ros_args = parser.parse_known_args(argv)

    # SIGINT / SIGTERM: stop playing and exit 0. The first signal stops the player (the main thread's loop
    # ends, the context is shut down last); later ones (Ctrl-C in a terminal reaches the player and launch
    # forwards its own SIGINT) do nothing, also during the interpreter's exit, so launch never sees -2.
    players: list = []

    def _stop_players() -> None:
        for player_ in players:
            player_.stop()

    stop = ShutdownOnSignal(on_first=_stop_players)
    installed = stop.install()  # (main() called in-process by a test off the main thread: rclpy's handlers)
    try:
        return _play(args, ros_args, players, stop.event,
                     SignalHandlerOptions.NO if installed else SignalHandlerOptions.ALL)
    finally:
        if stop.requested:
            stop.ignore_from_now()
        else:  # in-process use: give the caller its handlers back
            stop.restore()


def _play(args, ros_args, players: list, stop_requested, signal_handler_options) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from .spinning import BackgroundSpin

    rclpy.init(args=ros_args or None, signal_handler_options=signal_handler_options)
    node = rclpy.create_node(NODE_NAME)
    try:
        player = BagPlayer(node, args.bag, rate=args.rate, topics=args.topics, loop=args.loop,
                           clock=not args.no_clock, clock_hz=args.clock_hz, reliability=args.qos_reliability,
                           depth=args.qos_depth, measure_topics=args.measure, measure_ref=args.measure_ref,
                           record=args.record)
    except (BagError, ValueError) as exc:
        print(f"fusion-play-bag: error: {exc}", file=sys.stderr)
        node.destroy_node()
        rclpy.try_shutdown()
        return 2
    players.append(player)
    if stop_requested.is_set():
        player.stop()
    for topic, reason in player.stats.skipped_topics.items():
        node.get_logger().warning(f"skipping {topic}: {reason}")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = BackgroundSpin(executor)
    code = 0
    try:
        if args.wait_for_subscribers > 0 and not player.wait_for_subscribers(args.wait_for_subscribers):
            node.get_logger().warning("not every topic has a subscriber; playing anyway")
        node.get_logger().info(f"playing {args.bag} at {args.rate}x: {', '.join(player.publishers)}"
                               + (" (loop)" if args.loop else ""))
        linger = args.linger if args.linger is not None else (2.0 if args.measure else 0.0)
        stats = player.run(linger=linger)
    except (KeyboardInterrupt, ExternalShutdownException):
        player.stop()
        stats = player.stats
    except BagError as exc:
        print(f"fusion-play-bag: error: {exc}", file=sys.stderr)
        stats, code = player.stats, 2
    finally:
        player.close()
        spinner.stop()
        node.destroy_node()
        rclpy.try_shutdown()
    summary = stats.to_dict()
    text = json.dumps(summary, indent=2)
    if args.measure_out:
        Path(args.measure_out).write_text(text)
    print(text)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
