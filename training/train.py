"""Bi-level dynamic learning of fusion + perception (Liu et al., IJCAI 2023).

    python -m training.train --config config/train_synthetic.yaml [--out runs/x] [--resume] [--device cpu]
    torchrun --nproc_per_node 2 -m training.train --config ...      (data parallel, gloo on CPU / nccl)

The algorithm, as `Trainer.bilevel_step` runs it:
    alpha  : the fusion network F (upper level)
    y_vis  : the pixel critic D       (lower level, task "visual")
    y_sem  : detection + segmentation (lower level, task "semantic")
    warm start: alpha <- alpha - lr * dL_fuse/dalpha                         (fusion loss alone)
    every step: y_i <- y_i - eta * df_i/dy_i on a training batch            (lower level)
    every k-th step, on a held-out batch:
        h_i = dF_i/dalpha - c_i df_i/dalpha,  c_i = <dF_i/dy_i, df_i/dy_i>/|df_i/dy_i|^2
        alpha <- alpha - lr * (dL_fuse/dalpha + sum_i w_i h_i),  w from TaskWeights (dynamic)
Everything is in this file except the losses (training/losses.py) and the hypergradient algebra
(training/bilevel.py). Checkpoints are atomic and `--resume` continues the exact sequence of batches
(schedule.loader_workers > 0 builds the training batches ahead in worker processes: the same batches).
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import time
import types
import typing
from dataclasses import dataclass, fields, replace
from datetime import date
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader

from fusion_ros.checkpoint import ModelMeta, load_model, save_model
from fusion_ros.classes import load_classes
from fusion_ros.engine.sidecar import sha256_file
from fusion_ros.image_conversions import THERMAL_RANGE_CENTIKELVIN
from fusion_ros.metrics import ConfusionMatrix, evaluate_detections
from fusion_ros.model import FusedPerceptionNet, ModelConfig, rgb_to_ycbcr, ycbcr_to_rgb
from fusion_ros.postprocess import PostprocessConfig, decode_detections, segmentation_mask
from fusion_ros.progress import progress, write as progress_write
from fusion_ros.segmentation_labels import NONE, UNKNOWN, combined
from training import losses as L
from training.bilevel import TaskWeights, aggregate, first_order_hypergradient, grads_or_zeros, norm
from training.channel_steps import fold, scale_conv_weights
from training.data import BatchStream, build_dataset, one_thread_worker, prefetched
from training.samples import NO_LABEL

TASKS = ("visual", "semantic")
# What the semantic module reads. "bilevel" is the method; the others are the quality benchmark's
# baselines: a fusion net trained on the fusion loss alone then frozen (two-stage), or a fixed image.
FUSION_MODES = ("bilevel", "two_stage", "ir_only", "rgb_only", "average")


@dataclass
class Schedule:
    fusion_warmup_steps: int  # warm start: fusion loss only
    steps: int  # bi-level steps after the warm start
    fusion_every: int  # k: the fusion net takes a hypergradient step every k-th step
    batch_size: int
    lower_lr: float
    upper_lr: float
    lr_warmup_steps: int = 0
    lr_decay_at: tuple[float, ...] = ()  # fractions of `steps` where both learning rates drop x0.1
    hypergradient_scale: float = 1.0
    # weight of the fusion objective's gradient beside the tasks' aggregated hypergradient in a bi-level
    # update. Adam makes the warm start indifferent to it; in the bi-level phase it sets how hard the tasks
    # pull on the fusion net next to its own objective (task_grad_norm / fuse_grad_norm in log.jsonl)
    bilevel_fusion_weight: float = 1.0
    fusion_warmup_lr: float | None = None  # the fusion net's rate in the warm start (None: upper_lr)
    aggregation: str = "grad_norm"
    # the semantic module's optimiser: "adam", or "sgd" (momentum 0.9, Nesterov, weight decay 5e-4, as
    # YOLOX trains). A detector whose BatchNorms are folded into conv weights of very different scales
    # (the COCO YOLOX-nano) is wrecked by Adam's ~lr step on every weight: see config/train_msrs.yaml
    semantic_optimizer: str = "adam"
    grad_clip: float | None = None  # clip the semantic module's gradient norm (None: no clipping)
    # > 0: validate and ship an exponential moving average of the weights over the bi-level steps
    # (torch.optim.swa_utils), which smooths the step-to-step noise of small-batch fine-tuning
    ema_decay: float = 0.0
    # True: Adam steps on the semantic module's conv weights are relative, the same fraction of every
    # output channel (training/channel_steps.py): for a detector with BatchNorms folded in (COCO YOLOX-nano)
    channel_relative_steps: bool = False
    # > 0: that many DataLoader worker processes build the training batches ahead of the step (the same
    # batches: --resume stays exact); 0 builds each batch in the training process when the step needs it
    loader_workers: int = 0
    log_every: int = 10  # lower-level steps; every fusion (hypergradient) update is logged
    val_every: int = 200
    checkpoint_every: int = 100

    @classmethod
    def from_config(cls, schedule: dict) -> Schedule:
        """The config's `schedule:` mapping (YAML lists as tuples); unknown keys are named."""
        unknown = set(schedule) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown schedule key(s) {sorted(unknown)}; known: {[f.name for f in fields(cls)]}")
        return cls(**{**schedule, "lr_decay_at": tuple(schedule.get("lr_decay_at", ()))})

    def __post_init__(self):
        """A wrong type (`ema_decay: null`, `steps: 1e3`) or range is a clear error here, not a TypeError mid-run."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = getattr(self, f.name)
            if not _has_type(value, hints[f.name]):
                raise ValueError(f"schedule.{f.name} must be {_type_name(hints[f.name])}, got {value!r}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"schedule.ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.loader_workers < 0:
            raise ValueError(f"schedule.loader_workers must be >= 0, got {self.loader_workers}")
        if self.bilevel_fusion_weight < 0:
            raise ValueError(f"schedule.bilevel_fusion_weight must be >= 0, got {self.bilevel_fusion_weight}")

    @property
    def warm_start_lr(self) -> float:
        return self.fusion_warmup_lr or self.upper_lr


def _has_type(value, hint) -> bool:
    """isinstance for the plain hints Schedule uses; ints count as floats, bools as neither."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_has_type(value, option) for option in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return isinstance(value, tuple) and all(_has_type(v, typing.get_args(hint)[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint in (int, float) and isinstance(value, bool):
        return False
    return isinstance(value, (int, float) if hint is float else hint)


