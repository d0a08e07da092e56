"""Labelled IR/VI pair folders (fusion_ros/labelled_pairs.py) and the trainer's ``kind: pairs``
(training/labelled_folders.py): YOLO / VOC / COCO folders generated in tmp_path, error cases, the block
split's properties, and the real msrs_det folder when ../shared is there.

    bash scripts/with_ros_env.sh .venv/bin/python -m pytest -q test/test_labelled_pairs.py
"""
from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusion_ros.labelled_pairs import (
    LabelledPairsError,
    block_split,
    image_size,
    load_pair_images,
    natural_key,
    parse_subset,
    read_class_file,
    read_labelled_pairs,
    select_split,
    subset_of,
    subsets,
)

REPO = Path(__file__).resolve().parents[1]
MSRS_DET = Path(__file__).resolve().parents[2] / "shared/data/msrs_det"
MODEL_CLASSES = ("person", "car", "bicycle", "animal")
H, W = 40, 64


def write_pair(root: Path, name: str, h: int = H, w: int = W, vi_suffix: str = ".png", ir_dir: str = "ir",
               vi_dir: str = "vi") -> None:
    for d, img, suffix in ((ir_dir, np.full((h, w), 90, np.uint8), ".png"),
                           (vi_dir, np.full((h, w, 3), (10, 80, 200), np.uint8), vi_suffix)):
        (root / d).mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / d / f"{name}{suffix}"), img)


def yolo_folder(root: Path, names=("a1", "a2", "a3"), classes="0 person\n1 bicycle\n2 car\n", variant="fusion",
                lines=None) -> Path:
    lines = lines or {}
    for n in names:
        write_pair(root, n)
    label_dir = root / "labels" / variant if variant else root / "labels"
    label_dir.mkdir(parents=True, exist_ok=True)
    if classes is not None:
        (root / "labels" / "classes.txt").write_text(classes)
    for n in names:
        (label_dir / f"{n}.txt").write_text(lines.get(n, "0 0.5 0.5 0.25 0.5\n2 0.25 0.25 0.1 0.2"))
    return root


def voc_xml(path: Path, objects, size=(W, H)) -> None:
    objs = "".join(f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
                   f"<ymax>{b[3]}</ymax></bndbox></object>" for n, b in objects)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size>{objs}</annotation>")


# ---------------------------------------------------------------------------------------------- YOLO
def test_yolo_boxes_in_visible_pixels_and_mapped_by_name(tmp_path):
    root = yolo_folder(tmp_path)
    f = read_labelled_pairs(root, MODEL_CLASSES)
    assert f.format == "yolo" and f.variant == "fusion" and f.source == root / "labels" / "fusion"
    assert f.names == ["a1", "a2", "a3"] and f.class_names == MODEL_CLASSES
    p = f.pairs[0]
    assert p.ir_path == root / "ir" / "a1.png" and p.vi_path == root / "vi" / "a1.png" and p.size == (H, W)
    assert p.boxes.dtype == np.float32 and p.labels.dtype == np.int64
    np.testing.assert_allclose(p.boxes, [[24, 10, 40, 30], [12.8, 6, 19.2, 14]], atol=1e-4)
    assert p.labels.tolist() == [0, 1]  # person -> 0, car -> 1 in the model's list (YOLO id 2)
    assert f.counts["boxes"] == 6 and f.counts["boxes_per_class"] == {"person": 3, "car": 3, "bicycle": 0, "animal": 0}
    # the dataset's own list when no class list is given
    own = read_labelled_pairs(root)
    assert own.class_names == ("person", "bicycle", "car") and own.pairs[0].labels.tolist() == [0, 2]


