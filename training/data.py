"""Training data: paired samples as tensors, aligned augmentation, and the dataset factory.

Every dataset yields `PairSample`-like dicts:
    thermal (1,H,W) float 0..1, rgb (3,H,W) float 0..1, boxes (N,4) float xyxy px, labels (N,) long,
    mask (H,W) long (255 = no label), name str.
Augmentations (random rescale, crop, horizontal flip) are applied identically to both modalities and labels.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from fusion_ros.segmentation_labels import SYNTHETIC
from training.samples import to_sample

# The condition mix of the night+fog-heavy hold-out that benchmarks and model cards report.
NIGHT_FOG_HOLDOUT = {"night": 0.5, "fog": 0.4, "glare": 0.1}


def night_fog_holdout(data_cfg: dict, size: int, thermal_range) -> "SyntheticPairs":
    """The hold-out the model card and the quality benchmark score: `size` generated night/fog/glare
    scenes at the training data's full size, from a seed no training split uses (data seed + 3)."""
    return SyntheticPairs(data_cfg["seed"] + 3, size, data_cfg["height"], data_cfg["width"], thermal_range,
                          condition_weights=NIGHT_FOG_HOLDOUT)


@dataclass
class Augment:
    crop: tuple[int, int] | None = None  # (height, width) random crop; None keeps the full frame
    hflip: bool = True
    min_box_pixels: float = 16.0  # boxes cut down below this area by a crop are dropped
    # (low, high): rescale the whole frame by a factor drawn log-uniformly from this range before the crop,
    # so the detector sees each object at more sizes than the camera's one (never below the crop's size)
    scale: tuple[float, float] | None = None
    # exposure jitter of strength s (0: none): the visible frame scaled by a gain in [1/(1+s), 1+s] and raised
    # to a gamma in the same range, the thermal frame by a gain in [1/(1+s/2), 1+s/2] (log-uniform), so the
    # detector meets each scene at more exposures than the drive's one (night frames vary most)
    photometric: float = 0.0


def rescale(sample: dict, factor: float) -> dict:
    """The sample resized by ``factor``: images bilinear (antialiased when shrinking), mask nearest, boxes scaled."""
    thermal, rgb, mask = sample["thermal"], sample["rgb"], sample["mask"]
    height, width = thermal.shape[-2:]
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    resize = lambda image: torch.nn.functional.interpolate(  # noqa: E731
        image[None], size=size, mode="bilinear", align_corners=False, antialias=factor < 1)[0]
    sy, sx = size[0] / height, size[1] / width
    if mask is not None:
        mask = torch.nn.functional.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].to(mask.dtype)
    boxes = sample["boxes"] * torch.tensor([sx, sy, sx, sy], dtype=sample["boxes"].dtype)
    return {**sample, "thermal": resize(thermal), "rgb": resize(rgb), "mask": mask, "boxes": boxes}


