"""Real-dataset loaders (training/datasets.py) on tiny fake datasets with the real folder layouts."""
from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fusion_ros.classes import load_classes
from fusion_ros.dataset_layout import write_meta, write_voc_xml
from training.data import build_dataset, collate
from training.datasets import build_real_dataset, split_of
from training.records import DatasetLayoutError

REPO = Path(__file__).resolve().parents[1]
ROADSCENE = REPO.parent / "shared" / "data" / "ivf_samples" / "RoadScene"
M3FD = ["People", "Car", "Bus", "Motorcycle", "Lamp", "Truck"]
TR = (25315.0, 35315.0)
SPLIT3 = ("train", "heldout", "val")


def names_covering(n: int, heldout=0.3, val=0.3, prefix="") -> list[str]:
    """n sample names whose hash split puts at least one in each of train / heldout / val."""
    want = {s for s, f in (("train", 1.0), ("heldout", heldout), ("val", val)) if f > 0}
    for start in range(1000):
        names = [f"{prefix}{i:05d}" for i in range(start, start + n)]
        if {split_of(x, heldout, val) for x in names} == want:
            return names
    raise AssertionError("no covering names")


def write_ir(path: Path, h: int, w: int, value: int = 100, three_channel=False, dtype=np.uint8):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full((h, w), value, dtype)
    img[: h // 2] = value // 2
    if three_channel:
        img = np.repeat(img[..., None], 3, axis=2)
    assert cv2.imwrite(str(path), img)


def write_vi(path: Path, h: int, w: int, bgr=(10, 20, 200)):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((h, w, 3), bgr, np.uint8))