def test_yolo_variants_and_plain_labels_folder(tmp_path):
    root = yolo_folder(tmp_path)
    (root / "labels" / "visible").mkdir()
    for n in ("a1", "a2", "a3"):
        (root / "labels" / "visible" / f"{n}.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    vis = read_labelled_pairs(root, MODEL_CLASSES, variant="visible")
    assert vis.variant == "visible" and [p.labels.tolist() for p in vis.pairs] == [[2]] * 3
    with pytest.raises(LabelledPairsError, match=r"no labels/thermal/ folder.*fusion, visible"):
        read_labelled_pairs(root, MODEL_CLASSES, variant="thermal")
    flat = yolo_folder(tmp_path / "flat", variant=None, classes="person\ncar\n",  # bare names, in labels/ itself
                       lines={n: "1 0.5 0.5 0.5 0.5\n0 0.5 0.5 0.2 0.2\n" for n in ("a1", "a2", "a3")})
    f = read_labelled_pairs(flat, MODEL_CLASSES)
    assert f.variant is None and f.source == flat / "labels"
    assert f.pairs[0].labels.tolist() == [1, 0]


def test_yolo_class_file_rules(tmp_path):
    (tmp_path / "c1.txt").write_text("2 car\n0 person\n1 traffic light\n")
    assert read_class_file(tmp_path / "c1.txt") == ["person", "traffic light", "car"]
    (tmp_path / "c2.txt").write_text("person\n\ntraffic light\n")
    assert read_class_file(tmp_path / "c2.txt") == ["person", "traffic light"]
    (tmp_path / "c3.txt").write_text("0 person\n2 car\n")
    with pytest.raises(LabelledPairsError, match="without holes"):
        read_class_file(tmp_path / "c3.txt")
    root = yolo_folder(tmp_path / "d", classes=None)
    with pytest.raises(LabelledPairsError, match=r"a1.txt:1: YOLO class ids need a class list.*classes.txt"):
        read_labelled_pairs(root, MODEL_CLASSES)
    f = read_labelled_pairs(root, MODEL_CLASSES, yolo_classes=["Person", "bicycle", "CAR"])  # case-insensitive
    assert f.pairs[0].labels.tolist() == [0, 1]
    # an id beyond classes.txt is an unknown class
    root = yolo_folder(tmp_path / "e", classes="person\n", lines={"a2": "0 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n"})
    with pytest.raises(LabelledPairsError, match=r"a1.txt:2 .*class id 2, 1 classes listed"):
        read_labelled_pairs(root, MODEL_CLASSES)


def test_yolo_malformed_and_invalid_boxes(tmp_path):
    lines = {"a1": "0 0.5 0.5 0.2\n", "a2": "x 0.5 0.5 0.2 0.2\n", "a3": "0 0.5 0.5 abc 0.2\n"}
    for name, pattern in (("a1", r"a1.txt:1: expected 'class cx cy w h' \(5 fields\)"),
                          ("a2", r"a2.txt:1: class id 'x'"), ("a3", r"a3.txt:1: non-numeric")):
        root = yolo_folder(tmp_path / name, names=(name,), lines=lines)
        with pytest.raises(LabelledPairsError, match=pattern):
            read_labelled_pairs(root, MODEL_CLASSES)
    bad = ("0 0.5 0.5 0.0 0.2\n"      # zero width
           "0 1.5 1.5 0.2 0.2\n"      # outside the image
           "0 nan 0.5 0.2 0.2\n"      # non-finite
           "0 0.95 0.5 0.2 0.2\n"     # reaches past the right border: clipped
           "2 0.5 0.5 0.5 0.5\n")     # fine
    root = yolo_folder(tmp_path / "bad", names=("b1",), lines={"b1": bad})
    f = read_labelled_pairs(root, MODEL_CLASSES)
    assert f.counts["invalid_boxes"] == 3 and f.counts["clipped_boxes"] == 1 and f.counts["boxes"] == 2
    np.testing.assert_allclose(f.pairs[0].boxes[0], [W * 0.85, H * 0.4, W, H * 0.6], atol=1e-4)
    assert any("3 invalid boxes dropped" in w and "b1.txt:1" in w for w in f.warnings)
    with pytest.raises(LabelledPairsError, match=r"b1.txt:1: invalid box person .*empty box"):
        read_labelled_pairs(root, MODEL_CLASSES, invalid="error")
    empty = yolo_folder(tmp_path / "empty", names=("e1",), lines={"e1": " "})
    assert len(read_labelled_pairs(empty, MODEL_CLASSES).pairs[0].boxes) == 0  # an empty file: no objects


# ----------------------------------------------------------------------------------------------- VOC
@pytest.mark.parametrize("folder", ["labels", "Annotations"])
def test_voc_with_class_map(tmp_path, folder):
    for n in ("f1", "f2"):
        write_pair(tmp_path, n, vi_suffix=".jpg")
        voc_xml(tmp_path / folder / f"{n}.xml", [("People", (1, 2, 11, 22)), ("Lamp", (0, 0, 5, 5)),
                                                 ("CAR", (10, 10, 30, 20))])
    with pytest.raises(LabelledPairsError, match=r"f1.xml object 0 \(People\): class 'People' is not in the class "
                                                 r"list \(person, car, bicycle, animal\); map it"):
        read_labelled_pairs(tmp_path, MODEL_CLASSES)
    f = read_labelled_pairs(tmp_path, MODEL_CLASSES, class_map={"people": "person", "Lamp": None})
    assert f.format == "voc" and f.source.name == folder
    np.testing.assert_allclose(f.pairs[0].boxes, [[1, 2, 11, 22], [10, 10, 30, 20]])
    assert f.pairs[0].labels.tolist() == [0, 1] and f.counts["mapped_away_boxes"] == {"Lamp": 2}
    ignored = read_labelled_pairs(tmp_path, MODEL_CLASSES, unknown="ignore")
    assert ignored.counts["unknown_class_boxes"] == {"People": 2, "Lamp": 2} and ignored.counts["boxes"] == 2
    (tmp_path / folder / "f2.xml").write_text("<annotation><object><name>car")
    with pytest.raises(LabelledPairsError, match="f2.xml: malformed VOC XML"):
        read_labelled_pairs(tmp_path, MODEL_CLASSES, unknown="ignore")


# ---------------------------------------------------------------------------------------------- COCO
def coco_folder(root: Path, json_at: str = "labels/instances.json", width=W, height=H) -> Path:
    for n in ("c1", "c2", "c3"):
        write_pair(root, n, vi_suffix=".jpg")
    data = {"images": [{"id": 7, "file_name": "vi/c1.jpg", "width": width, "height": height},
                       {"id": 8, "file_name": "c2.jpg", "width": width, "height": height},
                       {"id": 9, "file_name": "c3.png"},
                       {"id": 10, "file_name": "gone.png"}],
            "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "Car"}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [2, 4, 10, 20]},
                            {"id": 2, "image_id": 7, "category_id": 3, "bbox": [20, 10, 30, 10]},
                            {"id": 3, "image_id": 8, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 1}]}
    path = root / json_at
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return root


