"""Synthetic thermal+RGB scene generator and the on-disk dataset layout."""
from __future__ import annotations

import json
import pickle

import cv2
import numpy as np
import pytest

from fusion_ros.classes import load_classes
from fusion_ros.dataset_layout import read_meta, read_voc_xml, write_sample, write_voc_xml
from fusion_ros.synthetic import CONDITIONS, SceneGenerator, SyntheticSample, main, write_dataset

H, W = 128, 160
CLASSES = load_classes()
DET = CLASSES.detection.names
SEG = CLASSES.segmentation
OBJECT_SEG_IDS = [SEG.index(n) for n in DET]


@pytest.fixture(scope="module")
def gen():
    return SceneGenerator(7, H, W)


def _same(a: SyntheticSample, b: SyntheticSample) -> bool:
    return (
        np.array_equal(a.thermal, b.thermal)
        and np.array_equal(a.rgb, b.rgb)
        and np.array_equal(a.mask, b.mask)
        and np.array_equal(a.boxes, b.boxes)
        and np.array_equal(a.labels, b.labels)
        and a.condition == b.condition
        and a.name == b.name
    )


def test_deterministic_and_random_access(gen):
    forward = [gen.generate(i) for i in range(6)]
    other = SceneGenerator(7, H, W)
    backward = [other.generate(i) for i in reversed(range(6))][::-1]
    for a, b in zip(forward, backward):
        assert _same(a, b)
    assert _same(gen.generate(3), forward[3])  # again, after other indices
    assert not np.array_equal(forward[0].rgb, forward[1].rgb)
    assert not np.array_equal(forward[0].thermal, forward[1].thermal)
    assert not np.array_equal(SceneGenerator(8, H, W).generate(0).rgb, forward[0].rgb)
    assert forward[4].name == "syn_7_000004"
    # picklable (DataLoader workers) and still identical afterwards
    assert _same(pickle.loads(pickle.dumps(gen)).generate(2), forward[2])


def test_dtypes_and_shapes(gen):
    seen = set()
    for i in range(12):
        s = gen.generate(i)
        seen.add(s.condition)
        assert s.thermal.shape == (H, W) and s.thermal.dtype == np.uint16
        assert s.rgb.shape == (H, W, 3) and s.rgb.dtype == np.uint8
        assert s.mask.shape == (H, W) and s.mask.dtype == np.uint8
        assert s.boxes.dtype == np.float32 and s.boxes.shape == (len(s.labels), 4)
        assert s.labels.dtype == np.int64
        assert s.mask.max() < len(SEG)
        kelvin = s.thermal / 100.0
        assert 200 < kelvin.min() and kelvin.max() < 400  # plausible radiometric centikelvin
        assert s.condition in CONDITIONS
    assert len(seen) >= 3  # conditions are mixed by default
    big = SceneGenerator(1).generate(0)  # the default 512 x 640 size
    assert big.thermal.shape == (512, 640) and big.rgb.shape == (512, 640, 3) and big.mask.shape == (512, 640)
    assert len(big.labels) > 0


def test_condition_override_keeps_geometry(gen):
    day, night = gen.generate(5, "day"), gen.generate(5, "night")
    assert day.condition == "day" and night.condition == "night"
    assert np.array_equal(day.mask, night.mask) and np.array_equal(day.boxes, night.boxes)
    assert night.rgb.mean() < 0.5 * day.rgb.mean()


def test_labels_consistent_with_mask(gen):
    n_boxes = 0
    for i in range(40):
        s = gen.generate(i)
        assert len(s.boxes) == len(s.labels)
        for box, lab in zip(s.boxes, s.labels):
            x0, y0, x1, y1 = box
            assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
            assert np.array_equal(box, np.round(box))
            cls = SEG.index(DET[lab])
            inside = s.mask[int(y0) : int(y1), int(x0) : int(x1)] == cls
            assert inside.sum() >= 1
            # the box is the visible extent: its class touches all four edges
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            n_boxes += 1
        for name in ("road", "sky"):
            assert (s.mask == SEG.index(name)).any()
    assert n_boxes > 100
    # every class shows up somewhere
    labels = np.concatenate([gen.generate(i).labels for i in range(40)])
    assert set(labels.tolist()) == set(range(len(DET)))


_K3 = np.ones((3, 3), np.uint8)


