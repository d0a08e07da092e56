"""The ApproximateTime synchroniser: hand-worked sequences and properties on simulated streams."""
import numpy as np
import pytest

from fusion_ros.sync import ApproximateTimeSynchronizer

A, B = 0, 1


def _feed(sync, arrivals):
    """arrivals: (input, stamp) in arrival order; the item is (input, stamp). Returns all emitted sets."""
    sets = []
    for index, stamp in arrivals:
        sets += sync.add(index, stamp, (index, stamp))
    return sets


def _accounted(sync):
    """Every received message is out of order, a duplicate, dropped, used in a set or still pending."""
    s = sync.stats
    pending = sync.pending()
    return all(
        s.received[i] == s.out_of_order[i] + s.duplicates[i] + s.dropped[i] + s.sets + pending[i]
        for i in range(sync.num_inputs)
    )


def _streams(rng, rates, duration, jitter, latency, drop=None):
    """Camera streams merged in arrival order (stamp + per-topic latency), with stamp jitter and drops."""
    arrivals = []
    for index, rate in enumerate(rates):
        count = int(round(duration * rate))
        stamps = np.arange(count) / rate + rng.uniform(-jitter, jitter, count)
        keep = rng.random(stamps.size) >= (drop[index] if drop else 0.0)
        for stamp in stamps[keep]:
            arrivals.append((stamp + latency[index], index, round(float(stamp), 6)))
    arrivals.sort()
    return [(index, stamp) for _, index, stamp in arrivals]


def _check_sets(sets, slop):
    used = set()
    for members in sets:
        stamps = [stamp for _, stamp in members]
        assert max(stamps) - min(stamps) <= slop + 1e-9
        assert [index for index, _ in members] == list(range(len(members)))
        for member in members:
            assert member not in used  # each message in at most one set
            used.add(member)
    for i in range(len(sets[0])):  # per input, sets come out in time order
        column = [members[i][1] for members in sets]
        assert column == sorted(column) and len(set(column)) == len(column)


def test_perfect_pairs_are_emitted_immediately_in_either_order():
    sync = ApproximateTimeSynchronizer(2, slop=0.01)
    for k in range(10):
        t = 100.0 + k / 10
        first, second = (A, B) if k % 2 else (B, A)
        assert sync.add(first, t, (first, t)) == []
        assert sync.add(second, t, (second, t)) == [((A, t), (B, t))]
    assert sync.stats.sets == 10 and sync.stats.max_skew == 0.0 and sync.pending() == [0, 0]
    assert sync.stats.dropped == [0, 0]


def test_hand_worked_sequence():
    # slop 1.0 s, no age penalty, no lower bounds. "heads" = oldest unexamined message per input.
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop=1.0)
    # A1.0: B empty, nothing to do.
    assert sync.add(A, 1.0, "a1.0") == []
    # B1.4: heads A1.0,B1.4 -> candidate (a1.0,b1.4), pivot B (latest head), A1.0 moved to past.
    # A is now empty: its next message could be as early as the pivot time 1.4, which would give a
    # tighter set, so the candidate cannot be proven optimal -> wait.
    assert sync.add(B, 1.4, "b1.4") == []
    # A1.3: heads A1.3,B1.4; spread 0.1 < 0.4 -> better candidate (a1.3,b1.4), a1.0 dropped. Again an
    # A at 1.4 could still beat it -> wait.
    assert sync.add(A, 1.3, "a1.3") == []
    assert sync.stats.dropped == [1, 0]
    # A1.45: heads A1.45,B1.4; start B1.4, end A1.45, spread 0.05 < 0.1 -> better candidate
    # (a1.45,b1.4), a1.3 dropped. The start is the pivot B: every set with b1.4 has been seen -> emit.
    assert sync.add(A, 1.45, "a1.45") == [("a1.45", "b1.4")]
    assert sync.stats.dropped == [2, 0]
    # B1.6: A empty -> nothing. A1.7: candidate (a1.7,b1.6) with pivot A; B empty and a B at 1.7
    # could beat it -> wait.
    assert sync.add(B, 1.6, "b1.6") == []
    assert sync.add(A, 1.7, "a1.7") == []
    # B2.5: heads A1.7,B2.5 spread 0.8 is worse than 0.1; the start is the pivot A -> emit (a1.7,b1.6).
    assert sync.add(B, 2.5, "b2.5") == [("a1.7", "b1.6")]
    # A2.0: candidate (a2.0,b2.5) spread 0.5 <= slop, pivot B; an A up to 2.5 could beat it -> wait.
    assert sync.add(A, 2.0, "a2.0") == []
    assert sync.pending() == [1, 1] and sync.stats.sets == 2 and _accounted(sync)
    assert sync.stats.max_skew == pytest.approx(0.1) and sync.stats.mean_skew == pytest.approx(0.075)

    # The same history with slop 0.3: A2.0 vs B2.5 spans 0.5 > slop, so a2.0 is dropped on arrival.
    tight = ApproximateTimeSynchronizer(2, slop=0.3)
    for index, stamp in [(A, 1.0), (B, 1.4), (A, 1.3), (A, 1.45), (B, 1.6), (A, 1.7), (B, 2.5)]:
        tight.add(index, stamp, stamp)
    assert tight.add(A, 2.0, 2.0) == [] and tight.pending() == [0, 1] and tight.stats.dropped == [3, 0]


