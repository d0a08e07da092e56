"""Bags that are broken or unusual: each is a clear error or a counted, reported skip, never silently wrong.

    OMP_NUM_THREADS=1 bash scripts/with_ros_env.sh .venv/bin/python -m pytest -q test/test_bad_bags.py
"""
from __future__ import annotations

import os
import shutil
import cv2
import numpy as np
import pytest

from fusion_ros.bag import evaluate as ev
from fusion_ros.bag.reader import COMPRESSED_IMAGE, IMAGE, BagError, BagWriter, image_message, typestore
from fusion_ros.bag.sample import make_sample_bag
from fusion_ros.checkpoint import save_untrained_model

H, W = 64, 80
T0 = 1_700_000_000_000_000_000
THERMAL, RGB = "/thermal/image_raw", "/rgb/image_raw"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_untrained_model(tmp_path_factory.mktemp("model") / "random.pt", input_size=(64, 96))


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("good")
    make_sample_bag(root / "mcap", seconds=1.0, height=H, width=W, seed=9)
    make_sample_bag(root / "db3", seconds=1.0, height=H, width=W, seed=9, storage="sqlite3")
    # several 1 MB mcap chunks, so that damage in the middle leaves readable chunks before it
    make_sample_bag(root / "chunked", seconds=2.0, height=128, width=160, seed=9)
    return root


def evaluate(bag, out, model, **kwargs):
    kwargs.setdefault("params", {"num_threads": 1})
    return ev.evaluate_bag(bag, out=out, model=str(model), backend="torch", progress=False, write_bag=False,
                           samples=0, fusion_samples=1, **kwargs)


def write_bag(path, entries, storage="mcap"):
    """entries: (topic, log_ns, msg, msgtype) in any order."""
    with BagWriter(path, storage=storage) as writer:
        for topic, log_ns, msg, msgtype in sorted(entries, key=lambda e: e[1]):
            writer.write(topic, log_ns, msg, msgtype)
    return path


def camera_entries(seconds=1.0, thermal_encoding="mono16", thermal_stamps=None, rgb_stamps=None):
    entries = []
    n_t, n_r = int(seconds * 30), int(seconds * 20)
    t_stamps = thermal_stamps or [T0 + int(i * 1e9 / 30) for i in range(n_t)]
    r_stamps = rgb_stamps or [T0 + 5_000_000 + int(i * 1e9 / 20) for i in range(n_r)]
    for i, stamp in enumerate(t_stamps):
        thermal = np.full((H, W), 29315 + (i % 7) * 10, np.uint16)
        enc = thermal_encoding(i) if callable(thermal_encoding) else thermal_encoding
        if enc == "mono16":
            msg = image_message(thermal, "mono16", stamp, "thermal")
        else:  # an encoding the node does not take for thermal: bytes of the right size, another name
            msg = image_message(np.zeros((H, W, 3), np.uint8), "rgb8", stamp, "thermal")
            msg.encoding = enc
        entries.append((THERMAL, T0 + int(i * 1e9 / 30) + 3_000_000, msg, IMAGE))  # log: receive order
    for j, stamp in enumerate(r_stamps):
        rgb = np.full((H, W, 3), 100, np.uint8)
        entries.append((RGB, T0 + 9_000_000 + int(j * 1e9 / 20), image_message(rgb, "bgr8", stamp, "rgb"), IMAGE))
    return entries


# ------------------------------------------------------------------------------------------ storage
def test_missing_metadata_is_a_clear_error_and_the_storage_file_still_reads(good, tmp_path, model):
    bag = tmp_path / "nometa"
    shutil.copytree(good / "mcap", bag)
    (bag / "metadata.yaml").unlink()
    with pytest.raises(BagError, match=r"metadata\.yaml is missing.*\.mcap"):
        evaluate(bag, tmp_path / "o", model)
    mcap = next(bag.glob("*.mcap"))
    m = evaluate(mcap, tmp_path / "o2", model)  # the hint works: an mcap file carries its own metadata
    assert m["pairs"]["processed"] > 10


def test_missing_storage_file(good, tmp_path, model):
    bag = tmp_path / "nofile"
    shutil.copytree(good / "db3", bag)
    next(bag.glob("*.db3")).unlink()
    with pytest.raises(BagError, match="cannot read bag"):
        evaluate(bag, tmp_path / "o", model)


