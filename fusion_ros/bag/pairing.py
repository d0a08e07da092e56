"""The node's input path over a bag: the one place a bag's thermal and RGB messages become engine-ready pairs.

``synced_pairs`` streams a bag through the node's own decode, ApproximateTime synchroniser and pair
preparation (fusion_ros.node_core), so ``fusion-eval-bag`` (fusion_ros/bag/evaluate.py) and the trainer's
``kind: bag`` cache (training/bag_datasets.py) see exactly the pairs the node would form.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from .. import node_core as core
from ..image_conversions import ImageConversionError
from .reader import COMPRESSED_IMAGE, BagMessage, BagReader, stamp_of


@dataclass
class BagFrame(core.Frame):
    """The node's Frame plus where it sits in the bag and what reading it cost."""

    log_ns: int = 0
    decode_ms: float = 0.0  # read + deserialize + decode of its message


@dataclass
class SyncedPair:
    """One thermal/RGB pair as the node prepares it for the engine (before registration and resizing)."""

    thermal: np.ndarray  # float32 H×W in 0..1 on the THERMAL grid (the node's normalisation)
    rgb: np.ndarray  # uint8 H×W×3 RGB
    thermal_frame: BagFrame  # the frames it was prepared from (stamps, frame id, log time, read cost)
    rgb_frame: BagFrame
    prepare_ms: float = 0.0

    @property
    def stamp_ns(self) -> int:
        """The RGB frame's header stamp: ground truth is matched to it."""
        return self.rgb_frame.stamp_ns

    @property
    def log_ns(self) -> int:
        return self.rgb_frame.log_ns


@dataclass
class PairStreamStats:
    """What ``synced_pairs`` saw, per input (thermal, RGB): messages read and decoded and drops by reason
    (decode, stamps, pair preparation); pairs formed / prepared; synchroniser resets. ``read_ms`` and
    ``decode_ms`` hold every image message's read and decode time; ``synchronizer`` is the node's
    synchroniser the stream fed (its drop counters and pending frames)."""

    messages: list = field(default_factory=lambda: [0, 0])
    decoded: list = field(default_factory=lambda: [0, 0])
    rejected_by_input: list = field(default_factory=lambda: [{}, {}])  # reason -> count, per input
    pair_rejected: dict = field(default_factory=dict)  # reason -> count, of pairs prepare_pair refused
    pairs_formed: int = 0
    pairs_prepared: int = 0
    sync_resets: int = 0
    last_reject: str = ""
    read_ms: list = field(default_factory=list)
    decode_ms: list = field(default_factory=list)
    synchronizer: object = None

    @property
    def rejected(self) -> dict:
        """reason -> count over both inputs."""
        out: dict = {}
        for per_input in self.rejected_by_input:
            for reason, n in per_input.items():
                out[reason] = out.get(reason, 0) + n
        return out

    def reject(self, index: int, reason: str, text: str) -> None:
        self.rejected_by_input[index][reason] = self.rejected_by_input[index].get(reason, 0) + 1
        self.last_reject = text


class _EmptyImage(ImageConversionError):
    """A CompressedImage without data (counted as 'empty')."""


def _frame(item: BagMessage, index: int, max_pixels: int) -> BagFrame:
    """A bag image message -> the node's frame (decode_image; compressed data kept for prepare_pair).
    ImageConversionError when the node would reject it."""
    msg = item.msg
    if item.msgtype == COMPRESSED_IMAGE:
        if len(msg.data) == 0:
            raise _EmptyImage("compressed image without data")
        return BagFrame(None, "", msg.header.frame_id, stamp_of(msg.header), 0.0, compressed=(msg.format, msg.data),
                        log_ns=item.log_ns)
    array, encoding = core.decode_image(msg, core.ROLES[index], max_pixels)
    return BagFrame(array, encoding, msg.header.frame_id, stamp_of(msg.header), 0.0, log_ns=item.log_ns)