def test_coco(tmp_path):
    root = coco_folder(tmp_path)
    f = read_labelled_pairs(root, MODEL_CLASSES)
    assert f.format == "coco" and f.source == root / "labels" / "instances.json"
    np.testing.assert_allclose(f.pairs[0].boxes, [[2, 4, 12, 24], [20, 10, 50, 20]])
    assert f.pairs[0].labels.tolist() == [0, 1] and len(f.pairs[1].boxes) == 0 and len(f.pairs[2].boxes) == 0
    assert f.counts["crowd_boxes"] == 1 and f.counts["orphan_labels"] == 1
    assert read_labelled_pairs(root).class_names == ("person", "Car")  # category order
    # boxes annotated on a 2x larger image are scaled to the visible image
    scaled = read_labelled_pairs(coco_folder(tmp_path / "s", width=2 * W, height=2 * H), MODEL_CLASSES)
    np.testing.assert_allclose(scaled.pairs[0].boxes[0], [1, 2, 6, 12])
    assert scaled.counts["rescaled_images"] == 2
    # an image without a COCO entry is a missing label
    write_pair(root, "c4")
    with pytest.raises(LabelledPairsError, match=r"1 pairs have no entry in .*instances.json: c4"):
        read_labelled_pairs(root, MODEL_CLASSES)
    assert read_labelled_pairs(root, MODEL_CLASSES, missing="empty").counts["missing_labels"] == 1


def test_coco_file_given_and_not_coco(tmp_path):
    root = coco_folder(tmp_path, json_at="gt/my.json")
    with pytest.raises(LabelledPairsError, match="no labels found; looked for"):
        read_labelled_pairs(root, MODEL_CLASSES)
    assert read_labelled_pairs(root, MODEL_CLASSES, label_file="gt/my.json").format == "coco"
    (root / "meta.json").write_text(json.dumps({"samples": {}}))  # not COCO: not taken for labels
    with pytest.raises(LabelledPairsError, match="not a COCO json"):
        read_labelled_pairs(root, MODEL_CLASSES, label_file=root / "meta.json")


