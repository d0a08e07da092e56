"""Deterministic synthetic thermal + RGB road scenes with boxes and per-pixel classes.

``SceneGenerator(seed).generate(index)`` renders one registered pair (thermal, RGB) of a road scene,
seen from a car-mounted camera, with detection boxes and a segmentation mask. Every sample is a pure
function of ``(seed, index, height, width, classes, conditions, condition_weights)``: random access in
any order gives bit-identical arrays (each sample draws from ``np.random.default_rng([seed, index, k])``;
the sensor-noise banks come from a fixed seed and depend only on the image size).

Modality matters by design:

* person / animal -- warm bodies (skin 305.5-308.5 K, clothing/fur between ambient and skin): strong
  thermal contrast in every condition. In RGB at night their albedo is drawn close to the background
  behind them (dark clothing / fur), so they nearly vanish; in fog they wash out with distance.
* car -- hot wheels, brakes, underbody, grille and exhaust when moving (parked cars are near ambient),
  cold-looking windows (they reflect the sky); coloured body, and head/tail lights at night and in fog.
* bicycle -- thin low-emissivity frame (apparent temperature mostly that of the background) and tyres
  near ambient: mostly an RGB object (the rear reflector retro-reflects at night). Half of them carry
  a rider, labelled as a separate person.
* traffic_sign / lamp (unlit lamp post) -- rendered at the *background* temperature, i.e. zero thermal
  contrast; clearly visible in RGB by day (signs retro-reflect at night). lane_marking paint likewise
  exists only in RGB.

Conditions (RGB side): ``day``; ``night`` (dark, ego headlight pool, gain noise, lit car lights);
``fog`` (contrast falls with distance towards a grey veil; thermal mildly attenuated); ``glare`` (a low
sun or an oncoming headlight pair whose bloom saturates part of the frame). Thermal side: sky cold (down
to ambient - 60 K when clear), road warm after the day, 0.15-0.35 K sensor noise, slight optical blur,
optional fixed-pattern column noise. Thermal is radiometric "TLinear": uint16 counts = centikelvin.
"""
from __future__ import annotations

import argparse
import math
import sys
import threading
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .classes import ClassConfig, load_classes

CONDITIONS = ("day", "night", "fog", "glare")
OBJECT_KINDS = ("person", "car", "bicycle", "animal", "traffic_sign", "lamp")
STUFF_CLASSES = ("road", "lane_marking", "sky")
MIN_SIZE = 32
COUNTS_PER_KELVIN = 100  # TLinear: uint16 counts are centikelvin (29315 = 20 degC)

MIN_VISIBLE_PX = 10  # an object with fewer visible pixels gets no box
MIN_VISIBLE_FRAC = 0.2  # ... nor one with less than this fraction of its in-image pixels visible
MIN_BOX_SIDE = 2  # ... nor one whose visible extent is thinner than this (px)
MIN_BOX_EXTENT = 8  # ... or whose longer side is shorter than this (px)

_KIND_WEIGHTS = {"person": 0.26, "car": 0.24, "bicycle": 0.10, "animal": 0.12, "traffic_sign": 0.14, "lamp": 0.14}
_SHIFT = 4  # fixed-point bits for cv2 drawing (sub-pixel vertex placement)
_FP = 1 << _SHIFT


@dataclass
class SyntheticSample:
    """One rendered pair. ``boxes`` are xyxy pixel coordinates with x2/y2 exclusive."""

    thermal: np.ndarray  # (H, W) uint16, centikelvin
    rgb: np.ndarray  # (H, W, 3) uint8, RGB order
    boxes: np.ndarray  # (N, 4) float32 xyxy
    labels: np.ndarray  # (N,) int64 indices into classes.detection
    mask: np.ndarray  # (H, W) uint8 indices into classes.segmentation
    condition: str
    name: str

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])


# ----------------------------------------------------------------------------------------------------
# validation helpers


def _check_size(height, width) -> tuple[int, int]:
    try:
        h, w = int(height), int(width)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"height and width must be integers, got {height!r} x {width!r}") from exc
    if h != height or w != width or h < MIN_SIZE or w < MIN_SIZE:
        raise ValueError(f"image size must be integers >= {MIN_SIZE}, got height={height!r} width={width!r}")
    return h, w


def _check_condition(condition) -> str:
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; expected one of {', '.join(CONDITIONS)}")
    return condition


def _check_nonneg_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------------------------------
# noise banks (fixed seed, depend on the image size only)


@lru_cache(maxsize=4)
def _noise_banks(height: int, width: int):
    """White noise (2-D and 3-D) and smooth texture banks, ~1.5x the frame, sampled at random offsets."""
    rng = np.random.default_rng(0x5EED_F05)
    bh, bw = height + height // 2 + 1, width + width // 2 + 1
    white1 = rng.standard_normal((bh, bw), dtype=np.float32)
    white3 = rng.standard_normal((bh, bw, 3), dtype=np.float32)
    coarse = cv2.GaussianBlur(rng.standard_normal((bh, bw), dtype=np.float32), (0, 0), max(2.0, width / 40))
    fine = cv2.GaussianBlur(rng.standard_normal((bh, bw), dtype=np.float32), (0, 0), 1.5)
    texture = coarse / coarse.std() + 0.5 * fine / fine.std()
    texture /= texture.std()
    for arr in (white1, white3, texture):
        arr.flags.writeable = False
    return white1, white3, texture.astype(np.float32)


def _bank_view(bank, rng, height, width):
    oy = int(rng.integers(0, bank.shape[0] - height + 1))
    ox = int(rng.integers(0, bank.shape[1] - width + 1))
    return bank[oy : oy + height, ox : ox + width]


# ----------------------------------------------------------------------------------------------------
# geometry


@dataclass
class _Cam:
    """Pinhole camera at height hc over a flat road; road-relative lateral L, depth Z (metres)."""

    f: float
    cx: float
    yh: float  # horizon row
    hc: float
    x0: float  # road centre relative to the camera at Z
    tyaw: float  # road heading relative to the camera

    def x(self, lat, z):
        return self.cx + self.f * ((self.x0 + lat) / z + self.tyaw)

    def y(self, z):
        return self.yh + self.f * self.hc / z

    def z_of_row(self, y):
        return self.f * self.hc / np.maximum(y - self.yh, 1e-3)


@dataclass
class _Obj:
    kind: str
    z: float
    lat: float
    order: int
    params: dict = field(default_factory=dict)
    rider_of: int = -1  # for a rider (person): position of its bicycle in the object list
    rider: int = -1  # for a bicycle: position of its rider


@dataclass
class _Layout:
    cam: _Cam
    road_half: float
    sidewalk: float
    lane_bounds: list
    dash_len: float
    dash_gap: float
    dash_phase: float
    centre_solid: bool
    skyline: list  # [(kind, polygon px (N,2), depth)]
    objects: list


