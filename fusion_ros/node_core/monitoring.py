"""What the node reports: input / pair / engine statistics, drop reasons and the diagnostics statuses
built from them (diagnostic_msgs-free; nodes/ros_convert.py turns them into messages)."""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .pairing import RGB_INDEX, THERMAL_INDEX, LatestSlot

# diagnostic levels (same values as diagnostic_msgs/DiagnosticStatus)
OK, WARN, ERROR, STALE = 0, 1, 2, 3
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}


# ------------------------------------------------------------------------------------------ statistics
class RateMeter:
    """Events per second over a sliding time window (times from time.monotonic())."""

    def __init__(self, window: float = 5.0, max_events: int = 10000):
        self.window = float(window)
        self._times: deque = deque(maxlen=max_events)
        self._lock = threading.Lock()
        self.count = 0

    def tick(self, now: float) -> None:
        with self._lock:
            self._times.append(now)
            self.count += 1

    def rate(self, now: float) -> float:
        with self._lock:
            times = self._times
            while times and times[0] < now - self.window:
                times.popleft()
            if len(times) < 2:
                return 0.0
            # (n - 1) intervals from the first event in the window; measured up to now, not to the last
            # event, so the rate of a stream that stopped decays instead of freezing
            span = now - times[0]
            return (len(times) - 1) / span if span > 0 else 0.0


class LatencyStats:
    """Bounded window of samples (milliseconds) with percentiles."""

    def __init__(self, maxlen: int = 1000):
        self._samples: deque = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.count = 0
        self.total = 0.0

    def add(self, value_ms: float) -> None:
        with self._lock:
            self._samples.append(float(value_ms))
            self.count += 1
            self.total += float(value_ms)

    def percentile(self, q: float) -> float:
        with self._lock:
            samples = list(self._samples)
        if not samples:
            return float("nan")
        return float(np.percentile(samples, q))

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")

    def summary(self) -> dict:
        return {"p50": self.percentile(50), "p95": self.percentile(95), "count": self.count}


@dataclass
class InputMonitor:
    """Arrival statistics and rejected messages of one input topic."""

    name: str
    rate: RateMeter = field(default_factory=RateMeter)
    received: int = 0
    last_arrival: float | None = None
    bad: dict = field(default_factory=dict)  # reason -> count
    last_error: str = ""

    def on_receive(self, now: float) -> None:
        self.received += 1
        self.last_arrival = now
        self.rate.tick(now)

    def on_bad(self, reason: str, message: str) -> None:
        self.bad[reason] = self.bad.get(reason, 0) + 1
        self.last_error = message

    @property
    def bad_total(self) -> int:
        return sum(self.bad.values())

    def silent_for(self, now: float, since: float) -> float:
        """Seconds since the last message (or since ``since``, e.g. activation, if none came yet)."""
        return now - (self.last_arrival if self.last_arrival is not None else since)


class LogThrottle:
    """At most one log line per key per ``period`` seconds; reports how many were suppressed."""

    def __init__(self, period: float):
        self.period = float(period)
        self._last: dict = {}
        self._suppressed: dict = {}

    def allow(self, key, now: float | None = None) -> tuple[bool, int]:
        """(log now?, lines suppressed since the last one logged for this key)."""
        now = time.monotonic() if now is None else now
        last = self._last.get(key)
        if last is not None and now - last < self.period:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False, 0
        self._last[key] = now
        return True, self._suppressed.pop(key, 0)


@dataclass
class EngineMonitor:
    """Engine results and failures, and the per-stage latencies of the node around it."""

    engine_ms: LatencyStats = field(default_factory=LatencyStats)  # engine.infer wall time
    overhead_ms: LatencyStats = field(default_factory=LatencyStats)  # node work except engine.infer
    total_ms: LatencyStats = field(default_factory=LatencyStats)  # pair complete -> outputs published
    queue_ms: LatencyStats = field(default_factory=LatencyStats)  # pair complete -> worker took it
    prepare_ms: LatencyStats = field(default_factory=LatencyStats)  # overhead part: decode + normalise inputs
    publish_ms: LatencyStats = field(default_factory=LatencyStats)  # overhead part: build + publish outputs
    processed: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_error: str = ""
    rate: RateMeter = field(default_factory=RateMeter)

    def on_success(self, now: float, engine_ms: float, total_ms: float, queue_ms: float, prepare_ms: float,
                   publish_ms: float) -> None:
        self.processed += 1
        self.consecutive_failures = 0
        self.rate.tick(now)
        self.engine_ms.add(engine_ms)
        self.total_ms.add(total_ms)
        self.queue_ms.add(queue_ms)
        self.prepare_ms.add(prepare_ms)
        self.publish_ms.add(publish_ms)
        self.overhead_ms.add(max(total_ms - engine_ms - queue_ms, 0.0))

    def on_failure(self, message: str) -> None:
        self.failures += 1
        self.consecutive_failures += 1
        self.last_error = message