# ------------------------------------------------------------------------------------- folder errors
def test_folder_errors(tmp_path):
    with pytest.raises(LabelledPairsError, match="is not a folder"):
        read_labelled_pairs(tmp_path / "nope")
    write_pair(tmp_path, "x1")
    with pytest.raises(LabelledPairsError, match=r"no labels found; looked for labels/\*.txt \(YOLO\); labels/\*.xml "
                                                 r"or Annotations/\*.xml \(VOC\); a COCO \*.json in \./"):
        read_labelled_pairs(tmp_path)
    with pytest.raises(LabelledPairsError, match="no YOLO labels found"):
        read_labelled_pairs(tmp_path, labels="yolo")
    (tmp_path / "vi" / "x1.png").unlink()
    (tmp_path / "vi").rmdir()
    with pytest.raises(LabelledPairsError, match=r"has no visible image folder \(looked for vi/, vis/, visible/"):
        read_labelled_pairs(tmp_path)
    (tmp_path / "vi").mkdir()
    (tmp_path / "ir" / "x1.png").unlink()
    with pytest.raises(LabelledPairsError, match=r"no IR/visible pairs \(0 images in .*ir, 0 in .*vi\)"):
        read_labelled_pairs(tmp_path)
    with pytest.raises(ValueError, match="labels must be one of"):
        read_labelled_pairs(tmp_path, labels="yaml")


def test_unpaired_missing_and_ambiguous(tmp_path):
    root = yolo_folder(tmp_path, names=("a1", "a2", "a3"))
    write_pair(root, "a4")
    (root / "vi" / "a4.png").unlink()
    with pytest.raises(LabelledPairsError, match=r"IR images without a visible image in .*vi: a4 .*unpaired='skip'"):
        read_labelled_pairs(root, MODEL_CLASSES)
    assert read_labelled_pairs(root, MODEL_CLASSES, unpaired="skip").counts["unpaired_skipped"] == 1
    (root / "ir" / "a4.png").unlink()
    (root / "labels" / "fusion" / "a3.txt").unlink()
    with pytest.raises(LabelledPairsError, match=r"1 pairs have no label file in .*fusion: a3 .*--missing-labels empty"):
        read_labelled_pairs(root, MODEL_CLASSES)
    f = read_labelled_pairs(root, MODEL_CLASSES, missing="empty")
    assert f.counts["missing_labels"] == 1 and len(f.select(["a3"])[0].boxes) == 0
    voc_xml(root / "labels" / "fusion" / "a1.xml", [("person", (1, 1, 5, 5))])
    with pytest.raises(LabelledPairsError, match=r"labels in more than one format \(yolo: .*voc: .*--labels"):
        read_labelled_pairs(root, MODEL_CLASSES, missing="empty")
    assert read_labelled_pairs(root, MODEL_CLASSES, labels="voc", missing="empty").counts["boxes"] == 1


def test_image_folder_aliases_and_loading(tmp_path):
    write_pair(tmp_path, "p1", ir_dir="Infrared", vi_dir="Visible", vi_suffix=".bmp")
    ir16 = np.full((H, W), 30000, np.uint16)
    assert cv2.imwrite(str(tmp_path / "Infrared" / "p1.png"), ir16)
    voc_xml(tmp_path / "Annotations" / "p1.xml", [("car", (1, 1, 5, 5))])
    f = read_labelled_pairs(tmp_path, MODEL_CLASSES)
    ir, rgb = load_pair_images(f.pairs[0])
    assert ir.dtype == np.uint16 and ir.shape == (H, W) and rgb.shape == (H, W, 3) and rgb[0, 0].tolist() == [200, 80, 10]
    for suffix in (".png", ".jpg", ".bmp", ".tif"):
        path = tmp_path / f"size{suffix}"
        assert cv2.imwrite(str(path), np.zeros((37, 53, 3), np.uint8))
        assert image_size(path) == (37, 53), suffix


