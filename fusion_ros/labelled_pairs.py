"""Folders of registered thermal (IR) / visible (VI) pairs with box labels: reading, splitting, subsets.

ROS-free and torch-free (numpy + cv2 + the standard library): ``fusion-eval-pairs`` (fusion_ros/pairs_eval.py)
and the trainer's ``kind: pairs`` (training/labelled_folders.py) both read folders through this module.

    folder = read_labelled_pairs("../shared/data/msrs_det", ("person", "bicycle", "car"))
    folder.pairs[0]  # LabelledPair(name, ir_path, vi_path, boxes (N, 4) float32 xyxy visible px, labels (N,))
    block_split(folder.names)          # {"train": [...], "heldout": [...], "val": [...], "gap": [...]}
    subsets(folder.names, {"day": "D$", "night": "N$"})

Layout under ``root``
- Images: ``ir/`` and ``vi/`` (folder names matched case-insensitively; aliases ``infrared``/``thermal``/
  ``lwir`` and ``vis``/``visible``/``rgb``/``color``; ``ir_dir``/``vi_dir`` override). Pairs are matched by
  file stem (``ir/00004N.png`` <-> ``vi/00004N.jpg``; png, jpg, jpeg, bmp, tif, tiff). An image without its
  partner is an error naming them (``unpaired="skip"`` leaves them out, counted).
- Labels, one of three formats (``labels="auto"`` picks the one present; two present is an error asking
  for ``labels=``; none present is an error naming every place looked at):
  - ``yolo``: ``labels/<variant>/NAME.txt`` or ``labels/NAME.txt``, lines ``class cx cy w h`` normalised
    to the visible image (its size is read from the file header). Class ids are resolved through a
    ``classes.txt`` (or ``classes.names`` / ``obj.names``; lines ``id name`` or just ``name``, the line
    number being the id) found in ``labels/<variant>/``, ``labels/`` or the root, or through
    ``yolo_classes=[names]``. An empty file is an image without objects.
  - ``voc``: ``labels/<variant>/NAME.xml``, ``labels/NAME.xml`` or ``Annotations/NAME.xml`` (Pascal VOC:
    ``object/name`` and ``object/bndbox`` in pixels).
  - ``coco``: a COCO json (``label_file=``, else the only COCO json in ``labels/<variant>/``, ``labels/``
    or the root): ``images[].file_name`` matched to the pairs by stem, ``annotations[].bbox`` (x, y, w, h
    pixels, scaled when ``images[].width/height`` differ from the visible image), ``categories`` by name.
    ``iscrowd`` boxes are left out (counted).
  ``variant`` selects a subfolder of ``labels/`` (msrs_det: ``fusion``, ``visible``, ``infrared``); by
  default ``labels/fusion/`` when it exists, else ``labels/`` itself.
- Classes: every label's class name goes through ``class_map`` first (``{"People": "person"}``; a value of
  None drops that class), then is looked up in ``class_names`` (the model's / trainer's class list); both
  lookups are case-insensitive (an exact match wins). No synonyms are guessed: a name that is not in the
  list is an error naming the file and the class (``unknown="ignore"`` drops those boxes, counted).
  ``class_names=None`` keeps the dataset's own list (classes.txt order, COCO category order, or the sorted
  VOC names).
- Missing labels: a pair without its label file (or without a COCO image entry) is an error
  (``missing="empty"`` reads it as an image without boxes, counted).
- Box checks: a malformed line or element (wrong field count, non-numeric value, class id that is not an
  integer) is always an error naming file and line. A box with a non-finite coordinate, zero or negative
  width/height, or nothing left inside the image after clipping is *invalid*: dropped and counted in
  ``counts["invalid_boxes"]`` (first examples in ``warnings``), or an error with ``invalid="error"``.
  Boxes reaching past the image border are clipped to it (counted in ``counts["clipped_boxes"]``).

Splits: ``block_split`` (contiguous blocks of names, see there): neighbouring frames of a driving sequence
are near-duplicates, so a random or hash split would put copies of validation frames into training.
"""
from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np

from .dataset_layout import clip_box, parse_voc_xml
from .image_conversions import read_image_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
LABEL_FORMATS = ("yolo", "voc", "coco")
IR_DIRS = ("ir", "infrared", "thermal", "lwir")
VI_DIRS = ("vi", "vis", "visible", "rgb", "color")
LABEL_DIRS = ("labels",)
VOC_DIRS = ("Annotations", "Annotation")
CLASS_FILES = ("classes.txt", "classes.names", "obj.names")
DEFAULT_VARIANT = "fusion"
SPLIT_NAMES = ("train", "heldout", "val")
_EXAMPLES = 5  # examples of dropped boxes kept in warnings


