"""Real thermal+RGB datasets read from disk into the trainer's sample dicts (see training/data.py).

``build_dataset`` (training/data.py) dispatches here for every ``data: kind:`` other than ``synthetic``.
Each kind has one folder layout under ``data: root:``:

| kind | folders under `root` | labels | splits |
| --- | --- | --- | --- |
| `layout` | `ir/`, `vi/`, optional `labels/*.xml`, `masks/*.png`, `meta.json` (fusion_ros/dataset_layout.py), at the root or in `train/`, `val/` (or `test/`), optional `heldout/` subfolders | VOC boxes and/or masks, per sample | the subfolders if present, else hash |
| `m3fd` | `Ir/`, `Vis/`, `Annotation/*.xml` (M3FD_Detection: 4,200 PNG pairs, 1024x768) | VOC boxes: People, Car, Bus, Motorcycle, Lamp, Truck | none: hash |
| `llvip` | `infrared/{train,test}/`, `visible/{train,test}/`, `Annotations/*.xml` (one folder for both) | VOC boxes: person | `train/` -> train + heldout, `test/` -> val (and test) |
| `msrs` | `{train,test}/{ir,vi,Label}/` (`Label/*.png`: uint8 class ids) | masks, 9 classes | `train/` -> train + heldout, `test/` -> val (and test) |
| `fmb` | `{train,test}/{Infrared,Visible,Label}/` | masks, 15 classes | as msrs |
| `mfnet` | `images/*.png` (4 channels: RGB + thermal), `labels/*.png`, `train.txt`, `val.txt`, `test.txt` (names without suffix) | masks, 9 classes | `train.txt` -> train + heldout, `val.txt` -> val, `test.txt` -> test |
| `folder` | `ir/`, `vi/` (e.g. RoadScene, TNO) | none: fusion loss only | hash |
| `pairs` | `ir/`, `vi/`, labels: `labels/[<variant>/]NAME.txt` + `classes.txt` (YOLO), `labels/*.xml` or `Annotations/*.xml` (VOC) or a COCO json (e.g. ../shared/data/msrs_det); keys and rules in training/labelled_folders.py | boxes, mapped by name into `classes:` | contiguous name blocks (`split: {block, gap, val_fraction, heldout_fraction}`); `test` = all pairs |
| `bag` | `root:` one rosbag2 recording (folder or .mcap/.db3) or a list of them; pairs cached in our layout (below) | ground-truth topics, else pseudo-labels, else none | by time blocks (below) |

Common rules
- Pairs are matched by file stem (``ir/00001.png`` <-> ``vi/00001.jpg``); images may be PNG, JPEG, BMP or
  TIFF. An IR image without a visible one (or the reverse) is an error naming them (``unpaired: skip``
  drops them instead). Folder names are matched case-insensitively, with the aliases in ``_ALIASES``
  (e.g. MSRS ``Label`` or ``Segmentation_labels``); ``folders: {ir: .., vi: .., labels: ..}`` overrides them.
- Infrared: 8-bit (counts / 255) unless the file is a 16-bit PNG/TIFF, which is normalised with
  ``thermal_range`` (as the synthetic data). A 3- or 4-channel IR file (grey stored as colour, e.g.
  RoadScene, TNO, LLVIP) is reduced to one channel. Visible: 8-bit, grey expanded to RGB.
- Sizes differ between datasets and pairs, and a batch needs one size, so every pair is resized to the
  config's ``height`` x ``width`` (the size the trained model is exported at); ``resize:`` chooses how:
  ``stretch`` (default; each axis scaled, aspect may change), ``cover`` (keep aspect, scale until the
  frame is covered, centre-crop; boxes cut to under 1 px are dropped) or ``none`` (native size; only for
  datasets of one size or with a ``crop`` no larger than the smallest image). IR and visible are resized
  separately (pairs of different sizes are taken as registered up to scale); boxes and masks live in the
  visible frame; masks are resized nearest-neighbour. Random crop/flip (``crop``, ``hflip``) follow as for
  synthetic data, on train and heldout only.
- Detection labels (VOC XML): class names are looked up in the detection class list; ``class_map`` renames
  first (``{People: person}``; ``null`` drops a class); an unknown name is an error naming the file unless
  ``unknown_classes: ignore``. A pair without its XML is an error (``missing_labels: empty`` reads it as an
  image without boxes; the ``layout`` kind always does, as that layout makes labels optional). All XML is
  parsed when the dataset is built, so a bad file fails at start-up, not hours into training.
- Segmentation masks are class ids into the segmentation class list; ``ignore_ids: [..]`` maps ids to 255
  (no label, skipped by the loss); an id >= the number of classes is an error naming the file. Kinds
  without masks give ``mask None``; kinds without boxes give zero boxes.

Splits: ``train`` (lower level), ``heldout`` (the upper level's F_i batches) and ``val``. Kinds with their own
split use it; the held-out part is always carved out of the *training* split, so it never overlaps train
and the val/test data stay untouched. Otherwise every name goes to one split by a stable hash
(sha1 of ``split_salt + name``): ``val`` with probability ``val_fraction`` (0.1), ``heldout`` with
``heldout_fraction`` (0.1), else ``train`` -- a pair keeps its split when files are added or removed.
With an own split, ``heldout`` is ``heldout_fraction`` of the training split (same hash) and
``val_fraction`` is unused; ``test`` is available where the dataset has one.
``split_lists: {train: a.txt, heldout: b.txt, val: c.txt}`` (one name per line) overrides both.
``exclude: names.txt`` leaves the listed pairs out of every split (test pairs kept for measuring only).
An empty split is an error.

kind: bag (rosbag2 recordings; retraining a deployed model from them): training/bag_datasets.py.

Class lists: ``data: classes:`` (a class YAML), else the kind's default ``config/classes_<kind>.yaml``
(``layout``, ``folder`` and ``pairs``: the package's ``config/classes.yaml``). The trainer must use the same list:
pass it to ``build_dataset(..., classes=...)``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from fusion_ros.classes import ClassConfig, load_classes
from fusion_ros.dataset_layout import read_voc_xml
from fusion_ros.labelled_pairs import IMAGE_SUFFIXES, find_subdir, image_files
from fusion_ros.paths import config_path
from fusion_ros.segmentation_labels import NONE, REAL, SYNTHETIC
from fusion_ros.synthetic import GENERATOR
from training.labelled_folders import pairs_records  # kind: pairs
from training.records import DatasetLayoutError, Record
from training.samples import NO_LABEL, to_sample

KINDS = ("layout", "m3fd", "llvip", "msrs", "fmb", "mfnet", "folder", "pairs", "bag")
SPLITS = ("train", "heldout", "val", "test")
RESIZE_MODES = ("stretch", "cover", "none")
DEFAULT_CLASS_FILES = {"m3fd": "classes_m3fd.yaml", "llvip": "classes_llvip.yaml", "msrs": "classes_msrs.yaml",
                       "fmb": "classes_fmb.yaml", "mfnet": "classes_mfnet.yaml"}

# Accepted folder names per role (matched case-insensitively), first = the documented one.
_ALIASES = {
    "layout": {"ir": ("ir",), "vi": ("vi",), "labels": ("labels",), "masks": ("masks",)},
    "m3fd": {"ir": ("Ir", "infrared"), "vi": ("Vis", "vi", "visible"), "labels": ("Annotation", "Annotations")},
    "llvip": {"ir": ("infrared",), "vi": ("visible",), "labels": ("Annotations", "Annotation")},
    "msrs": {"ir": ("ir", "Infrared"), "vi": ("vi", "vis", "Visible"),
             "labels": ("Label", "Labels", "Segmentation_labels")},
    "fmb": {"ir": ("Infrared", "ir"), "vi": ("Visible", "vi"), "labels": ("Label", "Labels")},
    "mfnet": {"images": ("images",), "labels": ("labels",)},
    "folder": {"ir": ("ir",), "vi": ("vi",)},
}
_EXPECTED = {
    "layout": "ir/, vi/ [labels/, masks/, meta.json], at the root or in train/, val/ (or test/) [heldout/] subfolders",
    "m3fd": "Ir/, Vis/, Annotation/",
    "llvip": "infrared/{train,test}/, visible/{train,test}/, Annotations/",
    "msrs": "train/{ir,vi,Label}/ and test/{ir,vi,Label}/",
    "fmb": "train/{Infrared,Visible,Label}/ and test/{Infrared,Visible,Label}/",
    "mfnet": "images/, labels/, train.txt, val.txt, test.txt",
    "folder": "ir/, vi/",
    "pairs": "ir/, vi/ and box labels (YOLO labels/*.txt + classes.txt, VOC xml or COCO json)",
}

_TITLE = {"layout": "dataset", "m3fd": "M3FD", "llvip": "LLVIP", "msrs": "MSRS", "fmb": "FMB", "mfnet": "MFNet",
          "folder": "image folder", "pairs": "labelled pairs folder"}


@dataclass
class ReadOptions:
    height: int | None
    width: int | None
    resize: str
    thermal_range: tuple
    num_seg_classes: int
    mask_lut: np.ndarray | None  # (256,) id remap (ignore_ids -> 255; layout: meta names -> our ids)


# --------------------------------------------------------------------------------------------- helpers


def _child(root: Path, kind: str, role: str, overrides: dict, required: bool = True) -> Path | None:
    """The subfolder of root playing `role`, by configured name or alias (case-insensitive)."""
    names = (overrides[role],) if role in overrides else _ALIASES[kind][role]
    found = find_subdir(root, names)
    if found is not None or not required:
        return found
    raise DatasetLayoutError(f"{_TITLE[kind]} root {root} has no '{names[0]}' folder; expected {_EXPECTED[kind]}")



def _images(folder: Path) -> dict[str, Path]:
    """stem -> image file of a folder (non-recursive); two images with one stem is a layout error."""
    return image_files(folder, DatasetLayoutError)


def _some(names, limit: int = 8) -> str:
    names = sorted(names)
    more = f" ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _pair(ir_dir: Path, vi_dir: Path, unpaired: str) -> list[tuple[str, Path, Path]]:
    ir, vi = _images(ir_dir), _images(vi_dir)
    only_ir, only_vi = set(ir) - set(vi), set(vi) - set(ir)
    if (only_ir or only_vi) and unpaired != "skip":
        parts = []
        if only_ir:
            parts.append(f"IR images without a visible image in {vi_dir}: {_some(only_ir)}")
        if only_vi:
            parts.append(f"visible images without an IR image in {ir_dir}: {_some(only_vi)}")
        raise DatasetLayoutError("; ".join(parts) + " (set unpaired: skip to drop them)")
    return [(n, ir[n], vi[n]) for n in sorted(set(ir) & set(vi))]


def _masks_for(pairs, label_dir: Path) -> dict[str, Path]:
    masks = _images(label_dir)
    missing = [n for n, _, _ in pairs if n not in masks]
    if missing:
        raise DatasetLayoutError(f"{label_dir}: no label PNG for {_some(missing)}")
    return masks


class _VocReader:
    def __init__(self, cfg: dict, det_names, optional: bool):
        self.names = list(det_names)
        self.class_map = cfg.get("class_map")
        unknown = cfg.get("unknown_classes", "error")
        if unknown not in ("error", "ignore"):
            raise ValueError(f"data.unknown_classes must be 'error' or 'ignore', got {unknown!r}")
        self.skip_unknown = unknown == "ignore"
        missing = cfg.get("missing_labels", "error")
        if missing not in ("error", "empty"):
            raise ValueError(f"data.missing_labels must be 'error' or 'empty', got {missing!r}")
        self.optional = optional or missing == "empty"

    def read_all(self, records: list[Record], label_dir: Path | None) -> None:
        missing = []
        for r in records:
            path = None if label_dir is None else label_dir / f"{r.name}.xml"
            if path is None or not path.is_file():
                missing.append(r.name)
                continue
            r.boxes, r.labels = read_voc_xml(path, self.names, self.class_map, self.skip_unknown)
        if missing and not self.optional:
            raise DatasetLayoutError(
                f"{label_dir}: no VOC XML for {_some(missing)} (set missing_labels: empty to read them as "
                "images without boxes)")


def _read_list(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetLayoutError(f"split list {path} not found")
    names = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name = line.split()[0]
            names.append(Path(name).stem if Path(name).suffix.lower() in IMAGE_SUFFIXES else name)
    return names


def split_of(name: str, heldout_fraction: float, val_fraction: float, salt: str = "") -> str:
    """Stable hash split of one name: 'val', 'heldout' or 'train'."""
    u = int.from_bytes(hashlib.sha1(f"{salt}{name}".encode()).digest()[:8], "big") / 2.0**64
    if u < val_fraction:
        return "val"
    if u < val_fraction + heldout_fraction:
        return "heldout"
    return "train"


# ----------------------------------------------------------------------------------------- the kinds
# Each returns {group: [Record]}: group "all" (no own split) or "train"/"val"/"test"/"heldout".


def _folder_records(root: Path, kind: str, cfg: dict, voc: _VocReader | None, label_role: str | None):
    """ir/ + vi/ (+ label folder) directly under root."""
    over = cfg.get("folders") or {}
    ir_dir, vi_dir = _child(root, kind, "ir", over), _child(root, kind, "vi", over)
    pairs = _pair(ir_dir, vi_dir, cfg.get("unpaired", "error"))
    records = [Record(n, ir, vi) for n, ir, vi in pairs]
    if label_role == "xml":
        voc.read_all(records, _child(root, kind, "labels", over, required=not voc.optional))
    elif label_role == "mask":
        masks = _masks_for(pairs, _child(root, kind, "labels", over))
        for r in records:
            r.mask = masks[r.name]
    return records


def _records_layout(root: Path, cfg: dict, classes: ClassConfig):
    voc = _VocReader(cfg, classes.detection.names, optional=True)

    def one(folder: Path) -> list[Record]:
        over = cfg.get("folders") or {}
        records = _folder_records(folder, "layout", cfg, None, None)
        label_dir = _child(folder, "layout", "labels", over, required=False)
        voc.read_all(records, label_dir)
        mask_dir = _child(folder, "layout", "masks", over, required=False)
        if mask_dir is not None:
            masks = _images(mask_dir)
            for r in records:
                r.mask = masks.get(r.name)
        return records

    if _child(root, "layout", "ir", cfg.get("folders") or {}, required=False) is not None:
        return {"all": one(root)}
    groups = {s: one(root / s) for s in SPLITS if (root / s).is_dir()}
    if "train" not in groups or not ({"val", "test"} & set(groups)):
        raise DatasetLayoutError(f"dataset root {root} has no 'ir' folder and no train/ + val/ (or test/) "
                                 f"split folders; expected {_EXPECTED['layout']}")
    return groups


def _records_m3fd(root: Path, cfg: dict, classes: ClassConfig):
    return {"all": _folder_records(root, "m3fd", cfg, _VocReader(cfg, classes.detection.names, False), "xml")}


def _records_folder(root: Path, cfg: dict, classes: ClassConfig):
    return {"all": _folder_records(root, "folder", cfg, None, None)}


def _records_llvip(root: Path, cfg: dict, classes: ClassConfig):
    over = cfg.get("folders") or {}
    voc = _VocReader(cfg, classes.detection.names, False)
    ir_root, vi_root = _child(root, "llvip", "ir", over), _child(root, "llvip", "vi", over)
    label_dir = _child(root, "llvip", "labels", over, required=not voc.optional)
    groups = {}
    for split in ("train", "test"):
        for d in (ir_root, vi_root):
            if not (d / split).is_dir():
                raise DatasetLayoutError(f"LLVIP root {root} has no '{d.name}/{split}' folder; "
                                         f"expected {_EXPECTED['llvip']}")
        pairs = _pair(ir_root / split, vi_root / split, cfg.get("unpaired", "error"))
        groups[split] = [Record(n, ir, vi) for n, ir, vi in pairs]
        voc.read_all(groups[split], label_dir)
    return groups


def _split_folder_records(kind: str):
    def records(root: Path, cfg: dict, classes: ClassConfig):
        groups = {}
        for split in ("train", "test"):
            if not (root / split).is_dir():
                raise DatasetLayoutError(f"{_TITLE[kind]} root {root} has no '{split}' folder; "
                                         f"expected {_EXPECTED[kind]}")
            groups[split] = _folder_records(root / split, kind, cfg, None, "mask")
        return groups

    return records


def _records_mfnet(root: Path, cfg: dict, classes: ClassConfig):
    over = cfg.get("folders") or {}
    image_dir, label_dir = _child(root, "mfnet", "images", over), _child(root, "mfnet", "labels", over)
    images, labels = _images(image_dir), _images(label_dir)
    groups = {}
    for split, file in (("train", "train.txt"), ("val", "val.txt"), ("test", "test.txt")):
        path = root / file
        if not path.is_file():
            if split == "test":
                continue
            raise DatasetLayoutError(f"MFNet root {root} has no '{file}'; expected {_EXPECTED['mfnet']}")
        names = _read_list(path)
        no_image = [n for n in names if n not in images]
        if no_image:
            raise DatasetLayoutError(f"{path} lists names with no image in {image_dir}: {_some(no_image)}")
        no_label = [n for n in names if n not in labels]
        if no_label:
            raise DatasetLayoutError(f"{path} lists names with no label PNG in {label_dir}: {_some(no_label)}")
        groups[split] = [Record(n, images[n], None, labels[n]) for n in names]
    return groups


_RECORDS = {
    "layout": _records_layout, "m3fd": _records_m3fd, "llvip": _records_llvip, "msrs": _split_folder_records("msrs"),
    "fmb": _split_folder_records("fmb"), "mfnet": _records_mfnet, "folder": _records_folder, "pairs": pairs_records,
}


# ------------------------------------------------------------------------------------------- splits


def resize_mode(cfg: dict) -> str:
    """data.resize, validated together with the target size it needs."""
    resize = cfg.get("resize", "stretch")
    if resize not in RESIZE_MODES:
        raise ValueError(f"data.resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    height, width = cfg.get("height"), cfg.get("width")
    if resize != "none" and not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
        raise ValueError(f"data.height and data.width (positive integers) are required with resize: {resize}")
    return resize


def split_fractions(cfg: dict) -> tuple[float, float]:
    """(heldout_fraction, val_fraction) of a data config, validated."""
    heldout_fraction = float(cfg.get("heldout_fraction", 0.1))
    val_fraction = float(cfg.get("val_fraction", 0.1))
    if not (0 <= heldout_fraction < 1 and 0 <= val_fraction < 1 and heldout_fraction + val_fraction < 1):
        raise ValueError(f"data.heldout_fraction ({heldout_fraction}) and val_fraction ({val_fraction}) must be "
                         "in [0, 1) and sum to less than 1")
    return heldout_fraction, val_fraction


def exclude_records(groups: dict[str, list[Record]], exclude, root: Path) -> dict[str, list[Record]]:
    """``groups`` without the pairs named in ``data.exclude`` (a names file, one a line, e.g.
    roadscene_all/test50.txt: pairs kept for measuring only, never to be trained on). A listed name that is
    not a pair of ``root`` is an error: a misspelt list must not let a test pair through."""
    if not exclude:
        return groups
    path = Path(exclude).expanduser()
    names = set(_read_list(path))
    present = {r.name for records in groups.values() for r in records}
    missing = names - present
    if missing:
        raise DatasetLayoutError(f"data.exclude {path} names pairs that are not under {root}: {_some(missing)}")
    return {group: [r for r in records if r.name not in names] for group, records in groups.items()}


def assign_split(groups: dict[str, list[Record]], split: str, cfg: dict, root: Path) -> list[Record]:
    """The records of one split (see the module docstring)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    heldout_fraction, val_fraction = split_fractions(cfg)
    salt = str(cfg.get("split_salt", ""))
    lists = cfg.get("split_lists")
    if lists:
        pool: dict[str, Record] = {}
        for records in groups.values():
            for r in records:
                if r.name in pool:
                    raise DatasetLayoutError(f"{root}: name {r.name!r} occurs twice; split_lists need unique names")
                pool[r.name] = r
        if split not in lists:
            raise ValueError(f"data.split_lists has no {split!r} list (has: {', '.join(lists)})")
        if "train" in lists and "heldout" in lists:
            both = set(_read_list(Path(lists["train"]))) & set(_read_list(Path(lists["heldout"])))
            if both:
                raise ValueError(f"data.split_lists: train and heldout share {_some(both)}; they must be disjoint")
        names = _read_list(Path(lists[split]))
        unknown = [n for n in names if n not in pool]
        if unknown:
            raise DatasetLayoutError(f"{lists[split]} lists names that are not pairs under {root}: {_some(unknown)}")
        chosen = [pool[n] for n in names]
    elif "all" in groups:
        if split == "test":
            raise ValueError(f"{root} has no test split of its own (splits: train, heldout, val)")
        chosen = [r for r in groups["all"] if split_of(r.name, heldout_fraction, val_fraction, salt) == split]
    elif split in ("train", "heldout") and "heldout" in groups:  # a layout dataset with its own heldout/
        chosen = groups[split]
    elif split in ("train", "heldout"):
        # the held-out batches are heldout_fraction of the training split; val/test stay untouched
        chosen = [r for r in groups["train"] if split_of(r.name, heldout_fraction, 0.0, salt) == split]
    else:  # val falls back to test and test to val
        order = ("val", "test") if split == "val" else ("test", "val")
        chosen = groups[next(g for g in order if g in groups)]
    if not chosen:
        total = sum(len(v) for v in groups.values())
        raise DatasetLayoutError(
            f"split {split!r} of {root} is empty ({total} pairs found in all)"
            + ("; add pairs or change heldout_fraction/val_fraction/split_lists" if total
               else "; no image pairs found"))
    return chosen


