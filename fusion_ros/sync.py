"""Time synchronisation of N message streams: message_filters' ApproximateTime policy.

message_filters is not on PyPI for ROS 2, and the bag evaluator must pair frames exactly as the live node
does, so both use this ROS-free re-implementation. ``ApproximateTimeSynchronizer`` follows the C++
ApproximateTime policy (Vaughan's algorithm): per-input queues, a candidate set, a pivot, optimality proofs
from monotonic arrival and optional inter-message lower bounds, ``max_interval`` (here ``slop``) and
``age_penalty``. Differences, all deliberate: stamps are integer nanoseconds internally (exact and
deterministic comparisons); a stamp that is not newer than the last accepted one on its input is counted
and dropped instead of being queued with a one-time warning; every message discarded is counted.
Not thread-safe: call from one thread (the node's callbacks run on a single-threaded executor).
"""
from __future__ import annotations

import math
import numbers
from collections import deque
from dataclasses import dataclass, field

_RECENT_SKEWS = 1000  # skews kept for diagnostics; bounded so a long-running node does not grow


def seconds_to_ns(stamp_seconds: float) -> int:
    """Float seconds -> integer nanoseconds (prefer passing ``sec * 10**9 + nanosec`` to ``add_ns``)."""
    if not math.isfinite(stamp_seconds):
        raise ValueError(f"time stamp must be finite, got {stamp_seconds}")
    return int(round(stamp_seconds * 1e9))


@dataclass
class SyncStats:
    """Counters per input, for diagnostics. Each received message is eventually counted once as
    out_of_order, duplicate, dropped or used in a set (``sets`` sets of one message per input), or is
    still pending in the synchroniser."""

    received: list[int]
    dropped: list[int]
    out_of_order: list[int]
    duplicates: list[int]
    sets: int = 0
    max_skew: float = 0.0  # seconds: newest minus oldest stamp within an emitted set
    total_skew: float = 0.0
    recent_skews: deque = field(default_factory=lambda: deque(maxlen=_RECENT_SKEWS))

    @classmethod
    def zeros(cls, num_inputs: int) -> SyncStats:
        return cls(*([0] * num_inputs for _ in range(4)))

    @property
    def mean_skew(self) -> float:
        return self.total_skew / self.sets if self.sets else 0.0

    def record_set(self, stamps: list[int]) -> None:
        skew = (max(stamps) - min(stamps)) * 1e-9
        self.sets += 1
        self.total_skew += skew
        self.max_skew = max(self.max_skew, skew)
        self.recent_skews.append(skew)