def augment(sample: dict, aug: Augment, rng: np.random.Generator) -> dict:
    """Random rescale + crop + flip, identical for thermal, rgb, mask and boxes; then the exposure jitter."""
    if aug.scale is not None:
        height, width = sample["thermal"].shape[-2:]
        low = max(aug.scale[0], *(c / n for c, n in zip(aug.crop or (0, 0), (height, width))))
        factor = math.exp(rng.uniform(math.log(low), math.log(max(low, aug.scale[1]))))
        if abs(factor - 1.0) > 1e-3:
            sample = rescale(sample, factor)
    thermal, rgb, mask, boxes, labels = sample["thermal"], sample["rgb"], sample["mask"], sample["boxes"], sample["labels"]
    height, width = thermal.shape[-2:]
    if aug.crop is not None:
        ch, cw = min(aug.crop[0], height), min(aug.crop[1], width)
        top, left = int(rng.integers(0, height - ch + 1)), int(rng.integers(0, width - cw + 1))
        thermal, rgb = thermal[..., top : top + ch, left : left + cw], rgb[..., top : top + ch, left : left + cw]
        mask = None if mask is None else mask[top : top + ch, left : left + cw]
        boxes = boxes - torch.tensor([left, top, left, top], dtype=boxes.dtype)
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, cw)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, ch)
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        keep = area >= aug.min_box_pixels
        boxes, labels = boxes[keep], labels[keep]
        height, width = ch, cw
    if aug.hflip and rng.random() < 0.5:
        thermal, rgb = thermal.flip(-1), rgb.flip(-1)
        mask = None if mask is None else mask.flip(-1)
        boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
    if aug.photometric > 0:
        gain, gamma, thermal_gain = (math.exp(rng.uniform(-math.log1p(s), math.log1p(s)))
                                     for s in (aug.photometric, aug.photometric, aug.photometric / 2))
        rgb = (rgb.clamp(0.0, 1.0) ** gamma * gain).clamp(0.0, 1.0)
        thermal = (thermal * thermal_gain).clamp(0.0, 1.0)
    return {**sample, "thermal": thermal.contiguous(), "rgb": rgb.contiguous(), "mask": mask, "boxes": boxes, "labels": labels}


class SyntheticPairs(Dataset):
    """Scenes from the deterministic generator, made on the fly: sample i is the same on every run."""

    segmentation_labels = SYNTHETIC  # its masks (fusion_ros.segmentation_labels)

    def __init__(self, seed: int, length: int, height: int, width: int, thermal_range, aug: Augment | None = None,
                 condition_weights=None):
        from fusion_ros.synthetic import SceneGenerator

        kwargs = {}
        if condition_weights:  # {condition: weight}
            kwargs = {"conditions": tuple(condition_weights), "condition_weights": tuple(condition_weights.values())}
        self.generator = SceneGenerator(seed, height=height, width=width, **kwargs)
        self.seed, self.length, self.thermal_range, self.aug = seed, length, thermal_range, aug

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        s = self.generator.generate(index)
        sample = to_sample(s.thermal, s.rgb, s.boxes, s.labels, s.mask, s.name, self.thermal_range)
        sample["condition"] = s.condition
        if self.aug is None:
            return sample
        return augment(sample, self.aug, np.random.default_rng([self.seed, index, 7]))


class EpochAugmented(Dataset):
    """Wraps a dataset so augmentation draws change with the epoch but stay reproducible for resume."""

    def __init__(self, base: Dataset, aug: Augment, seed: int):
        self.base, self.aug, self.seed, self.epoch = base, aug, seed, 0

    @property
    def segmentation_labels(self) -> str:
        return self.base.segmentation_labels

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        return augment(self.base[index], self.aug, np.random.default_rng([self.seed, self.epoch, index]))


def collate(samples: list[dict]) -> dict:
    """Stack images; keep boxes/labels as per-image lists; masks only when every sample has one."""
    masks = [s["mask"] for s in samples]
    return {
        "thermal": torch.stack([s["thermal"] for s in samples]),
        "rgb": torch.stack([s["rgb"] for s in samples]),
        "boxes": [s["boxes"] for s in samples],
        "labels": [s["labels"] for s in samples],
        "mask": torch.stack(masks) if all(m is not None for m in masks) else None,
        "name": [s["name"] for s in samples],
        "condition": [s.get("condition", "") for s in samples],
    }


