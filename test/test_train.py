"""The bi-level trainer end to end on tiny synthetic data: it learns, logs, checkpoints, resumes exactly."""
import copy
import json
import multiprocessing

import pytest
import torch
import yaml

from fusion_ros.checkpoint import load_model
from fusion_ros.engine.sidecar import sha256_file
from fusion_ros.segmentation_labels import combined
from training.data import prefetched
from training.ship import real_data_line
from training.train import Trainer, load_config, main

TINY = {
    "seed": 3,
    "data": {"kind": "synthetic", "seed": 50, "train_size": 16, "heldout_size": 8, "val_size": 2,
             "height": 64, "width": 96, "crop": [64, 64], "hflip": True},
    "model": {"fusion": {"stem_channels": 8, "width": 8, "growth": 8, "block_layers": 2, "num_blocks": 1},
              "backbone_channels": [8, 8, 16, 16, 16], "fpn_channels": 16, "head_convs": 1, "seg_channels": 8},
    "schedule": {"fusion_warmup_steps": 2, "steps": 6, "fusion_every": 2, "batch_size": 2,
                 "lower_lr": 1e-3, "upper_lr": 1e-3, "aggregation": "random", "log_every": 1,
                 "val_every": 100, "checkpoint_every": 2},
}


def _write(tmp_path, cfg):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_bilevel_step_updates_both_levels(tmp_path):
    trainer = Trainer(copy.deepcopy(TINY), tmp_path / "run")
    alpha_before = [p.detach().clone() for p in trainer.alpha]
    sem_before = [p.detach().clone() for p in trainer.y["semantic"]]
    row = trainer.bilevel_step(trainer.batch(trainer.train_set, 0), draw=0)  # draw 0 is a hypergradient step
    assert row["phase"] == "bilevel"
    assert row["w_visual"] + row["w_semantic"] == pytest.approx(0.5)  # authors' 0.5 * softmax
    assert all(torch.isfinite(torch.tensor(row[k])) for k in ("F_semantic", "f_semantic", "c_semantic", "fuse"))
    assert any(not torch.equal(a, p) for a, p in zip(alpha_before, trainer.alpha))
    assert any(not torch.equal(a, p) for a, p in zip(sem_before, trainer.y["semantic"]))
    alpha_mid = [p.detach().clone() for p in trainer.alpha]
    row = trainer.bilevel_step(trainer.batch(trainer.train_set, 1), draw=1)  # lower-only step
    assert row["phase"] == "lower"
    assert all(torch.equal(a, p) for a, p in zip(alpha_mid, trainer.alpha))  # alpha untouched


def test_bilevel_fusion_weight_scales_only_the_fusion_objective_in_the_update(tmp_path):
    """alpha's gradient in a bi-level update is w * dL_fuse/dalpha + the tasks' aggregated hypergradient."""
    def update_gradient(weight):
        cfg = copy.deepcopy(TINY)
        cfg["schedule"]["bilevel_fusion_weight"] = weight
        trainer = Trainer(cfg, tmp_path / f"run_{weight}")
        seen = []
        trainer.opt_upper.step = lambda: seen.append([p.grad.detach().clone() for p in trainer.alpha])
        row = trainer.bilevel_step(trainer.batch(trainer.train_set, 0), draw=0)
        return torch.cat([g.reshape(-1) for g in seen[0]]), row

    g0, row0 = update_gradient(0.0)
    g1, row1 = update_gradient(1.0)
    g3, row3 = update_gradient(3.0)
    fusion_part = g1 - g0
    assert fusion_part.norm() > 1e-3 * g1.norm()  # the fusion objective does reach alpha
    assert torch.allclose(g3 - g0, 3.0 * fusion_part, rtol=1e-3, atol=1e-6)
    assert row3["fuse_grad_norm"] == pytest.approx(3.0 * row1["fuse_grad_norm"], rel=1e-4)
    assert row0["fuse_grad_norm"] == 0.0 and row0["task_grad_norm"] == pytest.approx(row1["task_grad_norm"], rel=1e-4)
    bad = copy.deepcopy(TINY)
    bad["schedule"]["bilevel_fusion_weight"] = -1.0
    with pytest.raises(ValueError, match="bilevel_fusion_weight"):
        Trainer(bad, tmp_path / "bad")


