"""A rosbag2 recording of a synthetic drive, for the bag evaluator, the player and their tests.

    fusion-make-sample-bag OUT [--storage mcap|sqlite3] [--seconds 10] [--height 512 --width 640] [--seed 0]

Topics (what a vehicle with a thermal and an RGB camera would record, plus ground truth):
  /thermal/image_raw          sensor_msgs/Image mono16 (TLinear centikelvin), ~30 Hz, frame thermal_camera_optical_frame
  /rgb/image_raw              sensor_msgs/Image bgr8, ~20 Hz, frame rgb_camera_optical_frame
  /ground_truth/detections    vision_msgs/Detection2DArray, header = the RGB frame's, class_id = class name
  /ground_truth/segmentation  sensor_msgs/Image mono8 class ids (config/classes.yaml segmentation order)

The drive: the recording is cut into segments of ``segment_seconds``; segment k shows generator scene
``SceneGenerator(seed).generate(k)`` (its own condition: day/night/fog/glare) and the ego car drives into
it: every frame is that scene zoomed about a point near the horizon by 1 + speed * (time into the
segment), with a slight sway, so consecutive frames (and a thermal/RGB pair taken a few ms apart) show the
same objects growing and moving outward; boxes and masks follow the same warp (boxes that leave the frame
are clipped, and dropped below 40 % visibility). Each camera renders the scene at its own frame times.

Timing: thermal frames at i / thermal_hz + 4 ms, RGB frames at j / rgb_hz + 11 ms after the start, each
stamp jittered by up to ±``jitter_ms`` (gaussian, clipped), ~``drop_rate`` of each camera's frames
dropped (at least one per camera; the ground truth of a dropped RGB frame is dropped with it). The log
(receive) time is the stamp plus a transport delay of a few ms. All of it is drawn from
``numpy.random.default_rng([seed, ...])``: the same arguments always give the same bag (byte-identical
messages). The bag's custom_data ``fusion_ros.sample`` holds the parameters, the dropped frame indices and
the class lists.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .. import topics
from ..synthetic import SceneGenerator, SyntheticSample
from .reader import DETECTION2D_ARRAY, IMAGE, BagError, BagWriter, detections_message, image_message

THERMAL_TOPIC = topics.absolute(topics.THERMAL_TOPIC)  # /thermal/image_raw: the node's input in the root namespace
RGB_TOPIC = topics.absolute(topics.RGB_TOPIC)
GT_DETECTIONS_TOPIC = "/ground_truth/detections"
GT_SEGMENTATION_TOPIC = "/ground_truth/segmentation"
THERMAL_FRAME = "thermal_camera_optical_frame"
RGB_FRAME = "rgb_camera_optical_frame"
START_NS = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z: far from 0 and from "now"
MIN_VISIBLE = 0.4  # a warped box keeps at least this share of its area inside the frame


@dataclass
class SampleBagInfo:
    path: str
    storage: str
    seconds: float
    height: int
    width: int
    seed: int
    thermal_hz: float
    rgb_hz: float
    thermal_frames: int  # written
    rgb_frames: int  # written (= ground-truth messages per GT topic)
    dropped: dict = field(default_factory=dict)  # topic -> dropped frame indices
    gt_boxes: int = 0
    conditions: list = field(default_factory=list)  # per segment
    det_classes: list = field(default_factory=list)
    seg_classes: list = field(default_factory=list)
    start_ns: int = START_NS


class SyntheticDrive:
    """Frames of a drive through successive generator scenes (see the module docstring)."""

    def __init__(self, seed: int, height: int, width: int, segment_seconds: float = 3.0, speed: float = 0.08):
        if not segment_seconds > 0:
            raise ValueError(f"segment_seconds must be > 0, got {segment_seconds}")
        self.gen = SceneGenerator(seed, height, width)
        self.segment_seconds = float(segment_seconds)
        self.speed = float(speed)
        self._cache: dict[int, SyntheticSample] = {}

    def scene(self, k: int) -> SyntheticSample:
        sample = self._cache.get(k)
        if sample is None:
            if len(self._cache) >= 2:  # frames come in time order: keep the current and the previous scene
                self._cache.pop(min(self._cache))
            sample = self._cache[k] = self.gen.generate(k)
        return sample

    def warp(self, t: float) -> tuple[int, np.ndarray]:
        """(scene index, 2×3 affine of the ego motion) at time ``t`` seconds into the drive."""
        k = int(t // self.segment_seconds)
        tau = t - k * self.segment_seconds
        h, w = self.gen.height, self.gen.width
        zoom = 1.0 + self.speed * tau
        cx = w * (0.5 + 0.02 * math.sin(2.0 * math.pi * tau / self.segment_seconds))
        cy = h * 0.45
        return k, np.array([[zoom, 0.0, (1.0 - zoom) * cx], [0.0, zoom, (1.0 - zoom) * cy]], np.float64)

    def frame(self, t: float) -> SyntheticSample:
        k, m = self.warp(t)
        base = self.scene(k)
        h, w = self.gen.height, self.gen.width
        thermal = cv2.warpAffine(base.thermal, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        rgb = cv2.warpAffine(base.rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpAffine(base.mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
        boxes, labels = warp_boxes(base.boxes, base.labels, m, h, w)
        return SyntheticSample(thermal, rgb, boxes, labels, mask, base.condition, f"{base.name}@{t:.3f}")


def warp_boxes(boxes: np.ndarray, labels: np.ndarray, m: np.ndarray, height: int, width: int):
    """Boxes through a scale+translate affine, clipped to the frame; those left with < MIN_VISIBLE of their
    area inside, thinner than 2 px or shorter than 8 px on their long side are dropped."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(boxes):
        return boxes.astype(np.float32), np.asarray(labels, np.int64).reshape(0)
    sx, sy, tx, ty = m[0, 0], m[1, 1], m[0, 2], m[1, 2]
    warped = np.stack([boxes[:, 0] * sx + tx, boxes[:, 1] * sy + ty, boxes[:, 2] * sx + tx, boxes[:, 3] * sy + ty], 1)
    clipped = warped.copy()
    clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, width)
    clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, height)
    area = (warped[:, 2] - warped[:, 0]) * (warped[:, 3] - warped[:, 1])
    cw, ch = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    keep = (cw * ch >= MIN_VISIBLE * np.maximum(area, 1e-9)) & (np.minimum(cw, ch) >= 2) & (np.maximum(cw, ch) >= 8)
    return clipped[keep].astype(np.float32), np.asarray(labels, np.int64)[keep]