# -------------------------------------------------------------------------------------------- splits
def seq_names(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    frame, out = 0, []
    for i in range(n):
        frame += rng.choice((4, 4, 5, 40))
        out.append(f"{frame:05d}{'D' if (i // 30) % 2 else 'N'}")
    return out


@pytest.mark.parametrize("n,block,gap", [(241, 16, 1), (100, 10, 2), (57, 8, 1), (30, 5, 0)])
def test_block_split_properties(n, block, gap):
    names = seq_names(n)
    split = block_split(names, val_fraction=0.2, heldout_fraction=0.1, block=block, gap=gap)
    shuffled = list(names)
    random.Random(3).shuffle(shuffled)
    assert block_split(shuffled, val_fraction=0.2, heldout_fraction=0.1, block=block, gap=gap) == split  # deterministic
    assert block_split(names, val_fraction=0.2, heldout_fraction=0.1, block=block, gap=gap) == split
    parts = [set(split[k]) for k in ("train", "heldout", "val", "gap")]
    assert sum(map(len, parts)) == n and set().union(*parts) == set(names)  # a partition: disjoint, complete
    assert all(split[k] for k in ("train", "heldout", "val"))
    order = sorted(names, key=natural_key)
    where = {x: k for k in split for x in split[k]}
    seq = [where[x] for x in order]
    runs, i = [], 0  # (split, start, end) of each run of one split in name order
    for k, g in itertools.groupby(seq):
        length = sum(1 for _ in g)
        runs.append((k, i, i + length))
        i += length
    if gap:  # neighbouring names of different splits never touch: exactly `gap` names lie between them
        for (a, _, _), (b, _, _) in zip(runs, runs[1:]):
            assert "gap" in (a, b)
        assert all(end - start == gap for k, start, end in runs if k == "gap")
    # blocks: ceil(n / block) contiguous runs of equal size (+-1, <= block); val runs are whole blocks
    nblocks = -(-n // block)
    starts = {(j * n) // nblocks for j in range(nblocks + 1)}
    assert max(b - a for a, b in zip(sorted(starts), sorted(starts)[1:])) <= block
    for k, start, end in runs:
        if k == "val":
            assert start in starts and end in starts
    n_val = max(1, int(0.2 * nblocks + 0.5))
    assert len(split["val"]) == sum(end - start for k, start, end in runs if k == "val")
    assert n_val * (n // nblocks) <= len(split["val"]) <= n_val * (n // nblocks + 1)
    if n_val >= 2:  # spread: val blocks on both halves of the sequence
        val_pos = [i for i, k in enumerate(seq) if k == "val"]
        assert val_pos[0] < n / 2 < val_pos[-1]


def test_block_split_edges():
    assert block_split([]) == {"train": [], "heldout": [], "val": [], "gap": []}
    with pytest.raises(ValueError, match="too few for train, heldout and val blocks"):
        block_split([f"{i}" for i in range(20)], block=16)
    with pytest.raises(ValueError, match="gap 2 would empty blocks"):
        block_split([f"{i}" for i in range(40)], block=4, gap=2)
    with pytest.raises(ValueError, match="sum to less than 1"):
        block_split(["a"] * 3, val_fraction=0.6, heldout_fraction=0.5)
    no_heldout = block_split([f"{i:03d}" for i in range(50)], heldout_fraction=0.0, block=5)
    assert not no_heldout["heldout"] and no_heldout["val"]
    assert select_split(["b10", "b2", "b1"], "all") == ["b1", "b2", "b10"]  # natural order
    with pytest.raises(ValueError, match="split must be all"):
        select_split(["a"], "test")


def test_subsets():
    names = ["00004N", "00055D", "01551D", "x"]
    assert subsets(names, {"day": "D$", "night": "N$"}) == {"day": ["00055D", "01551D"], "night": ["00004N"]}
    assert subset_of("00004N", {"day": "D$", "night": "N$", "all": ""}) == ["night", "all"]
    assert parse_subset("day=D$") == ("day", "D$")
    for bad in ("dayD", "=D$", "x=("):
        with pytest.raises(ValueError):
            parse_subset(bad)


def test_no_torch_import():
    code = "import sys, fusion_ros.labelled_pairs; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


# ------------------------------------------------------------------------------------- training kind
def class_file(tmp_path: Path) -> Path:
    path = tmp_path / "classes_road.yaml"
    path.write_text("detection:\n  - {name: person, color: [220, 20, 60]}\n  - {name: bicycle, color: [119, 11, 32]}\n"
                    "  - {name: car, color: [0, 0, 142]}\nsegmentation:\n  - {name: unlabeled, color: [0, 0, 0]}\n")
    return path


def test_training_kind_pairs(tmp_path):
    from training.data import build_dataset
    from training.records import DatasetLayoutError

    names = [f"{i:05d}{'D' if i % 2 else 'N'}" for i in range(24)]
    root = yolo_folder(tmp_path / "data", names=names)
    cfg = {"kind": "pairs", "root": str(root), "classes": str(class_file(tmp_path)), "height": 20, "width": 32,
           "split": {"block": 4, "gap": 1, "val_fraction": 0.2, "heldout_fraction": 0.2}}
    splits = {s: build_dataset(cfg, s, (0, 65535)) for s in ("train", "heldout", "val", "test")}
    expected = block_split(names, val_fraction=0.2, heldout_fraction=0.2, block=4, gap=1)
    for s in ("train", "heldout", "val"):
        ds = splits[s].base if hasattr(splits[s], "base") else splits[s]
        assert ds.names == expected[s], s
    assert len(splits["test"]) == 24
    sample = splits["val"][0]
    assert tuple(sample["rgb"].shape) == (3, 20, 32)
    np.testing.assert_allclose(sample["boxes"].numpy(), [[12, 5, 20, 15], [6.4, 3, 9.6, 7]], atol=1e-4)  # half size
    assert sample["labels"].tolist() == [0, 2]  # person, car in the class file's order
    lists = tmp_path / "val.txt"
    lists.write_text("00001D\n00002N\n")
    assert build_dataset({**cfg, "split_lists": {"val": str(lists)}}, "val", (0, 65535)).names == ["00001D", "00002N"]
    with pytest.raises(ValueError, match=r"data.split: unknown key\(s\) \['block_seconds'\]"):
        build_dataset({**cfg, "split": {"block_seconds": 3}}, "val", (0, 65535))
    with pytest.raises(DatasetLayoutError, match="too few for train"):
        build_dataset({**cfg, "split": {"block": 16}}, "val", (0, 65535))
    with pytest.raises(DatasetLayoutError, match=r"class 'car' \(class_map -> 'truck'\) is not in the class list"):
        build_dataset({**cfg, "class_map": {"car": "truck"}}, "val", (0, 65535))
    with pytest.raises(DatasetLayoutError, match="no labels/visible/ folder"):
        build_dataset({**cfg, "variant": "visible"}, "val", (0, 65535))
    with pytest.raises(ValueError, match="data.invalid_boxes must be one of drop, error"):
        build_dataset({**cfg, "invalid_boxes": "keep"}, "val", (0, 65535))


# ------------------------------------------------------------------------------------- real data
@pytest.mark.skipif(not MSRS_DET.is_dir(), reason=f"real labelled pairs not available ({MSRS_DET} is absent)")
def test_msrs_det_real_folder():
    f = read_labelled_pairs(MSRS_DET, ("person", "bicycle", "car"))
    assert f.format == "yolo" and f.variant == "fusion" and len(f) == 241
    # counted per file: many label files end without a newline, so `cat labels/fusion/*.txt | wc -l` undercounts
    assert f.counts["boxes"] == 1014
    assert f.counts["boxes_per_class"] == {"person": 625, "bicycle": 79, "car": 310}
    assert f.counts["invalid_boxes"] == 0 and f.counts["missing_labels"] == 0
    assert all(p.size == (480, 640) for p in f.pairs)
    assert sum(1 for p in f.pairs if not len(p.labels)) == 20
    assert f.warnings == []
    groups = subsets(f.names, {"day": "D$", "night": "N$"})
    assert (len(groups["day"]), len(groups["night"])) == (117, 124)
    split = block_split(f.names)
    assert {k: len(v) for k, v in split.items()} == {"train": 158, "heldout": 29, "val": 45, "gap": 9}
    for k in ("val", "heldout"):  # both conditions in val and heldout
        assert set(split[k]) & set(groups["day"]) and set(split[k]) & set(groups["night"])
    # the same class order as the shared classes.txt without a class list
    assert read_labelled_pairs(MSRS_DET).class_names == ("person", "bicycle", "car")