# ---------------------------------------------------------------------------------------- diagnostics
@dataclass
class Status:
    """One diagnostic_msgs/DiagnosticStatus, ROS-free."""

    level: int
    name: str
    message: str
    values: list[tuple[str, str]] = field(default_factory=list)


def _fmt(value) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def input_status(prefix: str, monitor: InputMonitor, sync_index: int, sync_stats, now: float, since: float,
                 silent_timeout: float, active: bool) -> Status:
    silent = monitor.silent_for(now, since)
    values = [
        ("rate_hz", _fmt(monitor.rate.rate(now))),
        ("received", _fmt(monitor.received)),
        ("silent_s", _fmt(silent)),
        ("rejected", _fmt(monitor.bad_total)),
    ]
    values += [(f"rejected.{reason}", _fmt(count)) for reason, count in sorted(monitor.bad.items())]
    if sync_stats is not None:
        values += [
            ("out_of_order", _fmt(sync_stats.out_of_order[sync_index])),
            ("duplicate_stamps", _fmt(sync_stats.duplicates[sync_index])),
            ("sync_dropped", _fmt(sync_stats.dropped[sync_index])),
        ]
    if monitor.last_error:
        values.append(("last_error", monitor.last_error))
    if not active:
        return Status(OK, f"{prefix}: {monitor.name} input", "node not active", values)
    if silent > silent_timeout:
        never = monitor.last_arrival is None
        what = "no message received" if never else "no message"
        return Status(WARN, f"{prefix}: {monitor.name} input",
                      f"{monitor.name} topic silent: {what} for {silent:.1f} s (> {silent_timeout:g} s)", values)
    message = f"{monitor.rate.rate(now):.1f} Hz"
    if monitor.bad_total:
        message += f", {monitor.bad_total} rejected"
    return Status(OK, f"{prefix}: {monitor.name} input", message, values)


