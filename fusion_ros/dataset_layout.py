"""On-disk layout of a paired thermal + RGB dataset (synthetic or real).

::

    ROOT/
      ir/NAME.png       thermal image, single channel. 16-bit PNG = radiometric counts (the synthetic
                        generator writes centikelvin, "TLinear": 29315 = 20 degC); 8-bit PNG for real
                        datasets that ship display-ready IR (M3FD, LLVIP, MSRS, ...).
      vi/NAME.png       visible image, 8-bit colour PNG. On disk it is BGR (OpenCV convention);
                        read_pair returns RGB. A grey visible image is expanded to 3 channels.
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
"""
from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np

IR_DIR, VI_DIR, LABEL_DIR, MASK_DIR = "ir", "vi", "labels", "masks"
META_FILE = "meta.json"


def _write_png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")


def _read_png(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"missing image {path}")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"could not decode image {path}")
    return img


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


def read_voc_xml(path, class_names, class_map: dict | None = None, skip_unknown: bool = False):
    """Read a Pascal VOC file -> (boxes (N, 4) float32 xyxy, labels (N,) int64 indices into class_names).

    ``class_map`` renames dataset classes first (e.g. {"People": "person"}; a value of None drops that
    class). An unknown class raises ValueError naming the file unless ``skip_unknown``. Malformed XML,
    missing or non-numeric coordinates and boxes with xmax < xmin or ymax < ymin raise ValueError too.
    """
    path = Path(path)
    names = list(class_names)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"{path}: malformed VOC XML ({exc})") from exc
    if root.tag != "annotation":
        raise ValueError(f"{path}: malformed VOC XML (root element is <{root.tag}>, expected <annotation>)")
    boxes, labels = [], []
    for i, obj in enumerate(root.iter("object")):
        raw = (obj.findtext("name") or "").strip()
        if not raw:
            raise ValueError(f"{path}: object {i} has no <name>")
        name = raw
        if class_map is not None and raw in class_map:
            name = class_map[raw]
            if name is None:
                continue
        if name not in names:
            if skip_unknown:
                continue
            raise ValueError(f"{path}: unknown class {raw!r} (known: {', '.join(names)})")
        bb = obj.find("bndbox")
        if bb is None:
            raise ValueError(f"{path}: object {i} ({raw}) has no <bndbox>")
        try:
            x0, y0, x1, y1 = (float(bb.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: object {i} ({raw}) has a missing or non-numeric bndbox coordinate") from exc
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)) or x1 < x0 or y1 < y0:
            raise ValueError(f"{path}: object {i} ({raw}) has an invalid box {x0, y0, x1, y1}")
        boxes.append((x0, y0, x1, y1))
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


def read_pair(root, name: str):
    """-> (ir, rgb): ir as stored (H, W uint16 or uint8; a 3-channel IR file is reduced to one channel),
    rgb (H, W, 3) uint8 in RGB order."""
    root = Path(root)
    ir = _read_png(root / IR_DIR / f"{name}.png")
    if ir.ndim == 3:
        ir = cv2.cvtColor(ir, cv2.COLOR_BGRA2GRAY if ir.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    vi = _read_png(root / VI_DIR / f"{name}.png")
    if vi.ndim == 2:
        vi = cv2.cvtColor(vi, cv2.COLOR_GRAY2RGB)
    elif vi.shape[2] == 4:
        vi = cv2.cvtColor(vi, cv2.COLOR_BGRA2RGB)
    else:
        vi = cv2.cvtColor(vi, cv2.COLOR_BGR2RGB)
    if vi.dtype != np.uint8:
        raise ValueError(f"{root / VI_DIR / name}.png: visible image must be 8-bit, got {vi.dtype}")
    if ir.shape[:2] != vi.shape[:2]:
        raise ValueError(f"{name}: ir {ir.shape[:2]} and vi {vi.shape[:2]} sizes differ")
    return ir, vi


def read_mask(root, name: str) -> np.ndarray:
    """-> (H, W) uint8 segmentation class ids."""
    mask = _read_png(Path(root) / MASK_DIR / f"{name}.png")
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"{Path(root) / MASK_DIR / name}.png: mask must be single-channel uint8")
    return mask


def read_labels(root, name: str, class_names, **kwargs):
    """-> (boxes, labels) of labels/NAME.xml (see read_voc_xml)."""
    return read_voc_xml(Path(root) / LABEL_DIR / f"{name}.xml", class_names, **kwargs)


def list_names(root) -> list[str]:
    """Sorted sample names that have both ir/ and vi/ images."""
    root = Path(root)
    ir = {p.stem for p in (root / IR_DIR).glob("*.png")}
    vi = {p.stem for p in (root / VI_DIR).glob("*.png")}
    return sorted(ir & vi)


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