def _edge_contrast(img, mask, box, cls_id, colour=False):
    """|mean over the object's 2-px boundary band - mean over a 2-px ring around it| (other objects excluded)."""
    x0, y0, x1, y1 = box.astype(int)
    m = 4
    X0, Y0, X1, Y1 = max(x0 - m, 0), max(y0 - m, 0), min(x1 + m, mask.shape[1]), min(y1 + m, mask.shape[0])
    mk = mask[Y0:Y1, X0:X1]
    obj = np.zeros(mk.shape, np.uint8)
    obj[y0 - Y0 : y1 - Y0, x0 - X0 : x1 - X0] = mk[y0 - Y0 : y1 - Y0, x0 - X0 : x1 - X0] == cls_id
    ring = (cv2.dilate(obj, _K3, iterations=2) > 0) & (obj == 0) & ~np.isin(mk, OBJECT_SEG_IDS)
    inner = (obj > 0) & (cv2.erode(obj, _K3, iterations=2, borderType=cv2.BORDER_REPLICATE) == 0)
    if inner.sum() < 5 or ring.sum() < 5:
        return None
    im = img[Y0:Y1, X0:X1].astype(np.float64)
    if im.ndim == 3 and not colour:
        im = im.mean(2)
    diff = im[inner].mean(0) - im[ring].mean(0)
    return float(np.linalg.norm(np.atleast_1d(diff)))


def _contrasts(gen, condition, names, n=30):
    out = {k: {"ir": [], "rgb": [], "rgb_colour": []} for k in names}
    for i in range(n):
        s = gen.generate(i, condition)
        kelvin = s.thermal / 100.0
        for box, lab in zip(s.boxes, s.labels):
            name = DET[lab]
            if name not in out:
                continue
            cls = SEG.index(name)
            ir = _edge_contrast(kelvin, s.mask, box, cls)
            if ir is None:
                continue
            out[name]["ir"].append(ir)
            out[name]["rgb"].append(_edge_contrast(s.rgb, s.mask, box, cls))
            out[name]["rgb_colour"].append(_edge_contrast(s.rgb, s.mask, box, cls, colour=True))
    for name, v in out.items():
        assert len(v["ir"]) >= 8, f"too few {name} boxes to measure"
    return {k: {m: float(np.mean(x)) for m, x in v.items()} for k, v in out.items()}


def test_modality_matters_by_design(gen):
    night = _contrasts(gen, "night", ("person", "animal", "car"), n=40)
    day = _contrasts(gen, "day", ("person", "traffic_sign", "lamp"))
    # warm bodies: strong thermal contrast (K) at night, nearly invisible in RGB (grey levels 0..255),
    # while RGB still shows cars (lights) at night and people by day
    for name in ("person", "animal"):
        assert night[name]["ir"] > 6.0, night
        assert night[name]["rgb"] < 10.0, night
        assert night[name]["rgb"] < 0.5 * night["car"]["rgb"], night
    assert night["person"]["rgb"] < 0.45 * day["person"]["rgb"], (day, night)
    # signs and lamp posts: at background temperature (K) yet clearly visible in RGB by day
    for name in ("traffic_sign", "lamp"):
        assert day[name]["ir"] < 2.5, day
        assert day[name]["ir"] < 0.2 * night["person"]["ir"], (day, night)
        assert day[name]["rgb_colour"] > 40.0, day


def test_fog_washes_out_rgb_not_thermal(gen):
    day, fog = gen.generate(2, "day"), gen.generate(2, "fog")
    assert fog.rgb.astype(float).std() < 0.8 * day.rgb.astype(float).std()
    ir_ratio = (fog.thermal / 100.0).std() / (day.thermal / 100.0).std()
    assert ir_ratio > 0.3  # thermal keeps structure (the fog sky is warmer, so some loss)


def test_bad_input():
    with pytest.raises(ValueError, match="size"):
        SceneGenerator(0, 16, 160)
    with pytest.raises(ValueError, match="size"):
        SceneGenerator(0, 128, 31)
    with pytest.raises(ValueError, match="condition"):
        SceneGenerator(0, H, W).generate(0, "snow")
    with pytest.raises(ValueError, match="condition"):
        SceneGenerator(0, H, W, conditions=("day", "rain"))
    with pytest.raises(ValueError, match="condition_weights"):
        SceneGenerator(0, H, W, condition_weights=(1, 1))
    with pytest.raises(ValueError, match="index"):
        SceneGenerator(0, H, W).generate(-1)
    with pytest.raises(ValueError, match="seed"):
        SceneGenerator(-3, H, W)
    with pytest.raises(ValueError, match="count"):
        write_dataset("/nonexistent/never", -1, 0, H, W)


