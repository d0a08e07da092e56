"""rosbag2 input/output for the bag tools, through the pure-Python ``rosbags`` library (no rosbag2_py).

* ``typestore()``: ROS 2 (Kilted) message types plus vision_msgs 4.x, whose .msg texts are embedded here
  (identical to interfaces/vision_msgs/msg, checked by test/test_bag_sample.py) so bags carry the real
  ``vision_msgs/msg/Detection2DArray`` definition and type hash.
* ``BagReader``: opens a bag folder (or a single .mcap / .db3 file), lists its topics, and streams the
  messages of the requested topics in log-time order (rosbags merges MCAP chunks lazily and sqlite3
  sorts by timestamp, so memory stays bounded by a chunk). Every way a bag can be unusable becomes a
  ``BagError`` that names the file and the problem: missing metadata.yaml, truncated or corrupt storage,
  missing topics (the error lists the topics that exist), unknown message types on requested topics.
  Topics nobody asked for are never deserialized: ``ignored_topics`` reports them (with the reason when
  their type is unknown here).
* ``BagWriter``: writes rosbag2 (mcap by default) with the same typestore.
* ``image_message`` / ``detections_message``: message objects for the writer, with the field semantics of
  the node's fusion_ros/nodes/ros_convert.py (checked byte-for-byte against it in test/test_bag_eval.py).
* ``segmentation_lut``: a bag's ground-truth mask ids -> the model's segmentation ids.
The pairs the node would form from a bag: fusion_ros/bag/pairing.py.
"""
from __future__ import annotations

import functools
import json
import sqlite3
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..image_conversions import array_to_image_fields

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
DETECTION2D_ARRAY = "vision_msgs/msg/Detection2DArray"
CLOCK = "rosgraph_msgs/msg/Clock"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)

# vision_msgs 4.x (ros-perception/vision_msgs, ros2 branch), comments stripped: the types a
# Detection2DArray needs. Their RIHS01 hashes equal upstream's (see test/test_interfaces.py).
VISION_MSGS = {
    "vision_msgs/msg/Point2D": "float64 x\nfloat64 y\n",
    "vision_msgs/msg/Pose2D": "vision_msgs/Point2D position\nfloat64 theta\n",
    "vision_msgs/msg/BoundingBox2D": "vision_msgs/Pose2D center\nfloat64 size_x\nfloat64 size_y\n",
    "vision_msgs/msg/ObjectHypothesis": "string class_id\nfloat64 score\n",
    "vision_msgs/msg/ObjectHypothesisWithPose": (
        "ObjectHypothesis hypothesis\ngeometry_msgs/PoseWithCovariance pose\n"
    ),
    "vision_msgs/msg/Detection2D": (
        "std_msgs/Header header\nObjectHypothesisWithPose[] results\nBoundingBox2D bbox\nstring id\n"
    ),
    "vision_msgs/msg/Detection2DArray": "std_msgs/Header header\nDetection2D[] detections\n",
}


class BagError(Exception):
    """A bag that cannot be used as asked; the message says which file/topic and what to do."""


@functools.lru_cache(maxsize=1)
def typestore():
    """ROS 2 Kilted types + vision_msgs 4.x (Detection2DArray and its parts)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for name, text in VISION_MSGS.items():
        types.update(get_types_from_msg(text, name))
    store.register(types)
    return store


# ----------------------------------------------------------------------------------------- messages
def stamp_of(header) -> int:
    """Integer nanoseconds of a header's stamp (rosbags or rclpy message)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def header(stamp_ns: int, frame_id: str):
    ts = typestore()
    Time = ts.types["builtin_interfaces/msg/Time"]
    Header = ts.types["std_msgs/msg/Header"]
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=str(frame_id))


def image_message(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str):
    """sensor_msgs/Image (little-endian, unpadded), as ros_convert.image_msg builds it for the node."""
    fields = array_to_image_fields(array, encoding)
    Image = typestore().types[IMAGE]
    return Image(
        header=header(stamp_ns, frame_id), height=fields["height"], width=fields["width"],
        encoding=fields["encoding"], is_bigendian=fields["is_bigendian"], step=fields["step"],
        data=np.frombuffer(fields["data"], np.uint8),
    )