# ------------------------------------------------------------------------------------------ reading


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        if not path.is_file():
            raise FileNotFoundError(f"missing image {path}")
        raise ValueError(f"could not decode image {path}")
    return img


def _to_grey(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        img = img[..., 0] if img.shape[2] == 1 else cv2.cvtColor(
            img, cv2.COLOR_BGRA2GRAY if img.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    return img


def _to_rgb(img: np.ndarray, path: Path) -> np.ndarray:
    if img.dtype != np.uint8:
        raise ValueError(f"{path}: visible image must be 8-bit, got {img.dtype}")
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def _read_ir(path: Path) -> np.ndarray:
    ir = _to_grey(_read(path))
    if ir.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: infrared image must be 8- or 16-bit, got {ir.dtype}")
    return ir


def _read_mask(path: Path, opts: ReadOptions) -> np.ndarray:
    mask = _read(path)
    if mask.ndim == 3:
        if not all(np.array_equal(mask[..., 0], mask[..., c]) for c in range(1, min(3, mask.shape[2]))):
            raise ValueError(f"{path}: label PNG is a colour image; expected single-channel class ids")
        mask = mask[..., 0]
    if mask.dtype != np.uint8:
        if mask.dtype != np.uint16 or mask.max() > 255:
            raise ValueError(f"{path}: label PNG must hold class ids 0..255, got {mask.dtype}")
        mask = mask.astype(np.uint8)
    if opts.mask_lut is not None:
        mask = opts.mask_lut[mask]
    bad = (mask >= opts.num_seg_classes) & (mask != NO_LABEL)
    if bad.any():
        raise ValueError(f"{path}: class id {int(mask[bad].max())} >= the {opts.num_seg_classes} segmentation "
                         "classes of the class list (wrong class file? use ignore_ids to skip ids)")
    return mask


def _resize_img(img: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    h, w = size
    if img.shape[:2] == (h, w):
        return img
    shrink = img.shape[0] > h and img.shape[1] > w
    interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return cv2.resize(img, (w, h), interpolation=interp)


def _geometry(src_hw, dst_hw, mode: str):
    """-> (scaled size (h, w), scale (sy, sx), crop offset (top, left)) mapping src onto dst."""
    (h, w), (H, W) = src_hw, dst_hw
    if mode == "stretch":
        return (H, W), (H / h, W / w), (0, 0)
    s = max(H / h, W / w)  # cover
    sh, sw = max(H, round(h * s)), max(W, round(w * s))
    return (sh, sw), (sh / h, sw / w), ((sh - H) // 2, (sw - W) // 2)


def _fit(img: np.ndarray, dst_hw, mode: str, nearest: bool = False) -> np.ndarray:
    size, _, (top, left) = _geometry(img.shape[:2], dst_hw, mode)
    img = _resize_img(img, size, nearest)
    return img[top : top + dst_hw[0], left : left + dst_hw[1]]


class RealPairs(Dataset):
    """Pairs of one split of a real dataset, read lazily; sample i is the same on every run."""

    def __init__(self, records: list[Record], opts: ReadOptions, kind: str, root: Path):
        self.records, self.opts, self.kind, self.root = records, opts, kind, root

    @property
    def segmentation_labels(self) -> str:
        """What this split's masks are (fusion_ros.segmentation_labels): none without masks, synthetic for a
        layout folder the scene generator wrote (its meta.json says so), real otherwise."""
        if not any(r.mask is not None for r in self.records):
            return NONE
        meta_root = next((d for d in (self.root, self.root / "train") if (d / "meta.json").is_file()), None)
        if self.kind == "layout" and meta_root is not None:
            from fusion_ros.dataset_layout import read_meta

            if read_meta(meta_root).get("generator") == GENERATOR:
                return SYNTHETIC
        return REAL

    def __len__(self) -> int:
        return len(self.records)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.records]

    def __getitem__(self, index: int) -> dict:
        r, o = self.records[index], self.opts
        if r.vi is None:  # 4-channel RGB+T (MFNet): cv2 reads B, G, R, T
            img = _read(r.ir)
            if img.ndim != 3 or img.shape[2] != 4:
                raise ValueError(f"{r.ir}: expected a 4-channel RGB+thermal PNG, got shape {img.shape}")
            ir, rgb = np.ascontiguousarray(img[..., 3]), _to_rgb(np.ascontiguousarray(img[..., :3]), r.ir)
        else:
            ir, rgb = _read_ir(r.ir), _to_rgb(_read(r.vi), r.vi)
        mask = None if r.mask is None else _read_mask(r.mask, o)
        if mask is not None and mask.shape != rgb.shape[:2]:
            raise ValueError(f"{r.mask}: label size {mask.shape} differs from the visible image {rgb.shape[:2]}")
        boxes, labels = r.boxes.copy(), r.labels
        vh, vw = rgb.shape[:2]
        if o.resize == "none":
            if ir.shape[:2] != rgb.shape[:2]:
                raise ValueError(f"{r.name}: ir {ir.shape[:2]} and vi {rgb.shape[:2]} sizes differ "
                                 f"({r.ir}, {r.vi}); use resize: stretch or cover")
        else:
            dst = (o.height, o.width)
            _, (sy, sx), (top, left) = _geometry((vh, vw), dst, o.resize)
            ir, rgb = _fit(ir, dst, o.resize), _fit(rgb, dst, o.resize)
            mask = None if mask is None else _fit(mask, dst, o.resize, nearest=True)
            boxes = boxes * np.array([sx, sy, sx, sy], np.float32) - np.array([left, top, left, top], np.float32)
            vh, vw = dst
        if len(boxes):
            boxes[:, 0::2] = boxes[:, 0::2].clip(0, vw)
            boxes[:, 1::2] = boxes[:, 1::2].clip(0, vh)
            keep = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
            boxes, labels = boxes[keep], labels[keep]
        return to_sample(np.ascontiguousarray(ir), np.ascontiguousarray(rgb), boxes, labels, mask, r.name,
                         o.thermal_range)


# ------------------------------------------------------------------------------------------ factory


def dataset_classes(cfg: dict, kind: str, classes) -> ClassConfig:
    if isinstance(classes, ClassConfig):
        return classes
    path = classes if classes is not None else cfg.get("classes")
    if path is None and kind in DEFAULT_CLASS_FILES:
        path = config_path(DEFAULT_CLASS_FILES[kind])
    return load_classes(path)


def _mask_lut(cfg: dict, kind: str, root: Path, classes: ClassConfig) -> np.ndarray | None:
    lut = np.arange(256, dtype=np.uint8)
    changed = False
    seg = list(classes.segmentation.names)
    meta_root = next((d for d in (root, root / "train") if (d / "meta.json").is_file()), None)
    if kind == "layout" and meta_root is not None:
        from fusion_ros.dataset_layout import read_meta

        names = read_meta(meta_root).get("segmentation_classes")
        if names and list(names) != seg:
            unknown = [n for n in names if n not in seg]
            if unknown and cfg.get("unknown_classes", "error") != "ignore":
                raise ValueError(f"{meta_root / 'meta.json'}: segmentation classes {unknown} are not in the class list "
                                 f"({', '.join(seg)}); set unknown_classes: ignore to leave them unlabelled")
            for i, n in enumerate(names):
                lut[i] = seg.index(n) if n in seg else NO_LABEL
            changed = True
    for i in cfg.get("ignore_ids") or ():
        lut[lut == int(i)] = NO_LABEL
        changed = True
    return lut if changed else None


def build_real_dataset(cfg: dict, split: str, thermal_range, classes=None) -> RealPairs:
    """One split of the real dataset a config's `data:` section names (kind in KINDS; see module docstring).

    classes: a ClassConfig or class YAML path; default data.classes, then the kind's class file.
    """
    kind = cfg.get("kind")
    if kind not in KINDS:
        raise ValueError(f"unknown real dataset kind {kind!r} (known: {', '.join(KINDS)})")
    if kind == "bag":
        raise ValueError("kind 'bag' is built by training.bag_datasets.build_bag_dataset (or training.data.build_dataset)")
    if not cfg.get("root"):
        raise ValueError(f"data.root is required for kind {kind!r} (a folder with {_EXPECTED[kind]})")
    root = Path(cfg["root"]).expanduser()
    if not root.is_dir():
        raise DatasetLayoutError(f"{_TITLE[kind]} root {root} is not a folder; expected {_EXPECTED[kind]}")
    resize = resize_mode(cfg)
    if cfg.get("unpaired", "error") not in ("error", "skip"):
        raise ValueError(f"data.unpaired must be 'error' or 'skip', got {cfg.get('unpaired')!r}")
    class_config = dataset_classes(cfg, kind, classes)
    groups = exclude_records(_RECORDS[kind](root, cfg, class_config), cfg.get("exclude"), root)
    if not any(groups.values()):
        raise DatasetLayoutError(f"{_TITLE[kind]} root {root} holds no image pairs; expected {_EXPECTED[kind]}")
    records = assign_split(groups, split, cfg, root)
    opts = ReadOptions(cfg.get("height"), cfg.get("width"), resize, tuple(thermal_range), len(class_config.segmentation),
                       _mask_lut(cfg, kind, root, class_config))
    return RealPairs(records, opts, kind, root)