def write_mask(path: Path, h: int, w: int, ids=(0, 1, 2)):
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((h, w), np.uint8)
    for k, i in enumerate(ids):
        mask[:, k * w // len(ids) :] = i
    assert cv2.imwrite(str(path), mask)


def load_all(cfg, classes=None, splits=SPLIT3):
    return {s: build_dataset(cfg, s, TR, classes=classes) for s in splits}


def names_of(ds) -> list[str]:
    return list((ds.base if hasattr(ds, "base") else ds).names)


def check_sample(s, h, w, mask: bool):
    assert s["thermal"].shape == (1, h, w) and s["thermal"].dtype == torch.float32
    assert s["rgb"].shape == (3, h, w) and s["rgb"].dtype == torch.float32
    assert 0 <= float(s["thermal"].min()) and float(s["thermal"].max()) <= 1
    assert 0 <= float(s["rgb"].min()) and float(s["rgb"].max()) <= 1
    assert s["boxes"].dtype == torch.float32 and s["boxes"].shape[1] == 4
    assert s["labels"].dtype == torch.int64 and len(s["labels"]) == len(s["boxes"])
    if mask:
        assert s["mask"].shape == (h, w) and s["mask"].dtype == torch.int64
    else:
        assert s["mask"] is None


def check_disjoint_cover(sets, all_names):
    got = {k: set(names_of(v)) for k, v in sets.items()}
    for a, b in itertools.combinations(got, 2):
        assert not got[a] & got[b], (a, b)
    assert set().union(*got.values()) == set(all_names)


# ------------------------------------------------------------------------------------------ M3FD


def make_m3fd(root: Path, names, h=96, w=128):
    for n in names:
        write_ir(root / "Ir" / f"{n}.png", h, w)
        write_vi(root / "Vis" / f"{n}.png", h, w)
        write_voc_xml(root / "Annotation" / f"{n}.xml", n, w, h, [[w / 8, h / 8, w * 3 / 8, h * 3 / 8], [w / 2, 0, w, h]],
                      [0, 5], M3FD)
    return root


def m3fd_cfg(root, **kw):
    return {"kind": "m3fd", "root": str(root), "height": 48, "width": 64, "heldout_fraction": 0.3,
            "val_fraction": 0.3, "hflip": False, **kw}


def test_m3fd_splits_shapes_and_scaled_boxes(tmp_path):
    names = names_covering(6)
    root = make_m3fd(tmp_path / "M3FD", names)
    sets = load_all(m3fd_cfg(root))
    check_disjoint_cover(sets, names)
    for split, ds in sets.items():
        assert len(ds) >= 1
        s = ds[0]
        check_sample(s, 48, 64, mask=False)
        torch.testing.assert_close(s["boxes"], torch.tensor([[8.0, 6, 24, 18], [32, 0, 64, 48]]))
        assert s["labels"].tolist() == [0, 5]
    # stable: built again, the same split
    assert names_of(build_dataset(m3fd_cfg(root), "val", TR)) == names_of(sets["val"])
    # train batches collate and crop
    train = build_dataset(m3fd_cfg(root, crop=[32, 40], hflip=True), "train", TR)
    b = collate([train[i] for i in range(len(train))])
    assert b["thermal"].shape[1:] == (1, 32, 40) and b["mask"] is None


def test_m3fd_missing_folder_names_it_and_the_layout(tmp_path):
    root = make_m3fd(tmp_path / "M3FD", ["00000", "00001"])
    for p in (root / "Vis").iterdir():
        p.unlink()
    (root / "Vis").rmdir()
    with pytest.raises(DatasetLayoutError, match=r"M3FD root .* has no 'Vis' folder; expected Ir/, Vis/, Annotation/"):
        build_dataset(m3fd_cfg(root), "train", TR)
    with pytest.raises(FileNotFoundError):  # the same error is a FileNotFoundError ...
        build_dataset(m3fd_cfg(root), "train", TR)
    with pytest.raises(ValueError):  # ... and a ValueError
        build_dataset(m3fd_cfg(root), "train", TR)
    with pytest.raises(DatasetLayoutError, match="is not a folder"):
        build_dataset(m3fd_cfg(tmp_path / "nowhere"), "train", TR)


def test_m3fd_unpaired_names_are_reported(tmp_path):
    names = names_covering(4)
    root = make_m3fd(tmp_path / "M3FD", names)
    (root / "Vis" / f"{names[0]}.png").unlink()
    write_vi(root / "Vis" / "extra_vi.png", 96, 128)
    with pytest.raises(DatasetLayoutError) as e:
        build_dataset(m3fd_cfg(root), "train", TR)
    assert f"IR images without a visible image in {root / 'Vis'}: {names[0]}" in str(e.value)
    assert "visible images without an IR image" in str(e.value) and "extra_vi" in str(e.value)
    # unpaired: skip drops them
    (root / "Vis" / "extra_vi.png").unlink()
    train = build_dataset(m3fd_cfg(root, unpaired="skip", heldout_fraction=0.0, val_fraction=0.0), "train", TR)
    assert names_of(train) == names[1:]


def test_m3fd_missing_and_bad_xml(tmp_path):
    names = names_covering(4)
    root = make_m3fd(tmp_path / "M3FD", names)
    (root / "Annotation" / f"{names[1]}.xml").unlink()
    with pytest.raises(DatasetLayoutError, match=f"no VOC XML for {names[1]}"):
        build_dataset(m3fd_cfg(root), "train", TR)
    empty = build_dataset(m3fd_cfg(root, missing_labels="empty"), split_of(names[1], 0.3, 0.3), TR)
    i = names_of(empty).index(names[1])
    assert empty[i]["boxes"].shape == (0, 4)

    (root / "Annotation" / f"{names[1]}.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError, match=f"{names[1]}.xml: malformed VOC XML"):
        build_dataset(m3fd_cfg(root), "train", TR)


def test_m3fd_unknown_class_error_ignore_and_map(tmp_path):
    names = names_covering(4)
    root = make_m3fd(tmp_path / "M3FD", names)
    write_voc_xml(root / "Annotation" / f"{names[2]}.xml", names[2], 128, 96, [[0, 0, 10, 10], [20, 20, 40, 40]],
                  [0, 1], ["Tram", "Car"])
    with pytest.raises(ValueError, match=rf"{names[2]}\.xml object 0 \(Tram\): unknown class 'Tram'"):
        build_dataset(m3fd_cfg(root), "train", TR)
    split = split_of(names[2], 0.3, 0.3)
    ds = build_dataset(m3fd_cfg(root, unknown_classes="ignore"), split, TR)
    s = ds[names_of(ds).index(names[2])]
    assert s["labels"].tolist() == [1]
    ds = build_dataset(m3fd_cfg(root, class_map={"Tram": "Bus"}), split, TR)
    assert ds[names_of(ds).index(names[2])]["labels"].tolist() == [2, 1]


def test_empty_dataset_and_empty_split_are_errors(tmp_path):
    root = tmp_path / "M3FD"
    for d in ("Ir", "Vis", "Annotation"):
        (root / d).mkdir(parents=True)
    with pytest.raises(DatasetLayoutError, match="holds no image pairs"):
        build_dataset(m3fd_cfg(root), "train", TR)
    make_m3fd(root, ["00000"])
    with pytest.raises(DatasetLayoutError, match="split 'val' .* is empty"):
        build_dataset(m3fd_cfg(root, val_fraction=0.0), "val", TR)


def test_split_lists_override(tmp_path):
    names = [f"{i:05d}" for i in range(5)]
    root = make_m3fd(tmp_path / "M3FD", names)
    lists = {}
    for split, part in (("train", names[:3]), ("heldout", names[3:4]), ("val", names[4:])):
        lists[split] = str(tmp_path / f"{split}.txt")
        Path(lists[split]).write_text("\n".join(part) + "\n")
    sets = load_all(m3fd_cfg(root, split_lists=lists))
    assert names_of(sets["train"]) == names[:3] and names_of(sets["val"]) == names[4:]
    Path(lists["heldout"]).write_text(names[0] + "\n")
    with pytest.raises(ValueError, match="train and heldout share 00000"):
        build_dataset(m3fd_cfg(root, split_lists=lists), "train", TR)
    Path(lists["heldout"]).write_text("nope\n")
    with pytest.raises(DatasetLayoutError, match="not pairs .*nope"):
        build_dataset(m3fd_cfg(root, split_lists=lists), "heldout", TR)


def test_excluded_pairs_are_in_no_split(tmp_path):
    """data.exclude (e.g. roadscene_all/test50.txt): listed pairs are kept out of training and validation."""
    names = [f"{i:05d}" for i in range(12)]
    root = make_m3fd(tmp_path / "M3FD", names)
    (tmp_path / "test.txt").write_text("\n".join(names[:4]) + "\n")
    sets = load_all(m3fd_cfg(root, exclude=str(tmp_path / "test.txt"), heldout_fraction=0.2, val_fraction=0.2))
    kept = sorted(n for ds in sets.values() for n in names_of(ds))
    assert kept == names[4:]
    (tmp_path / "typo.txt").write_text("00001\n0000x\n")
    with pytest.raises(DatasetLayoutError, match="not under .*0000x"):
        build_dataset(m3fd_cfg(root, exclude=str(tmp_path / "typo.txt")), "train", TR)


def test_resize_cover_keeps_aspect_and_shifts_boxes(tmp_path):
    root = tmp_path / "M3FD"
    write_ir(root / "Ir" / "a.png", 100, 200)
    write_vi(root / "Vis" / "a.png", 100, 200)
    write_voc_xml(root / "Annotation" / "a.xml", "a", 200, 100, [[0, 0, 20, 100], [100, 25, 140, 75]], [0, 1], M3FD)
    cfg = m3fd_cfg(root, height=50, width=50, resize="cover", heldout_fraction=0.0, val_fraction=0.0)
    s = build_dataset(cfg, "train", TR).base[0]
    check_sample(s, 50, 50, mask=False)
    # scale 0.5 -> 50x100, centre crop drops 25 px left: box 0 falls outside, box 1 -> [25, 12.5, 45, 37.5]
    torch.testing.assert_close(s["boxes"], torch.tensor([[25.0, 12.5, 45, 37.5]]))
    assert s["labels"].tolist() == [1]
    with pytest.raises(ValueError, match="resize must be one of"):
        build_dataset({**cfg, "resize": "squash"}, "train", TR)


# ----------------------------------------------------------------------------------------- LLVIP


def test_llvip_folder_splits(tmp_path):
    root = tmp_path / "LLVIP"
    train, test = names_covering(5, heldout=0.4, val=0.0, prefix="01"), ["190001", "190002"]
    for split, names in (("train", train), ("test", test)):
        for n in names:
            write_ir(root / "infrared" / split / f"{n}.jpg", 64, 80, three_channel=True)
            write_vi(root / "visible" / split / f"{n}.jpg", 64, 80)
            write_voc_xml(root / "Annotations" / f"{n}.xml", n, 80, 64, [[8, 8, 24, 40]], [0], ["person"])
    cfg = {"kind": "llvip", "root": str(root), "height": 32, "width": 40, "heldout_fraction": 0.4}
    sets = load_all(cfg, splits=("train", "heldout", "val", "test"))
    assert sorted(names_of(sets["val"])) == test == sorted(names_of(sets["test"]))
    assert set(names_of(sets["train"])) | set(names_of(sets["heldout"])) == set(train)
    assert not set(names_of(sets["train"])) & set(names_of(sets["heldout"]))
    s = sets["val"][0]
    check_sample(s, 32, 40, mask=False)
    torch.testing.assert_close(s["boxes"], torch.tensor([[4.0, 4, 12, 20]]))
    assert s["labels"].tolist() == [0]
    (root / "visible" / "test" / "190002.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match="IR images without a visible image .*190002"):
        build_dataset(cfg, "val", TR)
    (root / "infrared" / "test" / "190002.jpg").unlink()
    (root / "visible" / "test" / "190001.jpg").unlink()
    (root / "infrared" / "test" / "190001.jpg").unlink()
    (root / "infrared" / "test").rmdir()
    with pytest.raises(DatasetLayoutError, match="LLVIP root .* has no 'infrared/test' folder"):
        build_dataset(cfg, "train", TR)


# -------------------------------------------------------------------------------- MSRS / FMB / MFNet


@pytest.mark.parametrize("kind,dirs", [("msrs", ("ir", "vi", "Label")), ("fmb", ("Infrared", "Visible", "Label"))])
def test_segmentation_split_folders(tmp_path, kind, dirs):
    root = tmp_path / kind
    train, test = names_covering(4, heldout=0.5, val=0.0), ["00900N", "00901D"]
    for split, names in (("train", train), ("test", test)):
        for n in names:
            write_ir(root / split / dirs[0] / f"{n}.png", 48, 64)
            write_vi(root / split / dirs[1] / f"{n}.png", 48, 64)
            write_mask(root / split / dirs[2] / f"{n}.png", 48, 64, ids=(0, 2, 8))
    cfg = {"kind": kind, "root": str(root), "height": 24, "width": 32, "heldout_fraction": 0.5}
    sets = load_all(cfg)
    assert sorted(names_of(sets["val"])) == sorted(test)
    assert set(names_of(sets["train"])) | set(names_of(sets["heldout"])) == set(train)
    assert not set(names_of(sets["train"])) & set(names_of(sets["heldout"]))
    for ds in sets.values():
        s = ds[0]
        check_sample(s, 24, 32, mask=True)
        assert s["boxes"].shape == (0, 4)
        assert set(s["mask"].unique().tolist()) == {0, 2, 8}
    ignored = build_dataset({**cfg, "ignore_ids": [0]}, "val", TR)[0]["mask"]
    assert set(ignored.unique().tolist()) == {255, 2, 8}
    # a label id beyond the class list
    write_mask(root / "test" / dirs[2] / f"{test[0]}.png", 48, 64, ids=(0, 40))
    with pytest.raises(ValueError, match=f"{test[0]}.png: class id 40"):
        build_dataset(cfg, "val", TR)[sorted(names_of(sets["val"])).index(test[0])]
    # a pair without its label
    (root / "test" / dirs[2] / f"{test[1]}.png").unlink()
    with pytest.raises(DatasetLayoutError, match=f"no label PNG for {test[1]}"):
        build_dataset(cfg, "val", TR)
    # a missing split folder
    (root / "test").rename(root / "testing")
    with pytest.raises(DatasetLayoutError, match="root .* has no 'test' folder; expected train/"):
        build_dataset(cfg, "train", TR)


def test_mfnet_rgbt_png_and_lists(tmp_path):
    root = tmp_path / "MFNet"
    names = ["00001D", "00002N", "00003D", "00004N", "00007D", "00006N", "00008N"]
    for n in names:
        img = np.zeros((48, 64, 4), np.uint8)
        img[..., 0], img[..., 1], img[..., 2], img[..., 3] = 10, 20, 200, 77  # B, G, R, T
        (root / "images").mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(root / "images" / f"{n}.png"), img)
        write_mask(root / "labels" / f"{n}.png", 48, 64, ids=(0, 1, 3))
    (root / "train.txt").write_text("\n".join(names[:5]) + "\n")
    (root / "val.txt").write_text("00006N\n")
    (root / "test.txt").write_text("00008N.png\n")
    cfg = {"kind": "mfnet", "root": str(root), "height": 48, "width": 64, "heldout_fraction": 0.5}
    train = [n for n in names[:5] if split_of(n, 0.5, 0.0) == "train"]
    heldout = [n for n in names[:5] if split_of(n, 0.5, 0.0) == "heldout"]
    assert train and heldout, "pick other names: the hash put all of train.txt in one split"
    sets = load_all(cfg, splits=("train", "heldout", "val", "test"))
    assert names_of(sets["train"]) == train and names_of(sets["heldout"]) == heldout
    assert names_of(sets["val"]) == ["00006N"] and names_of(sets["test"]) == ["00008N"]
    s = sets["val"][0]
    check_sample(s, 48, 64, mask=True)
    assert abs(float(s["thermal"][0, 0, 0]) - 77 / 255) < 1e-6
    torch.testing.assert_close(s["rgb"][:, 0, 0], torch.tensor([200, 20, 10]) / 255.0)
    (root / "val.txt").write_text("00006N\n00009X\n")
    with pytest.raises(DatasetLayoutError, match="val.txt lists names with no image .*00009X"):
        build_dataset(cfg, "val", TR)
    (root / "val.txt").unlink()
    with pytest.raises(DatasetLayoutError, match="MFNet root .* has no 'val.txt'"):
        build_dataset(cfg, "train", TR)


# ---------------------------------------------------------------------------------- layout / folder


def test_layout_kind_reads_the_canonical_layout(tmp_path):
    from fusion_ros.synthetic import write_dataset

    root = write_dataset(tmp_path / "syn", count=6, seed=3, height=64, width=80, progress=False)
    names = sorted(p.stem for p in (root / "ir").glob("*.png"))
    cfg = {"kind": "layout", "root": str(root), "height": 64, "width": 80, "heldout_fraction": 0.34,
           "val_fraction": 0.33, "split_salt": "x"}
    while {split_of(n, 0.34, 0.33, cfg["split_salt"]) for n in names} != set(SPLIT3):
        cfg["split_salt"] += "x"
    sets = load_all(cfg)
    check_disjoint_cover(sets, names)
    assert {ds.segmentation_labels for ds in sets.values()} == {"synthetic"}  # meta.json: the scene generator's
    s = sets["val"][0]
    check_sample(s, 64, 80, mask=True)
    assert s["thermal"].std() > 0  # 16-bit centikelvin through thermal_range
    classes = load_classes()
    assert int(s["mask"].max()) < len(classes.segmentation)


def test_layout_with_split_folders_and_optional_labels(tmp_path):
    root = tmp_path / "ds"
    for split, names in (("train", ["a", "b", "c", "d"]), ("val", ["e"])):
        for n in names:
            write_ir(root / split / "ir" / f"{n}.png", 32, 40, value=30000, dtype=np.uint16)
            write_vi(root / split / "vi" / f"{n}.png", 32, 40)
    write_voc_xml(root / "train" / "labels" / "a.xml", "a", 40, 32, [[0, 0, 8, 8]], [1], ["person", "car"])
    write_meta(root / "train", {"segmentation_classes": ["unlabeled", "road"]})
    cfg = {"kind": "layout", "root": str(root), "height": 32, "width": 40, "heldout_fraction": 0.5}
    sets = load_all(cfg)
    assert names_of(sets["val"]) == ["e"]
    assert set(names_of(sets["train"])) | set(names_of(sets["heldout"])) == set("abcd")
    ds = sets["train"].base if "a" in names_of(sets["train"]) else sets["heldout"].base
    s = ds[names_of(ds).index("a")]
    assert s["labels"].tolist() == [1] and s["mask"] is None  # 'car' in the package's classes.yaml
    assert ds.segmentation_labels == "none"  # no masks/
    expected = (30000 - TR[0]) / (TR[1] - TR[0])
    assert abs(float(s["thermal"][0, -1, 0]) - expected) < 1e-4
    (root / "val").rename(root / "other")
    with pytest.raises(DatasetLayoutError, match="no 'ir' folder and no train/ \\+ val/"):
        build_dataset(cfg, "train", TR)


def test_folder_kind_unlabeled_grey_ir_and_mixed_sizes(tmp_path):
    root = tmp_path / "pairs"
    names = names_covering(6)
    for i, n in enumerate(names):
        h, w = 40 + 4 * i, 60 + 2 * i
        write_ir(root / "ir" / f"{n}.jpg", h, w, three_channel=True)
        write_vi(root / "vi" / f"{n}.png", h, w)
    cfg = {"kind": "folder", "root": str(root), "height": 32, "width": 48, "heldout_fraction": 0.3,
           "val_fraction": 0.3}
    sets = load_all(cfg)
    check_disjoint_cover(sets, names)
    for ds in sets.values():
        s = ds[0]
        check_sample(s, 32, 48, mask=False)
        assert s["boxes"].shape == (0, 4)
    b = collate([sets["train"][i] for i in range(len(sets["train"]))])
    assert b["thermal"].shape[1:] == (1, 32, 48)
    # resize: none needs one size per pair
    with pytest.raises(ValueError, match="sizes differ"):
        write_vi(root / "vi" / f"{names[0]}.png", 10, 10)
        ds = build_dataset({**cfg, "resize": "none"}, split_of(names[0], 0.3, 0.3), TR)
        ds[names_of(ds).index(names[0])]
    with pytest.raises(DatasetLayoutError, match="image folder root .* has no 'vi' folder; expected ir/, vi/"):
        (tmp_path / "only_ir" / "ir").mkdir(parents=True)
        build_dataset({**cfg, "root": str(tmp_path / "only_ir")}, "train", TR)


def test_unknown_kind_and_missing_root():
    with pytest.raises(ValueError, match="unknown dataset kind 'kitti'"):
        build_dataset({"kind": "kitti"}, "train", TR)
    with pytest.raises(ValueError, match="data.root is required"):
        build_real_dataset({"kind": "folder", "height": 8, "width": 8}, "train", TR)


@pytest.mark.skipif(not ROADSCENE.is_dir(), reason=f"RoadScene samples not found at {ROADSCENE}")
def test_roadscene_as_folder():
    cfg = {"kind": "folder", "root": str(ROADSCENE), "height": 128, "width": 160}
    sets = load_all(cfg)
    all_names = sorted(p.stem for p in (ROADSCENE / "ir").iterdir())
    check_disjoint_cover(sets, all_names)
    for ds in sets.values():
        check_sample(ds[0], 128, 160, mask=False)


@pytest.mark.parametrize(("kind", "workers"), [("m3fd", 0), ("msrs", 0), ("m3fd", 2)])
def test_trainer_steps_on_real_layouts(tmp_path, kind, workers):
    """A few bi-level steps + validation on boxes-only (M3FD) and masks-only (MSRS) data; also with the
    training batches built by worker processes (a forked one once hung here, see Trainer.training_batches)."""
    from training.train import Trainer

    root = tmp_path / kind
    if kind == "m3fd":
        make_m3fd(root, [f"{i:05d}" for i in range(12)], h=48, w=64)
    else:
        for split, count in (("train", 8), ("test", 2)):
            for i in range(count):
                n = f"{split}{i:03d}"
                write_ir(root / split / "ir" / f"{n}.png", 48, 64)
                write_vi(root / split / "vi" / f"{n}.png", 48, 64)
                write_mask(root / split / "Label" / f"{n}.png", 48, 64, ids=(0, 1, 2))
    cfg = {
        "seed": 1, "classes": str(REPO / "config" / f"classes_{kind}.yaml"),
        "data": {"kind": kind, "root": str(root), "height": 32, "width": 32, "heldout_fraction": 0.3,
                 "val_fraction": 0.2},
        "model": {"fusion": {"stem_channels": 8, "width": 8, "growth": 8, "block_layers": 2, "num_blocks": 1},
                  "backbone_channels": [8, 8, 16, 16, 16], "fpn_channels": 16, "head_convs": 1, "seg_channels": 8},
        "schedule": {"fusion_warmup_steps": 1, "steps": 3, "fusion_every": 2, "batch_size": 2, "lower_lr": 1e-3,
                     "upper_lr": 1e-3, "aggregation": "equal", "log_every": 1, "val_every": 100,
                     "checkpoint_every": 100, "loader_workers": workers},
    }
    trainer = Trainer(cfg, tmp_path / "run")
    # what the model file will record its segmentation head learnt from (issue 21 item 8)
    assert trainer.segmentation_labels() == {"m3fd": "none", "msrs": "real"}[kind]
    trainer.fit(stop_after=3)  # stops before the final validation
    assert [r["phase"] for r in trainer.history] == ["warmup", "bilevel", "lower"]
    assert all(np.isfinite(v) for r in trainer.history for k, v in r.items() if k in ("fuse", "f_semantic"))
    if kind == "m3fd":  # Trainer.validate() needs ground-truth boxes (evaluate_detections raises without)
        result = trainer.validate()
        assert result["miou"] != result["miou"]  # NaN: no masks in M3FD


def test_rescale_augmentation_keeps_boxes_on_their_objects():
    """scale: [low, high] resizes frame, mask and boxes together: a bright square stays inside its box at
    every drawn factor, the crop size holds (the lower bound is raised to fit it), bad ranges are refused."""
    from training.data import Augment, _scale_range, augment

    thermal = torch.zeros(1, 60, 80)
    thermal[:, 20:30, 40:52] = 1.0
    rgb = thermal.repeat(3, 1, 1)
    mask = (thermal[0] > 0).long()
    sample = {"thermal": thermal, "rgb": rgb, "mask": mask, "boxes": torch.tensor([[40.0, 20.0, 52.0, 30.0]]),
              "labels": torch.tensor([1]), "name": "a"}
    aug = Augment(crop=(48, 64), hflip=True, scale=(0.5, 2.0), min_box_pixels=1.0)
    areas = set()
    for seed in range(40):
        out = augment(sample, aug, np.random.default_rng(seed))
        assert out["thermal"].shape == (1, 48, 64) and out["rgb"].shape == (3, 48, 64) and out["mask"].shape == (48, 64)
        for box in out["boxes"]:
            x0, y0, x1, y1 = (int(round(float(v))) for v in box)
            inside = out["thermal"][0, y0:y1, x0:x1]
            assert inside.numel() > 0 and float(inside.mean()) > 0.6, (seed, box)  # the square fills its box
            assert float(out["mask"][y0:y1, x0:x1].float().mean()) > 0.6
            areas.add(round(float((box[2] - box[0]) * (box[3] - box[1]))))
    assert max(areas) > 2.0 * min(areas)  # the object was seen at several sizes
    assert _scale_range(None) is None and _scale_range([0.75, 1.5]) == (0.75, 1.5)
    for bad in ([1.5, 0.75], [0, 1], "big", [1.0]):
        with pytest.raises(ValueError, match="data.scale"):
            _scale_range(bad)


def test_exposure_jitter_scales_intensities_within_its_bounds_and_leaves_geometry_alone():
    """data.photometric: the visible frame by a gain and a gamma, the thermal one by a gain, each within
    [1/(1+s), 1+s] (thermal s/2), drawn per sample from the sample's generator; boxes, masks and sizes
    unchanged; strength 0 leaves the sample as it was."""
    from training.data import Augment, augment

    rng = np.random.default_rng(0)
    sample = {"thermal": torch.from_numpy(rng.uniform(0.2, 0.6, (1, 30, 40)).astype(np.float32)),
              "rgb": torch.from_numpy(rng.uniform(0.2, 0.6, (3, 30, 40)).astype(np.float32)), "mask": None,
              "boxes": torch.tensor([[4.0, 5.0, 20.0, 25.0]]), "labels": torch.tensor([2]), "name": "a"}
    strength = 0.4
    thermal_gains, changed = [], 0
    for seed in range(30):
        out = augment(sample, Augment(hflip=False, photometric=strength), np.random.default_rng(seed))
        assert torch.equal(out["boxes"], sample["boxes"]) and out["rgb"].shape == sample["rgb"].shape
        ratio = out["thermal"] / sample["thermal"]
        assert float(ratio.max() - ratio.min()) < 1e-5  # one gain over the frame
        thermal_gains.append(float(ratio.mean()))
        # the visible frame: gain * x ** gamma, gamma and gain in [1/(1+s), 1+s]
        low = (sample["rgb"] ** (1 + strength)) / (1 + strength)
        high = (sample["rgb"] ** (1 / (1 + strength)) * (1 + strength)).clamp(max=1.0)
        assert bool(((out["rgb"] >= low - 1e-5) & (out["rgb"] <= high + 1e-5)).all())
        changed += not torch.allclose(out["rgb"], sample["rgb"])
        again = augment(sample, Augment(hflip=False, photometric=strength), np.random.default_rng(seed))
        assert torch.equal(again["rgb"], out["rgb"]) and torch.equal(again["thermal"], out["thermal"])
    assert 1 / (1 + strength / 2) - 1e-6 <= min(thermal_gains) < 0.97 and 1.03 < max(thermal_gains) <= 1 + strength / 2 + 1e-6
    assert changed == 30
    plain = augment(sample, Augment(hflip=False), np.random.default_rng(0))
    assert torch.equal(plain["rgb"], sample["rgb"]) and torch.equal(plain["thermal"], sample["thermal"])