def _log_uniform(rng, lo, hi):
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _sample_layout(rng, height, width, kinds, kind_p) -> _Layout:
    f = width * rng.uniform(0.8, 1.0)
    yh = height * rng.uniform(0.36, 0.48)
    hc = rng.uniform(1.3, 1.7)
    road_half = rng.uniform(3.2, 7.5)
    x0 = -rng.uniform(0.15, 0.7) * road_half  # ego drives on the right half
    cam = _Cam(f, width / 2.0, yh, hc, x0, rng.uniform(-0.07, 0.07))
    sidewalk = rng.uniform(1.5, 3.5) if rng.random() < 0.75 else 0.0
    n_lanes = max(2, int(round(2 * road_half / 3.5)))
    lane_bounds = [-road_half + k * 2 * road_half / n_lanes for k in range(1, n_lanes)]
    dash_len, dash_gap = rng.uniform(2.5, 4.0), rng.uniform(5.0, 9.0)
    dash_phase = rng.uniform(0, dash_len + dash_gap)
    centre_solid = bool(rng.random() < 0.25)

    # skyline: a tree ridge and some buildings above the horizon (unlabelled, far away)
    skyline = []
    if rng.random() < 0.85:
        xs = [-4.0]
        while xs[-1] < width + 4:
            xs.append(xs[-1] + width * rng.uniform(0.01, 0.05))
        base = height * rng.uniform(0.01, 0.06)
        heights = np.clip(base + height * 0.02 * rng.standard_normal(len(xs)).cumsum() * 0.4, 0, height * 0.12)
        ridge = [(x, yh - hgt) for x, hgt in zip(xs, heights)]
        poly = np.array([(-4.0, yh + 1.0)] + ridge + [(xs[-1], yh + 1.0)], np.float64)
        skyline.append(("tree", poly, rng.uniform(150, 400)))
    for _ in range(int(rng.integers(0, 5))):
        bx = rng.uniform(-0.05, 1.0) * width
        bwid = width * rng.uniform(0.04, 0.14)
        bhgt = height * rng.uniform(0.03, 0.16)
        poly = np.array([(bx, yh + 1.0), (bx, yh - bhgt), (bx + bwid, yh - bhgt), (bx + bwid, yh + 1.0)], np.float64)
        skyline.append(("building", poly, rng.uniform(150, 500)))

    z_min = max(4.0, 1.15 * f * hc / (height - yh))
    objects: list[_Obj] = []
    n = int(rng.integers(2, 11))
    for _ in range(n):
        kind = kinds[int(rng.choice(len(kinds), p=kind_p))]
        obj = _sample_object(rng, kind, cam, road_half, sidewalk, z_min, width)
        if obj is None:
            continue
        obj.order = len(objects)
        objects.append(obj)
        if kind == "bicycle" and obj.params["rider"] and "person" in kinds:
            h = rng.uniform(1.55, 1.9)
            rider = _Obj("person", obj.z, obj.lat, len(objects),
                         dict(h=h * 0.84, stride=0.06 * h, swing=0.0, lift=0.3,
                              riding=True, child=False), rider_of=obj.order)
            obj.rider = rider.order
            objects.append(rider)
    return _Layout(cam, road_half, sidewalk, lane_bounds, dash_len, dash_gap, dash_phase, centre_solid, skyline, objects)


def _sample_object(rng, kind, cam, road_half, sidewalk, z_min, width):
    side = 1.0 if rng.random() < 0.5 else -1.0
    params: dict = {}
    if kind == "person":
        child = bool(rng.random() < 0.1)
        h = rng.uniform(1.0, 1.4) if child else rng.uniform(1.5, 1.95)
        params = dict(h=h, stride=rng.uniform(0.0, 0.28) * h, swing=rng.uniform(-0.08, 0.08) * h, lift=0.0,
                      riding=False, child=child)
        if rng.random() < 0.25:  # crossing the road
            lat = rng.uniform(-road_half, road_half)
        else:  # on the sidewalk / verge
            lat = side * (road_half + rng.uniform(0.3, max(sidewalk, 1.0) + 0.5))
        z_max = min(90.0, cam.f * h / 10)
    elif kind == "car":
        r = rng.random()
        params = dict(cw=rng.uniform(1.65, 1.95), ch=rng.uniform(1.35, 1.75), cl=rng.uniform(3.9, 4.9), dir=side)
        if r < 0.62:
            lane_w = 2 * road_half / max(2, int(round(2 * road_half / 3.5)))
            n_lanes = int(round(2 * road_half / lane_w))
            k = int(rng.integers(0, n_lanes))
            lat = -road_half + (k + 0.5) * lane_w + rng.uniform(-0.3, 0.3)
            params.update(view="rear" if lat > 0 else "front", moving=True)
        elif r < 0.88:
            lat = side * (road_half - 1.05)
            params.update(view="rear" if side > 0 else "front", moving=bool(rng.random() < 0.3))
        else:
            lat = rng.uniform(-road_half + 2.0, road_half - 2.0)
            params.update(view="side", moving=True)
        z_max = min(140.0, cam.f * params["cw"] / 10)
    elif kind == "bicycle":
        if rng.random() < 0.6:
            lat = side * (road_half - rng.uniform(0.4, 1.0))
            params = dict(view="rear", dir=side)
        else:
            lat = rng.uniform(-road_half, road_half)
            params = dict(view="side", dir=side)
        params["rider"] = bool(rng.random() < 0.5)
        z_max = min(70.0, cam.f * 1.0 / 12)
    elif kind == "animal":
        hs = rng.uniform(0.45, 1.2)
        params = dict(hs=hs, bl=hs * rng.uniform(1.1, 1.5), dir=side, ears=bool(rng.random() < 0.5))
        lat = rng.uniform(-road_half, road_half) if rng.random() < 0.35 else side * (road_half + sidewalk + rng.uniform(0.5, 8.0))
        z_max = min(90.0, cam.f * hs * 1.2 / 10)
    elif kind == "traffic_sign":
        ps = rng.uniform(0.6, 0.9)
        side = 1.0 if rng.random() < 0.75 else -1.0
        params = dict(ps=ps, vb=rng.uniform(1.7, 2.4), shape=int(rng.integers(0, 5)))
        lat = side * (road_half + sidewalk + rng.uniform(0.2, 1.5))
        z_max = min(90.0, cam.f * ps / 9)
    elif kind == "lamp":
        hl = rng.uniform(5.0, 9.0)
        params = dict(hl=hl, pw=rng.uniform(0.12, 0.22), arm=rng.uniform(1.0, 2.2), dir=-side)
        lat = side * (road_half + rng.uniform(0.3, 1.2))
        z_max = min(120.0, cam.f * hl / 18)
    else:  # pragma: no cover - kinds are filtered by the caller
        raise ValueError(kind)
    if z_max <= z_min:
        return None
    for _ in range(6):  # keep the object's foot within (or near) the frame
        z = _log_uniform(rng, z_min, z_max)
        if -0.1 * width <= cam.x(lat, z) <= 1.1 * width:
            return _Obj(kind, z, lat, 0, params)
    return None


# ----------------------------------------------------------------------------------------------------
# drawing


def _fp(pts) -> np.ndarray:
    return np.round(np.asarray(pts, np.float64) * _FP).astype(np.int32)


def _fill(img, pts, value):
    cv2.fillPoly(img, [_fp(pts)], value, cv2.LINE_8, _SHIFT)