def test_condition_weights_select():
    g = SceneGenerator(0, H, W, conditions=("night", "fog"), condition_weights=(1, 0))
    assert {g.generate(i).condition for i in range(5)} == {"night"}


def _read(path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def _names(root) -> list[str]:
    return sorted(p.stem for p in (root / "ir").glob("*.png"))


def test_layout_round_trip(tmp_path, gen):
    s = gen.generate(1)
    assert len(s.boxes) > 0
    write_sample(tmp_path, s, DET)
    ir = _read(tmp_path / "ir" / f"{s.name}.png")
    assert ir.dtype == np.uint16 and np.array_equal(ir, s.thermal)  # 16-bit PNG, bit-exact
    assert np.array_equal(_read(tmp_path / "vi" / f"{s.name}.png")[..., ::-1], s.rgb)  # BGR on disk
    assert np.array_equal(_read(tmp_path / "masks" / f"{s.name}.png"), s.mask)
    boxes, labels = read_voc_xml(tmp_path / "labels" / f"{s.name}.xml", DET)
    assert np.array_equal(boxes, s.boxes) and np.array_equal(labels, s.labels)


def test_voc_xml_fractional_and_empty(tmp_path):
    path = tmp_path / "a.xml"
    boxes = np.array([[0.5, 1.25, 10.0, 20.75], [3, 4, 5, 6]], np.float32)
    write_voc_xml(path, "a", 64, 48, boxes, [4, 0], DET)
    b, l = read_voc_xml(path, DET)
    assert np.array_equal(b, boxes) and l.tolist() == [4, 0]
    write_voc_xml(tmp_path / "e.xml", "e", 64, 48, np.zeros((0, 4)), [], DET)
    b, l = read_voc_xml(tmp_path / "e.xml", DET)
    assert b.shape == (0, 4) and l.shape == (0,)
    b, l = read_voc_xml(path, DET, class_map={"traffic_sign": None})
    assert l.tolist() == [0]


def test_voc_boxes_are_clipped_to_the_stated_image_size(tmp_path):
    path = tmp_path / "c.xml"
    write_voc_xml(path, "c", 64, 48, [[-3, 10, 70, 20], [5, 40, 9, 60]], [0, 2], DET)
    b, l = read_voc_xml(path, DET)
    assert b.tolist() == [[0, 10, 64, 20], [5, 40, 9, 48]] and l.tolist() == [0, 2]
    write_voc_xml(path, "c", 64, 48, [[70, 10, 80, 20]], [0], DET)
    with pytest.raises(ValueError, match=r"c.xml object 0 \(person\): invalid box .*outside the 64x48 image"):
        read_voc_xml(path, DET)


@pytest.mark.parametrize(
    "text, match",
    [
        ("<annotation><object><name>person</name>", "malformed"),
        ("<annotation><object><name>unicorn</name><bndbox><xmin>1</xmin><ymin>1</ymin>"
         "<xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>", "unknown class 'unicorn'"),
        ("<annotation><object><name>car</name><bndbox><xmin>a</xmin><ymin>1</ymin>"
         "<xmax>2</xmax><ymax>2</ymax></bndbox></object></annotation>", "non-numeric"),
        ("<annotation><object><name>car</name></object></annotation>", "bndbox"),
        ("<notvoc/>", "malformed"),
    ],
)
def test_bad_voc_xml_names_the_file(tmp_path, text, match):
    path = tmp_path / "broken_label.xml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        read_voc_xml(path, DET)
    assert "broken_label.xml" in str(info.value)


def test_write_dataset_and_cli(tmp_path, capsys):
    root = write_dataset(tmp_path / "ds", 3, 5, H, W, condition="fog", progress=False)
    assert _names(root) == [f"syn_5_{i:06d}" for i in range(3)]
    meta = read_meta(root)
    assert meta["seed"] == 5 and meta["height"] == H and meta["width"] == W
    assert meta["detection_classes"] == list(DET)
    assert set(meta["samples"].values()) == {"fog"}
    ref = SceneGenerator(5, H, W).generate(2, "fog")
    assert np.array_equal(_read(root / "ir" / "syn_5_000002.png"), ref.thermal)
    assert np.array_equal(_read(root / "vi" / "syn_5_000002.png")[..., ::-1], ref.rgb)

    assert main(["--out", str(tmp_path / "cli"), "--count", "2", "--seed", "1", "--height", "64", "--width", "96"]) == 0
    assert len(_names(tmp_path / "cli")) == 2
    assert json.loads((tmp_path / "cli" / "meta.json").read_text())["width"] == 96
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "bad"), "--count", "-2"])
    assert "count" in capsys.readouterr().err