_TYPE_NAMES = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("a bool", "bools"),
               str: ("a string", "strings")}


def _type_name(hint, plural: bool = False) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(option, plural) for option in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        return "a list of " + _type_name(typing.get_args(hint)[0], plural=True)
    return "null" if hint is type(None) else _TYPE_NAMES[hint][plural]


def load_config(path: str | Path) -> dict:
    with open(path) as f:
        cfg = yaml.safe_load(f)
    for section in ("data", "model", "schedule"):
        if section not in cfg:
            raise ValueError(f"{path}: missing '{section}:' section")
    return cfg


def scoring_config(cfg: dict) -> dict:
    """A finished run's config (its model.pt's meta.info["config"]) for a Trainer that scores the saved
    plain weights: no detector seeding, no training-time reparametrization of the conv weights."""
    return {**cfg, "detector_init": None, "schedule": {**cfg["schedule"], "channel_relative_steps": False}}


class Trainer:
    def __init__(self, cfg: dict, out_dir: Path, device: str = "cpu", config_path: str | None = None):
        self.cfg, self.out, self.device = cfg, Path(out_dir), torch.device(device)
        self.config_path = config_path
        # data parallel (torchrun): every rank draws its own slice of each batch, gradients are averaged
        self.rank = dist.get_rank() if dist.is_initialized() else 0
        self.world = dist.get_world_size() if dist.is_initialized() else 1
        self.main_process = self.rank == 0
        self.out.mkdir(parents=True, exist_ok=True)
        self.seed = int(cfg.get("seed", 0))
        torch.manual_seed(self.seed)
        self.sched = Schedule.from_config(cfg["schedule"])
        self.weights = L.LossWeights(**cfg.get("loss", {}))
        classes = load_classes(cfg.get("classes"))
        self.det_classes, self.seg_classes = list(classes.detection.names), list(classes.segmentation.names)
        model_cfg = ModelConfig.from_dict(
            {**cfg["model"], "num_det_classes": len(self.det_classes), "num_seg_classes": len(self.seg_classes)}
        )
        self.thermal_range = tuple(cfg["data"].get("thermal_range", THERMAL_RANGE_CENTIKELVIN))
        self.model = FusedPerceptionNet(model_cfg).to(self.device)
        self.init_from = None  # {"path", "sha256"} of the model a fine-tune started from
        self.detector_init = None  # what seeded the detector (detector_init: a COCO-pretrained YOLOX-nano ONNX)
        if cfg.get("init_from"):  # fine-tuning: start from a trained model of the same architecture
            self.load_weights(cfg["init_from"], model_cfg)
        elif cfg.get("detector_init"):
            if model_cfg.detector != "yolox_nano":
                raise ValueError("detector_init seeds a YOLOX-nano detector: set model.detector: yolox_nano")
            from training.yolox_weights import load_yolox_onnx

            self.detector_init = load_yolox_onnx(self.model.detector, cfg["detector_init"], self.det_classes)
        if self.sched.channel_relative_steps:  # the semantic module's convs: all but the fusion net's
            for name, child in self.model.named_children():
                if name != "fusion":
                    scale_conv_weights(child)
        self.critic = L.PixelCritic().to(self.device)
        self.ema = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(self.sched.ema_decay), use_buffers=True)
                    if self.sched.ema_decay > 0 else None)
        self.alpha = list(self.model.fusion.parameters())
        self.y = {
            "visual": list(self.critic.parameters()),
            "semantic": [p for n, p in self.model.named_parameters() if not n.startswith("fusion.")],
        }
        self.opt_upper = torch.optim.Adam(self.alpha, lr=self.sched.upper_lr)
        self.opt_lower = {t: torch.optim.Adam(self.y[t], lr=self.sched.lower_lr) for t in TASKS}
        if self.sched.semantic_optimizer == "sgd":
            self.opt_lower["semantic"] = torch.optim.SGD(self.y["semantic"], lr=self.sched.lower_lr, momentum=0.9,
                                                         nesterov=True, weight_decay=5e-4)
        elif self.sched.semantic_optimizer != "adam":
            raise ValueError(f"schedule.semantic_optimizer must be adam or sgd, got {self.sched.semantic_optimizer!r}")
        self.task_weights = TaskWeights(self.sched.aggregation, len(TASKS), generator=torch.Generator().manual_seed(self.seed))
        self.train_set, self.heldout_set, self.val_set = (
            build_dataset(cfg["data"], split, self.thermal_range, classes=classes) for split in ("train", "heldout", "val")
        )
        # unlabelled real pairs that join the fusion objective (the upper level) only: the fused image
        # learns real camera statistics without labels for them (data.fusion_pairs: e.g. kind: folder)
        extra = cfg["data"].get("fusion_pairs")
        self.fusion_pairs = build_dataset(extra, "train", self.thermal_range, classes=classes) if extra else None
        self.fusion_mode = cfg.get("fusion_mode", "bilevel")
        if self.fusion_mode not in FUSION_MODES:
            raise ValueError(f"fusion_mode must be one of {FUSION_MODES}, got {self.fusion_mode!r}")
        learned = self.fusion_mode in ("bilevel", "two_stage")
        self.warmup_steps = self.sched.fusion_warmup_steps if learned else 0
        self.step = 0  # counts warm-up and bi-level steps together
        self.history: list[dict] = []

    # ------------------------------------------------------------------------------------------ data
    def stream(self, dataset) -> BatchStream:
        """A dataset's deterministic stream of batches (epoch-wise permutations), this rank's share of each."""
        return BatchStream(dataset, self.sched.batch_size, self.seed, self.rank, self.world)

    def batch(self, dataset, draw: int) -> dict:
        """The `draw`-th batch of a dataset's stream, built here and now."""
        return self.to_device(self.stream(dataset)[draw])

    def training_batches(self, start: int, stop: int) -> DataLoader:
        """Training batches start, ..., stop - 1 of the stream, in order: the batches `batch` builds, built
        ahead of the step by schedule.loader_workers worker processes (0: in this process, when asked)."""
        workers = self.sched.loader_workers
        return DataLoader(
            self.stream(self.train_set), sampler=range(start, stop), batch_size=None, num_workers=workers,
            worker_init_fn=one_thread_worker,
            # spawned, not forked: a fork of this process, whose torch, OpenCV or ONNX Runtime thread pools may
            # be running, can inherit a lock held by one of those threads and hang (forked workers of a process
            # running ONNX Runtime and OpenCV did, 3 times in 3 tries). Spawned workers import the main module
            # again: a script that calls fit() needs the usual `if __name__ == "__main__":` guard.
            multiprocessing_context="spawn" if workers else None,
            # the loader draws its workers' seeds from its own generator, not from torch's global RNG, which
            # the training step uses and --resume restores (the batches themselves use no torch RNG)
            generator=torch.Generator().manual_seed(self.seed),
        )

    def to_device(self, b: dict) -> dict:
        """A batch's tensors on the training device (a CPU batch stays where it is)."""
        for key in ("thermal", "rgb", "mask"):
            if b[key] is not None:
                b[key] = b[key].to(self.device)
        b["boxes"] = [x.to(self.device) for x in b["boxes"]]
        b["labels"] = [x.to(self.device) for x in b["labels"]]
        return b

    def saliency(self, b: dict) -> torch.Tensor:
        """Mask M of the fusion target: warm pixels (IR saliency), restricted to labelled boxes when any."""
        sal = L.ir_saliency(b["thermal"])
        if not any(len(x) for x in b["boxes"]):
            return sal
        inside = torch.zeros_like(sal)
        for i, boxes in enumerate(b["boxes"]):
            for x1, y1, x2, y2 in boxes.round().long().tolist():
                inside[i, :, y1:y2, x1:x2] = 1.0
        return sal * inside

    def fuse(self, thermal: torch.Tensor, rgb: torch.Tensor, model: FusedPerceptionNet | None = None
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused RGB and Y the task modules see: F_alpha (of ``model``, default the trained one), or a
        fixed baseline image."""
        if self.fusion_mode in ("bilevel", "two_stage"):
            return (model or self.model).fuse(thermal, rgb)
        if self.fusion_mode == "ir_only":
            return thermal.expand(-1, 3, -1, -1), thermal
        if self.fusion_mode == "rgb_only":
            return rgb, L.rgb_to_luma(rgb)
        ycbcr = rgb_to_ycbcr(rgb)  # average: mean of IR and visible luminance, visible colour
        fused_y = 0.5 * (thermal + ycbcr[:, :1])
        return ycbcr_to_rgb(torch.cat([fused_y, ycbcr[:, 1:]], dim=1)), fused_y

    # -------------------------------------------------------------------------------------- the losses
    def upper_fusion_loss(self, b: dict, fused_y: torch.Tensor):
        vis_y = L.rgb_to_luma(b["rgb"])
        return L.fusion_loss(fused_y, b["thermal"], vis_y, self.saliency(b), self.weights)

    def fusion_objective(self, b: dict, fused_y: torch.Tensor, draw: int):
        """L_fuse on the batch, plus (weight loss.real_fusion) L_fuse on the draw-th batch of fusion_pairs."""
        loss, logs = self.upper_fusion_loss(b, fused_y)
        if self.fusion_pairs is not None:
            real = self.batch(self.fusion_pairs, draw)
            _, real_y = self.model.fuse(real["thermal"], real["rgb"])
            real_loss, _ = self.upper_fusion_loss(real, real_y)
            loss = loss + self.weights.real_fusion * real_loss
            logs = {**logs, "fuse_real": real_loss.item()}
        return loss, logs

    def task_losses(self, b: dict, fused: torch.Tensor, fused_y: torch.Tensor, lower: bool):
        """f_i (lower=True: critic loss, semantic loss) or F_i (lower=False: adversarial, semantic)."""
        sem, logs = L.semantic_loss(self.model.perceive(fused), b, self.weights, self.model.cfg.detector)
        if lower:
            target = L.fusion_target(b["thermal"], L.rgb_to_luma(b["rgb"]), self.saliency(b), self.weights.target,
                                     self.weights.detail_threshold)
            vis = L.critic_loss(self.critic, fused_y, target, self.weights.gradient_penalty)
        else:
            vis = self.weights.adversarial * L.adversarial_loss(self.critic, fused_y)
        return {"visual": vis, "semantic": sem}, logs

    # ------------------------------------------------------------------------------------ the steps
    def all_reduce(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """Average gradients over the ranks (identity in a single process).

        Done by hand rather than by wrapping in DistributedDataParallel: the hypergradient needs
        torch.autograd.grad on parameter subsets, which DDP's backward hooks do not see.
        """
        if self.world > 1:
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= self.world
            grads = [chunk.view_as(g) for chunk, g in zip(flat.split([g.numel() for g in grads]), grads)]
        return grads

    def warmup_step(self, b: dict) -> dict:
        """Warm start of F on the fusion loss alone (as the paper does before the bi-level phase)."""
        _, fused_y = self.model.fuse(b["thermal"], b["rgb"])
        loss, logs = self.fusion_objective(b, fused_y, self.step)
        for p, g in zip(self.alpha, self.all_reduce(grads_or_zeros(loss, self.alpha, retain_graph=False))):
            p.grad = g
        self.opt_upper.step()
        self.opt_upper.zero_grad(set_to_none=True)
        return {"phase": "warmup", "fuse": loss.item(), **logs}

    def lower_step(self, grads: dict[str, list[torch.Tensor]]) -> None:
        """y_i <- y_i - eta * df_i/dy_i for both task modules."""
        for task in TASKS:
            for p, g in zip(self.y[task], grads[task]):
                p.grad = g
            if task == "semantic" and self.sched.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.y[task], self.sched.grad_clip)
            self.opt_lower[task].step()
            self.opt_lower[task].zero_grad(set_to_none=True)

    def bilevel_step(self, b: dict, draw: int) -> dict:
        hyper = self.fusion_mode == "bilevel" and draw % self.sched.fusion_every == 0
        with torch.set_grad_enabled(True):
            if not hyper:  # alpha fixed: the task modules see the fused image as data
                with torch.no_grad():
                    fused, fused_y = self.fuse(b["thermal"], b["rgb"])
                f, logs = self.task_losses(b, fused, fused_y, lower=True)
                self.lower_step({t: self.all_reduce(grads_or_zeros(f[t], self.y[t])) for t in TASKS})
                return {"phase": "lower", **{f"f_{t}": f[t].item() for t in TASKS}, **logs}

            # upper level on a held-out batch: F_i and the fusion objective itself
            held = self.batch(self.heldout_set, draw // self.sched.fusion_every)
            fused_h, fused_y_h = self.model.fuse(held["thermal"], held["rgb"])
            fuse_loss, fuse_logs = self.fusion_objective(held, fused_y_h, draw // self.sched.fusion_every)
            upper, _ = self.task_losses(held, fused_h, fused_y_h, lower=False)
            grad_fuse = self.all_reduce(grads_or_zeros(fuse_loss, self.alpha))
            upper_grads = {t: self.all_reduce(grads_or_zeros(upper[t], self.alpha + self.y[t])) for t in TASKS}

            # lower level on the training batch, now with the graph back to alpha
            fused, fused_y = self.model.fuse(b["thermal"], b["rgb"])
            f, logs = self.task_losses(b, fused, fused_y, lower=True)
            lower_grads = {t: self.all_reduce(grads_or_zeros(f[t], self.alpha + self.y[t])) for t in TASKS}

            n_alpha = len(self.alpha)
            hypergrads, coeffs = [], {}
            for t in TASKS:
                h, coeffs[t] = first_order_hypergradient(
                    upper_grads[t][:n_alpha], upper_grads[t][n_alpha:],
                    lower_grads[t][:n_alpha], lower_grads[t][n_alpha:],
                    scale=self.sched.hypergradient_scale,
                )
                hypergrads.append(h)
            w = self.task_weights(hypergrads, [upper[t].item() for t in TASKS])
            task_grad = aggregate(hypergrads, w)
            for p, g_fuse, g_task in zip(self.alpha, grad_fuse, task_grad):
                p.grad = self.sched.bilevel_fusion_weight * g_fuse + g_task
            self.opt_upper.step()
            self.opt_upper.zero_grad(set_to_none=True)
            self.lower_step({t: lower_grads[t][n_alpha:] for t in TASKS})
        return {
            "phase": "bilevel", "fuse": fuse_loss.item(), **fuse_logs,
            **{f"F_{t}": upper[t].item() for t in TASKS}, **{f"f_{t}": f[t].item() for t in TASKS},
            **{f"c_{t}": coeffs[t] for t in TASKS}, **{f"w_{t}": float(w[i]) for i, t in enumerate(TASKS)}, **logs,
            # how hard the tasks pull on F next to its own loss: |sum_i w_i h_i| vs |dL_fuse/dalpha|
            "task_grad_norm": float(norm(task_grad)),
            "fuse_grad_norm": self.sched.bilevel_fusion_weight * float(norm(grad_fuse)),
        }

    def set_learning_rates(self, bilevel_step: int) -> None:
        s = self.sched
        factor = min(1.0, (bilevel_step + 1) / s.lr_warmup_steps) if s.lr_warmup_steps else 1.0
        factor *= 0.1 ** sum(bilevel_step >= frac * s.steps for frac in s.lr_decay_at)
        for opt in self.opt_lower.values():
            for group in opt.param_groups:
                group["lr"] = s.lower_lr * factor
        for group in self.opt_upper.param_groups:
            group["lr"] = s.upper_lr * factor if bilevel_step >= 0 else s.warm_start_lr

    # ------------------------------------------------------------------------------------- the loop
    def fit(self, stop_after: int | None = None) -> None:
        total = self.warmup_steps + self.sched.steps
        log_file = open(self.out / "log.jsonl", "a") if self.main_process else None
        bar = progress(total=total, initial=self.step, desc="train", unit="step", disable=not self.main_process)
        done_now = 0
        self.model.train()
        with prefetched(self.training_batches(self.step, total)) as batches:
            while self.step < total:
                t0 = time.perf_counter()
                b = self.to_device(next(batches))
                bilevel_step = self.step - self.warmup_steps
                self.set_learning_rates(bilevel_step)
                row = self.warmup_step(b) if bilevel_step < 0 else self.bilevel_step(b, bilevel_step)
                if self.ema is not None and bilevel_step >= 0:
                    self.ema.update_parameters(self.model)
                bad = [k for k in ("fuse", "f_semantic", "f_visual") if k in row and not math.isfinite(row[k])]
                if bad:  # a diverged run must stop here, not write NaN weights into checkpoints for hours
                    raise FloatingPointError(f"training diverged at step {self.step}: {', '.join(bad)} not finite; "
                                             "lower schedule.lower_lr / upper_lr or set schedule.grad_clip, then "
                                             "--resume")
                row = {"step": self.step, "seconds": time.perf_counter() - t0, **row}
                self.history.append(row)
                self.step += 1
                done_now += 1
                bar.update(1)
                if self.main_process and (self.step % self.sched.log_every == 0 or row["phase"] == "bilevel"):
                    bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k in ("fuse", "f_semantic", "f_visual")})
                    log_file.write(json.dumps(row) + "\n")
                    log_file.flush()
                if self.main_process and (self.step % self.sched.val_every == 0 or self.step == total):
                    self.validate()
                if self.main_process and (self.step % self.sched.checkpoint_every == 0 or self.step == total):
                    self.save_checkpoint()
                if stop_after is not None and done_now >= stop_after:
                    break
        bar.close()
        if self.main_process:
            log_file.close()
            if self.step == total:
                self.finish()
        if self.world > 1:
            checksum = sum(float(p.detach().double().sum()) for p in self.model.parameters())
            print(f"rank {self.rank} parameter checksum {checksum:.10e}", flush=True)

    @torch.no_grad()
    def evaluate(self, dataset) -> dict:
        """mAP (COCO, when the data has boxes) and mIoU of the model that would ship now on a dataset."""
        model = self.shipped_model()
        model.eval()
        preds, gts, cm = [], [], ConfusionMatrix(len(self.seg_classes), ignore_index=NO_LABEL)
        for i in range(len(dataset)):
            s = dataset[i]
            fused, _ = self.fuse(s["thermal"][None].to(self.device), s["rgb"][None].to(self.device), model)
            cls_logits, box_ltrb, centerness, seg_logits = model.perceive(fused)
            h, w = s["thermal"].shape[-2:]
            dets = decode_detections(cls_logits[0].cpu().numpy(), box_ltrb[0].cpu().numpy(),
                                     centerness[0].cpu().numpy(), (h, w), PostprocessConfig(score_threshold=0.05))
            preds.append((dets.boxes, dets.scores, dets.labels))
            gts.append((s["boxes"].numpy(), s["labels"].numpy()))
            if s["mask"] is not None:
                cm.update(segmentation_mask(seg_logits[0].cpu().numpy()), s["mask"].numpy())
        self.model.train()  # (the EMA copy is never trained: it stays in eval mode)
        result = {"step": self.step, "miou": cm.miou(), "map50": None, "map50_95": None, "ap50": None}
        if any(len(labels) for _, labels in gts):  # segmentation-only datasets have no boxes to score
            report = evaluate_detections(preds, gts, self.det_classes)
            result.update(map50=report.map50, map50_95=report.map50_95, ap50=report.ap50)
        return result

    def shipped_model(self) -> FusedPerceptionNet:
        """The weights validated and saved: their moving average once it has seen a bi-level step."""
        if self.ema is not None and int(self.ema.n_averaged) > 0:
            return self.ema.module
        return self.model

    def validate(self) -> dict:
        result = self.evaluate(self.val_set)
        with open(self.out / "val.jsonl", "a") as f:
            f.write(json.dumps(result, default=_json_nan) + "\n")
        progress_write(f"[val step {self.step}] " + "  ".join(f"{k} {v:.3f}" for k, v in result.items() if isinstance(v, float)))
        self.last_val = result
        return result

    # ------------------------------------------------------------------------------ save and resume
    def load_weights(self, path: str | Path, model_cfg: ModelConfig) -> None:
        """Start from a trained model file (init_from); its architecture and class lists must match (its
        colour handling, model.chroma, may differ: it has no weights)."""
        model, meta = load_model(path, device=str(self.device))
        if replace(model.cfg, chroma=model_cfg.chroma) != model_cfg:  # chroma holds no weights: may change
            raise ValueError(f"init_from {path}: its model config {model.cfg} differs from this run's {model_cfg}")
        if (meta.det_classes, meta.seg_classes) != (self.det_classes, self.seg_classes):
            raise ValueError(f"init_from {path}: its classes {meta.det_classes} / {meta.seg_classes} differ from "
                             f"this run's {self.det_classes} / {self.seg_classes}")
        self.model.load_state_dict(model.state_dict())
        # the file's hash, not just its path: a fine-tune is often shipped over the very file it started from
        self.init_from = {"path": str(path), "sha256": sha256_file(path), "segmentation_labels": meta.segmentation_labels}

    def state(self) -> dict:
        return {
            "step": self.step, "cfg": self.cfg,
            "model": self.model.state_dict(), "critic": self.critic.state_dict(),
            "opt_upper": self.opt_upper.state_dict(), "opt_lower": {t: o.state_dict() for t, o in self.opt_lower.items()},
            "task_weights": self.task_weights.state_dict(), "torch_rng": torch.get_rng_state(),
            "init_from": self.init_from, "ema": None if self.ema is None else self.ema.state_dict(),
        }

    def save_checkpoint(self) -> None:
        tmp = self.out / "checkpoint.pt.tmp"
        torch.save(self.state(), tmp)
        os.replace(tmp, self.out / "checkpoint.pt")  # atomic: a kill never leaves a broken checkpoint

    def load_checkpoint(self, path: Path) -> None:
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.critic.load_state_dict(state["critic"])
        self.opt_upper.load_state_dict(state["opt_upper"])
        for t, o in self.opt_lower.items():
            o.load_state_dict(state["opt_lower"][t])
        self.task_weights.load_state_dict(state["task_weights"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise ValueError(f"{path}: this checkpoint has no weight average; resume it with its own "
                                 "schedule.ema_decay (0)")
            self.ema.load_state_dict(state["ema"])
        torch.set_rng_state(state["torch_rng"])
        self.init_from = state.get("init_from", self.init_from)  # the base as it was when the run began
        self.step = state["step"]

    def segmentation_labels(self) -> str:
        """What the saved segmentation head learnt from (fusion_ros.segmentation_labels): the training data's
        masks (none with the segmentation loss off) and what the model it started from had learnt."""
        data = self.train_set.segmentation_labels if self.weights.segmentation > 0 else NONE
        start = self.init_from.get("segmentation_labels", UNKNOWN) if self.init_from else NONE
        return combined([data, start])

    def finish(self) -> None:
        info = {"config": self.cfg, "config_path": self.config_path, "date": date.today().isoformat(), "steps": self.step,
                "fusion_mode": self.fusion_mode, "init_from": self.init_from, "detector_init": self.detector_init,
                "validation": getattr(self, "last_val", None)}
        meta = ModelMeta(self.det_classes, self.seg_classes,
                         input_size=(self.cfg["data"]["height"], self.cfg["data"]["width"]),
                         thermal_range=self.thermal_range, info=json.loads(json.dumps(info, default=_json_nan)),
                         segmentation_labels=self.segmentation_labels())
        save_model(self.out / "model.pt", fold(copy.deepcopy(self.shipped_model())), meta)
        from training.report import plot_training

        plot_training(self.out, self)


def _json_nan(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    return str(x)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", default=None, help="run folder (default runs/<config name>)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    parser.add_argument("--stop-after", type=int, default=None, help="stop after this many steps (testing)")
    parser.add_argument("--fusion-mode", choices=FUSION_MODES, default=None,
                        help="override the config's fusion_mode (the baselines of the comparison tables)")
    parser.add_argument("--seed", type=int, default=None, help="override the config's seed")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    if args.fusion_mode is not None:
        cfg["fusion_mode"] = args.fusion_mode
    if args.seed is not None:
        cfg["seed"] = args.seed
    out = Path(args.out or Path("runs") / Path(args.config).stem)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by torchrun
        dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
        if args.device == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    trainer = Trainer(cfg, out, args.device, config_path=args.config)
    ckpt = out / "checkpoint.pt"
    if args.resume:
        if not ckpt.is_file():
            parser.error(f"--resume: no checkpoint at {ckpt}")
        trainer.load_checkpoint(ckpt)
        print(f"resumed from {ckpt} at step {trainer.step}")
    elif ckpt.is_file():
        parser.error(f"{out} already holds a run; pass --resume to continue it or --out for a new folder")
    trainer.fit(stop_after=args.stop_after)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