def detections_message(boxes, scores, class_ids: Iterable[str], stamp_ns: int, frame_id: str):
    """vision_msgs/Detection2DArray like ros_convert.detections_msg: bbox centre/size in pixels from xyxy
    boxes, one hypothesis per detection (class_id = class name, its score), empty id, default pose."""
    t = typestore().types
    hdr = header(stamp_ns, frame_id)
    pose = t["geometry_msgs/msg/PoseWithCovariance"](
        pose=t["geometry_msgs/msg/Pose"](
            position=t["geometry_msgs/msg/Point"](x=0.0, y=0.0, z=0.0),
            orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0),
        ),
        covariance=np.zeros(36, np.float64),
    )
    detections = []
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    for (x1, y1, x2, y2), score, class_id in zip(boxes, scores, class_ids):
        hypothesis = t["vision_msgs/msg/ObjectHypothesisWithPose"](
            hypothesis=t["vision_msgs/msg/ObjectHypothesis"](class_id=str(class_id), score=float(score)),
            pose=pose,
        )
        bbox = t["vision_msgs/msg/BoundingBox2D"](
            center=t["vision_msgs/msg/Pose2D"](
                position=t["vision_msgs/msg/Point2D"](x=float((x1 + x2) / 2.0), y=float((y1 + y2) / 2.0)),
                theta=0.0,
            ),
            size_x=float(x2 - x1),
            size_y=float(y2 - y1),
        )
        detections.append(t["vision_msgs/msg/Detection2D"](header=hdr, results=[hypothesis], bbox=bbox, id=""))
    return t[DETECTION2D_ARRAY](header=hdr, detections=detections)


def detections_from_message(msg) -> tuple[np.ndarray, list[str], np.ndarray]:
    """A Detection2DArray -> (xyxy boxes N×4 float64, class_ids (best hypothesis), scores)."""
    boxes, names, scores = [], [], []
    for det in msg.detections:
        cx, cy = float(det.bbox.center.position.x), float(det.bbox.center.position.y)
        w, h = float(det.bbox.size_x), float(det.bbox.size_y)
        boxes.append((cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0))
        if det.results:
            best = max(det.results, key=lambda r: float(r.hypothesis.score))
            names.append(str(best.hypothesis.class_id))
            scores.append(float(best.hypothesis.score))
        else:
            names.append("")
            scores.append(0.0)
    return np.asarray(boxes, np.float64).reshape(-1, 4), names, np.asarray(scores, np.float64)


def cdr_stamp(raw: bytes | memoryview) -> int | None:
    """The header stamp of a serialized message whose first field is a std_msgs/Header (Image,
    Detection2DArray, ...), read straight from the CDR bytes; None if too short."""
    if len(raw) < 12:
        return None
    little = raw[1] == 1  # encapsulation: 0x00 0x01 = CDR little-endian
    sec, nanosec = struct.unpack("<iI" if little else ">iI", bytes(raw[4:12]))
    return sec * 1_000_000_000 + nanosec


# ------------------------------------------------------------------------------------------- reading
@dataclass
class TopicMeta:
    name: str
    msgtype: str
    count: int
    connections: list = field(default_factory=list, repr=False)


@dataclass
class BagMessage:
    topic: str
    msgtype: str
    log_ns: int
    msg: object  # deserialized message (rosbags dataclass), None when raw=True
    raw: bytes | memoryview | None = None


def _describe_storage_error(path: Path, exc: BaseException) -> str:
    import shutil

    text = f"{type(exc).__name__}: {exc}"
    files = [path] if path.is_file() else sorted(p for p in path.glob("*") if p.suffix in (".mcap", ".db3"))
    names = ", ".join(p.name for p in files) or "its storage file"
    hints = []
    for mcap in (p for p in files if p.suffix == ".mcap" and p.is_file()):
        starts, ends = _mcap_magic(mcap)
        if not starts:
            hints.append(f"{mcap.name} does not begin with the mcap magic: it is not an mcap recording, or its start "
                         "is damaged (--allow-truncated only recovers a recording cut off at its end)")
        elif not ends:
            hints.append(f"{mcap.name} was cut off before its footer: it can be evaluated up to its last complete "
                         "chunk with `fusion-eval-bag --allow-truncated`")
    if any(p.suffix == ".db3" for p in files) and shutil.which("sqlite3"):
        hints.append("a damaged db3 may be repairable with `sqlite3 FILE .recover`")
    return f"cannot read bag {path}: {names} is truncated or corrupt ({text})" + (f"; {'; '.join(hints)}" if hints
                                                                                  else "")


# ------------------------------------------------------------------------- truncated mcap recovery
MCAP_MAGIC = b"\x89MCAP0\r\n"
_MCAP_CHUNK, _MCAP_DATA_END, _MCAP_FOOTER = 0x06, 0x0F, 0x02


