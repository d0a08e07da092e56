"""The synthetic sample bag (fusion-make-sample-bag): topics, types, rates, jitter, drops, ground truth,
determinism, and the embedded vision_msgs definitions.

    OMP_NUM_THREADS=1 bash scripts/with_ros_env.sh .venv/bin/python -m pytest -q test/test_bag_sample.py
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fusion_ros.bag import sample as sample_mod
from fusion_ros.bag.reader import VISION_MSGS, BagError, BagReader, stamp_of, typestore
from fusion_ros.bag.sample import (
    GT_DETECTIONS_TOPIC,
    GT_SEGMENTATION_TOPIC,
    RGB_TOPIC,
    THERMAL_TOPIC,
    make_sample_bag,
)
from fusion_ros.image_conversions import image_to_array

ROOT = Path(__file__).resolve().parents[1]
H, W = 64, 80


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("sample") / "drive"
    info = make_sample_bag(path, seconds=2.0, height=H, width=W, seed=3, segment_seconds=1.0)
    return path, info


def _read(path, topics=None):
    with BagReader(path) as reader:
        names = topics or list(reader.topics)
        return [(m.topic, m.log_ns, m.msg) for m in reader.messages(names)]


def test_topics_types_and_counts(bag):
    path, info = bag
    with BagReader(path) as reader:
        types = {t.name: t.msgtype for t in reader.topics.values()}
        counts = {t.name: t.count for t in reader.topics.values()}
        custom = reader.custom_data
    assert types == {
        THERMAL_TOPIC: "sensor_msgs/msg/Image", RGB_TOPIC: "sensor_msgs/msg/Image",
        GT_DETECTIONS_TOPIC: "vision_msgs/msg/Detection2DArray", GT_SEGMENTATION_TOPIC: "sensor_msgs/msg/Image"}
    assert counts[THERMAL_TOPIC] == info.thermal_frames == 60 - len(info.dropped[THERMAL_TOPIC])
    assert counts[RGB_TOPIC] == info.rgb_frames == 40 - len(info.dropped[RGB_TOPIC])
    assert counts[GT_DETECTIONS_TOPIC] == counts[GT_SEGMENTATION_TOPIC] == info.rgb_frames
    assert 1 <= len(info.dropped[THERMAL_TOPIC]) <= 3 and 1 <= len(info.dropped[RGB_TOPIC]) <= 3
    meta = json.loads(custom["fusion_ros.sample"])
    assert meta["seed"] == 3 and meta["dropped"] == info.dropped
    assert json.loads(custom["fusion_ros.segmentation_classes"])[0] == "unlabeled"


def test_images_rates_jitter_and_frames(bag):
    path, info = bag
    messages = _read(path, [THERMAL_TOPIC, RGB_TOPIC])
    logs = [log for _, log, _ in messages]
    assert logs == sorted(logs), "log-time order"
    for topic, encoding, frame_id, hz, channels in (
        (THERMAL_TOPIC, "mono16", "thermal_camera_optical_frame", 30.0, 1),
        (RGB_TOPIC, "bgr8", "rgb_camera_optical_frame", 20.0, 3),
    ):
        msgs = [(log, m) for t, log, m in messages if t == topic]
        stamps = np.array([stamp_of(m.header) for _, m in msgs])
        assert all(m.encoding == encoding and m.header.frame_id == frame_id for _, m in msgs)
        assert all(m.height == H and m.width == W and m.step == W * channels * (2 if encoding == "mono16" else 1)
                   for _, m in msgs)
        gaps = np.diff(stamps) * 1e-9
        period = 1.0 / hz
        assert np.all(gaps > 0), "stamps strictly increasing"
        # most gaps are one period +- jitter (a few ms, not zero); dropped frames leave double gaps
        single = gaps[gaps < 1.5 * period]
        assert np.all(np.abs(single - period) <= 0.0061)
        assert 0.0003 < np.std(single) < 0.004
        assert int(np.sum(gaps > 1.5 * period)) == len(info.dropped[topic])
        # log (receive) time after the stamp by a few ms
        delays = (np.array([log for log, _ in msgs]) - stamps) * 1e-9
        assert np.all((delays > 0.002) & (delays < 0.011))
        array = image_to_array(msgs[0][1])
        assert array.shape == ((H, W) if channels == 1 else (H, W, 3))
    thermal = image_to_array(next(m for t, _, m in messages if t == THERMAL_TOPIC))
    assert 20000 < int(np.median(thermal)) < 35000, "centikelvin"


def test_ground_truth_follows_rgb(bag):
    path, info = bag
    messages = _read(path, [RGB_TOPIC, GT_DETECTIONS_TOPIC, GT_SEGMENTATION_TOPIC])
    rgb = {stamp_of(m.header): log for t, log, m in messages if t == RGB_TOPIC}
    det = [m for t, _, m in messages if t == GT_DETECTIONS_TOPIC]
    seg = [m for t, _, m in messages if t == GT_SEGMENTATION_TOPIC]
    assert [stamp_of(m.header) for m in det] == list(rgb) == [stamp_of(m.header) for m in seg]
    names = set(info.det_classes)
    total = 0
    for msg in det:
        assert msg.header.frame_id == "rgb_camera_optical_frame"
        for d in msg.detections:
            assert d.results[0].hypothesis.class_id in names and d.results[0].hypothesis.score == 1.0
            cx, cy, w, h = d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x, d.bbox.size_y
            assert w >= 2 and h >= 2 and cx - w / 2 >= -1e-6 and cy - h / 2 >= -1e-6
            assert cx + w / 2 <= W + 1e-6 and cy + h / 2 <= H + 1e-6
            total += 1
    assert total == info.gt_boxes > 0
    masks = [image_to_array(m) for m in seg]
    assert all(m.encoding == "mono8" for m in seg)
    assert max(int(m.max()) for m in masks) < len(info.seg_classes)


def test_consecutive_frames_are_a_drive(bag):
    """Within a scene segment neighbouring frames differ little, across a cut they differ a lot."""
    path, _ = bag
    frames = [(stamp_of(m.header), image_to_array(m).astype(np.float32)) for _, _, m in _read(path, [RGB_TOPIC])]
    start = frames[0][0]
    diffs_same, diffs_cut = [], []
    for (s0, a), (s1, b) in zip(frames, frames[1:]):
        same = int((s0 - start) * 1e-9 // 1.0) == int((s1 - start) * 1e-9 // 1.0)
        (diffs_same if same else diffs_cut).append(float(np.abs(a - b).mean()))
    assert diffs_same and diffs_cut
    assert np.median(diffs_same) * 2 < np.median(diffs_cut)


def test_deterministic_for_a_seed(tmp_path):
    kwargs = dict(seconds=0.5, height=48, width=64, segment_seconds=0.25)
    make_sample_bag(tmp_path / "a", seed=11, **kwargs)
    make_sample_bag(tmp_path / "b", seed=11, **kwargs)
    make_sample_bag(tmp_path / "c", seed=12, **kwargs)

    def raw(path):
        with BagReader(path) as reader:
            return [(m.topic, m.log_ns, bytes(m.raw)) for m in reader.messages(list(reader.topics), raw=True)]

    assert raw(tmp_path / "a") == raw(tmp_path / "b")
    assert raw(tmp_path / "a") != raw(tmp_path / "c")


def test_sqlite3_storage_and_cli(tmp_path, capsys):
    out = tmp_path / "db"
    assert sample_mod.main([str(out), "--storage", "sqlite3", "--seconds", "0.5", "--height", "48", "--width", "64",
                            "--coco", str(tmp_path / "gt.json")]) == 0
    assert list(out.glob("*.db3"))
    with BagReader(out) as reader:
        assert reader.storage == "sqlite3" and reader.topics[RGB_TOPIC].count > 5
    coco = json.loads((tmp_path / "gt.json").read_text())
    assert coco["images"] and all("stamp_ns" in i for i in coco["images"])
    assert "wrote" in capsys.readouterr().out
    # a second run must not overwrite, bad values are refused with a reason
    assert sample_mod.main([str(out), "--seconds", "0.5"]) == 2
    assert "exists" in capsys.readouterr().err
    assert sample_mod.main([str(tmp_path / "x"), "--seconds", "0"]) == 2
    with pytest.raises(BagError):
        make_sample_bag(out, seconds=0.5, height=48, width=64)


def test_embedded_vision_msgs_match_the_interface_package():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    ours = typestore()
    theirs = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted((ROOT / "interfaces" / "vision_msgs" / "msg").glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"vision_msgs/msg/{path.stem}"))
    theirs.register(types)
    for name in VISION_MSGS:
        assert ours.hash_rihs01(name) == theirs.hash_rihs01(name), name
    # upstream vision_msgs 4.x (test/test_interfaces.py lists the public hashes)
    assert ours.hash_rihs01("vision_msgs/msg/Detection2DArray") == (
        "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968")
