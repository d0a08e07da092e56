"""``data: kind: pairs`` -- folders of registered IR/VI pairs with box labels (YOLO txt, VOC xml or COCO json),
for training/datasets.py (which registers the kind; its module docstring has the common rules: resizing,
crops, class lists, ``split_lists``).

Reading is fusion_ros/labelled_pairs.py's (the same code ``fusion-eval-pairs`` uses, so a trained model's
val split is exactly the pairs the evaluator scores with the same options). Config keys under ``data:``:

    kind: pairs
    root: ../shared/data/msrs_det      # ir/, vi/, labels/... (layouts: fusion_ros/labelled_pairs.py)
    classes: config/classes_road.yaml  # the detection class list labels are mapped into (default: the
                                       # package's config/classes.yaml, as for kind: layout / folder)
    labels: auto                       # auto | yolo | voc | coco
    label_file: null                   # COCO json (default: the only COCO json in labels/ or the root)
    variant: fusion                    # labels/<variant>/ (default: fusion when present, else labels/)
    yolo_classes: null                 # YOLO class names by id when there is no classes.txt
    class_map: {People: person, Lamp: null}   # rename first (null drops); names match case-insensitively
    unknown_classes: error             # error | ignore (boxes of names not in the class list)
    missing_labels: error              # error | empty (a pair without labels = no objects)
    unpaired: error                    # error | skip
    invalid_boxes: drop                # drop (counted, printed once) | error
    folders: {ir: ir, vi: vi}          # optional image folder overrides
    split: {block: 16, gap: 1, val_fraction: 0.2, heldout_fraction: 0.1}

Splits (``fusion_ros.labelled_pairs.block_split``): the names are sorted and cut into contiguous blocks of
at most ``block`` names; ``val_fraction`` / ``heldout_fraction`` of the blocks, spread over the sequence,
are val / heldout, the rest train; ``gap`` names on the lower-ranked side of every border between two
splits are left out, so near-duplicate neighbouring frames never cross splits. ``split.val_fraction`` /
``split.heldout_fraction`` fall back to ``data.val_fraction`` / ``data.heldout_fraction``, then 0.2 / 0.1.
The ``test`` split is *every* pair (for scoring a model trained elsewhere; it overlaps train/val).
``split_lists`` overrides the block split as for the other kinds.
"""
from __future__ import annotations

from pathlib import Path

from fusion_ros.classes import ClassConfig
from fusion_ros.labelled_pairs import LabelledPairsError, block_split, read_labelled_pairs
from training.records import DatasetLayoutError, Record

SPLIT_DEFAULTS = {"block": 16, "gap": 1, "val_fraction": 0.2, "heldout_fraction": 0.1}
EXPECTED = "ir/, vi/ and labels: labels/[<variant>/]*.txt + classes.txt (YOLO), labels/*.xml or Annotations/*.xml " \
           "(VOC) or a COCO json"

_CHOICES = {"labels": ("auto", "yolo", "voc", "coco"), "unknown_classes": ("error", "ignore"),
            "missing_labels": ("error", "empty"), "unpaired": ("error", "skip"), "invalid_boxes": ("drop", "error")}


def split_settings(cfg: dict) -> dict:
    """data.split of a pairs dataset, validated, with defaults: {block, gap, val_fraction, heldout_fraction}."""
    raw = cfg.get("split") or {}
    if not isinstance(raw, dict):
        raise ValueError(f"data.split must be a mapping like {SPLIT_DEFAULTS} for kind 'pairs', got {raw!r}")
    unknown = set(raw) - set(SPLIT_DEFAULTS)
    if unknown:
        raise ValueError(f"data.split: unknown key(s) {sorted(unknown)} for kind 'pairs' (known: {sorted(SPLIT_DEFAULTS)})")
    out = dict(SPLIT_DEFAULTS)
    for key in ("val_fraction", "heldout_fraction"):
        if cfg.get(key) is not None:
            out[key] = cfg[key]
    out.update(raw)
    try:
        out = {"block": int(out["block"]), "gap": int(out["gap"]), "val_fraction": float(out["val_fraction"]),
               "heldout_fraction": float(out["heldout_fraction"])}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"data.split: numbers expected ({exc})") from None
    return out


def read_options(cfg: dict) -> dict:
    """read_labelled_pairs keyword options from a ``data:`` section (validated)."""
    for key, allowed in _CHOICES.items():
        value = cfg.get(key, allowed[0])
        if value not in allowed:
            raise ValueError(f"data.{key} must be one of {', '.join(allowed)}, got {value!r}")
    class_map = cfg.get("class_map") or {}
    if not isinstance(class_map, dict):
        raise ValueError(f"data.class_map must be a mapping {{dataset name: class name or null}}, got {class_map!r}")
    folders = cfg.get("folders") or {}
    unknown = set(folders) - {"ir", "vi"}
    if unknown:
        raise ValueError(f"data.folders: kind 'pairs' knows ir and vi, not {sorted(unknown)}")
    return {"labels": cfg.get("labels", "auto"), "variant": cfg.get("variant"), "class_map": class_map,
            "unknown": cfg.get("unknown_classes", "error"), "missing": cfg.get("missing_labels", "error"),
            "unpaired": cfg.get("unpaired", "error"), "invalid": cfg.get("invalid_boxes", "drop"),
            "label_file": cfg.get("label_file"), "yolo_classes": cfg.get("yolo_classes"),
            "ir_dir": folders.get("ir"), "vi_dir": folders.get("vi")}


def pairs_records(root: Path, cfg: dict, classes: ClassConfig) -> dict[str, list[Record]]:
    """{group: [Record]} for training/datasets.assign_split: train / heldout / val by blocks and test = all
    pairs (or {"all": [...]} when data.split_lists chooses the splits)."""
    split = split_settings(cfg)
    try:
        folder = read_labelled_pairs(root, classes.detection.names, **read_options(cfg))
    except LabelledPairsError as exc:
        raise DatasetLayoutError(str(exc)) from None
    for text in folder.warnings:
        print(f"pairs dataset {root}: warning: {text}")
    records = [Record(p.name, p.ir_path, p.vi_path, None, p.boxes, p.labels) for p in folder.pairs]
    if cfg.get("split_lists"):
        return {"all": records}
    try:
        names = block_split(folder.names, **split)
    except ValueError as exc:
        raise DatasetLayoutError(f"{root}: {exc} (data.split)") from None
    by_name = {r.name: r for r in records}
    groups = {s: [by_name[n] for n in names[s]] for s in ("train", "heldout", "val")}
    groups["test"] = records
    return groups