def test_hand_worked_queue_overflow_blocks_the_dropping_input_as_pivot():
    sync = ApproximateTimeSynchronizer(2, queue_size=3, slop=1.0)
    for t in (1.0, 1.1, 1.2):
        assert sync.add(A, t, f"a{t}") == []
    # A1.3 makes 4 > queue_size on A: a1.0 dropped, and A is marked as having dropped messages.
    assert sync.add(A, 1.3, "a1.3") == [] and sync.stats.dropped == [1, 0]
    # B1.05: heads A1.1,B1.05 -> end (would-be pivot) is A, which dropped a1.0 (maybe b1.05's true
    # match), so no candidate is formed and the start b1.05 is dropped.
    assert sync.add(B, 1.05, "b1.05") == [] and sync.stats.dropped == [1, 1]
    # B1.15: heads A1.1,B1.15 -> end is B, so A's drop mark clears; candidate (a1.1,b1.15), pivot B,
    # a1.1 to past. Heads A1.2,B1.15: spread 0.05 is not better than 0.05; start is the pivot -> emit.
    assert sync.add(B, 1.15, "b1.15") == [("a1.1", "b1.15")]
    assert sync.pending() == [2, 0] and _accounted(sync)


def test_inter_message_lower_bound_emits_without_waiting():
    # Without a bound the pair (a1.0,b1.05) waits: an A at 1.05 could still arrive and be tighter.
    plain = ApproximateTimeSynchronizer(2, slop=0.1)
    assert _feed(plain, [(A, 1.0), (B, 1.05)]) == []
    # Knowing A is at least 0.5 s apart, the next A is >= 1.5: a set with it would span >= 0.45 > 0.05.
    bounded = ApproximateTimeSynchronizer(2, slop=0.1, inter_message_lower_bounds=[0.5, 0.0])
    assert _feed(bounded, [(A, 1.0), (B, 1.05)]) == [((A, 1.0), (B, 1.05))]


@pytest.mark.parametrize("age_penalty", [0.0, 0.5])
def test_unequal_rates_with_jitter(age_penalty):
    rng = np.random.default_rng(1)
    slop = 0.025  # thermal 30 Hz, RGB 20 Hz: the nearest thermal is <= 16.7 ms (+ 2 x 2 ms jitter) away
    arrivals = _streams(rng, rates=(30, 20), duration=20, jitter=0.002, latency=(0.004, 0.03))
    sync = ApproximateTimeSynchronizer(2, queue_size=10, slop=slop, age_penalty=age_penalty)
    sets = _feed(sync, arrivals)
    _check_sets(sets, slop)
    n_rgb = sum(1 for index, _ in arrivals if index == B)
    assert sync.stats.sets >= n_rgb - 2  # every RGB frame finds its thermal frame (bar the last ones)
    assert sync.stats.max_skew <= slop and _accounted(sync)


def test_dropped_frames_never_pair_beyond_slop():
    rng = np.random.default_rng(2)
    slop = 0.02
    arrivals = _streams(rng, (30, 20), duration=30, jitter=0.002, latency=(0.004, 0.03), drop=(0.3, 0.4))
    sync = ApproximateTimeSynchronizer(2, slop=slop)
    sets = _feed(sync, arrivals)
    _check_sets(sets, slop)
    assert len(sets) > 100 and sync.stats.dropped[A] > 0 and _accounted(sync)