def synced_pairs(reader: BagReader, cfg, thermal_topic: str, rgb_topic: str, model_thermal_range,
                 other_topics: Iterable[str] = (), stats: PairStreamStats | None = None,
                 warn: Callable[[str], None] | None = None) -> Iterator[SyncedPair | BagMessage]:
    """Stream a bag through the node's input path: every thermal / RGB message is decoded
    (``node_core.decode_image``, compressed images kept for later), offered to the node's ApproximateTime
    synchroniser (``offer_frame``; stamps that jump back reset it, as in the node) and each pair is
    prepared with ``prepare_pair`` (geometry check, thermal normalisation with ``cfg`` and
    ``model_thermal_range``, RGB conversion). Yields ``SyncedPair`` for every prepared pair and the
    ``BagMessage`` of every message on ``other_topics`` (e.g. ground truth), in log order. ``cfg`` is a
    validated node_core.NodeConfig; both topics must exist (``BagReader.require``). Frames the node would
    drop are counted in ``stats`` and described to ``warn`` (never raised); a storage error raises
    BagError."""
    stats = stats if stats is not None else PairStreamStats()
    warn = warn or (lambda text: None)
    sync = stats.synchronizer = core.make_synchronizer(cfg)
    last_stamps = [None, None]
    index_of = {thermal_topic: core.THERMAL_INDEX, rgb_topic: core.RGB_INDEX}
    messages = reader.messages([thermal_topic, rgb_topic, *sorted(set(other_topics) - set(index_of))])
    while True:
        t_read = time.perf_counter()
        item = next(messages, None)
        if item is None:
            return
        index = index_of.get(item.topic)
        if index is None:
            yield item
            continue
        read_ms = (time.perf_counter() - t_read) * 1e3
        stats.messages[index] += 1
        stats.read_ms.append(read_ms)
        t_decode = time.perf_counter()
        try:
            frame = _frame(item, index, cfg["max_image_pixels"])
        except ImageConversionError as exc:
            reason = "empty" if isinstance(exc, _EmptyImage) else core.classify_error(str(exc))
            stats.reject(index, reason, f"{item.topic}: {exc}")
            warn(f"{item.topic}: frames skipped [{reason}]: {exc}")
            continue
        decode_ms = (time.perf_counter() - t_decode) * 1e3
        stats.decoded[index] += 1
        stats.decode_ms.append(decode_ms)
        frame.decode_ms = read_ms + decode_ms
        outcome = core.offer_frame(sync, last_stamps, index, frame, cfg["sync.reset_on_jump_back"])
        if outcome.reset_back_s is not None:
            stats.sync_resets += 1
            warn(f"stamps jumped back (by {outcome.reset_back_s:.2f} s on {item.topic}): synchronizer reset, as "
                 "the node does")
        if outcome.rejected is not None:
            stats.reject(index, outcome.rejected[0], f"{item.topic}: {outcome.rejected[1]}")
            warn(f"{item.topic}: stamps not increasing ({outcome.rejected[0]}) -> frames dropped, counted")
        for thermal_frame, rgb_frame in outcome.pairs:
            stats.pairs_formed += 1
            t_prepare = time.perf_counter()
            try:
                thermal_unit, rgb8 = core.prepare_pair(cfg, model_thermal_range, thermal_frame, rgb_frame)
            except core.PairRejected as exc:
                stats.reject(exc.index, exc.reason, f"{core.ROLES[exc.index]}: {exc.message}")
                stats.pair_rejected[exc.reason] = stats.pair_rejected.get(exc.reason, 0) + 1
                warn(f"{core.ROLES[exc.index]} frames rejected [{exc.reason}]: {exc.message}")
                continue
            stats.pairs_prepared += 1
            yield SyncedPair(thermal_unit, rgb8, thermal_frame, rgb_frame, (time.perf_counter() - t_prepare) * 1e3)