class _Canvas:
    """Part-id raster of one object in a local window; draws in metric object coordinates.

    (u, v) are metres right of / above the object's ground anchor (xa, ya); s is pixels per metre.
    """

    def __init__(self, xa, ya, s, umin, umax, vmin, vmax):
        self.xa, self.ya, self.s = xa, ya, s
        self.ox = int(math.floor(xa + s * umin)) - 2
        self.oy = int(math.floor(ya - s * vmax)) - 2
        w = int(math.ceil(xa + s * umax)) + 3 - self.ox
        h = int(math.ceil(ya - s * vmin)) + 3 - self.oy
        self.a = np.zeros((h, w), np.uint8)

    def _px(self, uv):
        uv = np.asarray(uv, np.float64).reshape(-1, 2)
        return np.stack([self.xa - self.ox + self.s * uv[:, 0], self.ya - self.oy - self.s * uv[:, 1]], 1)

    def poly(self, uv, pid):
        _fill(self.a, self._px(uv), int(pid))

    def limb(self, uv0, uv1, width_m, pid):
        p = self._px([uv0, uv1])
        wpx = width_m * self.s
        if wpx < 2.5:
            q = _fp(p)
            cv2.line(self.a, tuple(map(int, q[0])), tuple(map(int, q[1])), int(pid), max(1, int(round(wpx))), cv2.LINE_8, _SHIFT)
            return
        d = p[1] - p[0]
        n = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-6) * (wpx / 2)
        _fill(self.a, np.array([p[0] + n, p[1] + n, p[1] - n, p[0] - n]), int(pid))

    def rect(self, u0, u1, v0, v1, pid):
        if (u1 - u0) * self.s < 1.5:
            um = (u0 + u1) / 2
            self.limb((um, v0), (um, v1), u1 - u0, pid)
        elif (v1 - v0) * self.s < 1.5:
            vm = (v0 + v1) / 2
            self.limb((u0, vm), (u1, vm), v1 - v0, pid)
        else:
            self.poly([(u0, v0), (u1, v0), (u1, v1), (u0, v1)], pid)

    def ellipse(self, uc, vc, ru, rv, pid):
        c = _fp(self._px([(uc, vc)]))[0]
        axes = (max(int(round(ru * self.s * _FP)), _FP // 2), max(int(round(rv * self.s * _FP)), _FP // 2))
        cv2.ellipse(self.a, (int(c[0]), int(c[1])), axes, 0, 0, 360, int(pid), -1, cv2.LINE_8, _SHIFT)

    def ring(self, uc, vc, r, width_m, pid):
        c = _fp(self._px([(uc, vc)]))[0]
        cv2.circle(self.a, (int(c[0]), int(c[1])), max(int(round(r * self.s * _FP)), _FP), int(pid),
                   max(1, int(round(width_m * self.s))), cv2.LINE_8, _SHIFT)


# part tables: name -> id, per kind
_PARTS = {
    "person": ("skin", "hair", "top", "bottom"),
    "animal": ("body", "legs", "head", "tail"),
    "car": ("body", "window", "tyre", "under", "head", "grille", "exhaust", "rim", "tail", "plate"),
    "bicycle": ("tyre", "frame", "bar", "reflector"),
    "traffic_sign": ("pole", "outer", "inner", "symbol"),
    "lamp": ("pole", "head", "base"),
}
_PID = {k: {name: i + 1 for i, name in enumerate(v)} for k, v in _PARTS.items()}


def _draw_person(cv, p):
    h, lift, st, sw = p["h"], p["lift"], p["stride"], p["swing"]
    pid = _PID["person"]

    def v(t):
        return lift + t * h

    hip, sh = v(0.52), v(0.81)
    for sg in (-1.0, 1.0):
        foot = sg * (0.045 * h + st / 2)
        cv.limb((sg * 0.055 * h, hip + 0.02 * h), (foot, lift + 0.01 * h), 0.085 * h, pid["bottom"])
    cv.poly([(-0.125 * h, sh), (0.125 * h, sh), (0.1 * h, hip), (-0.1 * h, hip)], pid["top"])
    for sg in (-1.0, 1.0):
        hand = (sg * 0.165 * h + sg * sw, v(0.44))
        cv.limb((sg * 0.115 * h, sh - 0.025 * h), hand, 0.06 * h, pid["top"])
        cv.ellipse(hand[0], hand[1] - 0.02 * h, 0.028 * h, 0.035 * h, pid["skin"])
    cv.rect(-0.032 * h, 0.032 * h, sh - 0.01 * h, v(0.88), pid["skin"])
    cv.ellipse(0, v(0.935), 0.06 * h, 0.062 * h, pid["hair"])
    cv.ellipse(0, v(0.922), 0.052 * h, 0.06 * h, pid["skin"])


def _person_extent(p):
    h = p["h"]
    half = 0.25 * h + p["stride"] / 2 + abs(p["swing"])
    return -half, half, p["lift"], p["lift"] + h


def _draw_animal(cv, p):
    hs, bl, d = p["hs"], p["bl"], p["dir"]
    pid = _PID["animal"]
    for u in (-0.36, -0.24, 0.24, 0.36):
        cv.limb((u * bl, 0.72 * hs), (u * bl + 0.03 * hs * d, 0.0), 0.09 * hs, pid["legs"])
    cv.limb((-d * 0.47 * bl, 0.86 * hs), (-d * 0.6 * bl, 0.55 * hs), 0.05 * hs, pid["tail"])
    cv.ellipse(0.0, 0.76 * hs, bl / 2, 0.2 * hs, pid["body"])
    cv.limb((d * 0.36 * bl, 0.8 * hs), (d * 0.56 * bl, 1.05 * hs), 0.17 * hs, pid["body"])
    cv.ellipse(d * 0.6 * bl, 1.08 * hs, 0.15 * hs, 0.1 * hs, pid["head"])
    cv.ellipse(d * (0.6 * bl + 0.14 * hs), 1.03 * hs, 0.08 * hs, 0.06 * hs, pid["head"])
    if p["ears"]:
        cv.poly([(d * 0.55 * bl, 1.14 * hs), (d * 0.5 * bl, 1.28 * hs), (d * 0.6 * bl, 1.16 * hs)], pid["head"])


def _animal_extent(p):
    hs, bl = p["hs"], p["bl"]
    m = 0.65 * bl + 0.25 * hs
    return -m, m, 0.0, 1.3 * hs


def _draw_car(cv, p):
    pid = _PID["car"]
    ch = p["ch"]
    if p["view"] == "side":
        hl, d = p["cl"] / 2, p["dir"]
        cl = p["cl"]
        body = [(-hl, 0.3), (-hl, 0.78), (-hl + 0.3, 0.93), (hl - 0.25, 0.95), (hl, 0.76), (hl, 0.3)]
        cv.poly([(u * d, v) for u, v in body], pid["body"])
        cv.poly([(-0.34 * cl * d, 0.9), (0.27 * cl * d, 0.9), (0.1 * cl * d, ch), (-0.24 * cl * d, ch)], pid["body"])
        cv.poly([(-0.3 * cl * d, 0.96), (0.22 * cl * d, 0.96), (0.08 * cl * d, ch - 0.06), (-0.21 * cl * d, ch - 0.06)], pid["window"])
        cv.rect(-0.03 * cl, 0.03 * cl, 0.93, ch - 0.04, pid["body"])  # B pillar
        for u in (-0.31 * cl, 0.31 * cl):
            cv.ellipse(u, 0.33, 0.33, 0.33, pid["tyre"])
            cv.ellipse(u, 0.33, 0.16, 0.16, pid["rim"])
        lo, hi = sorted(((hl - 0.1) * d, hl * d))
        cv.rect(lo, hi, 0.62, 0.74, pid["head"])
        lo, hi = sorted((-(hl - 0.1) * d, -hl * d))
        cv.rect(lo, hi, 0.64, 0.76, pid["tail"])
        return
    cw = p["cw"]
    hw = cw / 2
    for sg in (-1.0, 1.0):
        lo, hi = sorted((sg * (hw - 0.04), sg * (hw - 0.3)))
        cv.rect(lo, hi, 0.0, 0.5, pid["tyre"])
    cv.rect(-hw + 0.25, hw - 0.25, 0.1, 0.32, pid["under"])
    cv.poly([(-hw, 0.3), (hw, 0.3), (hw, 0.5 * ch), (hw - 0.05, 0.58 * ch), (-hw + 0.05, 0.58 * ch), (-hw, 0.5 * ch)], pid["body"])
    cv.poly([(-0.47 * cw, 0.57 * ch), (0.47 * cw, 0.57 * ch), (0.38 * cw, ch), (-0.38 * cw, ch)], pid["body"])
    cv.poly([(-0.42 * cw, 0.62 * ch), (0.42 * cw, 0.62 * ch), (0.35 * cw, 0.95 * ch), (-0.35 * cw, 0.95 * ch)], pid["window"])
    light = pid["head"] if p["view"] == "front" else pid["tail"]
    for sg in (-1.0, 1.0):
        lo, hi = sorted((sg * (hw - 0.06), sg * (hw - 0.36)))
        cv.rect(lo, hi, 0.43 * ch, 0.52 * ch, light)
    if p["view"] == "front":
        cv.rect(-0.32, 0.32, 0.3, 0.47 * ch, pid["grille"])
    else:
        cv.rect(-0.26, 0.26, 0.33, 0.45, pid["plate"])
        cv.ellipse(0.55 * hw * p["dir"], 0.2, 0.07, 0.05, pid["exhaust"])


def _car_extent(p):
    if p["view"] == "side":
        m = p["cl"] / 2 + 0.05
    else:
        m = p["cw"] / 2 + 0.05
    return -m, m, 0.0, p["ch"] + 0.02


def _draw_bicycle(cv, p):
    pid = _PID["bicycle"]
    d = p["dir"]
    if p["view"] == "rear":
        cv.rect(-0.025, 0.025, 0.0, 0.68, pid["tyre"])
        cv.limb((0.0, 0.35), (0.0, 0.92), 0.04, pid["frame"])
        cv.limb((-0.3, 1.0), (0.3, 1.0), 0.035, pid["bar"])
        cv.rect(-0.08, 0.08, 0.88, 0.95, pid["bar"])
        cv.rect(-0.04, 0.04, 0.7, 0.77, pid["reflector"])
        return
    r, wb = 0.34, 1.04
    rear, front = (-d * wb / 2, r), (d * wb / 2, r)
    for c in (rear, front):
        cv.ring(c[0], c[1], r - 0.025, 0.05, pid["tyre"])
    bb, seat, head = (-d * 0.05, 0.3), (-d * 0.2, 0.85), (d * 0.38, 0.82)
    for a, b in ((rear, bb), (rear, seat), (bb, seat), (bb, head), (seat, head), (head, front)):
        cv.limb(a, b, 0.035, pid["frame"])
    cv.limb(head, (d * 0.32, 1.0), 0.03, pid["bar"])
    cv.limb((d * 0.3, 1.0), (d * 0.44, 1.02), 0.03, pid["bar"])
    cv.limb((-d * 0.3, 0.9), (-d * 0.12, 0.9), 0.05, pid["bar"])
    cv.rect(-d * 0.56 - 0.03, -d * 0.56 + 0.03, 0.68, 0.74, pid["reflector"])


def _bicycle_extent(p):
    if p["view"] == "rear":
        return -0.32, 0.32, 0.0, 1.05
    return -0.9, 0.9, 0.0, 1.06


def _draw_sign(cv, p):
    pid = _PID["traffic_sign"]
    ps, vb, shape = p["ps"], p["vb"], p["shape"]
    r = ps / 2
    cv.rect(-0.035, 0.035, 0.0, vb + r, pid["pole"])
    cy = vb + r
    if shape == 0:  # round prohibition sign
        cv.ellipse(0, cy, r, r, pid["outer"])
        cv.ellipse(0, cy, 0.74 * r, 0.74 * r, pid["inner"])
        cv.rect(-0.45 * r, 0.45 * r, cy - 0.12 * r, cy + 0.12 * r, pid["symbol"])
    elif shape == 1:  # warning triangle
        tri = np.array([(-r, vb), (r, vb), (0, vb + 1.73 * r)])
        cen = tri.mean(0)
        cv.poly(tri, pid["outer"])
        cv.poly(cen + (tri - cen) * 0.62, pid["inner"])
        cv.rect(-0.07 * r, 0.07 * r, cen[1] - 0.2 * r, cen[1] + 0.3 * r, pid["symbol"])
    elif shape == 2:  # blue information rectangle
        cv.rect(-r, r, vb, vb + 1.6 * r, pid["outer"])
        cv.poly([(-0.5 * r, vb + 0.6 * r), (0.1 * r, vb + 0.6 * r), (0.1 * r, vb + 0.35 * r), (0.6 * r, vb + 0.8 * r),
                 (0.1 * r, vb + 1.25 * r), (0.1 * r, vb + 1.0 * r), (-0.5 * r, vb + 1.0 * r)], pid["inner"])
    elif shape == 3:  # yellow diamond
        dia = np.array([(0, vb), (r, vb + r), (0, vb + 2 * r), (-r, vb + r)])
        cv.poly(dia, pid["symbol"])
        cv.poly((0, cy) + (dia - (0, cy)) * 0.85, pid["outer"])
        cv.rect(-0.25 * r, 0.25 * r, cy - 0.25 * r, cy + 0.25 * r, pid["symbol"])
    else:  # octagon stop sign
        ang = np.pi / 8 + np.arange(8) * np.pi / 4
        cv.poly(np.stack([r * np.cos(ang), cy + r * np.sin(ang)], 1), pid["outer"])
        cv.rect(-0.6 * r, 0.6 * r, cy - 0.15 * r, cy + 0.15 * r, pid["inner"])


def _sign_extent(p):
    r = p["ps"] / 2
    return -r - 0.05, r + 0.05, 0.0, p["vb"] + 2 * r + 0.05


def _draw_lamp(cv, p):
    pid = _PID["lamp"]
    hl, pw, arm, d = p["hl"], p["pw"], p["arm"], p["dir"]
    cv.rect(-0.8 * pw, 0.8 * pw, 0.0, 0.9, pid["base"])
    if pw * cv.s < 2.5:
        cv.limb((0.0, 0.0), (0.0, hl + 0.2), pw, pid["pole"])
    else:
        cv.poly([(-pw / 2, 0.0), (pw / 2, 0.0), (0.35 * pw, hl + 0.2), (-0.35 * pw, hl + 0.2)], pid["pole"])
    cv.limb((0.0, hl), (d * arm * 0.6, hl + 0.25), 0.07, pid["pole"])
    cv.limb((d * arm * 0.6, hl + 0.25), (d * arm, hl + 0.2), 0.07, pid["pole"])
    a = d * arm
    cv.poly([(a - 0.35, hl + 0.24), (a + 0.35, hl + 0.24), (a + 0.3, hl + 0.08), (a - 0.3, hl + 0.08)], pid["head"])


def _lamp_extent(p):
    a = p["dir"] * p["arm"]
    return min(0.0, a) - 0.4, max(0.0, a) + 0.4, 0.0, p["hl"] + 0.32


_DRAW = {
    "person": (_draw_person, _person_extent),
    "animal": (_draw_animal, _animal_extent),
    "car": (_draw_car, _car_extent),
    "bicycle": (_draw_bicycle, _bicycle_extent),
    "traffic_sign": (_draw_sign, _sign_extent),
    "lamp": (_draw_lamp, _lamp_extent),
}

_CLOTHES = np.array([(40, 50, 80), (30, 30, 32), (220, 220, 215), (180, 30, 35), (220, 190, 40), (50, 110, 60),
                     (120, 120, 120), (100, 70, 45), (120, 160, 210), (235, 120, 30), (60, 40, 90), (200, 160, 130)], np.float32)
_SKIN = np.array([(230, 190, 160), (200, 150, 110), (140, 95, 65), (90, 60, 40)], np.float32)
_HAIR = np.array([(30, 25, 20), (90, 60, 30), (200, 170, 110), (150, 150, 150)], np.float32)
_FUR = np.array([(125, 85, 50), (90, 60, 35), (160, 140, 110), (40, 35, 30), (200, 190, 170), (110, 100, 90)], np.float32)
_CAR_PAINT = np.array([(225, 225, 225), (25, 25, 28), (160, 162, 168), (170, 25, 30), (30, 60, 140), (90, 95, 100),
                       (40, 90, 60), (230, 200, 60)], np.float32)
_BIKE_PAINT = np.array([(200, 30, 30), (30, 80, 200), (20, 20, 20), (230, 230, 230), (40, 160, 70), (240, 140, 20)], np.float32)
_SIGN_COLORS = {  # (outer, inner, symbol)
    0: ((200, 25, 30), (240, 240, 235), (25, 25, 25)),
    1: ((200, 25, 30), (240, 240, 235), (25, 25, 25)),
    2: ((20, 70, 170), (240, 240, 240), (240, 240, 240)),
    3: ((235, 190, 20), (0, 0, 0), (20, 20, 20)),
    4: ((200, 20, 25), (245, 245, 245), (245, 245, 245)),
}


def _pick(rng, table):
    return table[int(rng.integers(0, len(table)))] * rng.uniform(0.85, 1.1, 3).astype(np.float32)


class _Ctx:
    """Per-sample appearance: condition, ambient temperature and background temperatures/colours."""

    def __init__(self, rng, cond):
        self.cond = cond
        u = rng.random
        a = {"day": (276, 293), "glare": (276, 293), "night": (268, 288), "fog": (272, 288)}[cond]
        self.ambient = A = rng.uniform(*a)
        self.overcast = cond == "fog" or (cond == "day" and u() < 0.4)
        if self.overcast:
            self.t_sky = (A - rng.uniform(4, 12), A - rng.uniform(1, 3))  # zenith, horizon
        else:
            self.t_sky = (A - rng.uniform(35, 60), A - rng.uniform(8, 15))
        road_dt = {"day": (3, 9), "glare": (4, 9), "night": (2, 6), "fog": (1, 4)}[cond]
        self.t_road = min(A + rng.uniform(*road_dt), 299.0)
        self.t_side = self.t_road - rng.uniform(0, 3)
        self.t_grass = A + (rng.uniform(-4, -1) if cond == "night" else rng.uniform(-2, 2))
        self.t_tree = A + rng.uniform(-2, 1)
        self.t_building = A + rng.uniform(0, 5)
        # RGB radiance (day-lit albedo, 0..255); night/glare illumination is applied later
        if self.overcast:
            g = rng.uniform(150, 200)
            self.sky = (np.array([g - 20, g - 18, g - 10], np.float32), np.array([g + 15, g + 15, g + 18], np.float32))
        else:
            self.sky = (np.array([70, 120, 200], np.float32) * rng.uniform(0.85, 1.1),
                        np.array([185, 205, 230], np.float32) * rng.uniform(0.9, 1.08))
        self.grass = (_pick(rng, np.array([(80, 115, 55), (130, 120, 80), (95, 105, 70)], np.float32)))
        self.road = np.full(3, rng.uniform(70, 115), np.float32) + rng.uniform(-4, 4, 3).astype(np.float32)
        self.sidewalk = np.full(3, rng.uniform(130, 170), np.float32) + rng.uniform(-5, 5, 3).astype(np.float32)
        self.paint = np.full(3, rng.uniform(195, 235), np.float32)
        self.tree = _pick(rng, np.array([(45, 70, 40), (60, 80, 45), (40, 55, 35)], np.float32))
        self.building = _pick(rng, np.array([(150, 140, 130), (120, 110, 100), (180, 175, 165), (140, 90, 70)], np.float32))
        self.lights_on = cond in ("night", "fog")
        self.obj_gain = 1.0


def _appearance(obj: _Obj, ctx: _Ctx, rng, bg_mean):
    """Per-part RGB albedo (P+1, 3), temperature K (P+1,), emissivity (P+1,) and labelled flag (P+1,).

    The apparent temperature of a part is eps * T + (1 - eps) * T_background: eps 0 makes a part take
    the temperature of what is behind it (thermally invisible), a low eps mimics bare metal.
    """
    names = _PARTS[obj.kind]
    n = len(names) + 1
    rgb = np.zeros((n, 3), np.float32)
    temp = np.zeros(n, np.float32)
    eps = np.ones(n, np.float32)
    lab = np.ones(n, bool)
    lab[0] = False
    pid = _PID[obj.kind]
    A = ctx.ambient
    p = obj.params
    dark = ctx.cond == "night"
    if obj.kind == "person":
        ts = rng.uniform(305.5, 308.5)
        temp[pid["skin"]] = ts
        temp[pid["hair"]] = A + (ts - A) * rng.uniform(0.55, 0.75)
        temp[pid["top"]] = A + (ts - A) * rng.uniform(0.6, 0.85)
        temp[pid["bottom"]] = A + (ts - A) * rng.uniform(0.55, 0.8)
        rgb[pid["skin"]] = _pick(rng, _SKIN)
        rgb[pid["hair"]] = _pick(rng, _HAIR)
        rgb[pid["top"]] = _pick(rng, _CLOTHES)
        rgb[pid["bottom"]] = _pick(rng, _CLOTHES)
        if dark:  # dark clothing, colours close to what is behind: RGB nearly misses people at night
            for k in range(1, n):
                rgb[k] = bg_mean * rng.uniform(0.6, 1.05, 3)
        elif ctx.cond == "fog":
            rgb[1:] = rgb[1:] * 0.6 + 0.4 * rgb[1:].mean(1, keepdims=True)
    elif obj.kind == "animal":
        tb = rng.uniform(308.0, 311.0)
        fur = _pick(rng, _FUR)
        temp[pid["body"]] = A + (tb - A) * rng.uniform(0.5, 0.75)
        temp[pid["legs"]] = A + (tb - A) * rng.uniform(0.65, 0.85)
        temp[pid["head"]] = A + (tb - A) * rng.uniform(0.7, 0.9)
        temp[pid["tail"]] = A + (tb - A) * rng.uniform(0.4, 0.6)
        for k in range(1, n):
            rgb[k] = fur * rng.uniform(0.85, 1.1)
        if dark:
            for k in range(1, n):
                rgb[k] = bg_mean * rng.uniform(0.6, 1.05, 3)
    elif obj.kind == "car":
        moving = p["moving"]
        paint = _pick(rng, _CAR_PAINT)
        rgb[pid["body"]] = paint
        rgb[pid["window"]] = rng.uniform(25, 55) * np.array([0.9, 0.95, 1.05], np.float32)
        rgb[pid["tyre"]] = (25, 25, 27)
        rgb[pid["under"]] = (20, 20, 20)
        rgb[pid["head"]] = (215, 215, 205)
        rgb[pid["grille"]] = (35, 35, 38)
        rgb[pid["exhaust"]] = (15, 15, 15)
        rgb[pid["rim"]] = (150, 150, 155)
        rgb[pid["tail"]] = (160, 25, 25)
        rgb[pid["plate"]] = (225, 225, 215)
        temp[:] = A + (rng.uniform(1, 6) if moving else rng.uniform(-1, 2))
        temp[pid["window"]] = A - rng.uniform(3, 10)
        if moving:
            temp[pid["tyre"]] = A + rng.uniform(8, 20)
            temp[pid["rim"]] = A + rng.uniform(15, 40)
            temp[pid["under"]] = A + rng.uniform(8, 20)
            temp[pid["grille"]] = A + rng.uniform(15, 35)
            temp[pid["exhaust"]] = rng.uniform(320, 360)
            temp[pid["head"]] = A + rng.uniform(5, 15)
            temp[pid["tail"]] = A + rng.uniform(2, 8)
    elif obj.kind == "bicycle":
        rgb[pid["tyre"]] = (28, 28, 30)
        rgb[pid["frame"]] = _pick(rng, _BIKE_PAINT)
        rgb[pid["bar"]] = (35, 35, 35)
        rgb[pid["reflector"]] = (200, 30, 25)
        temp[:] = A + rng.uniform(-0.5, 0.5)
        temp[pid["tyre"]] = A + rng.uniform(0.5, 3.0)
        eps[:] = 0.25  # thin bare/painted metal: mostly reflects its surroundings
        eps[pid["tyre"]] = 0.9
    elif obj.kind == "traffic_sign":
        outer, inner, sym = _SIGN_COLORS[p["shape"]]
        jit = rng.uniform(0.9, 1.05)
        rgb[pid["pole"]] = np.full(3, rng.uniform(110, 160), np.float32)
        rgb[pid["outer"]] = np.array(outer, np.float32) * jit
        rgb[pid["inner"]] = np.array(inner, np.float32) * jit
        rgb[pid["symbol"]] = np.array(sym, np.float32) * jit
        temp[:], eps[:] = A, 0.0  # same temperature as the background: zero thermal contrast
        lab[pid["pole"]] = False  # the pole is not part of the sign box
    elif obj.kind == "lamp":
        g = rng.uniform(60, 115)
        rgb[pid["pole"]] = (g, g, g + 3)
        rgb[pid["base"]] = (g * 0.9, g * 0.9, g * 0.9)
        rgb[pid["head"]] = (g * 0.6, g * 0.6, g * 0.62)
        temp[:], eps[:] = A, 0.0
    rgb *= ctx.obj_gain
    return rgb, temp, eps, lab


@dataclass
class _Drawn:
    obj: _Obj
    inst: int
    x0: int
    y0: int
    local: np.ndarray  # part ids of the in-image window
    rgb_lut: np.ndarray
    drawn_px: int  # labelled in-image pixels before occlusion


# ----------------------------------------------------------------------------------------------------
# the generator


class SceneGenerator:
    """Deterministic synthetic thermal + RGB road scenes. ``generate(index)`` is random access."""

    def __init__(self, seed: int, height: int = 512, width: int = 640, classes=None,
                 conditions=CONDITIONS, condition_weights=None):
        self.seed = _check_nonneg_int(seed, "seed")
        self.height, self.width = _check_size(height, width)
        if classes is None or isinstance(classes, (str, Path)):
            classes = load_classes(classes)
        if not isinstance(classes, ClassConfig):
            raise ValueError("classes must be a ClassConfig (fusion_ros.classes.load_classes) or a path, "
                             f"got {type(classes).__name__}")
        self.classes = classes
        det, seg = classes.detection.names, classes.segmentation.names
        self.kinds = tuple(k for k in OBJECT_KINDS if k in det)
        if not self.kinds:
            raise ValueError(f"the detection classes {det} contain none of the generator's object classes {OBJECT_KINDS}")
        missing = [n for n in STUFF_CLASSES + self.kinds if n not in seg]
        if missing:
            raise ValueError(f"segmentation classes lack {missing} (needed by the generator)")
        self._det_index = {k: det.index(k) for k in self.kinds}
        self._seg = {n: seg.index(n) for n in STUFF_CLASSES + self.kinds}
        kw = np.array([_KIND_WEIGHTS[k] for k in self.kinds], np.float64)
        self._kind_p = kw / kw.sum()

        conditions = tuple(conditions) if not isinstance(conditions, str) else (conditions,)
        if not conditions:
            raise ValueError("conditions must name at least one condition")
        for c in conditions:
            _check_condition(c)
        self.conditions = conditions
        if condition_weights is None:
            w = np.ones(len(conditions))
        else:
            w = np.asarray(condition_weights, np.float64).reshape(-1)
            if w.shape[0] != len(conditions) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
                raise ValueError(f"condition_weights must be {len(conditions)} non-negative numbers with a positive "
                                 f"sum, got {condition_weights!r}")
        self.condition_weights = w / w.sum()
        self._tls = threading.local()  # per-thread scratch buffers (fresh big arrays cost page faults)

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_tls", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._tls = threading.local()

    def _buf(self, name: str, shape: tuple, dtype=np.float32) -> np.ndarray:
        """A reusable scratch array of this thread (contents undefined)."""
        bufs = getattr(self._tls, "bufs", None)
        if bufs is None:
            bufs = self._tls.bufs = {}
        a = bufs.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = bufs[name] = np.empty(shape, dtype)
        return a

    def __repr__(self) -> str:
        return f"SceneGenerator(seed={self.seed}, height={self.height}, width={self.width}, conditions={self.conditions})"

    def __getitem__(self, index: int) -> SyntheticSample:
        return self.generate(index)

    def name(self, index: int) -> str:
        return f"syn_{self.seed}_{index:06d}"

    def condition_of(self, index: int) -> str:
        """The condition ``generate(index)`` uses when none is given."""
        index = _check_nonneg_int(index, "index")
        rng = np.random.default_rng([self.seed, index, 0])
        return self.conditions[int(rng.choice(len(self.conditions), p=self.condition_weights))]

    # ------------------------------------------------------------------------------------------------
    def generate(self, index: int, condition: str | None = None) -> SyntheticSample:
        """Render sample ``index`` (>= 0). ``condition`` overrides the seeded choice; the geometry (mask,
        boxes) of an index is the same under every condition, only the appearance changes."""
        index = _check_nonneg_int(index, "index")
        cond = self.condition_of(index) if condition is None else _check_condition(condition)
        H, W = self.height, self.width
        # the scene geometry (and so mask and boxes) depends on (seed, index) only, not on the condition
        lay = _sample_layout(np.random.default_rng([self.seed, index, 1]), H, W, self.kinds, self._kind_p)
        rng = np.random.default_rng([self.seed, index, 2])
        ctx = _Ctx(rng, cond)
        cam = lay.cam
        fog = cond == "fog"
        seg = self._seg

        # ---- background -------------------------------------------------------------------------
        rows = np.arange(H, dtype=np.float64) + 0.5
        t = np.clip(rows / cam.yh, 0, 1) ** 1.5
        sky_rgb = ctx.sky[0][None] * (1 - t[:, None]) + ctx.sky[1][None] * t[:, None]
        g = np.clip((rows - cam.yh) / (H - cam.yh), 0, 1)
        ground_rgb = ctx.grass[None] * (0.8 + 0.25 * g[:, None])
        is_sky = rows < cam.yh
        rgb_rows = np.where(is_sky[:, None], sky_rgb, ground_rgb).astype(np.float32)
        t_rows = np.where(is_sky, ctx.t_sky[0] + (ctx.t_sky[1] - ctx.t_sky[0]) * t, ctx.t_grass).astype(np.float32)
        buf = self._buf
        R = _rows_to_image(rgb_rows, W, buf("R", (H, W, 3)))
        T = _rows_to_image(t_rows, W, buf("T", (H, W)))
        M = _rows_to_image(np.where(is_sky, seg["sky"], 0).astype(np.uint8), W)
        I = buf("I", (H, W), np.uint8)
        I.fill(0)
        if fog:
            vis = rng.uniform(8.0, 30.0)  # RGB attenuation length (m)
            vis_ir = vis * rng.uniform(8.0, 15.0)
            z_rows = np.where(is_sky, 1e4, cam.z_of_row(rows))
            TR = _rows_to_image(np.exp(-z_rows / vis).astype(np.float32), W, buf("TR", (H, W)))
            TI = _rows_to_image(np.exp(-z_rows / vis_ir).astype(np.float32), W, buf("TI", (H, W)))

        for kind, poly, depth in lay.skyline:
            col = ctx.tree if kind == "tree" else ctx.building
            tmp = ctx.t_tree if kind == "tree" else ctx.t_building
            _fill(R, poly, tuple(float(c) for c in col))
            _fill(T, poly, float(tmp))
            _fill(M, poly, 0)
            if fog:
                _fill(TR, poly, float(math.exp(-depth / vis)))
                _fill(TI, poly, float(math.exp(-depth / vis_ir)))

        z_near = 0.6 * cam.f * cam.hc / (H - cam.yh)
        z_far = 3000.0

        def strip(l0, l1, z0, z1):
            return np.array([(cam.x(l0, z0), cam.y(z0)), (cam.x(l1, z0), cam.y(z0)),
                             (cam.x(l1, z1), cam.y(z1)), (cam.x(l0, z1), cam.y(z1))])

        rh = lay.road_half
        if lay.sidewalk > 0:
            for sg in (-1, 1):
                poly = strip(sg * rh, sg * (rh + lay.sidewalk), z_near, z_far)
                _fill(R, poly, tuple(float(c) for c in ctx.sidewalk))
                _fill(T, poly, float(ctx.t_side))
        road = strip(-rh, rh, z_near, z_far)
        _fill(R, road, tuple(float(c) for c in ctx.road))
        _fill(T, road, float(ctx.t_road))
        _fill(M, road, seg["road"])
        # lane markings: solid edge lines, dashed (or solid centre) lane boundaries; RGB + mask only
        paint = tuple(float(c) for c in ctx.paint)
        lw = 0.14
        lines = [(sg * (rh - 0.3), True) for sg in (-1, 1)]
        centre = min(lay.lane_bounds, key=abs)
        lines += [(b, lay.centre_solid and b == centre) for b in lay.lane_bounds]
        z_paint = min(150.0, cam.f * lw * 8)
        for lat, solid in lines:
            if solid:
                segs = [(z_near, z_paint)]
            else:
                period = lay.dash_len + lay.dash_gap
                z = z_near - (z_near % period) + lay.dash_phase - period
                segs = []
                while z < z_paint:
                    if z + lay.dash_len > z_near:
                        segs.append((max(z, z_near), z + lay.dash_len))
                    z += period
            for z0, z1 in segs:
                poly = strip(lat - lw / 2, lat + lw / 2, z0, z1)
                _fill(R, poly, paint)
                _fill(M, poly, seg["lane_marking"])

        # ---- objects, far to near -----------------------------------------------------------------
        objs = sorted(lay.objects, key=lambda o: (-o.z, o.order))
        need_bg = any(o.kind in ("traffic_sign", "lamp", "bicycle") for o in objs)
        T_bg = None
        if need_bg:
            T_bg = buf("T_bg", (H, W))
            np.copyto(T_bg, T)
        drawn: list[_Drawn] = []
        ctx.obj_gain = rng.uniform(0.5, 0.85) if cond == "glare" else 1.0
        for inst, obj in enumerate(objs, start=1):
            draw, extent = _DRAW[obj.kind]
            s = cam.f / obj.z
            xa, ya = cam.x(obj.lat, obj.z), cam.y(obj.z)
            cv = _Canvas(xa, ya, s, *extent(obj.params))
            draw(cv, obj.params)
            gx0, gy0 = max(cv.ox, 0), max(cv.oy, 0)
            gx1, gy1 = min(cv.ox + cv.a.shape[1], W), min(cv.oy + cv.a.shape[0], H)
            # appearance draws happen for every object so the stream does not depend on visibility
            if gx1 > gx0 and gy1 > gy0:
                bg_mean = R[gy0:gy1, gx0:gx1].reshape(-1, 3).mean(0)
            else:
                bg_mean = np.full(3, 60.0, np.float32)
            rgb_lut, t_lut, eps_lut, lab = _appearance(obj, ctx, rng, bg_mean)
            if gx1 <= gx0 or gy1 <= gy0:
                continue
            local = cv.a[gy0 - cv.oy : gy1 - cv.oy, gx0 - cv.ox : gx1 - cv.ox]
            sel = local > 0
            if not sel.any():
                continue
            ids = local[sel]
            sl = (slice(gy0, gy1), slice(gx0, gx1))
            R[sl][sel] = rgb_lut[ids]
            tv = t_lut[ids]
            low_eps = None
            if eps_lut.min() < 1.0:
                e = eps_lut[ids]
                tv = e * tv + (1.0 - e) * T_bg[sl][sel]
                low_eps = e < 0.5
            T[sl][sel] = tv
            labelled = lab[ids]
            cls = seg[obj.kind]
            M[sl][sel] = np.where(labelled, cls, 0).astype(np.uint8)
            I[sl][sel] = np.where(labelled, inst, 0).astype(np.uint8)
            if fog:
                TR[sl][sel] = math.exp(-obj.z / vis)
                ti = np.full(tv.shape, math.exp(-obj.z / vis_ir), np.float32)
                if low_eps is not None:  # (nearly) invisible parts keep the transmission of what is behind
                    ti[low_eps] = TI[sl][sel][low_eps]
                TI[sl][sel] = ti
            drawn.append(_Drawn(obj, inst, gx0, gy0, local, rgb_lut, int(labelled.sum())))

        # ---- boxes from the visible extent ------------------------------------------------------
        by_order = {d.obj.order: d for d in drawn}
        boxes, labels = [], []
        for d in drawn:
            h, w = d.local.shape
            ic = I[d.y0 : d.y0 + h, d.x0 : d.x0 + w]
            vis_m = ic == d.inst
            cnt = int(vis_m.sum())
            support = cnt
            if d.obj.rider >= 0 and d.obj.rider in by_order:  # a bicycle's own rider does not count as occlusion
                support += int(((ic == by_order[d.obj.rider].inst) & (d.local > 0)).sum())
            if cnt < MIN_VISIBLE_PX or support < MIN_VISIBLE_FRAC * d.drawn_px:
                continue
            ys = np.flatnonzero(vis_m.any(1))
            xs = np.flatnonzero(vis_m.any(0))
            bw, bh = xs[-1] + 1 - xs[0], ys[-1] + 1 - ys[0]
            if min(bw, bh) < MIN_BOX_SIDE or max(bw, bh) < MIN_BOX_EXTENT:
                continue
            boxes.append((d.x0 + xs[0], d.y0 + ys[0], d.x0 + xs[-1] + 1, d.y0 + ys[-1] + 1))
            labels.append(self._det_index[d.obj.kind])

        # ---- thermal sensor -----------------------------------------------------------------------
        white1, white3, texture = _noise_banks(H, W)
        if fog:
            t_veil = ctx.ambient - rng.uniform(0.0, 2.0)
            T -= t_veil
            T *= TI
            T += t_veil
        tmp = buf("tmp", (H, W))
        np.multiply(_bank_view(texture, rng, H, W), np.float32(rng.uniform(0.15, 0.5)), out=tmp)
        T += tmp
        T = cv2.GaussianBlur(T, (5, 5), float(rng.uniform(0.5, 1.0)), dst=buf("T2", (H, W)))
        if rng.random() < 0.5:  # fixed-pattern column noise
            T += (rng.standard_normal(W) * rng.uniform(0.05, 0.25)).astype(np.float32)[None, :]
        sigma_t = float(rng.uniform(0.15, 0.35))
        thermal = cv2.addWeighted(T, float(COUNTS_PER_KELVIN), _bank_view(white1, rng, H, W),
                                  COUNTS_PER_KELVIN * sigma_t, 0.0, dtype=cv2.CV_16U)

        # ---- RGB camera ---------------------------------------------------------------------------
        tex = _bank_view(texture, rng, H, W)
        g3 = buf("G3", (H, W, 3))
        tex3 = cv2.cvtColor(tex, cv2.COLOR_GRAY2BGR, dst=g3)
        tex3 *= np.float32(rng.uniform(2.0, 5.0))
        R += tex3
        glare_kind = None
        if cond == "glare":
            glare_kind = "sun" if rng.random() < 0.65 else "headlights"
        if cond == "night" or glare_kind == "headlights":
            base = rng.uniform(0.03, 0.08) if cond == "night" else rng.uniform(0.15, 0.3)
            pool = rng.uniform(0.5, 0.9)
            gy = (np.clip((rows - cam.yh) / (H - cam.yh), 0, 1) ** 1.2).astype(np.float32)
            cols = np.arange(W, dtype=np.float32) + 0.5
            gx = np.exp(-(((cols - cam.cx) / (W * rng.uniform(0.25, 0.4))) ** 2)).astype(np.float32)
            illum = np.multiply.outer(gy, gx * np.float32(pool), out=tmp)
            illum += np.float32(base)
            R *= cv2.cvtColor(illum, cv2.COLOR_GRAY2BGR, dst=g3)
            for d in drawn:  # retro-reflectors return the ego headlights
                kind = d.obj.kind
                if kind == "traffic_sign" or kind == "bicycle":
                    h, w = d.local.shape
                    ic = I[d.y0 : d.y0 + h, d.x0 : d.x0 + w]
                    if kind == "bicycle":
                        sel = (ic == d.inst) & (d.local == _PID["bicycle"]["reflector"])
                    else:  # the plate (every part but the pole)
                        sel = (ic == d.inst) & (d.local != _PID["traffic_sign"]["pole"])
                    if sel.any():
                        gain = np.float32(rng.uniform(0.4, 0.9) * math.exp(-d.obj.z / 80.0))
                        R[d.y0 : d.y0 + h, d.x0 : d.x0 + w][sel] += d.rgb_lut[d.local[sel]] * gain
        lights = ctx.lights_on or glare_kind == "headlights"
        if lights:
            for d in drawn:
                if d.obj.kind != "car" or not d.obj.params["moving"]:
                    continue
                self._car_lights(R, I, d, cam, rng, dim=0.6 if fog else 1.0)
        if fog:
            veil = np.float32(rng.uniform(165, 215))
            R -= veil
            R *= cv2.cvtColor(TR, cv2.COLOR_GRAY2BGR, dst=g3)
            R += veil
        if glare_kind is not None:
            self._glare(R, rng, cam, glare_kind, lay, tmp, buf("tmp2", (H, W)), g3)
        R = cv2.GaussianBlur(R, (3, 3), float(rng.uniform(0.45, 0.7)), dst=buf("R2", (H, W, 3)))
        if cond == "night":  # auto-exposure gain lifts the dark frame and its noise
            gain = rng.uniform(1.4, 2.4)
            sigma_c = gain * rng.uniform(2.0, 3.5)
        else:
            gain = rng.uniform(0.85, 1.1) if cond in ("day", "glare") else rng.uniform(0.9, 1.05)
            sigma_c = rng.uniform(1.5, 3.0)
        rgb = cv2.addWeighted(R, float(gain), _bank_view(white3, rng, H, W), float(sigma_c), 0.0, dtype=cv2.CV_8U)

        if boxes:
            boxes_a = np.asarray(boxes, np.float32).reshape(-1, 4)
            labels_a = np.asarray(labels, np.int64)
        else:
            boxes_a, labels_a = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
        return SyntheticSample(thermal=thermal, rgb=rgb, boxes=boxes_a, labels=labels_a, mask=M,
                               condition=cond, name=self.name(index))

    # ------------------------------------------------------------------------------------------------
    @staticmethod
    def _car_lights(R, I, d: _Drawn, cam, rng, dim):
        pid = _PID["car"]
        h, w = d.local.shape
        ic = I[d.y0 : d.y0 + h, d.x0 : d.x0 + w]
        s = cam.f / d.obj.z
        for part, colour, amp in ((pid["head"], (255, 248, 230), 1.0), (pid["tail"], (255, 45, 35), 0.45)):
            sel = (d.local == part) & (ic == d.inst)
            if not sel.any():
                continue
            c = np.array(colour, np.float32) * np.float32(rng.uniform(1.2, 2.2) * dim)
            R[d.y0 : d.y0 + h, d.x0 : d.x0 + w][sel] = c
            sigma = max(1.5, 0.35 * s) * rng.uniform(1.0, 2.0)
            bloom = np.array(colour, np.float32) / 255.0 * np.float32(amp * dim * rng.uniform(60, 160))
            ys, xs = np.nonzero(sel)
            mid = (xs.min() + xs.max()) / 2
            for half in (xs < mid, xs >= mid):  # one halo per lamp of the pair
                if half.any():
                    _add_blob(R, d.x0 + xs[half].mean() + 0.5, d.y0 + ys[half].mean() + 0.5, sigma, bloom)

    @staticmethod
    def _glare(R, rng, cam, kind, lay, bloom, tmp, bloom3):
        H, W = R.shape[:2]
        rows = np.arange(H, dtype=np.float32) + 0.5
        cols = np.arange(W, dtype=np.float32) + 0.5

        def g(v, c, s):
            return np.exp(-0.5 * ((v - c) / s) ** 2).astype(np.float32)

        if kind == "sun":
            sx, sy = rng.uniform(0.1, 0.9) * W, cam.yh - rng.uniform(-0.02, 0.25) * H
            srcs = [(sx, sy)]
            colour = np.array([1.0, 0.93, 0.8], np.float32)
        else:
            z = rng.uniform(15.0, 45.0)
            lat = -lay.road_half / 2
            s = cam.f / z
            srcs = [(cam.x(lat + dx, z), cam.y(z) - 0.7 * s) for dx in (-0.7, 0.7)]
            colour = np.array([1.0, 0.97, 0.9], np.float32)
        bloom.fill(0.0)
        core, halo = rng.uniform(0.02, 0.05) * W, rng.uniform(0.15, 0.35) * W
        a_core, a_halo, a_streak = rng.uniform(400, 800), rng.uniform(80, 200), rng.uniform(60, 180)
        streak_w = rng.uniform(1.5, 4.0)
        for sx, sy in srcs:
            for sig_y, sig_x, amp in ((core, core, a_core), (halo, halo, a_halo), (streak_w, 0.5 * W, a_streak)):
                bloom += np.multiply.outer(g(rows, sy, sig_y), g(cols, sx, sig_x) * np.float32(amp / len(srcs)), out=tmp)
        bloom += np.float32(rng.uniform(10, 40))  # veiling glare
        cv2.cvtColor(bloom, cv2.COLOR_GRAY2BGR, dst=bloom3)
        bloom3 *= colour
        R += bloom3


def _rows_to_image(rows: np.ndarray, width: int, dst: np.ndarray | None = None) -> np.ndarray:
    """(H,) or (H, C) per-row values -> (H, W[, C]) image (cv2 nearest resize: much faster than broadcasting)."""
    src = rows.reshape(rows.shape[0], 1, -1) if rows.ndim == 2 else rows.reshape(-1, 1)
    return cv2.resize(src, (width, rows.shape[0]), dst=dst, interpolation=cv2.INTER_NEAREST)


def _add_blob(R, cx, cy, sigma, colour):
    """Add a small Gaussian bloom (lens halo of a light) in a local window."""
    H, W = R.shape[:2]
    r = int(math.ceil(3 * sigma))
    x0, x1 = max(int(cx) - r, 0), min(int(cx) + r + 1, W)
    y0, y1 = max(int(cy) - r, 0), min(int(cy) + r + 1, H)
    if x1 <= x0 or y1 <= y0:
        return
    gx = np.exp(-0.5 * ((np.arange(x0, x1) + 0.5 - cx) / sigma) ** 2).astype(np.float32)
    gy = np.exp(-0.5 * ((np.arange(y0, y1) + 0.5 - cy) / sigma) ** 2).astype(np.float32)
    R[y0:y1, x0:x1] += np.multiply.outer(gy, gx)[:, :, None] * colour[None, None, :]


# ----------------------------------------------------------------------------------------------------
# dataset writer + console entry point


def write_dataset(out_dir, count: int, seed: int, height: int = 512, width: int = 640, condition: str | None = None,
                  classes=None, progress: bool = True) -> Path:
    """Write ``count`` samples (names ``syn_{seed}_{index:06d}``) in the dataset_layout format; returns the root."""
    from tqdm import tqdm

    from .dataset_layout import write_meta, write_sample

    count = _check_nonneg_int(count, "count")
    if condition is not None:
        _check_condition(condition)
    gen = SceneGenerator(seed, height, width, classes=classes)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    conditions = {}
    for i in tqdm(range(count), desc=f"synthetic {gen.width}x{gen.height}", unit="pair", disable=not progress):
        sample = gen.generate(i, condition)
        write_sample(root, sample, gen.classes.detection.names)
        conditions[sample.name] = sample.condition
    write_meta(root, {
        "generator": "fusion_ros.synthetic",
        "seed": gen.seed,
        "height": gen.height,
        "width": gen.width,
        "condition": condition,
        "thermal_format": "uint16 centikelvin (TLinear)",
        "detection_classes": list(gen.classes.detection.names),
        "segmentation_classes": list(gen.classes.segmentation.names),
        "samples": conditions,
    })
    return root


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fusion-make-dataset",
                                     description="Write a deterministic synthetic thermal+RGB dataset "
                                                 "(ir/, vi/, labels/, masks/, meta.json).")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--count", type=int, default=100, help="number of pairs (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--condition", choices=CONDITIONS, default=None, help="force one condition (default: mixed)")
    args = parser.parse_args(argv)
    try:
        root = write_dataset(args.out, args.count, args.seed, args.height, args.width, args.condition)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"wrote {args.count} synthetic pairs ({args.width}x{args.height}, seed {args.seed}) to {root}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
