"""The engine interface every backend implements, its result type, errors and model metadata.

    Engine.infer(thermal, rgb) -> Perception

Pre-processing (fusion_ros.preprocess) and post-processing (fusion_ros.postprocess + the mapping back to
the input RGB size) run HERE, once, for every backend; a backend only implements `_run`, which maps
network inputs (B,1,H,W) / (B,3,H,W) float32 in 0..1 to the graph's named raw outputs.
"""
from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from ..fusion_map import fused_image
from ..postprocess import Detections, PostprocessConfig, decode_detections, segmentation_mask
from ..preprocess import (
    FUSED_ENCODINGS,
    PreparedPair,
    PreprocessError,
    Preprocessor,
    fused_to_image,
    mask_to_size,
    scale_boxes,
)

# Names and order of the exported graph's inputs and outputs (fused_y stays inside: only training uses it).
INPUT_NAMES = ("thermal", "rgb")
OUTPUT_NAMES = ("fused", "cls_logits", "box_ltrb", "centerness", "seg_logits")
# ... and the output a map-head model adds: (B, 3, h, w) coefficients (a, b, c) of fused Y = a·IR + b·Y + c,
# with which the engine fuses the cameras at their own resolution (fusion_ros.fusion_map). Graphs without
# it (drawn-image heads, exports from before it existed) get their network-size fused image resized.
FUSION_MAP_OUTPUT = "fusion_map"
# fused_resolution: "camera" = the fused image at the RGB camera's size; "network" = at the network's
# input size, as the graph made it (less to publish, e.g. over a thin link)
FUSED_RESOLUTIONS = ("camera", "network")


# ------------------------------------------------------------------------------------------------ errors
class EngineError(ValueError):
    """Base class of every engine error: the message names the file/backend and what to do."""


class ModelFileError(EngineError):
    """A model/ONNX/engine file that is missing, truncated, corrupt or of the wrong kind."""


class SidecarError(EngineError):
    """A JSON sidecar that is missing, unreadable, or does not describe the file beside it."""


class EngineMismatchError(SidecarError):
    """A TensorRT engine built for another TensorRT version, GPU or ONNX file: it must be rebuilt."""


class BackendUnavailableError(EngineError):
    """The requested backend/device cannot run here (package not installed, no GPU, ...)."""


class InputError(EngineError, PreprocessError):
    """An `infer` input of the wrong shape, dtype or content."""


# ------------------------------------------------------------------------------------------- model info
@dataclass(frozen=True)
class ModelInfo:
    """What the engine needs to know about the network besides its weights (from a .pt or a sidecar)."""

    det_classes: tuple[str, ...]
    seg_classes: tuple[str, ...]
    input_size: tuple[int, int]  # (height, width) the graph runs at by default
    thermal_range: tuple[float, float]  # 16-bit counts mapped to 0..1
    dynamic: bool = True  # False: the graph only accepts `input_size` (and `fixed_batch`)
    fixed_batch: int | None = None  # batch size baked into a fixed-shape graph
    model_version: str = ""
    source: str = ""  # the file it came from
    chroma: str = "visible"  # the model's colour rule (model.ModelConfig.chroma), for camera-size fusion
    fusion_head: str = "affine"  # the map head's kind (model.FusionConfig.output), for camera-size fusion
    segmentation_labels: str = "unknown"  # what the segmentation head learnt from (fusion_ros.segmentation_labels)


# --------------------------------------------------------------------------------------------- result
@dataclass
class Perception:
    """One frame's result, in the INPUT RGB image's pixel grid."""

    fused: np.ndarray  # (H, W, 3) uint8, RGB (or BGR when infer was asked for fused_encoding="bgr8"), at the
    # RGB image's size (or the network's, for an engine made with fused_resolution="network")
    detections: Detections  # boxes x1, y1, x2, y2 in input RGB pixels
    segmentation: np.ndarray | None  # (H, W) uint8 class ids; None when infer was asked for none
    timings: dict[str, float] = field(default_factory=dict)  # pre / infer / post, milliseconds
    backend: str = ""
    frame_size: tuple[int, int] | None = None  # (height, width) of the input RGB image: the boxes' frame