@pytest.mark.parametrize("storage,suffix", [("mcap", ".mcap"), ("db3", ".db3")])
def test_truncated_storage(good, tmp_path, model, storage, suffix):
    bag = tmp_path / storage
    shutil.copytree(good / storage, bag)
    data = next(bag.glob(f"*{suffix}"))
    os.truncate(data, data.stat().st_size // 2)
    with pytest.raises(BagError, match=rf"{data.name} is truncated or corrupt"):
        evaluate(bag, tmp_path / "o", model)


def test_mcap_cut_off_mid_recording_is_recovered_up_to_its_last_complete_chunk(good, tmp_path, model):
    """Issue 13 fault 7: a recorder killed mid-chunk leaves an mcap without footer ("File end magic is
    invalid"); --allow-truncated evaluates every complete chunk and says so; the error names no tool that
    is not installed."""
    from fusion_ros.bag.reader import BagReader, recover_truncated_mcap, truncated_mcap

    bag = tmp_path / "cut"
    shutil.copytree(good / "chunked", bag)
    (bag / "metadata.yaml").unlink()  # the recorder writes it when it closes the bag: a killed one has none
    data = next(bag.glob("*.mcap"))
    full = BagReader(good / "chunked")
    total = full.message_count
    full.close()
    os.truncate(data, int(data.stat().st_size * 0.7))  # in the middle of a chunk
    assert truncated_mcap(bag) == data and truncated_mcap(good / "chunked") is None
    with pytest.raises(BagError) as info:
        evaluate(data, tmp_path / "o", model)
    text = str(info.value)
    assert "--allow-truncated" in text and "mcap recover" not in text, text

    recovery = recover_truncated_mcap(data, tmp_path / "rec.mcap")
    assert recovery.chunks >= 1 and 0 < recovery.kept_bytes < recovery.source_bytes
    reader = BagReader(recovery.recovered)
    assert 0 < reader.message_count < total
    assert sum(1 for _ in reader.messages(list(reader.topics))) == reader.message_count
    reader.close()

    for path in (data, bag):  # the file itself, or the folder holding it
        out = tmp_path / f"o_{path.name}"
        m = evaluate(path, out, model, allow_truncated=True)
        assert m["recovered"] and m["recovered"]["chunks"] == recovery.chunks, m["recovered"]
        assert m["bag"]["path"] == str(data) and 0 < m["pairs"]["processed"]
        assert m["read_error"] is None and not m["count_mismatch"]
        assert "Recovered from a truncated recording" in (out / "report.md").read_text()
        assert any("cut off mid-recording" in w for w in m["warnings"])
        assert not list(out.glob(".recovered_*")), "the recovered copy is removed after the evaluation"


@pytest.mark.parametrize("allow_truncated", [False, True])
def test_random_bytes_named_mcap_is_no_recording_and_the_error_says_so(tmp_path, model, allow_truncated):
    """Issue 21 item 5: `fusion-eval-bag --allow-truncated` on a file of random bytes said "File magic is
    invalid" and still advised adding --allow-truncated. Recovery needs a recording's start: without the
    mcap magic there is nothing to recover, and the error says that instead."""
    noise = tmp_path / "noise.mcap"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 64 * 1024, dtype=np.uint8).tobytes())
    with pytest.raises(BagError) as info:
        evaluate(noise, tmp_path / "o", model, allow_truncated=allow_truncated)
    text = str(info.value)
    assert "noise.mcap does not begin with the mcap magic: it is not an mcap recording" in text, text
    assert "pass --allow-truncated" not in text and "with `fusion-eval-bag --allow-truncated`" not in text, text