def _times(rng, count: int, hz: float, phase: float, jitter_ms: float) -> np.ndarray:
    """Frame times (s from the start): nominal grid + clipped gaussian jitter; strictly increasing."""
    jitter = np.clip(rng.normal(0.0, jitter_ms / 2.0, count), -jitter_ms, jitter_ms) * 1e-3
    return np.arange(count) / hz + phase + jitter


def _drops(rng, count: int, rate: float) -> list[int]:
    if count < 3 or rate <= 0:
        return []
    n = max(1, int(round(rate * count)))
    return sorted(int(i) for i in rng.choice(np.arange(1, count - 1), size=min(n, count - 2), replace=False))


def coco_ground_truth(frames: list[tuple[int, str, np.ndarray, np.ndarray]], det_classes, height: int,
                      width: int) -> dict:
    """COCO-style ground truth for ``--gt-file``: one image per RGB frame with its ``stamp_ns``."""
    images, annotations = [], []
    for image_id, (stamp_ns, frame_id, boxes, labels) in enumerate(frames, start=1):
        images.append({"id": image_id, "stamp_ns": int(stamp_ns), "frame_id": frame_id, "height": height,
                       "width": width, "file_name": f"rgb_{stamp_ns}.png"})
        for box, label in zip(boxes, labels):
            x1, y1, x2, y2 = (float(v) for v in box)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(det_classes)]}