class LabelledPairsError(FileNotFoundError, ValueError):
    """A folder, label file or option that cannot be read as labelled pairs (message names the file)."""


@dataclass
class LabelledPair:
    """One registered IR/VI pair and its boxes (x1, y1, x2, y2 in the visible image's pixels)."""

    name: str
    ir_path: Path
    vi_path: Path
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # (N, 4) float32
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))  # (N,) int64 into class_names
    label_path: Path | None = None  # None: no label file (missing="empty") or COCO
    size: tuple[int, int] = (0, 0)  # visible image (height, width)


@dataclass
class LabelledFolder:
    """What ``read_labelled_pairs`` found: the pairs (sorted by name) and how their labels were read."""

    root: Path
    format: str  # yolo | voc | coco
    source: Path  # the label folder or COCO json
    variant: str | None
    class_names: tuple[str, ...]  # labels index into this list
    pairs: list[LabelledPair]
    counts: dict  # see read_labelled_pairs
    warnings: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)

    def select(self, names: Iterable[str]) -> list[LabelledPair]:
        """The pairs of these names, in the order given (an unknown name is a KeyError)."""
        index = {p.name: p for p in self.pairs}
        return [index[n] for n in names]

    def boxes_per_class(self, pairs: Sequence[LabelledPair] | None = None) -> dict[str, int]:
        counts = np.zeros(len(self.class_names), np.int64)
        for p in self.pairs if pairs is None else pairs:
            np.add.at(counts, p.labels, 1)
        return {n: int(c) for n, c in zip(self.class_names, counts)}


# -------------------------------------------------------------------------------------------- helpers
def natural_key(name: str) -> tuple:
    """Sort key that orders digit runs by value ('img2' < 'img10'); zero-padded names sort as strings do."""
    return tuple((0, int(t), t) if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t)


def _some(names, limit: int = 6) -> str:
    names = sorted(names, key=natural_key)
    more = f" ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def find_subdir(root: Path, names: Sequence[str]) -> Path | None:
    """The subfolder of root named like one of `names` (exact first, then case-insensitive)."""
    if not root.is_dir():
        return None
    entries = {p.name: p for p in root.iterdir() if p.is_dir()}
    for n in names:
        if n in entries:
            return entries[n]
    lower = {k.lower(): v for k, v in entries.items()}
    for n in names:
        if n.lower() in lower:
            return lower[n.lower()]
    return None