def test_corrupt_part_way(good, tmp_path, model):
    """Storage that breaks in the middle: an error by default; with allow_truncated the frames read
    before the damage are evaluated and the report says where reading stopped."""
    bag = tmp_path / "corrupt"
    shutil.copytree(good / "chunked", bag)
    data = next(bag.glob("*.mcap"))
    size = data.stat().st_size
    with open(data, "r+b") as fh:
        fh.seek(size // 2)
        fh.write(b"\xff" * 20000)
    with pytest.raises(BagError, match="allow-truncated"):
        evaluate(bag, tmp_path / "o", model)
    m = evaluate(bag, tmp_path / "o2", model, allow_truncated=True)
    assert m["read_error"] and "corrupt" in m["read_error"]
    assert 0 < m["pairs"]["processed"] < 39
    assert "could not be read to the end" in (tmp_path / "o2" / "report.md").read_text()


def test_silently_lost_messages_are_reported(good, tmp_path, model):
    """A zeroed region makes the storage reader skip records without an error: the count check catches it."""
    bag = tmp_path / "zeroed"
    shutil.copytree(good / "chunked", bag)
    data = next(bag.glob("*.mcap"))
    with open(data, "r+b") as fh:
        fh.seek(data.stat().st_size // 2)
        fh.write(b"\x00" * 20000)
    m = evaluate(bag, tmp_path / "o", model)
    assert m["count_mismatch"], "lost messages must be reported"
    assert any("damaged" in w for w in m["warnings"])


# ------------------------------------------------------------------------------------------- topics
def test_requested_topic_missing_lists_the_topics(good, tmp_path, model):
    with pytest.raises(BagError) as err:
        evaluate(good / "mcap", tmp_path / "o", model, thermal_topic="/flir/image")
    text = str(err.value)
    assert "'/flir/image' is not in" in text
    assert "/thermal/image_raw [sensor_msgs/msg/Image" in text and "/ground_truth/detections" in text
    with pytest.raises(BagError, match="ground-truth detections topic '/gt' is not in"):
        evaluate(good / "mcap", tmp_path / "o2", model, gt_detections="/gt")


def test_wrong_type_on_a_requested_topic(good, tmp_path, model):
    with pytest.raises(BagError, match="carries vision_msgs/msg/Detection2DArray, expected sensor_msgs/msg/Image"):
        evaluate(good / "mcap", tmp_path / "o", model, rgb_topic="/ground_truth/detections")


def test_unknown_types_on_other_topics_are_ignored_and_reported(tmp_path, model):
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    custom = get_typestore(Stores.EMPTY)
    custom.register(get_types_from_msg("int32 value\nstring note\n", "acme_msgs/msg/Thing"))
    Thing = custom.types["acme_msgs/msg/Thing"]
    bag = tmp_path / "mixed"
    entries = camera_entries()
    with BagWriter(bag) as writer:
        msgdef, _ = custom.generate_msgdef("acme_msgs/msg/Thing", ros_version=2)
        conn = writer._writer.add_connection("/acme/thing", "acme_msgs/msg/Thing", msgdef=msgdef,
                                             rihs01=custom.hash_rihs01("acme_msgs/msg/Thing"))
        conn2 = writer._writer.add_connection("/acme/opaque", "acme_msgs/msg/Opaque", msgdef="",
                                              rihs01="RIHS01_" + "0" * 64)
        String = typestore().types["std_msgs/msg/String"]
        for k, (topic, log_ns, msg, msgtype) in enumerate(sorted(entries, key=lambda e: e[1])):
            writer.write(topic, log_ns, msg, msgtype)
            if k % 5 == 0:
                writer._writer.write(conn, log_ns + 1, custom.serialize_cdr(Thing(value=k, note="x"),
                                                                             "acme_msgs/msg/Thing"))
                writer._writer.write(conn2, log_ns + 2, b"\x00\x01\x00\x00garbage")
                writer.write("/chatter", log_ns + 3, String(data="hi"), "std_msgs/msg/String")
    m = evaluate(bag, tmp_path / "o", model)
    assert m["pairs"]["processed"] >= 18
    ignored = m["ignored_topics"]
    assert set(ignored) == {"/acme/thing", "/acme/opaque", "/chatter"}
    assert ignored["/chatter"]["reason"] == "not requested"
    assert "embeds its definition" in ignored["/acme/thing"]["reason"]
    assert "no definition" in ignored["/acme/opaque"]["reason"]
    assert any("/acme/opaque" in w for w in m["warnings"])
    assert "/acme/opaque" in (tmp_path / "o" / "report.md").read_text()
    # asking for one of them is an error that says why
    with pytest.raises(BagError, match="carries acme_msgs/msg/Opaque"):
        evaluate(bag, tmp_path / "o2", model, thermal_topic="/acme/opaque")


def test_empty_bag(tmp_path, model):
    bag = tmp_path / "empty"
    with BagWriter(bag) as writer:
        writer.add_topic(THERMAL, IMAGE)
        writer.add_topic(RGB, IMAGE)
    with pytest.raises(BagError, match="is empty: no messages"):
        evaluate(bag, tmp_path / "o", model)
    # messages, but none on a camera topic
    bag2 = tmp_path / "no_rgb"
    write_bag(bag2, [e for e in camera_entries() if e[0] == THERMAL])
    with pytest.raises(BagError, match="RGB topic '/rgb/image_raw' is not in"):
        evaluate(bag2, tmp_path / "o2", model)


# ------------------------------------------------------------------------------------------ content
def test_unsupported_encodings_are_counted_skips(tmp_path, model):
    bag = write_bag(tmp_path / "enc", camera_entries(thermal_encoding=lambda i: "yuv422" if i % 3 == 0 else "mono16"))
    m = evaluate(bag, tmp_path / "o", model)
    thermal = m["inputs"]["thermal"]
    assert thermal["rejected"] == {"encoding": 10}
    assert thermal["seen"] == 30 and thermal["decoded"] == 20
    assert m["pairs"]["processed"] >= 12  # the remaining thermal frames still pair with RGB
    assert any("yuv422" in w and "not supported" in w for w in m["warnings"])
    assert "rejected encoding 10" in (tmp_path / "o" / "report.md").read_text()
    # nothing usable at all: an error with the counts, not an empty report
    bag2 = write_bag(tmp_path / "enc2", camera_entries(thermal_encoding="yuv422"))
    with pytest.raises(BagError, match=r"no thermal/RGB pair could be evaluated.*'encoding': 30"):
        evaluate(bag2, tmp_path / "o2", model)


def test_stamps_going_backwards(tmp_path, model):
    """A bag recorded twice over the same stamps (a loop: the synchronizer resets, as in the node) and a
    frame 10 ms older than its predecessor (counted out of order, dropped)."""
    t = [T0 + int(i * 1e9 / 30) for i in range(60)]  # 2 s: the loop jumps back ~2 s (> 1 s: reset)
    r = [T0 + 5_000_000 + int(i * 1e9 / 20) for i in range(40)]
    t[10] = t[9] - 10_000_000
    first = camera_entries(thermal_stamps=t, rgb_stamps=r)
    second = [(topic, log + 3 * 10**9, msg, typ)
              for topic, log, msg, typ in camera_entries(thermal_stamps=t, rgb_stamps=r)]
    bag = write_bag(tmp_path / "loop", first + second)
    m = evaluate(bag, tmp_path / "o", model)
    assert m["pairs"]["sync_resets"] == 1
    assert m["inputs"]["thermal"]["rejected"] == {} and m["inputs"]["thermal"]["dropped"]["out_of_order"] == 2
    assert m["pairs"]["processed"] >= 74  # both passes evaluated
    assert any("jumped back" in w for w in m["warnings"]) and any("not increasing" in w for w in m["warnings"])
    # the node's switch: reset_on_jump_back 0 never resets, the second pass is all out of order
    m0 = evaluate(bag, tmp_path / "o0", model, params={"sync.reset_on_jump_back": 0.0})
    rgb = m0["inputs"]["rgb"]["dropped"]
    assert m0["pairs"]["sync_resets"] == 0 and (rgb["out_of_order"], rgb["duplicate"]) == (39, 1)
    assert m0["pairs"]["processed"] <= 40


def test_compressed_transport(tmp_path, model):
    """CompressedImage topics (16-bit PNG thermal, JPEG RGB) decode as the node decodes them."""
    Compressed = typestore().types[COMPRESSED_IMAGE]
    entries = []
    for topic, log, msg, _ in camera_entries():
        if topic == THERMAL:
            array = np.frombuffer(bytes(msg.data), np.uint16).reshape(H, W)
            ok, data = cv2.imencode(".png", array)
            fmt = "mono16; png compressed"
        else:
            ok, data = cv2.imencode(".jpg", np.frombuffer(bytes(msg.data), np.uint8).reshape(H, W, 3))
            fmt = "bgr8; jpeg compressed bgr8"
        assert ok
        entries.append((topic + "/compressed", log, Compressed(header=msg.header, format=fmt,
                                                               data=np.asarray(data, np.uint8).reshape(-1)),
                        COMPRESSED_IMAGE))
    bag = write_bag(tmp_path / "compressed", entries)
    m = evaluate(bag, tmp_path / "o", model, thermal_topic=THERMAL + "/compressed", rgb_topic=RGB + "/compressed")
    assert m["pairs"]["processed"] >= 18 and not m["pairs"]["rejected"]
    assert m["inputs"]["thermal"]["type"] == COMPRESSED_IMAGE


def test_bad_arguments(good, tmp_path, model):
    with pytest.raises(BagError, match="bag not found"):
        evaluate(tmp_path / "nope", tmp_path / "o", model)
    with pytest.raises(BagError, match="same"):
        evaluate(good / "mcap", tmp_path / "o", model, thermal_topic=RGB)
    with pytest.raises(BagError, match="cannot load the engine"):
        ev.evaluate_bag(good / "mcap", out=tmp_path / "o", model=str(tmp_path / "missing.pt"), progress=False)
    with pytest.raises(BagError, match="max-pairs"):
        evaluate(good / "mcap", tmp_path / "o", model, max_pairs=0)
    assert ev.main([str(tmp_path / "nope"), "--quiet"]) == 2