def test_warm_start_lowers_the_fusion_loss(tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg["schedule"]["upper_lr"] = 3e-3
    trainer = Trainer(cfg, tmp_path / "run")
    b = trainer.batch(trainer.train_set, 0)
    first = trainer.warmup_step(b)["fuse"]
    for _ in range(15):
        last = trainer.warmup_step(b)["fuse"]
    assert last < 0.9 * first


def test_kill_and_resume_continues_exactly(tmp_path):
    path = _write(tmp_path, TINY)
    # uninterrupted reference run
    assert main(["--config", str(path), "--out", str(tmp_path / "full")]) == 0
    # the same run "killed" after 3 steps (checkpoint at step 2), then resumed
    assert main(["--config", str(path), "--out", str(tmp_path / "cut"), "--stop-after", "3"]) == 0
    with pytest.raises(SystemExit):  # refusing to overwrite an existing run without --resume
        main(["--config", str(path), "--out", str(tmp_path / "cut")])
    assert main(["--config", str(path), "--out", str(tmp_path / "cut"), "--resume"]) == 0
    full, _ = load_model(tmp_path / "full" / "model.pt")
    cut, meta = load_model(tmp_path / "cut" / "model.pt")
    for (name, a), (_, b) in zip(full.state_dict().items(), cut.state_dict().items()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    assert meta.info["steps"] == 8
    for name in ("log.jsonl", "val.jsonl", "training.png", "fused_grid.png"):
        assert (tmp_path / "cut" / name).stat().st_size > 0
    val = json.loads((tmp_path / "cut" / "val.jsonl").read_text().splitlines()[-1])
    assert set(val) >= {"map50", "map50_95", "miou"}


def test_weight_average_is_what_ships_and_resumes_exactly(tmp_path):
    """schedule.ema_decay: the saved model is the moving average of the weights over the bi-level steps (not
    the last weights), it is checkpointed, and a run cut inside the bi-level phase resumes to the same model."""
    cfg = copy.deepcopy(TINY)
    cfg["schedule"]["ema_decay"] = 0.5
    path = _write(tmp_path, cfg)
    assert main(["--config", str(path), "--out", str(tmp_path / "full")]) == 0
    assert main(["--config", str(path), "--out", str(tmp_path / "cut"), "--stop-after", "5"]) == 0  # ckpt at 4
    assert torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=False)["ema"]["n_averaged"] == 2
    assert main(["--config", str(path), "--out", str(tmp_path / "cut"), "--resume"]) == 0
    full, _ = load_model(tmp_path / "full" / "model.pt")
    cut, _ = load_model(tmp_path / "cut" / "model.pt")
    for (name, a), (_, b) in zip(full.state_dict().items(), cut.state_dict().items()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    state = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    assert state["ema"]["n_averaged"] == 6  # one update per bi-level step, none in the warm start
    shipped = full.state_dict()
    averaged = {k[len("module."):]: v for k, v in state["ema"].items() if k.startswith("module.")}
    assert all(torch.equal(shipped[k], averaged[k]) for k in shipped)
    assert any(not torch.equal(shipped[k], state["model"][k]) for k in shipped)  # not the last weights
    # a checkpoint without an average cannot be resumed as a run with one (nor the decay be out of range)
    (tmp_path / "p").mkdir()
    plain = _write(tmp_path / "p", TINY)  # (its own file: _write names every config cfg.yaml)
    assert main(["--config", str(plain), "--out", str(tmp_path / "plain"), "--stop-after", "2"]) == 0
    with pytest.raises(ValueError, match="no weight average"):
        main(["--config", str(path), "--out", str(tmp_path / "plain"), "--resume"])
    cfg["schedule"]["ema_decay"] = 1.0
    with pytest.raises(ValueError, match="ema_decay"):
        Trainer(cfg, tmp_path / "bad")


def _same_batch(a: dict, b: dict) -> bool:
    return (a["name"] == b["name"] and all(torch.equal(a[k], b[k]) for k in ("thermal", "rgb", "mask"))
            and all(torch.equal(x, y) for key in ("boxes", "labels") for x, y in zip(a[key], b[key])))


def test_batch_worker_processes_change_nothing_and_resume_exactly(tmp_path):
    """schedule.loader_workers: worker processes build the batches the training process builds (across epoch
    boundaries), so a run with them, cut and resumed, ends bit for bit where an uninterrupted one without
    them does; and none of them outlives fit(), whether it ends, stops early or fails."""
    workers = copy.deepcopy(TINY)
    workers["schedule"]["loader_workers"] = 2
    trainer = Trainer(copy.deepcopy(workers), tmp_path / "stream")
    with prefetched(trainer.training_batches(3, 20)) as batches:  # 16 pairs, 2 a batch: 8 draws an epoch
        ahead = list(batches)
    assert len(ahead) == 17 and all(_same_batch(trainer.batch(trainer.train_set, 3 + i), b) for i, b in enumerate(ahead))

    for name in ("w0", "w2"):
        (tmp_path / name).mkdir()  # (_write names every config cfg.yaml)
    plain, path = _write(tmp_path / "w0", TINY), _write(tmp_path / "w2", workers)
    assert main(["--config", str(plain), "--out", str(tmp_path / "inline")]) == 0
    assert main(["--config", str(path), "--out", str(tmp_path / "cut"), "--stop-after", "3"]) == 0
    assert not multiprocessing.active_children()  # stopped early, batches still in flight: its workers are gone
    assert main(["--config", str(path), "--out", str(tmp_path / "cut"), "--resume"]) == 0
    inline, _ = load_model(tmp_path / "inline" / "model.pt")
    cut, _ = load_model(tmp_path / "cut" / "model.pt")
    for (name, a), (_, b) in zip(inline.state_dict().items(), cut.state_dict().items()):
        assert torch.equal(a, b), name
    assert not multiprocessing.active_children()

    with torch.no_grad():  # a run that fails inside the loop (diverged) stops its workers as well
        next(iter(trainer.y["semantic"])).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="diverged"):
        trainer.fit()
    assert not multiprocessing.active_children()


def test_bad_config_and_resume_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": {}, "model": {}}))
    with pytest.raises(ValueError, match="schedule"):
        load_config(bad)
    with pytest.raises(SystemExit):
        main(["--config", str(_write(tmp_path, TINY)), "--out", str(tmp_path / "none"), "--resume"])
    cfg = copy.deepcopy(TINY)
    cfg["schedule"]["aggregation"] = "magic"
    with pytest.raises(ValueError, match="aggregation mode"):
        Trainer(cfg, tmp_path / "x")
    cfg = copy.deepcopy(TINY)
    cfg["schedule"]["loader_workers"] = -1
    with pytest.raises(ValueError, match="loader_workers must be >= 0"):
        Trainer(cfg, tmp_path / "y")
    for key, value, message in (("ema_decay", None, "schedule.ema_decay must be a number, got None"),
                                ("steps", 1e3, "schedule.steps must be an integer, got 1000.0"),
                                ("channel_relative_steps", "yes", "must be a bool, got 'yes'"),
                                ("grad_clip", "1", "grad_clip must be a number or null, got '1'"),
                                ("lr_decay_at", ["0.7"], r"lr_decay_at must be a list of numbers, got \('0.7',\)"),
                                ("ema_decy", 0.9, r"unknown schedule key\(s\) \['ema_decy'\]")):
        cfg = copy.deepcopy(TINY)
        cfg["schedule"][key] = value
        with pytest.raises(ValueError, match=message):
            Trainer(cfg, tmp_path / "z")
    cfg = copy.deepcopy(TINY)
    cfg["schedule"].update(ema_decay=0, upper_lr=1, grad_clip=None)  # ints are numbers, null where allowed
    Trainer(cfg, tmp_path / "ok")


def test_torchrun_two_processes_gloo_stay_in_sync(tmp_path):
    """Data parallel through torchrun: 2 CPU processes (gloo) average gradients and end identical."""
    import os
    import subprocess
    import sys

    path = _write(tmp_path, TINY)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "training.train", "--config", str(path), "--out", str(tmp_path / "ddp")],
        capture_output=True, text=True, timeout=300, env=env, cwd=os.path.dirname(os.path.dirname(__file__)),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sums = sorted(line.split()[-1] for line in proc.stdout.splitlines() if "parameter checksum" in line)
    assert len(sums) == 2 and sums[0] == sums[1], proc.stdout
    assert (tmp_path / "ddp" / "model.pt").is_file()