def test_three_inputs():
    rng = np.random.default_rng(3)
    arrivals = _streams(rng, rates=(10, 10, 10), duration=10, jitter=0.003, latency=(0.01, 0.02, 0.0))
    sync = ApproximateTimeSynchronizer(3, slop=0.01)
    sets = _feed(sync, arrivals)
    _check_sets(sets, 0.01)
    assert len(sets) >= 98 and _accounted(sync)


def test_out_of_order_and_duplicates_are_counted_and_dropped():
    sync = ApproximateTimeSynchronizer(2, slop=0.05)
    assert _feed(sync, [(A, 1.0), (A, 1.0), (A, 0.9), (B, 0.95), (B, 0.95)]) == []
    assert sync.stats.duplicates == [1, 1] and sync.stats.out_of_order == [1, 0]
    # a1.1 queues behind a1.0 (a B up to 1.0 could still pair better); b1.2 settles (a1.0, b0.95)
    assert _feed(sync, [(A, 1.1)]) == []
    assert _feed(sync, [(B, 1.2)]) == [((A, 1.0), (B, 0.95))]
    assert _feed(sync, [(B, 1.0)]) == [] and sync.stats.out_of_order == [1, 1]
    assert sync.stats.received == [4, 4] and _accounted(sync)


def test_reset_after_time_jump():
    sync = ApproximateTimeSynchronizer(2, slop=0.05)
    _feed(sync, [(A, 50.0), (B, 50.0), (A, 51.0)])
    assert _feed(sync, [(A, 1.0)]) == [] and sync.stats.out_of_order == [1, 0]
    sync.reset()
    assert sync.pending() == [0, 0] and sync.stats.dropped == [1, 0]
    assert _feed(sync, [(A, 1.0), (B, 1.0)]) == [((A, 1.0), (B, 1.0))]
    assert _accounted(sync)


def test_deterministic():
    arrivals = _streams(np.random.default_rng(4), (30, 20), 10, 0.01, (0.004, 0.03), drop=(0.1, 0.1))
    runs = []
    for _ in range(2):
        sync = ApproximateTimeSynchronizer(2, queue_size=5, slop=0.03)
        sets = _feed(sync, arrivals)
        runs.append((sets, sync.stats.dropped, sync.stats.sets, list(sync.stats.recent_skews)))
    assert runs[0] == runs[1] and runs[0][2] > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 2"):
        ApproximateTimeSynchronizer(1)
    with pytest.raises(ValueError, match="queue_size"):
        ApproximateTimeSynchronizer(2, queue_size=0)
    with pytest.raises(ValueError, match="slop"):
        ApproximateTimeSynchronizer(2, slop=-1)
    with pytest.raises(ValueError, match="2 values"):
        ApproximateTimeSynchronizer(2, inter_message_lower_bounds=[0.1])
    with pytest.raises(IndexError):
        ApproximateTimeSynchronizer(2).add(2, 0.0, None)
    with pytest.raises(ValueError, match="finite"):
        ApproximateTimeSynchronizer(2).add(0, float("nan"), None)


def test_random_histories_never_crash_and_account_for_every_message():
    rng = np.random.default_rng(5)
    for _ in range(300):
        n = int(rng.integers(2, 5))
        slop = [None, 0.0, 0.05, 0.2][rng.integers(4)]
        sync = ApproximateTimeSynchronizer(
            n, queue_size=int(rng.integers(1, 7)), slop=slop, age_penalty=float(rng.choice([0.0, 0.3])),
            inter_message_lower_bounds=[float(b) for b in rng.choice([0.0, 0.05, 0.2], n)],
        )
        newest = [0.0] * n
        sets = []
        for _ in range(int(rng.integers(1, 60))):
            i = int(rng.integers(n))
            # mostly increasing stamps on 10 ms ticks, sometimes a repeat or an older one
            if rng.random() < 0.1:
                stamp = newest[i] - float(rng.choice([0.0, 0.01]))
            else:
                stamp = newest[i] + int(rng.integers(31)) / 100
            newest[i] = max(newest[i], stamp)
            sets += sync.add(i, stamp, (i, stamp))
        if sets:
            _check_sets(sets, 1e9 if slop is None else slop)
        assert _accounted(sync)