# --------------------------------------------------------------------------------------------- engine
class Engine(ABC):
    """A loaded fused-perception network plus the shared pre/post-processing.

    Thread-safety: `set_thresholds` may be called from another thread (a ROS parameter callback) while
    `infer` runs; the post-processing settings are one immutable object swapped atomically.
    """

    backend: str = "?"
    has_fusion_map: bool = False  # set by a backend whose graph has the FUSION_MAP_OUTPUT

    def __init__(
        self,
        info: ModelInfo,
        *,
        input_size: tuple[int, int] | None = None,
        postprocess: PostprocessConfig | None = None,
        registration=None,
        fused_resolution: str = "camera",
    ):
        self.info = info
        size = tuple(int(v) for v in (input_size or info.input_size))
        if len(size) != 2 or min(size) < 8:
            raise EngineError(f"input_size must be (height, width) >= 8 px, got {input_size}")
        if not info.dynamic and size != tuple(info.input_size):
            raise EngineError(
                f"{info.source} was exported with a fixed input size {info.input_size[0]}x{info.input_size[1]} "
                f"(HxW); it cannot run at {size[0]}x{size[1]}: re-export with --dynamic or another --size"
            )
        self.input_size: tuple[int, int] = size
        if fused_resolution not in FUSED_RESOLUTIONS:
            raise EngineError(f"fused_resolution must be one of {', '.join(FUSED_RESOLUTIONS)}, got {fused_resolution!r}")
        self.fused_resolution = fused_resolution
        self.preprocessor = Preprocessor(size, thermal_range=info.thermal_range, registration=registration)
        if postprocess is not None and not isinstance(postprocess, PostprocessConfig):
            raise EngineError(f"postprocess must be a PostprocessConfig, got {type(postprocess).__name__}")
        self._post = postprocess or PostprocessConfig()
        self._lock = threading.Lock()
        self.fallback_reasons: list[str] = []  # set by create_engine(backend="auto"): backends skipped and why

    # -------------------------------------------------------------------------------- settings
    @property
    def det_classes(self) -> tuple[str, ...]:
        return self.info.det_classes

    @property
    def seg_classes(self) -> tuple[str, ...]:
        return self.info.seg_classes

    @property
    def postprocess_config(self) -> PostprocessConfig:
        return self._post

    def set_thresholds(
        self,
        score_threshold: float | None = None,
        nms_iou: float | None = None,
        max_detections: int | None = None,
        pre_nms_top_k: int | None = None,
    ) -> PostprocessConfig:
        """Change detection post-processing at run time (validated; takes effect on the next frame)."""
        updates = {
            k: v
            for k, v in dict(
                score_threshold=score_threshold,
                nms_iou=nms_iou,
                max_detections=max_detections,
                pre_nms_top_k=pre_nms_top_k,
            ).items()
            if v is not None
        }
        self._post = replace(self._post, **updates)  # checked by PostprocessConfig
        return self._post

    def set_registration(self, registration) -> None:
        self.preprocessor.set_registration(registration)

    # ------------------------------------------------------------------------------- inference
    def infer(self, thermal: np.ndarray, color: np.ndarray, *, color_encoding: str = "rgb8",
              fused_encoding: str = "rgb8", segmentation: bool = True) -> Perception:
        """thermal H×W (float 0..1, or raw uint8 / uint16 counts), color H×W[×C] uint8 in ``color_encoding``
        (image_conversions.COLOR_ENCODINGS) -> Perception at the colour image's size, the fused image in
        ``fused_encoding`` (rgb8 or bgr8). Colour order is converted once, at the network size.
        ``segmentation=False`` skips the class-id mask (its argmax and resize to the frame cost ~10 ms a
        640x480 pair on one CPU core) for callers that publish none: ``Perception.segmentation`` is None."""
        return self.infer_batch([thermal], [color], color_encoding=color_encoding, fused_encoding=fused_encoding,
                                segmentation=segmentation)[0]

    def infer_batch(self, thermals: Sequence[np.ndarray], colors: Sequence[np.ndarray], *,
                    color_encoding: str = "rgb8", fused_encoding: str = "rgb8",
                    segmentation: bool = True) -> list[Perception]:
        """Several pairs in one network call (a fixed batch-1 graph runs them one after the other)."""
        if len(thermals) != len(colors) or not len(thermals):
            raise InputError(
                f"infer_batch needs equally many (>= 1) thermal and colour frames, got {len(thermals)} and "
                f"{len(colors)}"
            )
        if fused_encoding not in FUSED_ENCODINGS:
            raise InputError(f"fused_encoding must be one of {', '.join(FUSED_ENCODINGS)}, got '{fused_encoding}'")
        t0 = time.perf_counter()
        try:
            camera_thermal = self.fused_resolution == "camera" and self.has_fusion_map
            pairs = [self.preprocessor(t, c, color_encoding, camera_thermal=camera_thermal)
                     for t, c in zip(thermals, colors)]
        except PreprocessError as exc:
            raise InputError(f"{self.backend} engine input: {exc}") from None
        thermal_batch = np.stack([p.thermal for p in pairs])
        rgb_batch = np.stack([p.rgb for p in pairs])
        t1 = time.perf_counter()
        outputs = self._run_batched(thermal_batch, rgb_batch)
        t2 = time.perf_counter()
        post = self._post
        results = [self._postprocess(outputs, i, pair, post, fused_encoding, segmentation)
                   for i, pair in enumerate(pairs)]
        t3 = time.perf_counter()
        n = len(pairs)
        timings = {"pre": (t1 - t0) * 1e3 / n, "infer": (t2 - t1) * 1e3 / n, "post": (t3 - t2) * 1e3 / n}
        for result in results:
            result.timings = dict(timings)
        return results

    def run_raw(self, thermal: np.ndarray, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's raw outputs for network-ready inputs (B,1,H,W) / (B,3,H,W) float32 (tests, parity)."""
        return self._run_batched(np.asarray(thermal, np.float32), np.asarray(rgb, np.float32))

    def _run_batched(self, thermal: np.ndarray, rgb: np.ndarray) -> dict[str, np.ndarray]:
        fixed = self.info.fixed_batch
        with self._lock:  # one network call at a time per engine (TRT contexts are not re-entrant)
            if fixed is None or thermal.shape[0] == fixed:
                return self._run(np.ascontiguousarray(thermal), np.ascontiguousarray(rgb))
            if fixed != 1:
                raise InputError(
                    f"{self.info.source} was exported for batch {fixed}, got {thermal.shape[0]} pairs "
                    "(re-export with --dynamic for other batch sizes)"
                )
            parts = [self._run(thermal[i : i + 1], rgb[i : i + 1]) for i in range(thermal.shape[0])]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _postprocess(
        self, outputs: dict[str, np.ndarray], index: int, pair: PreparedPair, post: PostprocessConfig,
        fused_encoding: str, segmentation: bool,
    ) -> Perception:
        net_size = self.input_size
        dets = decode_detections(
            outputs["cls_logits"][index], outputs["box_ltrb"][index], outputs["centerness"][index], net_size, post
        )
        dets = Detections(scale_boxes(dets.boxes, net_size, pair.rgb_size), dets.scores, dets.labels)
        return Perception(
            fused=self._fused_image(outputs, index, pair, fused_encoding),
            detections=dets,
            segmentation=(mask_to_size(segmentation_mask(outputs["seg_logits"][index]), pair.rgb_size)
                          if segmentation else None),
            backend=self.backend,
            frame_size=pair.rgb_size,
        )

    def _fused_image(self, outputs: dict[str, np.ndarray], index: int, pair: PreparedPair, encoding: str) -> np.ndarray:
        """The fused image at the camera's size from the coefficient map where the graph has one (at the
        network size the graph's own image is that image, exactly), else the network-size image."""
        if self.fused_resolution == "network":
            return fused_to_image(outputs["fused"][index], self.input_size, encoding)
        if pair.thermal_camera is None or pair.rgb_size == self.input_size:
            return fused_to_image(outputs["fused"][index], pair.rgb_size, encoding)
        return fused_image(outputs[FUSION_MAP_OUTPUT][index], pair.thermal_camera, pair.color,
                           color_encoding=pair.color_encoding, chroma=self.info.chroma, net_size=self.input_size,
                           color_net=pair.color_net, encoding=encoding, head=self.info.fusion_head)

    @abstractmethod
    def _run(self, thermal: np.ndarray, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """(B,1,H,W), (B,3,H,W) float32 -> {output name: float32 array} for OUTPUT_NAMES (and
        FUSION_MAP_OUTPUT where `has_fusion_map`)."""

    # ------------------------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Release backend resources (sessions, GPU buffers). The engine is unusable afterwards."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        h, w = self.input_size
        return f"<{type(self).__name__} backend={self.backend} input={h}x{w} source={self.info.source}>"