class BatchStream(Dataset):
    """The deterministic batch stream of a dataset, as a map-style dataset: item ``draw`` is the collated
    ``draw``-th batch. It holds the items at positions ``[(draw * world + rank) * batch_size, +batch_size)`` of
    the dataset's epoch-wise permutations laid end to end (each seeded by (seed, epoch, dataset size)), with
    the augmentation draws of that epoch (``dataset.epoch``): a pure function of ``draw``, so a resumed run
    and DataLoader worker processes (any number of them, see Trainer.training_batches) build the same batches."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.dataset, self.batch_size, self.seed, self.rank, self.world = dataset, batch_size, seed, rank, world

    def __getitem__(self, draw: int) -> dict:
        n, bs = len(self.dataset), self.batch_size
        epoch, pos = divmod((draw * self.world + self.rank) * bs, n)
        order = np.random.default_rng([self.seed, epoch, n]).permutation(n)
        order = np.concatenate([order, np.random.default_rng([self.seed, epoch + 1, n]).permutation(n)])
        self.dataset.epoch = epoch
        return collate([self.dataset[int(i)] for i in order[pos : pos + bs]])


@contextmanager
def prefetched(loader: DataLoader):
    """Iterate a DataLoader and stop its worker processes on leaving the block, also on an error or an early
    break. Its iterator would stop them only once collected, which a traceback holding it delays, up to the
    interpreter's exit (a test run then never ended)."""
    batches = iter(loader)
    try:
        yield batches
    finally:
        if hasattr(batches, "_shutdown_workers"):  # worker processes (num_workers 0 has none)
            batches._shutdown_workers()


def one_thread_worker(_worker_id: int) -> None:
    """DataLoader worker_init_fn: a batch worker shares the CPU with the training step, so one OpenCV thread
    (the DataLoader already gives each worker one torch thread)."""
    import cv2

    cv2.setNumThreads(1)


def _scale_range(value) -> tuple[float, float] | None:
    """The data config's ``scale: [low, high]`` (rescale factors, 0 < low <= high), or None."""
    if value is None:
        return None
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"data.scale must be [low, high] rescale factors, got {value!r}") from None
    if not 0 < low <= high:
        raise ValueError(f"data.scale must satisfy 0 < low <= high, got {value!r}")
    return low, high


def build_dataset(cfg: dict, split: str, thermal_range, classes=None) -> Dataset:
    """The dataset a config's `data:` section names, for split 'train', 'heldout' or 'val' ('test' where the
    dataset has one).

    kind: synthetic — generator seed/size; train, held-out (upper level) and val use disjoint seeds.
    kind: layout, m3fd, llvip, msrs, fmb, mfnet, folder — real pairs under `root` (training/datasets.py has
    the folder layouts, the resizing and the split rules). `classes` (a ClassConfig or class YAML path; the
    trainer's list) sets the class names those datasets' labels are read against.
    Train and held-out samples get the random rescale/crop/flip (`scale`, `crop`, `hflip`) and exposure jitter
    (`photometric`); val/test are returned as read.
    """
    kind = cfg.get("kind", "synthetic")
    aug = Augment(crop=tuple(cfg["crop"]) if cfg.get("crop") else None, hflip=cfg.get("hflip", True),
                  scale=_scale_range(cfg.get("scale")), photometric=float(cfg.get("photometric", 0.0)))
    if kind == "synthetic":
        seeds = {"train": cfg["seed"], "heldout": cfg["seed"] + 1, "val": cfg["seed"] + 2}
        sizes = {"train": cfg["train_size"], "heldout": cfg["heldout_size"], "val": cfg["val_size"]}
        if split not in seeds:
            raise ValueError(f"unknown split {split!r}")
        base = SyntheticPairs(seeds[split], sizes[split], cfg["height"], cfg["width"], thermal_range,
                              condition_weights=cfg.get("condition_weights"))
        return base if split == "val" else EpochAugmented(base, aug, seeds[split])
    from training.datasets import KINDS, build_real_dataset

    if kind in KINDS:
        if kind == "bag":
            from training.bag_datasets import build_bag_dataset

            base = build_bag_dataset(cfg, split, thermal_range, classes)
        else:
            base = build_real_dataset(cfg, split, thermal_range, classes)
        if split in ("val", "test"):
            return base
        return EpochAugmented(base, aug, int(cfg.get("seed", 0)) + (0 if split == "train" else 1))
    raise ValueError(f"unknown dataset kind {kind!r} (known: synthetic, {', '.join(KINDS)})")