@dataclass
class McapRecovery:
    """A cut-off mcap file rewritten as ``recovered``: every complete record of ``source`` up to the cut
    (so every complete chunk), then a DataEnd record and a footer without summary (readers then scan the
    data section, as rosbags does)."""

    source: Path
    recovered: Path
    source_bytes: int
    kept_bytes: int
    chunks: int

    @property
    def dropped_bytes(self) -> int:
        return self.source_bytes - self.kept_bytes

    def describe(self) -> str:
        return (f"{self.source.name} was cut off mid-recording (no mcap footer): recovered up to its last complete "
                f"chunk ({self.chunks} chunks, {self.kept_bytes} of {self.source_bytes} bytes; the "
                f"{self.dropped_bytes} bytes after it are lost)")


def truncated_mcap(path: Path) -> Path | None:
    """The .mcap file of ``path`` (a file, or a folder holding exactly one) when it lacks its end magic (a
    recording cut off before its footer was written), else None."""
    path = Path(path)
    files = [path] if path.is_file() else (sorted(path.glob("*.mcap")) if path.is_dir() else [])
    if len(files) != 1 or files[0].suffix != ".mcap":
        return None
    starts, ends = _mcap_magic(files[0])
    return files[0] if starts and not ends else None


def _mcap_magic(file: Path) -> tuple[bool, bool]:
    """(the file begins with the mcap magic, it also ends with it): a recording cut off before its footer
    has only the first; a file that lacks the first is no mcap recording at all (or its start is damaged)."""
    size = file.stat().st_size
    with open(file, "rb") as fh:
        if fh.read(8) != MCAP_MAGIC:
            return False, False
        if size < 16:
            return True, False
        fh.seek(size - 8)
        return True, fh.read(8) == MCAP_MAGIC


def recover_truncated_mcap(source: Path, recovered: Path) -> McapRecovery:
    """Write ``recovered``: ``source``'s complete records up to where it was cut off, closed by a DataEnd
    record and a summary-less footer. Walks the top-level records by their lengths only (nothing is
    decompressed); a record that runs past the end of the file (the chunk being written when the recorder
    died) is dropped with everything after it. BagError when nothing complete is left."""
    source, recovered = Path(source), Path(recovered)
    size = source.stat().st_size
    chunks = 0
    with open(source, "rb") as fh:
        if fh.read(8) != MCAP_MAGIC:
            raise BagError(f"{source} is not an mcap file (bad magic)")
        pos = good_end = 8
        while True:
            fh.seek(pos)
            head = fh.read(9)
            if len(head) < 9:
                break
            opcode, length = head[0], int.from_bytes(head[1:9], "little")
            end = pos + 9 + length
            if end > size or opcode in (_MCAP_DATA_END, _MCAP_FOOTER) or opcode == 0:
                break
            chunks += opcode == _MCAP_CHUNK
            good_end = pos = end
        if good_end <= 8 + 9:
            raise BagError(f"{source}: nothing complete to recover (the file is cut off in its first record)")
        recovered.parent.mkdir(parents=True, exist_ok=True)
        with open(recovered, "wb") as out:
            fh.seek(0)
            remaining = good_end
            while remaining:
                block = fh.read(min(remaining, 8 << 20))
                if not block:
                    break
                out.write(block)
                remaining -= len(block)
            out.write(bytes([_MCAP_DATA_END]) + (4).to_bytes(8, "little") + bytes(4))  # data_section_crc 0: none
            out.write(bytes([_MCAP_FOOTER]) + (20).to_bytes(8, "little") + bytes(20) + MCAP_MAGIC)  # no summary
    return McapRecovery(source, recovered, size, good_end, chunks)


_STORAGE_ERRORS = (sqlite3.DatabaseError, struct.error, EOFError, ValueError, IndexError, KeyError, AssertionError,
                   OSError)