class DropTracker:
    """Why inputs arrive but nothing is published: rejections (per input and reason) and unpaired
    synchroniser drops counted since the last published pair. Thread-safe (executor + worker)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts: dict = {}
        self._messages: dict = {}
        self._sync_base: int | None = None

    def note(self, key: str, message: str) -> None:
        """One dropped frame/pair of kind ``key`` (e.g. 'thermal size_mismatch'), ``message`` says why."""
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            self._messages[key] = message

    def clear(self, sync_dropped_total: int | None = None) -> None:
        """A pair was published: start counting afresh (``sync_dropped_total``: the synchroniser's count now)."""
        with self._lock:
            self._counts.clear()
            self._messages.clear()
            self._sync_base = sync_dropped_total

    def dominant(self, sync_dropped_total: int, skew_text: str | None) -> str:
        """The most frequent drop reason since the last published pair, as a message. Unpaired synchroniser
        drops are described by ``skew_text`` (the stamp offset between the inputs) when it is given."""
        with self._lock:
            counts = dict(self._counts)
            messages = dict(self._messages)
            if self._sync_base is None or sync_dropped_total < self._sync_base:
                self._sync_base = 0
            unpaired = sync_dropped_total - self._sync_base
        if unpaired > 0:
            counts["sync"] = unpaired
            messages["sync"] = skew_text or "sync: no partner within slop (stamps of the two inputs differ)"
        if not counts:
            return skew_text or "no pair formed yet (waiting for frames with matching stamps)"
        key = max(counts, key=lambda k: counts[k])
        if key == "sync":
            return f"{messages[key]} ({counts[key]} frames dropped unpaired)"
        return f"{key}: {messages[key]} ({counts[key]} dropped)"


def skew_description(last_stamps: list, slop: float) -> str | None:
    """'sync: thermal 2.0 s behind rgb, slop 0.05 s' when the newest stamps of the two inputs are further
    apart than ``slop`` (no pair can form), else None. ``last_stamps``: [thermal ns, rgb ns] (None unknown)."""
    thermal, rgb = last_stamps[THERMAL_INDEX], last_stamps[RGB_INDEX]
    if thermal is None or rgb is None:
        return None
    offset = (rgb - thermal) * 1e-9
    if abs(offset) <= slop:
        return None
    behind, ahead = ("thermal", "rgb") if offset > 0 else ("rgb", "thermal")
    return f"sync: {behind} {abs(offset):.3g} s behind {ahead}, slop {slop:g} s"


def output_stall(now: float, last_output: float | None, since: float, inputs: list[InputMonitor],
                 timeout: float) -> float | None:
    """Seconds without a published pair while inputs arrive (both inputs heard within ``timeout``), when
    that is longer than ``timeout``; else None."""
    quiet = now - (last_output if last_output is not None and last_output > since else since)
    if quiet <= timeout:
        return None
    if not all(m.last_arrival is not None and now - m.last_arrival <= timeout for m in inputs):
        return None  # an input is silent: its own status says so
    return quiet


def sync_status(prefix: str, sync_stats, pair_rate: float, slot: LatestSlot | None,
                stall: str | None = None, resets: int = 0) -> Status:
    skews = list(sync_stats.recent_skews) if sync_stats is not None else []
    values = [
        ("pair_rate_hz", _fmt(pair_rate)),
        ("pairs", _fmt(sync_stats.sets if sync_stats else 0)),
        ("skew_mean_ms", _fmt(sync_stats.mean_skew * 1e3 if sync_stats else 0.0)),
        ("skew_max_ms", _fmt(sync_stats.max_skew * 1e3 if sync_stats else 0.0)),
        ("skew_p95_ms", _fmt(float(np.percentile(skews, 95)) * 1e3 if skews else 0.0)),
        ("worker_dropped_pairs", _fmt(slot.dropped if slot else 0)),
        ("resets_on_jump_back", _fmt(resets)),
    ]
    if sync_stats is not None:
        for i, name in enumerate(("thermal", "rgb")):
            values.append((f"{name}_unpaired_dropped", _fmt(sync_stats.dropped[i])))
    if stall:
        values.append(("no_output_reason", stall))
        return Status(WARN, f"{prefix}: synchronizer", stall, values)
    message = f"{pair_rate:.1f} pairs/s"
    if slot is not None and slot.dropped:
        message += f", {slot.dropped} pairs dropped (engine busy)"
    return Status(OK, f"{prefix}: synchronizer", message, values)


def engine_status(prefix: str, monitor: EngineMonitor, backend: str, error_threshold: int, now: float,
                  state: str, configure_error: str = "", model: str = "", fallback: Sequence[str] = ()) -> Status:
    """The engine's status. ``model``: the file the engine runs; ``fallback``: why backend auto skipped the
    backends before it (a broken artifact, no GPU): a loaded engine on a fallback is WARN, not OK, for as
    long as it runs, so a monitor sees the node is not running what was deployed."""
    values = [
        ("state", state),
        ("backend", backend or "-"),
        ("model", model or "-"),
        ("processed", _fmt(monitor.processed)),
        ("output_rate_hz", _fmt(monitor.rate.rate(now))),
        ("engine_ms_p50", _fmt(monitor.engine_ms.percentile(50))),
        ("engine_ms_p95", _fmt(monitor.engine_ms.percentile(95))),
        ("node_overhead_ms_p50", _fmt(monitor.overhead_ms.percentile(50))),
        ("node_overhead_ms_p95", _fmt(monitor.overhead_ms.percentile(95))),
        ("node_overhead.prepare_ms_p50", _fmt(monitor.prepare_ms.percentile(50))),
        ("node_overhead.publish_ms_p50", _fmt(monitor.publish_ms.percentile(50))),
        ("node_overhead.publish_ms_p95", _fmt(monitor.publish_ms.percentile(95))),
        ("queue_wait_ms_p50", _fmt(monitor.queue_ms.percentile(50))),
        ("pair_to_publish_ms_p50", _fmt(monitor.total_ms.percentile(50))),
        ("pair_to_publish_ms_p95", _fmt(monitor.total_ms.percentile(95))),
        ("failures", _fmt(monitor.failures)),
        ("consecutive_failures", _fmt(monitor.consecutive_failures)),
    ]
    if monitor.last_error:
        values.append(("last_error", monitor.last_error))
    if fallback:
        values.append(("fallback", " | ".join(fallback)))
    name = f"{prefix}: engine"
    if configure_error:
        values.append(("configure_error", configure_error))
        return Status(ERROR, name, f"configure failed: {configure_error}", values)
    if monitor.consecutive_failures >= error_threshold:
        return Status(ERROR, name, f"{monitor.consecutive_failures} consecutive engine failures: "
                      f"{monitor.last_error}", values)
    fell_back = f"fallback {backend} (skipped {' | '.join(fallback)})" if fallback and backend else ""
    if state != "active":
        return Status(WARN, name, f"{state}, {fell_back}", values) if fell_back else Status(OK, name, state, values)
    p50 = monitor.engine_ms.percentile(50)
    message = f"{fell_back or backend}, " + (f"{p50:.1f} ms p50" if not math.isnan(p50) else "no frames yet")
    return Status(WARN if fell_back else OK, name, message, values)
