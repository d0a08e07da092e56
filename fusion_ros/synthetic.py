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
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .classes import ClassConfig, load_classes
from .synthetic_layout import sample_layout
from .synthetic_objects import DRAW, PART_IDS, Canvas, DrawnObject, SceneLook, fill_polygon, object_appearance

GENERATOR = "fusion_ros.synthetic"  # meta.json's "generator" of the datasets written here
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
        lay = sample_layout(np.random.default_rng([self.seed, index, 1]), H, W, self.kinds, self._kind_p)
        rng = np.random.default_rng([self.seed, index, 2])
        ctx = SceneLook(rng, cond)
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
            fill_polygon(R, poly, tuple(float(c) for c in col))
            fill_polygon(T, poly, float(tmp))
            fill_polygon(M, poly, 0)
            if fog:
                fill_polygon(TR, poly, float(math.exp(-depth / vis)))
                fill_polygon(TI, poly, float(math.exp(-depth / vis_ir)))

        z_near = 0.6 * cam.f * cam.hc / (H - cam.yh)
        z_far = 3000.0

        def strip(l0, l1, z0, z1):
            return np.array([(cam.x(l0, z0), cam.y(z0)), (cam.x(l1, z0), cam.y(z0)),
                             (cam.x(l1, z1), cam.y(z1)), (cam.x(l0, z1), cam.y(z1))])

        rh = lay.road_half
        if lay.sidewalk > 0:
            for sg in (-1, 1):
                poly = strip(sg * rh, sg * (rh + lay.sidewalk), z_near, z_far)
                fill_polygon(R, poly, tuple(float(c) for c in ctx.sidewalk))
                fill_polygon(T, poly, float(ctx.t_side))
        road = strip(-rh, rh, z_near, z_far)
        fill_polygon(R, road, tuple(float(c) for c in ctx.road))
        fill_polygon(T, road, float(ctx.t_road))
        fill_polygon(M, road, seg["road"])
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
                fill_polygon(R, poly, paint)
                fill_polygon(M, poly, seg["lane_marking"])

        # ---- objects, far to near -----------------------------------------------------------------
        objs = sorted(lay.objects, key=lambda o: (-o.z, o.order))
        need_bg = any(o.kind in ("traffic_sign", "lamp", "bicycle") for o in objs)
        T_bg = None
        if need_bg:
            T_bg = buf("T_bg", (H, W))
            np.copyto(T_bg, T)
        drawn: list[DrawnObject] = []
        ctx.obj_gain = rng.uniform(0.5, 0.85) if cond == "glare" else 1.0
        for inst, obj in enumerate(objs, start=1):
            draw, extent = DRAW[obj.kind]
            s = cam.f / obj.z
            xa, ya = cam.x(obj.lat, obj.z), cam.y(obj.z)
            cv = Canvas(xa, ya, s, *extent(obj.params))
            draw(cv, obj.params)
            gx0, gy0 = max(cv.ox, 0), max(cv.oy, 0)
            gx1, gy1 = min(cv.ox + cv.a.shape[1], W), min(cv.oy + cv.a.shape[0], H)
            # appearance draws happen for every object so the stream does not depend on visibility
            if gx1 > gx0 and gy1 > gy0:
                bg_mean = R[gy0:gy1, gx0:gx1].reshape(-1, 3).mean(0)
            else:
                bg_mean = np.full(3, 60.0, np.float32)
            rgb_lut, t_lut, eps_lut, lab = object_appearance(obj, ctx, rng, bg_mean)
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
            drawn.append(DrawnObject(obj, inst, gx0, gy0, local, rgb_lut, int(labelled.sum())))

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
                        sel = (ic == d.inst) & (d.local == PART_IDS["bicycle"]["reflector"])
                    else:  # the plate (every part but the pole)
                        sel = (ic == d.inst) & (d.local != PART_IDS["traffic_sign"]["pole"])
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
    def _car_lights(R, I, d: DrawnObject, cam, rng, dim):
        pid = PART_IDS["car"]
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
    from .progress import progress as progress_bar

    from .dataset_layout import write_meta, write_sample

    count = _check_nonneg_int(count, "count")
    if condition is not None:
        _check_condition(condition)
    gen = SceneGenerator(seed, height, width, classes=classes)
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    conditions = {}
    for i in progress_bar(range(count), desc=f"synthetic {gen.width}x{gen.height}", unit="pair", disable=not progress):
        sample = gen.generate(i, condition)
        write_sample(root, sample, gen.classes.detection.names)
        conditions[sample.name] = sample.condition
    write_meta(root, {
        "generator": GENERATOR,
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
