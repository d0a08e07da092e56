"""Where things are in a synthetic road scene: the car-mounted camera and the objects placed along the road
(kind, distance, lateral position, pose). Part of the generator in fusion_ros/synthetic.py."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# ----------------------------------------------------------------------------------------------------
# geometry


@dataclass
class Camera:
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
class SceneObject:
    kind: str
    z: float
    lat: float
    order: int
    params: dict = field(default_factory=dict)
    rider_of: int = -1  # for a rider (person): position of its bicycle in the object list
    rider: int = -1  # for a bicycle: position of its rider


@dataclass
class SceneLayout:
    cam: Camera
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


def sample_layout(rng, height, width, kinds, kind_p) -> SceneLayout:
    f = width * rng.uniform(0.8, 1.0)
    yh = height * rng.uniform(0.36, 0.48)
    hc = rng.uniform(1.3, 1.7)
    road_half = rng.uniform(3.2, 7.5)
    x0 = -rng.uniform(0.15, 0.7) * road_half  # ego drives on the right half
    cam = Camera(f, width / 2.0, yh, hc, x0, rng.uniform(-0.07, 0.07))
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
    objects: list[SceneObject] = []
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
            rider = SceneObject("person", obj.z, obj.lat, len(objects),
                         dict(h=h * 0.84, stride=0.06 * h, swing=0.0, lift=0.3,
                              riding=True, child=False), rider_of=obj.order)
            obj.rider = rider.order
            objects.append(rider)
    return SceneLayout(cam, road_half, sidewalk, lane_bounds, dash_len, dash_gap, dash_phase, centre_solid, skyline, objects)


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
            return SceneObject(kind, z, lat, 0, params)
    return None