@pytest.mark.parametrize("mode", ["two_stage", "ir_only", "rgb_only", "average"])
def test_baseline_fusion_modes_never_take_hypergradient_steps(tmp_path, mode):
    cfg = copy.deepcopy(TINY)
    cfg["fusion_mode"] = mode
    trainer = Trainer(cfg, tmp_path / mode)
    trainer.fit(stop_after=trainer.warmup_steps)  # two_stage: the warm start moves alpha
    alpha = [p.detach().clone() for p in trainer.alpha]
    trainer.fit()
    assert {r["phase"] for r in trainer.history[trainer.warmup_steps:]} == {"lower"}
    assert all(torch.equal(a, p) for a, p in zip(alpha, trainer.alpha))  # frozen after the warm start
    assert trainer.warmup_steps == (2 if mode == "two_stage" else 0)
    fused, _ = trainer.fuse(torch.rand(1, 1, 8, 8), torch.rand(1, 3, 8, 8))
    assert fused.shape == (1, 3, 8, 8)
    result = trainer.evaluate(trainer.val_set)
    assert 0.0 <= result["map50"] <= 1.0


def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path):
    """A real kill (SIGKILL, no clean-up) mid-run; --resume from the last atomic checkpoint ends identical."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cfg = copy.deepcopy(TINY)
    cfg["schedule"].update(steps=60, checkpoint_every=3)
    path = _write(tmp_path, cfg)

    def train(out, *extra):  # both runs in the same kind of process: same thread count, same float order
        return subprocess.Popen([sys.executable, "-m", "training.train", "--config", str(path), "--out", str(out), *extra],
                                cwd=os.path.dirname(os.path.dirname(__file__)), env={**os.environ, "OMP_NUM_THREADS": "1"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    full = train(tmp_path / "full")
    cut = tmp_path / "cut"
    proc = train(cut)
    deadline = time.monotonic() + 120
    while not (cut / "checkpoint.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.3)  # somewhere after the first checkpoint, possibly while writing the next one
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (cut / "model.pt").exists(), "the run ended before the kill"
    resumed = train(cut, "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-2000:]
    assert full.wait(timeout=300) == 0, full.stderr.read()[-2000:]
    reference, _ = load_model(tmp_path / "full" / "model.pt")
    continued, _ = load_model(cut / "model.pt")
    for (name, a), (_, b) in zip(reference.state_dict().items(), continued.state_dict().items()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_every_fusion_update_is_logged_with_its_weights(tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg["schedule"]["log_every"] = 1000
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    hyper = [r for r in rows if r["phase"] == "bilevel"]
    assert len(hyper) == cfg["schedule"]["steps"] // cfg["schedule"]["fusion_every"]
    assert all({"w_visual", "w_semantic", "c_semantic", "fuse"} <= set(r) for r in hyper)
    # the pull of the tasks on F next to its own loss's, as norms of the two gradients added into alpha
    assert all(0 < r["task_grad_norm"] < float("inf") and 0 < r["fuse_grad_norm"] < float("inf") for r in hyper)


def _real_folder(root, pairs=6, size=(64, 96)):
    """ir/ + vi/ PNG pairs, as RoadScene or TNO are laid out (fusion loss only: no labels)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    for sub in ("ir", "vi"):
        (root / sub).mkdir(parents=True)
    for i in range(pairs):
        cv2.imwrite(str(root / "ir" / f"{i:03d}.png"), rng.integers(0, 255, size, dtype=np.uint8))
        cv2.imwrite(str(root / "vi" / f"{i:03d}.png"), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    return root


def test_fine_tune_from_a_model_with_real_pairs_in_the_fusion_objective(tmp_path):
    assert main(["--config", str(_write(tmp_path, TINY)), "--out", str(tmp_path / "base")]) == 0
    base, _ = load_model(tmp_path / "base" / "model.pt")
    cfg = copy.deepcopy(TINY)
    cfg["init_from"] = str(tmp_path / "base" / "model.pt")
    cfg["data"]["fusion_pairs"] = {"kind": "folder", "root": str(_real_folder(tmp_path / "real")), "height": 64,
                                   "width": 96, "crop": [64, 64], "heldout_fraction": 0.0, "val_fraction": 0.0}
    trainer = Trainer(copy.deepcopy(cfg), tmp_path / "tune")
    for name, tensor in base.state_dict().items():  # starts from the given weights
        assert torch.equal(trainer.model.state_dict()[name], tensor), name
    # the start is recorded by content (the card must survive the base file being overwritten by the ship)
    base_sha = sha256_file(cfg["init_from"])
    assert trainer.init_from == {"path": cfg["init_from"], "sha256": base_sha, "segmentation_labels": "synthetic"}
    assert trainer.segmentation_labels() == "synthetic"  # the unlabelled real pairs train no segmentation
    assert base_sha in real_data_line(cfg, trainer.init_from)
    b = trainer.batch(trainer.train_set, 0)
    row = trainer.warmup_step(b)
    assert row["fuse_real"] > 0 and row["fuse"] > row["fuse_real"]  # the real pairs' loss is part of it
    assert "fuse_real" in trainer.bilevel_step(trainer.batch(trainer.train_set, 0), draw=0)

    # the real pairs change the fusion update: same start, same batch, real_fusion weight 0 vs 1
    updates = []
    for weight in (0.0, 1.0):
        cfg["loss"] = {"real_fusion": weight}
        tuner = Trainer(copy.deepcopy(cfg), tmp_path / f"w{weight}")
        tuner.warmup_step(tuner.batch(tuner.train_set, 0))
        updates.append(torch.cat([p.detach().reshape(-1) for p in tuner.alpha]))
    assert not torch.allclose(updates[0], updates[1])

    other = copy.deepcopy(cfg)
    other["model"]["fusion"]["width"] = 16
    with pytest.raises(ValueError, match="init_from .* model config"):
        Trainer(other, tmp_path / "mismatch")
    recoloured = copy.deepcopy(cfg)
    recoloured["model"]["chroma"] = "denoised"  # colour handling has no weights: a fine-tune may change it
    assert Trainer(recoloured, tmp_path / "recoloured").model.cfg.chroma == "denoised"

    trainer.save_checkpoint()
    (tmp_path / "base" / "model.pt").write_bytes(b"overwritten by a ship")  # a resumed run still names its start
    resumed = Trainer(copy.deepcopy({**cfg, "init_from": None}), tmp_path / "tune")
    resumed.load_checkpoint(tmp_path / "tune" / "checkpoint.pt")
    assert resumed.init_from["sha256"] == base_sha


def test_the_model_file_records_what_its_segmentation_head_learnt_from(tmp_path):
    """Issue 21 item 8: a model file says whether its segmentation head saw labels, and of what: the node
    and the evaluators read it. Generated scenes: synthetic; the segmentation loss off: none, whatever the
    data held; box-only pairs: none, unless the model it started from had learnt more."""
    from test_labelled_pairs import yolo_folder

    assert main(["--config", str(_write(tmp_path, TINY)), "--out", str(tmp_path / "run")]) == 0
    model = tmp_path / "run" / "model.pt"
    assert load_model(model)[1].segmentation_labels == "synthetic"
    off = copy.deepcopy(TINY)
    off["loss"] = {"segmentation": 0.0}
    assert Trainer(off, tmp_path / "off").segmentation_labels() == "none"
    boxes = copy.deepcopy(TINY)
    boxes["classes"] = "config/classes_road.yaml"
    boxes["data"] = {"kind": "pairs", "root": str(yolo_folder(tmp_path / "pairs", names=[f"{i:05d}" for i in range(24)])),
                     "height": 64, "width": 96, "split": {"block": 4, "gap": 1}}
    assert Trainer(copy.deepcopy(boxes), tmp_path / "boxes").segmentation_labels() == "none"
    # a head is as trained as the most real labels it saw, its start included
    assert [combined(v) for v in (["none", "synthetic"], ["none", "unknown"], ["synthetic", "real"], [])] == \
        ["synthetic", "unknown", "real", "none"]


def test_a_diverged_run_stops_with_a_clear_error_and_keeps_its_last_good_checkpoint(tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg["schedule"].update(fusion_warmup_steps=0, checkpoint_every=1)
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.fit(stop_after=2)
    good = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"]
    with torch.no_grad():  # what a too-large learning rate does: the detector's weights blow up
        next(iter(trainer.y["semantic"])).fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="diverged at step 2: .*f_semantic.*not finite.*--resume"):
        trainer.fit()
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["step"] == good == 2


def test_sgd_and_gradient_clipping_for_the_semantic_module(tmp_path):
    cfg = copy.deepcopy(TINY)
    cfg["schedule"].update(semantic_optimizer="sgd", grad_clip=0.5)
    trainer = Trainer(cfg, tmp_path / "run")
    assert isinstance(trainer.opt_lower["semantic"], torch.optim.SGD)
    before = [p.detach().clone() for p in trainer.y["semantic"]]
    trainer.lower_step({t: [torch.full_like(p, 100.0) for p in trainer.y[t]] for t in ("visual", "semantic")})
    moved = torch.cat([(p - b).flatten() for p, b in zip(trainer.y["semantic"], before)])
    # unclipped, a gradient of 100 everywhere would move the weights by ~lr * 1.9 * 100 * sqrt(n) (Nesterov);
    # clipped to norm 0.5 the step stays below lr * 1.9 * 0.5 plus the weight decay's small share
    assert 0 < float(moved.norm()) < trainer.sched.lower_lr * 1.0
    cfg["schedule"]["semantic_optimizer"] = "rmsprop"
    with pytest.raises(ValueError, match="semantic_optimizer must be adam or sgd"):
        Trainer(cfg, tmp_path / "run2")