def make_sample_bag(
    out: str | Path,
    seconds: float = 10.0,
    height: int = 512,
    width: int = 640,
    seed: int = 0,
    storage: str = "mcap",
    thermal_hz: float = 30.0,
    rgb_hz: float = 20.0,
    jitter_ms: float = 3.0,
    drop_rate: float = 0.02,
    segment_seconds: float = 3.0,
    speed: float = 0.08,
    ground_truth: bool = True,
    coco_path: str | Path | None = None,
    progress: bool = False,
) -> SampleBagInfo:
    """Write the synthetic-drive bag to ``out`` (a new folder); returns what was written."""
    if not seconds > 0 or not math.isfinite(seconds):
        raise ValueError(f"seconds must be > 0, got {seconds}")
    if not (thermal_hz > 0 and rgb_hz > 0):
        raise ValueError(f"camera rates must be > 0, got thermal {thermal_hz} Hz, rgb {rgb_hz} Hz")
    if not 0 <= jitter_ms < 0.5e3 / max(thermal_hz, rgb_hz):
        raise ValueError(f"jitter_ms must be in [0, half a frame period), got {jitter_ms}")
    if not 0 <= drop_rate < 0.5:
        raise ValueError(f"drop_rate must be in [0, 0.5), got {drop_rate}")
    drive = SyntheticDrive(seed, height, width, segment_seconds, speed)
    classes = drive.gen.classes
    det_names, seg_names = list(classes.detection.names), list(classes.segmentation.names)

    rng = np.random.default_rng([seed, 0xBA6])
    n_thermal = max(int(math.floor(seconds * thermal_hz)), 1)
    n_rgb = max(int(math.floor(seconds * rgb_hz)), 1)
    t_thermal = _times(rng, n_thermal, thermal_hz, 0.004, jitter_ms)
    t_rgb = _times(rng, n_rgb, rgb_hz, 0.011, jitter_ms)
    lat_thermal = rng.uniform(3e-3, 6e-3, n_thermal)  # transport delay: log time = stamp + delay
    lat_rgb = rng.uniform(5e-3, 10e-3, n_rgb)
    dropped = {THERMAL_TOPIC: _drops(rng, n_thermal, drop_rate), RGB_TOPIC: _drops(rng, n_rgb, drop_rate)}

    def ns(t: float) -> int:
        return START_NS + int(round(t * 1e9))

    events = []  # (log_ns, order, topic, index): order keeps the RGB image before its ground truth
    for i in range(n_thermal):
        if i not in dropped[THERMAL_TOPIC]:
            events.append((ns(t_thermal[i] + lat_thermal[i]), 0, THERMAL_TOPIC, i))
    for j in range(n_rgb):
        if j not in dropped[RGB_TOPIC]:
            events.append((ns(t_rgb[j] + lat_rgb[j]), 1, RGB_TOPIC, j))
    events.sort()

    n_segments = int(math.floor(max(t_thermal[-1], t_rgb[-1]) / segment_seconds)) + 1
    info = SampleBagInfo(
        path=str(out), storage=storage, seconds=float(seconds), height=int(height), width=int(width), seed=int(seed),
        thermal_hz=float(thermal_hz), rgb_hz=float(rgb_hz),
        thermal_frames=n_thermal - len(dropped[THERMAL_TOPIC]), rgb_frames=n_rgb - len(dropped[RGB_TOPIC]),
        dropped={k: list(v) for k, v in dropped.items()},
        conditions=[drive.gen.condition_of(k) for k in range(n_segments)],
        det_classes=det_names, seg_classes=seg_names,
    )
    params = {k: v for k, v in asdict(info).items() if k not in ("path", "gt_boxes")}
    params.update(jitter_ms=jitter_ms, drop_rate=drop_rate, segment_seconds=segment_seconds, speed=speed)
    custom = {"fusion_ros.sample": json.dumps(params, sort_keys=True),
              "fusion_ros.segmentation_classes": json.dumps(seg_names),
              "fusion_ros.detection_classes": json.dumps(det_names)}

    coco_frames = []
    from ..progress import progress as progress_bar

    with BagWriter(out, storage=storage, custom_data=custom) as writer:
        writer.add_topic(THERMAL_TOPIC, IMAGE)
        writer.add_topic(RGB_TOPIC, IMAGE)
        if ground_truth:
            writer.add_topic(GT_DETECTIONS_TOPIC, DETECTION2D_ARRAY)
            writer.add_topic(GT_SEGMENTATION_TOPIC, IMAGE)
        for log_ns, _, topic, index in progress_bar(events, desc="sample bag", unit="msg", disable=not progress):
            if topic == THERMAL_TOPIC:
                t = float(t_thermal[index])
                sample = drive.frame(t)
                writer.write(THERMAL_TOPIC, log_ns, image_message(sample.thermal, "mono16", ns(t), THERMAL_FRAME))
                continue
            t = float(t_rgb[index])
            stamp = ns(t)
            sample = drive.frame(t)
            bgr = np.ascontiguousarray(sample.rgb[:, :, ::-1])
            writer.write(RGB_TOPIC, log_ns, image_message(bgr, "bgr8", stamp, RGB_FRAME))
            if ground_truth:
                names = [det_names[int(label)] for label in sample.labels]
                writer.write(GT_DETECTIONS_TOPIC, log_ns,
                             detections_message(sample.boxes, np.ones(len(names)), names, stamp, RGB_FRAME))
                writer.write(GT_SEGMENTATION_TOPIC, log_ns, image_message(sample.mask, "mono8", stamp, RGB_FRAME))
                info.gt_boxes += len(names)
            if coco_path is not None:
                coco_frames.append((stamp, RGB_FRAME, sample.boxes, sample.labels))
    if coco_path is not None:
        Path(coco_path).write_text(json.dumps(coco_ground_truth(coco_frames, det_names, height, width)))
    return info


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="fusion-make-sample-bag",
        description="Write a rosbag2 of a synthetic drive: /thermal/image_raw (mono16, ~30 Hz), /rgb/image_raw "
                    "(bgr8, ~20 Hz), /ground_truth/detections (vision_msgs/Detection2DArray) and "
                    "/ground_truth/segmentation (mono8); deterministic for a seed.")
    parser.add_argument("out", help="new bag folder to create")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--thermal-hz", type=float, default=30.0)
    parser.add_argument("--rgb-hz", type=float, default=20.0)
    parser.add_argument("--jitter-ms", type=float, default=3.0, help="stamp jitter bound (default 3 ms)")
    parser.add_argument("--drop-rate", type=float, default=0.02, help="share of frames dropped per camera")
    parser.add_argument("--segment-seconds", type=float, default=3.0, help="seconds per scene of the drive")
    parser.add_argument("--no-ground-truth", action="store_true", help="cameras only")
    parser.add_argument("--coco", metavar="FILE", help="also write the detection ground truth as COCO JSON "
                        "(images carry stamp_ns; for fusion-eval-bag --gt-file)")
    args = parser.parse_args(argv)
    try:
        info = make_sample_bag(args.out, args.seconds, args.height, args.width, args.seed, args.storage,
                               args.thermal_hz, args.rgb_hz, args.jitter_ms, args.drop_rate, args.segment_seconds,
                               ground_truth=not args.no_ground_truth, coco_path=args.coco, progress=True)
    except (ValueError, BagError) as exc:
        print(f"fusion-make-sample-bag: {exc}", file=sys.stderr)
        return 2
    drops = ", ".join(f"{t}: {len(v)}" for t, v in info.dropped.items())
    print(f"wrote {info.path} ({info.storage}): {info.thermal_frames} thermal + {info.rgb_frames} RGB frames "
          f"{info.width}x{info.height} over {info.seconds:g} s, dropped {drops}, {info.gt_boxes} ground-truth boxes, "
          f"scenes: {', '.join(info.conditions)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