def image_files(folder: Path, error: type[Exception] = LabelledPairsError) -> dict[str, Path]:
    """stem -> image file of a folder (non-recursive); two images with one stem raise `error`."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            if p.stem in out:
                raise error(f"{folder}: two images named {p.stem!r} ({out[p.stem].name}, {p.name})")
            out[p.stem] = p
    return out


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file: from the PNG / JPEG / BMP header, else by decoding it."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                w, h = struct.unpack(">II", head[16:24])
                return int(h), int(w)
            if head[:2] == b"BM" and len(head) >= 26:
                w, h = struct.unpack("<ii", head[18:26])
                return abs(int(h)), int(w)
            if head[:2] == b"\xff\xd8":
                f.seek(2)
                size = _jpeg_size(f)
                if size is not None:
                    return size
    except OSError as exc:
        raise LabelledPairsError(f"cannot read image {path}: {exc}") from None
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise LabelledPairsError(f"cannot decode image {path}")
    return int(img.shape[0]), int(img.shape[1])


def _jpeg_size(f) -> tuple[int, int] | None:
    while True:
        byte = f.read(1)
        while byte and byte != b"\xff":
            byte = f.read(1)
        while byte == b"\xff":
            byte = f.read(1)
        if not byte:
            return None
        marker = byte[0]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            continue
        if marker == 0xD9:
            return None
        length = f.read(2)
        if len(length) < 2:
            return None
        seg = struct.unpack(">H", length)[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            data = f.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return int(h), int(w)
        f.seek(seg - 2, 1)


@dataclass
class ImagePairs:
    """The IR and visible images of one folder, matched by file stem (what ``find_image_pairs`` found)."""

    root: Path
    ir_root: Path
    vi_root: Path
    ir: dict[str, Path]  # stem -> file, every IR image
    vi: dict[str, Path]  # stem -> file, every visible image
    stems: list[str]  # the stems with both images, natural order
    unpaired: dict[str, str]  # stem -> which partner it lacks (left out with unpaired="skip")
    warnings: list[str] = field(default_factory=list)


def find_image_pairs(root: str | Path, *, unpaired: str = "error", ir_dir: str | Path | None = None,
                     vi_dir: str | Path | None = None, what: str = "image pairs folder",
                     expected: str = "ir/ and vi/") -> ImagePairs:
    """Match the images of ``root``'s IR and visible folders by stem (rules in the module docstring).

    LabelledPairsError naming the folder when ``root`` or an image folder is missing, when no stem has
    both images, or (unless ``unpaired="skip"``) when an image lacks its partner; ``what`` and ``expected``
    word those messages for the caller's kind of folder."""
    if unpaired not in ("error", "skip"):
        raise ValueError(f"unpaired must be one of error, skip, got {unpaired!r}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise LabelledPairsError(f"{what} {root} is not a folder (expected {expected})")

    def image_dir(override, names, role):
        if override is not None:
            p = Path(override).expanduser()
            p = p if p.is_absolute() else root / p
            if not p.is_dir():
                raise LabelledPairsError(f"{role} folder {p} not found")
            return p
        d = find_subdir(root, names)
        if d is None:
            raise LabelledPairsError(f"{root} has no {role} image folder (looked for {', '.join(n + '/' for n in names)}"
                                     f"); expected {expected}")
        return d

    ir_root, vi_root = image_dir(ir_dir, IR_DIRS, "infrared"), image_dir(vi_dir, VI_DIRS, "visible")
    ir, vi = image_files(ir_root), image_files(vi_root)
    only_ir, only_vi = set(ir) - set(vi), set(vi) - set(ir)
    left_out: dict[str, str] = {}
    warnings: list[str] = []
    if only_ir or only_vi:
        parts = []
        if only_ir:
            parts.append(f"IR images without a visible image in {vi_root}: {_some(only_ir)}")
        if only_vi:
            parts.append(f"visible images without an IR image in {ir_root}: {_some(only_vi)}")
        if unpaired != "skip":
            raise LabelledPairsError("; ".join(parts) + " (unpaired='skip' / --unpaired skip leaves them out)")
        left_out = {**{s: f"no visible image in {vi_root}" for s in only_ir},
                    **{s: f"no IR image in {ir_root}" for s in only_vi}}
        warnings.append("unpaired images left out: " + "; ".join(parts))
    stems = sorted(set(ir) & set(vi), key=natural_key)
    if not stems:
        raise LabelledPairsError(f"{root}: no IR/visible pairs ({len(ir)} images in {ir_root}, {len(vi)} in {vi_root})")
    return ImagePairs(root, ir_root, vi_root, ir, vi, stems, left_out, warnings)


def load_pair_images(pair: LabelledPair) -> tuple[np.ndarray, np.ndarray]:
    """(ir, rgb) as the engine takes them: IR H x W uint8 or uint16 (3/4-channel grey files reduced to one
    channel), visible H x W x 3 uint8 RGB (grey expanded). ValueError naming the file when unreadable or
    damaged (the decoders' own complaints go into the message, not onto stderr)."""
    ir = read_image_file(pair.ir_path, "infrared image")
    if ir.ndim == 3:
        ir = ir[..., 0] if ir.shape[2] == 1 else cv2.cvtColor(
            ir, cv2.COLOR_BGRA2GRAY if ir.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    if ir.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{pair.ir_path}: infrared image must be 8- or 16-bit, got {ir.dtype}")
    vi = read_image_file(pair.vi_path, "visible image")
    if vi.dtype != np.uint8:
        raise ValueError(f"{pair.vi_path}: visible image must be 8-bit, got {vi.dtype}")
    if vi.ndim == 2 or vi.shape[2] == 1:
        rgb = cv2.cvtColor(vi, cv2.COLOR_GRAY2RGB)
    else:
        rgb = cv2.cvtColor(vi, cv2.COLOR_BGRA2RGB if vi.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(ir), np.ascontiguousarray(rgb)


# -------------------------------------------------------------------------------------- classes
def read_class_file(path: str | Path) -> list[str]:
    """classes.txt -> names by id: lines ``id name`` (ids may come in any order) or just ``name`` (id =
    line number among the non-empty lines)."""
    path = Path(path)
    by_id: dict[int, str] = {}
    plain: list[str] = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) == 2 and re.fullmatch(r"\d+", parts[0]):
            if parts[0] and int(parts[0]) in by_id:
                raise LabelledPairsError(f"{path}:{n}: class id {parts[0]} listed twice")
            by_id[int(parts[0])] = parts[1].strip()
        else:
            plain.append(line)
    if by_id and plain:
        raise LabelledPairsError(f"{path}: mixes 'id name' lines with bare names; use one form")
    if plain:
        return plain
    if not by_id:
        raise LabelledPairsError(f"{path}: lists no classes")
    if sorted(by_id) != list(range(len(by_id))):
        raise LabelledPairsError(f"{path}: class ids must be 0..{len(by_id) - 1} without holes, got {sorted(by_id)}")
    return [by_id[i] for i in range(len(by_id))]


class _Classes:
    """Raw dataset class name -> index into the target class list (class_map first, case-insensitive)."""

    def __init__(self, class_names, class_map, unknown: str, counts: dict):
        self.fixed = class_names is not None
        self.names = [str(n) for n in class_names] if class_names is not None else []
        self.map = dict(class_map or {})
        self.map_lower = {str(k).lower(): v for k, v in self.map.items()}
        self.unknown = unknown
        self.counts = counts

    def _lookup(self, name: str) -> int | None:
        if name in self.names:
            return self.names.index(name)
        lower = [n.lower() for n in self.names]
        return lower.index(name.lower()) if name.lower() in lower else None

    def rename(self, raw: str) -> str | None:
        """class_map applied (exact key first, then case-insensitive); None: dropped."""
        if raw in self.map:
            return self.map[raw]
        if raw.lower() in self.map_lower:
            return self.map_lower[raw.lower()]
        return raw

    def __call__(self, raw: str, where: str) -> int | None:
        name = self.rename(raw)
        if name is None:
            self.counts["mapped_away_boxes"][raw] = self.counts["mapped_away_boxes"].get(raw, 0) + 1
            return None
        name = str(name)
        index = self._lookup(name)
        if index is None and not self.fixed:
            self.names.append(name)
            return len(self.names) - 1
        if index is None:
            if self.unknown == "ignore":
                self.counts["unknown_class_boxes"][raw] = self.counts["unknown_class_boxes"].get(raw, 0) + 1
                return None
            via = f" (class_map -> {name!r})" if name != raw else ""
            raise LabelledPairsError(
                f"{where}: class {raw!r}{via} is not in the class list ({', '.join(self.names)}); map it with "
                f"class_map ({raw}=NAME, or {raw}= to drop it) or set unknown classes to 'ignore'")
        return index


# ------------------------------------------------------------------------------------ label readers
# Each reader returns {stem: (path or None, [(raw class name, x1, y1, x2, y2, where)], (h, w) or None)} with
# boxes in pixels of the image the labels were made on (YOLO: already scaled to the visible image).


def _yolo_records(files: dict[str, Path], class_ids: list[str] | None, class_source: str, sizes) -> dict:
    out = {}
    for stem, path in files.items():
        boxes = []
        h, w = sizes(stem)
        for n, line in enumerate(path.read_text().splitlines(), 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            where = f"{path}:{n}"
            if len(parts) != 5:
                raise LabelledPairsError(f"{where}: expected 'class cx cy w h' (5 fields), got {len(parts)} fields")
            if not re.fullmatch(r"\d+", parts[0]):
                raise LabelledPairsError(f"{where}: class id {parts[0]!r} is not a non-negative integer")
            try:
                cx, cy, bw, bh = (float(v) for v in parts[1:])
            except ValueError:
                raise LabelledPairsError(f"{where}: non-numeric box {' '.join(parts[1:])!r}") from None
            cid = int(parts[0])
            if class_ids is None:
                raise LabelledPairsError(
                    f"{where}: YOLO class ids need a class list: no {' / '.join(CLASS_FILES)} found in {class_source}; "
                    "pass the names (yolo_classes / --yolo-classes)")
            raw = class_ids[cid] if cid < len(class_ids) else f"#{cid}"
            x1, x2 = (cx - bw / 2) * w, (cx + bw / 2) * w
            y1, y2 = (cy - bh / 2) * h, (cy + bh / 2) * h
            if cid >= len(class_ids):
                boxes.append((raw, x1, y1, x2, y2, f"{where} (class id {cid}, {len(class_ids)} classes listed)"))
            else:
                boxes.append((raw, x1, y1, x2, y2, where))
        out[stem] = (path, boxes, None)
    return out


def _voc_records(files: dict[str, Path]) -> dict:
    out = {}
    for stem, path in files.items():
        size, objects = parse_voc_xml(path, LabelledPairsError)
        out[stem] = (path, [(o.name, *o.box, o.where) for o in objects], size)
    return out


def _is_coco(path: Path) -> bool:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("images"), list) and isinstance(data.get("categories"), list)


def _coco_records(path: Path, counts: dict) -> tuple[dict, list[str]]:
    try:
        data = json.loads(path.read_text())
        images, categories = data["images"], data["categories"]
        annotations = data.get("annotations") or []
        cats = {c["id"]: str(c["name"]) for c in categories}
        ids = [img["id"] for img in images]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LabelledPairsError(f"cannot read COCO labels {path}: {exc!r}") from None
    out: dict[str, tuple] = {}
    stem_of = {}
    for image_id, img in zip(ids, images):
        stem = Path(str(img.get("file_name", ""))).stem
        if not stem:
            raise LabelledPairsError(f"{path}: image id {img.get('id')} has no file_name")
        if stem in out:
            raise LabelledPairsError(f"{path}: two images with the file name stem {stem!r}")
        size = None
        if img.get("width") and img.get("height"):
            size = (int(img["height"]), int(img["width"]))
        out[stem] = (None, [], size)
        stem_of[image_id] = stem
    for i, ann in enumerate(annotations):
        where = f"{path} annotation id {ann.get('id', i)}"
        if ann.get("image_id") not in stem_of:
            raise LabelledPairsError(f"{where}: image_id {ann.get('image_id')} is not in images")
        if ann.get("category_id") not in cats:
            raise LabelledPairsError(f"{where}: category_id {ann.get('category_id')} is not in categories")
        if ann.get("iscrowd"):
            counts["crowd_boxes"] += 1
            continue
        try:
            x, y, w, h = (float(v) for v in ann["bbox"])
        except (KeyError, TypeError, ValueError):
            raise LabelledPairsError(f"{where}: bbox must be [x, y, w, h] numbers, got {ann.get('bbox')!r}") from None
        out[stem_of[ann["image_id"]]][1].append((cats[ann["category_id"]], x, y, x + w, y + h, where))
    order = [cats[k] for k in sorted(cats)]
    return out, order


# ------------------------------------------------------------------------------------ finding labels
def _label_files(folder: Path, suffix: str) -> dict[str, Path]:
    files = {}
    if folder is None or not folder.is_dir():
        return files
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() == suffix and not p.name.startswith(".") \
                and p.name.lower() not in CLASS_FILES:
            files[p.stem] = p
    return files


def _find_labels(root: Path, fmt: str, variant: str | None, label_file) -> tuple[str, Path, str | None]:
    """-> (format, label folder or COCO json, variant used)."""
    if label_file is not None:
        path = Path(label_file).expanduser()
        if not path.is_absolute() and not path.exists():
            path = root / path
        if fmt not in ("auto", "coco"):
            raise LabelledPairsError(f"a label file is only used with COCO labels, not {fmt!r}")
        if not path.is_file():
            raise LabelledPairsError(f"COCO label file {path} not found")
        if not _is_coco(path):
            raise LabelledPairsError(f"{path} is not a COCO json (needs 'images' and 'categories' lists)")
        return "coco", path, None
    base = find_subdir(root, LABEL_DIRS)
    used_variant = None
    label_dir = base
    if variant:
        label_dir = find_subdir(base, (variant,)) if base is not None else None
        if label_dir is None:
            have = sorted(p.name for p in base.iterdir() if p.is_dir()) if base is not None else []
            raise LabelledPairsError(
                f"{root}: no labels/{variant}/ folder" + (f" (labels/ has: {', '.join(have)})" if have else
                                                          " (no labels/ folder)"))
        used_variant = label_dir.name
    elif base is not None and find_subdir(base, (DEFAULT_VARIANT,)) is not None:
        label_dir = find_subdir(base, (DEFAULT_VARIANT,))
        used_variant = label_dir.name
    looked = []
    found: dict[str, Path] = {}
    if fmt in ("auto", "yolo"):
        looked.append(f"{_rel(label_dir, root) if label_dir else 'labels'}/*.txt (YOLO)")
        if _label_files(label_dir, ".txt"):
            found["yolo"] = label_dir
    if fmt in ("auto", "voc"):
        voc_dirs = [label_dir] + ([] if variant else [find_subdir(root, VOC_DIRS)])
        looked.append(f"{_rel(label_dir, root) if label_dir else 'labels'}/*.xml"
                      + ("" if variant else " or Annotations/*.xml") + " (VOC)")
        for d in voc_dirs:
            if d is not None and _label_files(d, ".xml"):
                found["voc"] = d
                break
    if fmt in ("auto", "coco"):
        dirs = [d for d in dict.fromkeys((label_dir, base, root)) if d is not None]
        jsons = [p for d in dirs for p in sorted(d.glob("*.json")) if p.is_file() and _is_coco(p)]
        looked.append("a COCO *.json in " + ", ".join(f"{_rel(d, root)}/" for d in dirs))
        if len(jsons) == 1:
            found["coco"] = jsons[0]
        elif len(jsons) > 1:
            if fmt == "coco" or not found:
                raise LabelledPairsError(f"{root}: several COCO json files ({', '.join(str(p) for p in jsons)}); "
                                         "choose one with label_file / --label-file")
    if not found:
        raise LabelledPairsError(f"{root}: no {'labels' if fmt == 'auto' else fmt.upper() + ' labels'} found; "
                                 f"looked for {'; '.join(looked)}")
    if len(found) > 1:
        both = ", ".join(f"{k}: {v}" for k, v in found.items())
        raise LabelledPairsError(f"{root}: labels in more than one format ({both}); choose one with labels= / --labels")
    fmt_found, where = next(iter(found.items()))
    in_variant = label_dir is not None and (where == label_dir or where.parent == label_dir)
    return fmt_found, where, used_variant if in_variant else None


def _rel(path: Path | None, root: Path) -> str:
    if path is None:
        return "?"
    try:
        rel = path.relative_to(root)
        return str(rel) if str(rel) != "." else "."
    except ValueError:
        return str(path)


def _class_file(dirs: Iterable[Path | None]) -> Path | None:
    for d in dirs:
        if d is None or not d.is_dir():
            continue
        for name in CLASS_FILES:
            p = d / name
            if p.is_file():
                return p
    return None


# -------------------------------------------------------------------------------------------- reading
def read_labelled_pairs(
    root: str | Path,
    class_names: Sequence[str] | None = None,
    *,
    labels: str = "auto",
    variant: str | None = None,
    class_map: Mapping[str, str | None] | None = None,
    unknown: str = "error",
    missing: str = "error",
    unpaired: str = "error",
    invalid: str = "drop",
    label_file: str | Path | None = None,
    yolo_classes: Sequence[str] | None = None,
    ir_dir: str | Path | None = None,
    vi_dir: str | Path | None = None,
) -> LabelledFolder:
    """Read every pair of a labelled folder (rules in the module docstring).

    class_names: the class list the labels are mapped into (the model's / trainer's); None keeps the
    dataset's own. labels: auto | yolo | voc | coco. unknown: error | ignore. missing: error | empty.
    unpaired: error | skip. invalid: drop | error. Returns a LabelledFolder whose ``counts`` hold: pairs,
    boxes, boxes_per_class, invalid_boxes, clipped_boxes, unknown_class_boxes {raw name: n},
    mapped_away_boxes {raw name: n}, crowd_boxes, missing_labels, unpaired_skipped, orphan_labels,
    rescaled_images (COCO sizes that differ from the visible image).
    """
    for key, value, allowed in (("labels", labels, ("auto",) + LABEL_FORMATS), ("unknown", unknown, ("error", "ignore")),
                                ("missing", missing, ("error", "empty")), ("unpaired", unpaired, ("error", "skip")),
                                ("invalid", invalid, ("drop", "error"))):
        if value not in allowed:
            raise ValueError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    found = find_image_pairs(root, unpaired=unpaired, ir_dir=ir_dir, vi_dir=vi_dir, what="labelled pairs folder",
                             expected="ir/, vi/ and labels")
    root, ir, vi, stems = found.root, found.ir, found.vi, found.stems
    counts = {"pairs": 0, "boxes": 0, "boxes_per_class": {}, "invalid_boxes": 0, "clipped_boxes": 0,
              "unknown_class_boxes": {}, "mapped_away_boxes": {}, "crowd_boxes": 0, "missing_labels": 0,
              "unpaired_skipped": len(found.unpaired), "orphan_labels": 0, "rescaled_images": 0}
    warnings: list[str] = list(found.warnings)

    fmt, source, used_variant = _find_labels(root, labels, variant, label_file)
    size_cache: dict[str, tuple[int, int]] = {}

    def vi_size(stem: str) -> tuple[int, int]:
        if stem not in size_cache:
            size_cache[stem] = image_size(vi[stem])
        return size_cache[stem]

    dataset_classes = None
    if fmt == "yolo":
        files = _label_files(source, ".txt")
        class_src = [source, source.parent if source.parent != root else None, root]
        if yolo_classes is not None:
            dataset_classes = [str(n) for n in yolo_classes]
        else:
            cf = _class_file(class_src)
            dataset_classes = read_class_file(cf) if cf is not None else None
        where = ", ".join(str(d) for d in dict.fromkeys(d for d in class_src if d is not None))
        records = _yolo_records({s: p for s, p in files.items() if s in vi}, dataset_classes, where, vi_size)
        orphans = set(files) - set(vi)
    elif fmt == "voc":
        files = _label_files(source, ".xml")
        records = _voc_records({s: p for s, p in files.items() if s in vi})
        orphans = set(files) - set(vi)
    else:
        records, dataset_classes = _coco_records(source, counts)
        orphans = set(records) - set(vi)
    if orphans:
        counts["orphan_labels"] = len(orphans)
        warnings.append(f"{len(orphans)} label entries have no image pair (ignored): {_some(orphans)}")

    missing_stems = [s for s in stems if s not in records]
    if missing_stems:
        if missing != "empty":
            what = f"no entry in {source}" if fmt == "coco" else f"no label file in {source}"
            raise LabelledPairsError(f"{len(missing_stems)} pairs have {what}: {_some(missing_stems)} "
                                     "(missing='empty' / --missing-labels empty reads them as images without boxes)")
        counts["missing_labels"] = len(missing_stems)
        warnings.append(f"{len(missing_stems)} pairs without labels read as images without boxes: {_some(missing_stems)}")

    if class_names is not None:
        resolve = _Classes(class_names, class_map, unknown, counts)
    elif fmt != "voc":  # the dataset's own list: classes.txt / COCO categories
        resolve = _Classes(dataset_classes, class_map, unknown, counts)
    else:  # VOC has no class list: the names used, after class_map, sorted
        resolve = _Classes([], class_map, unknown, counts)
        mapped = {resolve.rename(b[0]) for _, bs, _ in records.values() for b in bs}
        resolve.names = sorted(dict.fromkeys(str(n) for n in mapped if n is not None), key=str.lower)
    invalid_examples: list[str] = []
    pairs = []
    for stem in stems:
        path, raw_boxes, label_size = records.get(stem, (None, [], None))
        h, w = vi_size(stem)
        sy = sx = 1.0
        if fmt == "coco" and label_size is not None and label_size != (h, w):
            sy, sx = h / label_size[0], w / label_size[1]
            counts["rescaled_images"] += 1
        boxes, labs = [], []
        for raw, x1, y1, x2, y2, where in raw_boxes:
            label = resolve(raw, where)
            if label is None:
                continue
            x1, x2, y1, y2 = x1 * sx, x2 * sx, y1 * sy, y2 * sy
            box, bad = clip_box((x1, y1, x2, y2), w, h)
            if box is not None and box != (x1, y1, x2, y2):
                counts["clipped_boxes"] += 1
            if box is None:
                message = f"{where}: invalid box {raw} ({x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}): {bad}"
                if invalid == "error":
                    raise LabelledPairsError(message + " (invalid='drop' / --invalid-boxes drop drops such boxes)")
                counts["invalid_boxes"] += 1
                if len(invalid_examples) < _EXAMPLES:
                    invalid_examples.append(message)
                continue
            boxes.append(box)
            labs.append(label)
        pairs.append(LabelledPair(stem, ir[stem], vi[stem], np.asarray(boxes, np.float32).reshape(-1, 4),
                                  np.asarray(labs, np.int64), path, (h, w)))
    if counts["invalid_boxes"]:
        warnings.append(f"{counts['invalid_boxes']} invalid boxes dropped, e.g. " + "; ".join(invalid_examples))
    if counts["unknown_class_boxes"]:
        warnings.append(f"boxes of classes not in the class list dropped: {counts['unknown_class_boxes']}")
    if counts["crowd_boxes"]:
        warnings.append(f"{counts['crowd_boxes']} COCO iscrowd boxes left out")
    folder = LabelledFolder(root, fmt, source, used_variant, tuple(resolve.names), pairs, counts, warnings)
    counts["pairs"] = len(pairs)
    counts["boxes"] = int(sum(len(p.labels) for p in pairs))
    counts["boxes_per_class"] = folder.boxes_per_class()
    return folder


# ---------------------------------------------------------------------------------------------- splits
def block_split(names: Iterable[str], val_fraction: float = 0.2, heldout_fraction: float = 0.1, block: int = 16,
                gap: int = 1) -> dict[str, list[str]]:
    """Split sample names into train / heldout / val by contiguous blocks, so near-duplicate neighbours stay
    on one side.

    1. The names are sorted (``natural_key``: 'img2' < 'img10'; zero-padded frame numbers sort as strings).
    2. They are cut into ``ceil(N / block)`` contiguous blocks of equal size (+-1, never more than ``block``).
    3. ``round(val_fraction * blocks)`` blocks go to val and ``round(heldout_fraction * blocks)`` to heldout
       (at least one each when the fraction is > 0), spread evenly over the sequence: the k-th val block
       sits near position (k + 0.75) / n_val of it, the k-th heldout block near (k + 0.25) / n_heldout (the
       nearest free block when two land on one) -- the rule of the bag kind's time blocks. The rest is train
       (at least one block, else ValueError naming ``block``).
    4. Where two neighbouring blocks belong to different splits, the ``gap`` names of the lower-ranked one
       (val > heldout > train) next to the border are left out (returned under ``"gap"``), so no frame of
       a split has its immediate neighbour in another; val blocks stay whole.

    Deterministic: the same names (in any order) give the same split. Returns {"train": [...], "heldout":
    [...], "val": [...], "gap": [...]} (each sorted); the four lists partition the names.
    """
    order = sorted(dict.fromkeys(str(n) for n in names), key=natural_key)
    block, gap = int(block), int(gap)
    if block < 1 or gap < 0:
        raise ValueError(f"block must be >= 1 and gap >= 0, got block {block}, gap {gap}")
    if not (0 <= val_fraction < 1 and 0 <= heldout_fraction < 1 and val_fraction + heldout_fraction < 1):
        raise ValueError(f"val_fraction ({val_fraction}) and heldout_fraction ({heldout_fraction}) must be in [0, 1) "
                         "and sum to less than 1")
    n_names = len(order)
    out: dict[str, list[str]] = {"train": [], "heldout": [], "val": [], "gap": []}
    if not n_names:
        return out
    n = math.ceil(n_names / block)
    starts = [(i * n_names) // n for i in range(n + 1)]
    want = {"val": val_fraction, "heldout": heldout_fraction}
    count = {k: (max(1, int(f * n + 0.5)) if f > 0 else 0) for k, f in want.items()}
    if n - count["val"] - count["heldout"] < 1:
        raise ValueError(f"{n_names} names make {n} block(s) of at most {block}: too few for train, heldout and val "
                         f"blocks (need {count['val'] + count['heldout'] + 1}); lower block (--block) or the fractions")
    min_size = min(starts[i + 1] - starts[i] for i in range(n))
    if gap and 2 * gap >= min_size:
        raise ValueError(f"gap {gap} would empty blocks of {min_size} names; use a larger block or a smaller gap")
    assign = ["train"] * n
    for split, offset in (("val", 0.75), ("heldout", 0.25)):
        for k in range(count[split]):
            pos = min(int((k + offset) * n / count[split]), n - 1)
            for d in sorted(range(-n, n), key=lambda v: (abs(v), v)):
                if 0 <= pos + d < n and assign[pos + d] == "train":
                    assign[pos + d] = split
                    break
    rank = {"train": 0, "heldout": 1, "val": 2}
    which: list[str] = []
    for i in range(n):
        which += [assign[i]] * (starts[i + 1] - starts[i])
    final = list(which)
    if gap:
        for i in range(n - 1):
            a, b = assign[i], assign[i + 1]
            if a == b:
                continue
            border = starts[i + 1]
            if rank[a] < rank[b]:  # the left block loses its last `gap` names
                for j in range(border - gap, border):
                    final[j] = "gap"
            else:
                for j in range(border, border + gap):
                    final[j] = "gap"
    for name, split in zip(order, final):
        out[split].append(name)
    return out


def select_split(names: Iterable[str], split: str, **block_options) -> list[str]:
    """The names of one split: ``all`` (every name, sorted) or train / heldout / val of ``block_split``."""
    if split == "all":
        return sorted(dict.fromkeys(str(n) for n in names), key=natural_key)
    if split not in SPLIT_NAMES:
        raise ValueError(f"split must be all, {', '.join(SPLIT_NAMES)}, got {split!r}")
    return block_split(names, **block_options)[split]


# --------------------------------------------------------------------------------------------- subsets
def parse_subset(text: str) -> tuple[str, str]:
    """'day=D$' -> ('day', 'D$'), the regex checked."""
    if "=" not in text:
        raise ValueError(f"expected NAME=REGEX, got {text!r}")
    name, pattern = (s.strip() for s in text.split("=", 1))
    if not name:
        raise ValueError(f"subset without a name in {text!r}")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"subset {name}: bad regular expression {pattern!r} ({exc})") from None
    return name, pattern


def subset_of(name: str, patterns: Mapping[str, str]) -> list[str]:
    """The subsets (keys of ``patterns``) whose regex matches somewhere in ``name`` (re.search)."""
    return [key for key, pattern in patterns.items() if re.search(pattern, name)]


def subsets(names: Iterable[str], patterns: Mapping[str, str]) -> dict[str, list[str]]:
    """{subset: the names whose regex ``re.search``-matches}, e.g. {"day": "D$", "night": "N$"} on msrs_det
    names like 00004N / 01551D. A name may fall in several subsets or in none; order is kept."""
    compiled = {k: re.compile(p) for k, p in patterns.items()}
    names = list(names)
    return {k: [n for n in names if rx.search(n)] for k, rx in compiled.items()}
