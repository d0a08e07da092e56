"""How each object of a synthetic scene looks: its shape drawn as a part-id raster (person, animal, car,
bicycle, sign, lamp) and each part's colour, temperature and emissivity for the scene's condition. Part of
the generator in fusion_ros/synthetic.py."""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .synthetic_layout import SceneObject

_SHIFT = 4  # fixed-point bits for cv2 drawing (sub-pixel vertex placement)
_FP = 1 << _SHIFT

# ----------------------------------------------------------------------------------------------------
# drawing


def _fp(pts) -> np.ndarray:
    return np.round(np.asarray(pts, np.float64) * _FP).astype(np.int32)


def fill_polygon(img, pts, value):
    cv2.fillPoly(img, [_fp(pts)], value, cv2.LINE_8, _SHIFT)


class Canvas:
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
        fill_polygon(self.a, self._px(uv), int(pid))

    def limb(self, uv0, uv1, width_m, pid):
        p = self._px([uv0, uv1])
        wpx = width_m * self.s
        if wpx < 2.5:
            q = _fp(p)
            cv2.line(self.a, tuple(map(int, q[0])), tuple(map(int, q[1])), int(pid), max(1, int(round(wpx))), cv2.LINE_8, _SHIFT)
            return
        d = p[1] - p[0]
        n = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-6) * (wpx / 2)
        fill_polygon(self.a, np.array([p[0] + n, p[1] + n, p[1] - n, p[0] - n]), int(pid))

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
PART_IDS = {k: {name: i + 1 for i, name in enumerate(v)} for k, v in _PARTS.items()}


def _draw_person(cv, p):
    h, lift, st, sw = p["h"], p["lift"], p["stride"], p["swing"]
    pid = PART_IDS["person"]

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
    pid = PART_IDS["animal"]
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
    pid = PART_IDS["car"]
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
    pid = PART_IDS["bicycle"]
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
    pid = PART_IDS["traffic_sign"]
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
    pid = PART_IDS["lamp"]
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


DRAW = {
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


class SceneLook:
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


def object_appearance(obj: SceneObject, ctx: SceneLook, rng, bg_mean):
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
    pid = PART_IDS[obj.kind]
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
class DrawnObject:
    obj: SceneObject
    inst: int
    x0: int
    y0: int
    local: np.ndarray  # part ids of the in-image window
    rgb_lut: np.ndarray
    drawn_px: int  # labelled in-image pixels before occlusion
