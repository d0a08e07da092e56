"""The frame pairs a calibration runs on: from a folder of ir/ + vi/ images or from a recording.

A folder is read like the labelled-pair folders (fusion_ros/labelled_pairs.py: ir/ and vi/ or their aliases,
pairs matched by file stem) but needs no labels, and its two cameras may differ in size. A bag is read with
the node's own reader, decoding and ApproximateTime synchroniser (fusion_ros/bag/pairing.py), so the pairs are
those the node would form; they are taken evenly over the recording. Anything unusable is a
CalibrationInputError that names the file or topic.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..labelled_pairs import IR_DIRS, VI_DIRS, LabelledPair, find_subdir, image_files, load_pair_images, natural_key
from ..pairs_eval import spread

# the node's input path, with the registration checks off: the pairs are not registered yet
BAG_OVERRIDES = {
    "registration.mode": "identity",
    "registration.thermal_width": 0,
    "registration.thermal_height": 0,
    "registration.max_aspect_mismatch": 1.0,
    "thermal.mode": "auto",
}


class CalibrationInputError(ValueError):
    """Frames that cannot be calibrated from (missing, unreadable, unpaired, of mixed sizes)."""


@dataclass
class FramePairs:
    thermal: list[np.ndarray]  # H x W, uint8 / uint16 / float, one size
    rgb: list[np.ndarray]  # H x W x 3 uint8 RGB, one size
    names: list[str]  # file stems, or 'stamp <ns>' for bag pairs
    source: str  # what they came from, for the output file's comment

    @property
    def thermal_wh(self) -> tuple[int, int]:
        return self.thermal[0].shape[1], self.thermal[0].shape[0]

    @property
    def rgb_wh(self) -> tuple[int, int]:
        return self.rgb[0].shape[1], self.rgb[0].shape[0]


def _listing(names, limit: int = 5) -> str:
    names = sorted(names, key=natural_key)
    return ", ".join(names[:limit]) + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def _check_sizes(pairs: FramePairs) -> None:
    for role, frames in (("thermal", pairs.thermal), ("RGB", pairs.rgb)):
        first = frames[0].shape[:2]
        for name, frame in zip(pairs.names, frames):
            if frame.shape[:2] != first:
                raise CalibrationInputError(
                    f"{pairs.source}: {role} frame {name} is {frame.shape[1]}x{frame.shape[0]} but {pairs.names[0]} is "
                    f"{first[1]}x{first[0]}: one camera pair has one size per camera; calibrate each size apart")


def pairs_from_folder(root: str | Path, max_frames: int) -> FramePairs:
    """Up to ``max_frames`` pairs spread evenly over the folder's names (natural order)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise CalibrationInputError(f"{root} is not a folder (expected one with ir/ and vi/ images)")
    dirs = {}
    for role, aliases in (("thermal", IR_DIRS), ("visible", VI_DIRS)):
        found = find_subdir(root, aliases)
        if found is None:
            present = sorted(p.name for p in root.iterdir() if p.is_dir()) or ["no subfolders"]
            raise CalibrationInputError(f"{root} has no {role} folder (one of {', '.join(aliases)}); it has: "
                                        f"{', '.join(present)}")
        dirs[role] = found
    files = {role: image_files(folder, error=CalibrationInputError) for role, folder in dirs.items()}
    for role, found in files.items():
        if not found:
            raise CalibrationInputError(f"{dirs[role]} holds no images (png, jpg, bmp, tif)")
    only_thermal = set(files["thermal"]) - set(files["visible"])
    only_visible = set(files["visible"]) - set(files["thermal"])
    if only_thermal or only_visible:
        parts = [f"{len(only_thermal)} in {dirs['thermal'].name}/ only ({_listing(only_thermal)})" if only_thermal else "",
                 f"{len(only_visible)} in {dirs['visible'].name}/ only ({_listing(only_visible)})" if only_visible else ""]
        raise CalibrationInputError(f"{root}: thermal and visible images must pair up by name; "
                                    + "; ".join(p for p in parts if p))
    names = sorted(files["thermal"], key=natural_key)
    chosen = spread(names, max_frames)
    thermal, rgb = [], []
    for name in chosen:
        try:
            ir, colour = load_pair_images(LabelledPair(name, files["thermal"][name], files["visible"][name]))
        except ValueError as exc:
            raise CalibrationInputError(str(exc)) from None
        thermal.append(ir)
        rgb.append(colour)
    pairs = FramePairs(thermal, rgb, chosen, f"{len(chosen)} of the {len(names)} pairs in {root}")
    _check_sizes(pairs)
    return pairs


def pairs_from_bag(bag: str | Path, thermal_topic: str, rgb_topic: str, max_frames: int,
                   params_file: str | None = None) -> FramePairs:
    """Up to ``max_frames`` pairs of the node's synchroniser, the first one after each of ``max_frames``
    evenly spaced times of the recording. ``params_file``: the node's parameters (sync settings)."""
    from ..bag.pairing import PairStreamStats, synced_pairs
    from ..bag.reader import IMAGE_TYPES, BagError, BagReader
    from ..node_core import ParamError
    from ..node_params import load_node_params

    try:
        cfg = load_node_params(params_file, dict(BAG_OVERRIDES), None, None, None)
    except ParamError as exc:
        raise CalibrationInputError(str(exc)) from None
    try:
        with BagReader(bag) as reader:
            reader.require(thermal_topic, IMAGE_TYPES, "thermal")
            reader.require(rgb_topic, IMAGE_TYPES, "RGB")
            start, end = reader.start_ns, reader.end_ns
            targets = start + np.arange(max_frames) * (end - start) / max_frames
            stats = PairStreamStats()
            chosen, next_target = [], 0
            for pair in synced_pairs(reader, cfg, thermal_topic, rgb_topic, None, stats=stats):
                if pair.log_ns >= targets[next_target]:
                    chosen.append(pair)
                    while next_target < len(targets) and targets[next_target] <= pair.log_ns:
                        next_target += 1
                    if next_target == len(targets):
                        break
            duration = reader.duration_s
    except BagError as exc:
        raise CalibrationInputError(str(exc)) from None
    if not chosen:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(stats.rejected.items())) or "none rejected"
        raise CalibrationInputError(
            f"{bag}: no thermal/RGB pairs formed ({stats.messages[0]} thermal, {stats.messages[1]} RGB messages; "
            f"{reasons}; last problem: {stats.last_reject or 'stamps never within sync.slop'})")
    pairs = FramePairs([p.thermal for p in chosen], [p.rgb for p in chosen],
                       [f"stamp {p.stamp_ns}" for p in chosen],
                       f"{len(chosen)} synchronised pairs spread over the {duration:.0f} s of {bag} "
                       f"({thermal_topic}, {rgb_topic})")
    _check_sizes(pairs)
    return pairs