class ApproximateTimeSynchronizer:
    """message_filters' ApproximateTime policy for ``num_inputs`` streams.

    A set is emitted once no future message can produce a set with a smaller spread (newest minus
    oldest stamp), given that stamps on each input only increase. ``slop`` (seconds, ``None`` for no
    limit) rejects sets whose spread exceeds it. ``age_penalty`` >= 0 favours emitting older sets sooner.
    ``inter_message_lower_bounds`` (seconds, one per input or one for all) states the minimum stamp gap
    on an input, which lets a set be proven optimal before the next message arrives (lower latency).
    ``queue_size`` bounds the messages held per input; the oldest is dropped beyond it.
    """

    def __init__(
        self,
        num_inputs: int,
        queue_size: int = 10,
        slop: float | None = 0.05,
        age_penalty: float = 0.0,
        inter_message_lower_bounds: float | list[float] = 0.0,
    ):
        if num_inputs < 2:
            raise ValueError(f"a synchronizer needs at least 2 inputs, got {num_inputs}")
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.num_inputs = num_inputs
        self.queue_size = queue_size
        self.stats = SyncStats.zeros(num_inputs)
        self._last_stamp: list[int | None] = [None] * num_inputs
        if slop is not None and not slop >= 0:
            raise ValueError(f"slop must be >= 0 seconds or None, got {slop}")
        if not age_penalty >= 0:
            raise ValueError(f"age_penalty must be >= 0, got {age_penalty}")
        bounds = inter_message_lower_bounds
        bounds = [bounds] * num_inputs if isinstance(bounds, numbers.Real) else list(bounds)
        if len(bounds) != num_inputs or not all(b >= 0 for b in bounds):
            raise ValueError(f"inter_message_lower_bounds needs {num_inputs} values >= 0, got {bounds}")
        self._max_interval = None if slop is None else seconds_to_ns(slop)
        self._age_factor = 1.0 + age_penalty
        self._lower_bounds = [seconds_to_ns(b) for b in bounds]
        self._clear()

    def add(self, input_index: int, stamp_seconds: float, item) -> list[tuple]:
        """Offer ``item`` stamped ``stamp_seconds`` on input ``input_index``; returns the sets (one item
        per input, in input order) this message completed, oldest first — usually none or one."""
        return self.add_ns(input_index, seconds_to_ns(stamp_seconds), item)

    def add_ns(self, input_index: int, stamp_ns: int, item) -> list[tuple]:
        """``add`` with an exact integer-nanosecond stamp."""
        if not 0 <= input_index < self.num_inputs:
            raise IndexError(f"input_index {input_index} out of range for {self.num_inputs} inputs")
        stamp_ns = int(stamp_ns)
        self.stats.received[input_index] += 1
        last = self._last_stamp[input_index]
        if last is not None and stamp_ns <= last:
            counter = self.stats.duplicates if stamp_ns == last else self.stats.out_of_order
            counter[input_index] += 1
            return []
        self._last_stamp[input_index] = stamp_ns
        out: list[tuple] = []
        self._accept(input_index, stamp_ns, item, out)
        return out

    def reset(self) -> None:
        """Forget all pending messages (counted as dropped) and the last stamps. Call it when time jumps
        back (a bag restarting, a simulator reset): otherwise every later message reads as out of order."""
        for i, count in enumerate(self.pending()):
            self.stats.dropped[i] += count
        self._last_stamp = [None] * self.num_inputs
        self._clear()

    def _emit(self, members: list[tuple[int, object]], out: list[tuple]) -> None:
        self.stats.record_set([stamp for stamp, _ in members])
        out.append(tuple(item for _, item in members))

    def _clear(self) -> None:
        n = self.num_inputs
        self._queues: list[deque] = [deque() for _ in range(n)]  # (stamp_ns, item), not yet examined
        self._past: list[list] = [[] for _ in range(n)]  # examined since the current candidate was made
        self._has_dropped = [False] * n
        self._candidate: list | None = None
        self._cand_start = self._cand_end = 0
        self._pivot: int | None = None
        self._pivot_time = 0

    def pending(self) -> list[int]:
        """Messages per input held, waiting for a match."""
        return [len(q) + len(p) for q, p in zip(self._queues, self._past)]

    def _accept(self, i: int, stamp: int, item, out: list[tuple]) -> None:
        queue = self._queues[i]
        queue.append((stamp, item))
        if len(queue) == 1 and all(self._queues):  # an empty queue became non-empty: try to pair
            self._process(out)
        if len(queue) + len(self._past[i]) > self.queue_size:
            self._restore_past()  # abandon the candidate search, then drop this input's oldest
            queue.popleft()
            self.stats.dropped[i] += 1
            self._has_dropped[i] = True
            if self._pivot is not None:
                self._candidate, self._pivot = None, None
                self._process(out)

    @staticmethod
    def _bounds(times: list[int]) -> tuple[int, int, int, int]:
        """(start index, start time, end index, end time): earliest and latest of ``times``; ties go to the
        lowest index for the start and the highest for the end, as in message_filters."""
        start_i = end_i = 0
        for i in range(1, len(times)):
            if times[i] < times[start_i]:
                start_i = i
            if times[i] >= times[end_i]:
                end_i = i
        return start_i, times[start_i], end_i, times[end_i]

    def _process(self, out: list[tuple]) -> None:
        while all(self._queues):
            start_i, start_t, end_i, end_t = self._bounds([q[0][0] for q in self._queues])
            for i in range(self.num_inputs):
                if i != end_i:  # nothing dropped on i could have beaten what is queued now
                    self._has_dropped[i] = False
            if self._pivot is None:
                too_wide = self._max_interval is not None and end_t - start_t > self._max_interval
                if too_wide or self._has_dropped[end_i]:
                    self._queues[start_i].popleft()  # the oldest head cannot be in any valid set
                    self.stats.dropped[start_i] += 1
                    continue
                self._make_candidate(start_t, end_t)
                self._pivot, self._pivot_time = end_i, end_t
            elif (end_t - self._cand_end) * self._age_factor < start_t - self._cand_start:
                self._make_candidate(start_t, end_t)  # a tighter set for the same pivot
            self._past[start_i].append(self._queues[start_i].popleft())
            if start_i == self._pivot or self._cannot_improve(end_t):
                self._publish(out)  # all sets containing the pivot seen, or every later one is wider
            elif not all(self._queues):
                self._virtual_search(out)

    def _cannot_improve(self, end_t: int) -> bool:
        """Every future set contains [pivot time, end_t]; true when that alone is no better."""
        return (end_t - self._cand_end) * self._age_factor >= self._pivot_time - self._cand_start

    def _make_candidate(self, start_t: int, end_t: int) -> None:
        self._candidate = [q[0] for q in self._queues]
        for i, past in enumerate(self._past):  # older than the new candidate: never usable again
            self.stats.dropped[i] += len(past)
            past.clear()
        self._cand_start, self._cand_end = start_t, end_t

    def _virtual_search(self, out: list[tuple]) -> None:
        """Try to prove the candidate optimal before the empty inputs receive their next message, using
        optimistic stamps for them (the pivot time, or last stamp + lower bound); undo the moves if not."""
        moves = [0] * self.num_inputs
        while True:
            times = [
                q[0][0] if q else max(self._past[i][-1][0] + self._lower_bounds[i], self._pivot_time)
                for i, q in enumerate(self._queues)
            ]
            start_i, start_t, _, end_t = self._bounds(times)
            if self._cannot_improve(end_t):
                self._publish(out)
                return
            if (end_t - self._cand_end) * self._age_factor < start_t - self._cand_start:
                for i, count in enumerate(moves):  # an optimistic future set would be better: wait
                    for _ in range(count):
                        self._queues[i].appendleft(self._past[i].pop())
                return
            # start_t < pivot time here, so start_i is a non-empty input (empty ones sit at >= pivot time)
            self._past[start_i].append(self._queues[start_i].popleft())
            moves[start_i] += 1

    def _restore_past(self) -> None:
        for queue, past in zip(self._queues, self._past):
            queue.extendleft(reversed(past))
            past.clear()

    def _publish(self, out: list[tuple]) -> None:
        members = self._candidate
        self._candidate, self._pivot = None, None
        self._restore_past()
        for queue in self._queues:  # each candidate member is now at the head of its queue
            queue.popleft()
        self._emit(members, out)
