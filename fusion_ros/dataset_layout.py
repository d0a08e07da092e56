"""On-disk layout of a paired thermal + RGB dataset (synthetic or real).

::

    ROOT/
      ir/NAME.png       thermal image, single channel. 16-bit PNG = radiometric counts (the synthetic
                        generator writes centikelvin, "TLinear": 29315 = 20 degC); 8-bit PNG for real
                        datasets that ship display-ready IR (M3FD, LLVIP, MSRS, ...).
      vi/NAME.png       visible image, 8-bit colour PNG, BGR on disk (OpenCV convention).
      labels/NAME.xml   Pascal VOC XML: <annotation><filename>, <size><width><height><depth>, then one
                        <object><name>CLASS</name><bndbox><xmin/><ymin/><xmax/><ymax/></bndbox></object>
                        per box. Coordinates are pixels read as-is (no 1-based shift); the generator
                        writes 0-based xyxy with xmax/ymax exclusive. Optional: a sample may have none.
      masks/NAME.png    uint8 PNG of segmentation class ids (index into the segmentation class list,
                        0 = unlabeled). Optional.
      meta.json         {"generator", "seed", "height", "width", "condition", "thermal_format",
                         "detection_classes": [...], "segmentation_classes": [...],
                         "samples": {NAME: CONDITION, ...}}

NAME is the same stem in every folder (e.g. ``syn_0_000042``). ``ir/`` and ``vi/`` are pixel-registered.
The trainer reads this layout (``data: kind: layout``, training/datasets.py). Every VOC file of the project
(this layout, M3FD, LLVIP, labelled pair folders) is parsed by ``parse_voc_xml`` and its boxes checked and
clipped to the image by ``clip_box``.
"""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

IR_DIR, VI_DIR, LABEL_DIR, MASK_DIR = "ir", "vi", "labels", "masks"
META_FILE = "meta.json"


def _write_png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


def _fmt(v: float) -> str:
    v = float(v)
    return str(int(v)) if v.is_integer() else f"{v:.3f}".rstrip("0").rstrip(".")


def write_voc_xml(path, name: str, width: int, height: int, boxes, labels, class_names) -> None:
    """Write boxes (N, 4 xyxy) with labels (indices into class_names) as Pascal VOC XML."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels).reshape(-1)
    if len(boxes) != len(labels):
        raise ValueError(f"{path}: {len(boxes)} boxes but {len(labels)} labels")
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = f"{name}.png"
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(int(width))
    ET.SubElement(size, "height").text = str(int(height))
    ET.SubElement(size, "depth").text = "3"
    for box, lab in zip(boxes, labels):
        lab = int(lab)
        if not 0 <= lab < len(class_names):
            raise ValueError(f"{path}: label {lab} out of range for {len(class_names)} classes")
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = str(class_names[lab])
        ET.SubElement(obj, "difficult").text = "0"
        bb = ET.SubElement(obj, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(bb, tag).text = _fmt(v)
    ET.indent(root)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


class VocObject(NamedTuple):
    name: str  # the class name as written
    box: tuple[float, float, float, float]  # xmin, ymin, xmax, ymax as written (pixels)
    where: str  # "FILE object I (NAME)", for messages


def parse_voc_xml(path, error: type[Exception] = ValueError) -> tuple[tuple[int, int] | None, list[VocObject]]:
    """A Pascal VOC file -> (image size (height, width) from its <size>, None when absent; its objects).
    The one VOC parser: malformed XML, a root other than <annotation>, an object without <name> or
    <bndbox> and a missing or non-numeric coordinate raise ``error`` naming the file (and the object)."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise error(f"{path}: malformed VOC XML ({exc})") from None
    if root.tag != "annotation":
        raise error(f"{path}: malformed VOC XML (root element <{root.tag}>, expected <annotation>)")
    size = None
    try:
        width, height = int(float(root.findtext("size/width") or 0)), int(float(root.findtext("size/height") or 0))
        if width > 0 and height > 0:
            size = (height, width)
    except ValueError:
        size = None
    objects = []
    for i, obj in enumerate(root.iter("object")):
        where = f"{path} object {i}"
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise error(f"{where}: no <name>")
        where = f"{where} ({name})"
        bb = obj.find("bndbox")
        if bb is None:
            raise error(f"{where}: no <bndbox>")
        try:
            box = tuple(float(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            raise error(f"{where}: missing or non-numeric bndbox coordinate") from None
        objects.append(VocObject(name, box, where))
    return size, objects


def clip_box(box, width: float | None, height: float | None) -> tuple[tuple | None, str]:
    """A box (x1, y1, x2, y2) clipped to the width x height image -> (the clipped box, "") or (None, why it is
    invalid: a non-finite coordinate, no area, nothing inside the image). No size: only the first two checks."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        return None, "non-finite coordinate"
    if x2 <= x1 or y2 <= y1:
        return None, f"empty box (width {x2 - x1:g}, height {y2 - y1:g})"
    if width is None or height is None:
        return (x1, y1, x2, y2), ""
    clipped = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        return None, f"outside the {width:g}x{height:g} image"
    return clipped, ""


def read_voc_xml(path, class_names, class_map: dict | None = None, skip_unknown: bool = False):
    """Read a Pascal VOC file -> (boxes (N, 4) float32 xyxy, labels (N,) int64 indices into class_names).

    ``class_map`` renames dataset classes first (e.g. {"People": "person"}; a value of None drops that
    class). An unknown class raises ValueError naming the file unless ``skip_unknown``. Boxes are clipped
    to the image size the file states; a box left without area (or with a non-finite coordinate) and
    malformed XML (``parse_voc_xml``) raise ValueError naming the file.
    """
    names = list(class_names)
    size, objects = parse_voc_xml(path)
    height, width = size if size is not None else (None, None)
    boxes, labels = [], []
    for obj in objects:
        name = obj.name
        if class_map is not None and name in class_map:
            name = class_map[name]
            if name is None:
                continue
        if name not in names:
            if skip_unknown:
                continue
            raise ValueError(f"{obj.where}: unknown class {obj.name!r} (known: {', '.join(names)})")
        box, problem = clip_box(obj.box, width, height)
        if box is None:
            raise ValueError(f"{obj.where}: invalid box {obj.box}: {problem}")
        boxes.append(box)
        labels.append(names.index(name))
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)


def write_sample(root, sample, class_names=None) -> None:
    """Write one SyntheticSample (thermal, rgb, boxes, labels, mask) under root in this layout."""
    if class_names is None:
        from .classes import load_classes

        class_names = load_classes().detection.names
    root = Path(root)
    name = sample.name
    _write_png(root / IR_DIR / f"{name}.png", np.ascontiguousarray(sample.thermal))
    _write_png(root / VI_DIR / f"{name}.png", cv2.cvtColor(sample.rgb, cv2.COLOR_RGB2BGR))
    _write_png(root / MASK_DIR / f"{name}.png", np.ascontiguousarray(sample.mask))
    h, w = sample.rgb.shape[:2]
    write_voc_xml(root / LABEL_DIR / f"{name}.xml", name, w, h, sample.boxes, sample.labels, class_names)


def write_meta(root, meta: dict) -> None:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")


def read_meta(root) -> dict:
    path = Path(root) / META_FILE
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: malformed JSON ({exc})") from exc