class BagReader:
    """Read-only access to one rosbag2 recording (folder with metadata.yaml, or one .mcap / .db3 file)."""

    def __init__(self, path: str | Path):
        from rosbags.rosbag2 import Reader
        from rosbags.rosbag2.errors import ReaderError

        self.path = Path(path)
        if not self.path.exists():
            raise BagError(f"bag not found: {self.path}")
        if self.path.is_dir() and not (self.path / "metadata.yaml").is_file():
            storage = sorted(p.name for p in self.path.iterdir() if p.suffix in (".mcap", ".db3"))
            hint = (f"; it holds {', '.join(storage)}: pass that file itself to read it without metadata "
                    f"(e.g. {self.path / storage[0]})" if storage else "; no .mcap/.db3 file there either")
            raise BagError(f"{self.path} is not a rosbag2 folder: metadata.yaml is missing{hint}")
        if self.path.is_file() and self.path.suffix not in (".mcap", ".db3"):
            raise BagError(f"{self.path}: expected a rosbag2 folder or a .mcap/.db3 file")
        try:
            self._reader = Reader(self.path)
            self._reader.open()
        except ReaderError as exc:
            text = str(exc)
            if "metadata" in text.lower() and "yaml" in text.lower():
                raise BagError(f"cannot read {self.path}/metadata.yaml: {text}") from None
            raise BagError(_describe_storage_error(self.path, exc)) from None
        except _STORAGE_ERRORS as exc:
            raise BagError(_describe_storage_error(self.path, exc)) from None
        self.storage = "mcap" if self._is_mcap() else "sqlite3"
        self.topics: dict[str, TopicMeta] = {}
        for conn in self._reader.connections:
            meta = self.topics.setdefault(conn.topic, TopicMeta(conn.topic, conn.msgtype, 0))
            meta.count += int(conn.msgcount)
            meta.connections.append(conn)
            if conn.msgtype != meta.msgtype:
                meta.msgtype = f"{meta.msgtype}|{conn.msgtype}"
        self._deserializers: dict[int, object] = {}  # id(connection) -> typestore, resolved lazily

    def _is_mcap(self) -> bool:
        if self.path.is_file():
            return self.path.suffix == ".mcap"
        return any(p.suffix == ".mcap" for p in self.path.iterdir())

    # ------------------------------------------------------------------------------------ metadata
    @property
    def message_count(self) -> int:
        return int(self._reader.message_count)

    @property
    def start_ns(self) -> int:
        return int(self._reader.start_time) if self.message_count else 0

    @property
    def end_ns(self) -> int:
        return int(self._reader.end_time) if self.message_count else 0

    @property
    def duration_s(self) -> float:
        return max(self.end_ns - self.start_ns, 0) * 1e-9

    @property
    def custom_data(self) -> dict:
        storage = getattr(self._reader, "storage", None)
        meta = getattr(storage, "metadata", None)
        return dict(getattr(meta, "custom", None) or {})

    def describe_topics(self) -> str:
        if not self.topics:
            return "(none)"
        return ", ".join(f"{t.name} [{t.msgtype}, {t.count} msgs]" for t in sorted(self.topics.values(),
                                                                              key=lambda t: t.name))

    def require(self, topic: str, types: tuple[str, ...], role: str) -> TopicMeta:
        """The topic's metadata, or BagError naming what exists instead."""
        meta = self.topics.get(topic)
        if meta is None:
            raise BagError(f"{role} topic '{topic}' is not in {self.path}; topics in the bag: "
                           f"{self.describe_topics()}")
        if meta.msgtype not in types:
            raise BagError(f"{role} topic '{topic}' carries {meta.msgtype}, expected {' or '.join(types)}")
        if meta.count == 0:
            raise BagError(f"{role} topic '{topic}' has no messages in {self.path}")
        for conn in meta.connections:
            self._deserializer(conn)  # unknown/incompatible types fail here, before any work
        return meta

    def type_known(self, msgtype: str) -> bool:
        return msgtype in typestore().fielddefs

    def ignored_topics(self, used: Iterable[str]) -> dict:
        """Topics not read, with their type, message count and why (not requested / type unknown here)."""
        used = set(used)
        out = {}
        for name, meta in sorted(self.topics.items()):
            if name in used:
                continue
            known = all(self.type_known(t) for t in meta.msgtype.split("|"))
            embedded = all(c.msgdef.data for c in meta.connections)
            if known:
                reason = "not requested"
            elif embedded:
                reason = "not requested (type not known to this tool; the bag embeds its definition)"
            else:
                reason = "not requested; type unknown here and the bag carries no definition"
            out[name] = {"type": meta.msgtype, "count": meta.count, "reason": reason}
        return out

    def _deserializer(self, conn):
        """The typestore that decodes this connection: ours when it knows the type with the same hash,
        else one built from the definition embedded in the bag (e.g. another vision_msgs version)."""
        key = id(conn)
        store = self._deserializers.get(key)
        if store is not None:
            return store
        ours = typestore()
        digest = getattr(conn, "digest", "") or ""
        if conn.msgtype in ours.fielddefs and (not digest.startswith("RIHS01_")
                                               or ours.hash_rihs01(conn.msgtype) == digest):
            store = ours
        elif conn.msgdef.data:
            from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

            try:
                store = get_typestore(Stores.EMPTY)
                if conn.msgdef.data.startswith("=" * 80 + "\nIDL: "):
                    types = {}
                    for part in conn.msgdef.data.split("=" * 80 + "\n")[1:]:
                        _, idl = part.split("\n", 1)
                        types.update(get_types_from_idl(idl))
                else:
                    types = get_types_from_msg(conn.msgdef.data, conn.msgtype)
                store.register(types)
            except Exception as exc:
                raise BagError(f"topic '{conn.topic}': cannot parse the {conn.msgtype} definition stored in the "
                               f"bag: {exc}") from None
        else:
            raise BagError(f"topic '{conn.topic}': message type {conn.msgtype} is unknown here and the bag "
                           "carries no definition for it")
        self._deserializers[key] = store
        return store

    def messages(self, topics: Iterable[str], raw: bool = False) -> Iterator[BagMessage]:
        """Messages of ``topics`` in log-time order (ties keep storage order: deterministic). A storage
        error part-way raises BagError saying how far reading got."""
        conns = [c for t in topics for c in self.topics[t].connections]
        count, last_ns = 0, None
        try:
            for conn, log_ns, data in self._reader.messages(connections=conns):
                if raw:
                    msg = None
                else:
                    try:
                        msg = self._deserializer(conn).deserialize_cdr(data, conn.msgtype)
                    except BagError:
                        raise
                    except Exception as exc:
                        raise BagError(f"message {count + 1} on '{conn.topic}' (log time {log_ns}) cannot be "
                                       f"deserialized as {conn.msgtype}: {type(exc).__name__}: {exc}") from None
                count += 1
                last_ns = log_ns
                yield BagMessage(conn.topic, conn.msgtype, int(log_ns), msg, data if raw else None)
        except BagError:
            raise
        except _STORAGE_ERRORS + (Exception,) as exc:
            where = f" after {count} messages (last log time {last_ns})" if count else " before the first message"
            raise BagError(_describe_storage_error(self.path, exc) + where) from None

    def close(self) -> None:
        reader, self._reader = getattr(self, "_reader", None), None
        if reader is not None and reader.is_open:
            reader.close()

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------------- writing
class BagWriter:
    """A new rosbag2 recording (``storage`` mcap or sqlite3) written through ``typestore()``."""

    def __init__(self, path: str | Path, storage: str = "mcap", custom_data: dict | None = None):
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise BagError(f"storage must be one of {', '.join(plugins)}, got '{storage}'")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path} exists already: choose a new path (rosbag2 writers never overwrite)")
        self._writer = Writer(self.path, version=9, storage_plugin=plugins[storage])
        for key, value in (custom_data or {}).items():
            self._writer.set_custom_data(str(key), str(value))
        self._writer.open()
        self._connections: dict[str, tuple[object, str]] = {}
        self.counts: dict[str, int] = {}

    def add_topic(self, topic: str, msgtype: str) -> None:
        if topic not in self._connections:
            conn = self._writer.add_connection(topic, msgtype, typestore=typestore())
            self._connections[topic] = (conn, msgtype)
            self.counts[topic] = 0

    def write(self, topic: str, log_ns: int, msg, msgtype: str | None = None) -> None:
        if topic not in self._connections:
            if msgtype is None:
                raise BagError(f"topic '{topic}' was not added to {self.path}")
            self.add_topic(topic, msgtype)
        conn, msgtype = self._connections[topic]
        self._writer.write(conn, int(log_ns), typestore().serialize_cdr(msg, msgtype))
        self.counts[topic] += 1

    def write_raw(self, topic: str, log_ns: int, data: bytes, msgtype: str) -> None:
        if topic not in self._connections:
            self.add_topic(topic, msgtype)
        conn, _ = self._connections[topic]
        self._writer.write(conn, int(log_ns), data)
        self.counts[topic] += 1

    def close(self) -> None:
        writer, self._writer = getattr(self, "_writer", None), None
        if writer is not None:
            writer.close()

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------ ground truth
def segmentation_lut(reader, seg_names, ignore: int = 255) -> tuple[np.ndarray, list[str] | None]:
    """Ground-truth mask id -> our segmentation id (a 256-entry table; `ignore` = no label).

    When the bag lists its classes (custom data ``fusion_ros.segmentation_classes``, as our sample bags
    do), ids are remapped by name and the second value lists the bag's classes we do not have; otherwise
    ids are taken as recorded and the second value is None.
    """
    lut = np.full(256, ignore, np.uint8)
    names = None
    listed = reader.custom_data.get("fusion_ros.segmentation_classes")
    if listed:
        try:
            names = [str(n) for n in json.loads(listed)]
        except ValueError:
            names = None
    if names is None:
        lut[: len(seg_names)] = np.arange(len(seg_names), dtype=np.uint8)
        return lut, None
    index = {n: i for i, n in enumerate(seg_names)}
    for i, name in enumerate(names[:255]):
        if name in index:
            lut[i] = index[name]
    return lut, [n for n in names if n not in index]
