"""Detection on real road pairs: the comparison table of docs/training.md ("Detection on real road pairs").

    python benchmarks/real_pairs_compare.py --config config/train_msrs.yaml --runs runs/ir_s0 runs/bilevel_s0 ...
        [--zero-shot] [--out bench_out/real_pairs]

Every run folder holds a finished `python -m training.train --config ... --fusion-mode MODE --seed S` run.
Each is scored on the config's `val` split (contiguous blocks of names never trained on) with the input
its mode trained on -- thermal only, RGB only, the pixel average, the frozen two-stage fusion net or the
bi-level one -- through the trainer's own `fuse` and the shared post-processing, overall, by day and by
night (names ending in D / N, as msrs_det's), with AP@0.5 per class and boxes per labelled object at
the node's default score threshold. `--zero-shot` adds the COCO-pretrained detector untrained (its
`detector_init`) on the fixed inputs. Writes table.md and results.json.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fusion_ros.checkpoint import load_model  # noqa: E402
from fusion_ros.labelled_pairs import subsets as match_subsets  # noqa: E402
from fusion_ros.pairs_eval import detection_metrics  # noqa: E402
from fusion_ros.postprocess import PostprocessConfig, decode_detections  # noqa: E402
from fusion_ros.progress import progress  # noqa: E402
from training.train import Trainer, load_config, scoring_config  # noqa: E402

SUBSETS = {"day": "D$", "night": "N$"}
MODE_TITLES = {"ir_only": "thermal only", "rgb_only": "RGB only", "average": "pixel average",
               "two_stage": "two-stage (fusion loss, then frozen)", "bilevel": "bi-level"}


@torch.no_grad()
def predict(trainer: Trainer, score_threshold: float = 0.05) -> tuple[list[str], list, list]:
    """Names, predictions and ground truth of the trainer's val split, with the trainer's input mode."""
    trainer.model.eval()
    config = PostprocessConfig(score_threshold=score_threshold)  # the node's NMS, scores down to the mAP floor
    names, preds, gts = [], [], []
    for i in progress(range(len(trainer.val_set)), desc=trainer.fusion_mode, leave=False):
        s = trainer.val_set[i]
        fused, _ = trainer.fuse(s["thermal"][None], s["rgb"][None])
        cls_logits, box_ltrb, centerness, _ = trainer.model.perceive(fused)
        h, w = s["thermal"].shape[-2:]
        d = decode_detections(cls_logits[0].numpy(), box_ltrb[0].numpy(), centerness[0].numpy(), (h, w), config)
        names.append(s["name"])
        preds.append((d.boxes, d.scores, d.labels))
        gts.append((s["boxes"].numpy(), s["labels"].numpy()))
    return names, preds, gts


def score(trainer: Trainer, title: str, seed) -> dict:
    defaults = PostprocessConfig()
    names, preds, gts = predict(trainer)
    row = {"input": title, "seed": seed}
    groups = {"all": list(range(len(names)))}
    groups.update({k: [names.index(n) for n in v] for k, v in match_subsets(names, SUBSETS).items()})
    for key, idx in groups.items():
        metrics, _ = detection_metrics([preds[i] for i in idx], [gts[i] for i in idx], trainer.det_classes,
                                       defaults.score_threshold, defaults.max_detections)
        row[key] = metrics
    return row


def seed_means(rows: list[dict], classes: list[str]) -> list[dict]:
    """One row per input trained with two or more single seeds: the seeds' mean of every cell of the table.

    The comparison between fusion modes is made on these means (one seed's val mAP moves by several points
    with its seed); averaged-weight rows are models of their own and stay out of them.
    """
    def mean(cells):  # None (no label of the kind in the split) in any seed leaves the mean undefined too
        return None if any(c is None for c in cells) else float(np.mean(cells))

    means = []
    for title in dict.fromkeys(r["input"] for r in rows):
        seeds = [r for r in rows if r["input"] == title and isinstance(r["seed"], int)]
        if len(seeds) < 2:
            continue
        row = {"input": title, "seed": f"mean of {len(seeds)} seeds"}
        for key in ("all", "day", "night"):
            row[key] = {"mAP50": mean([r[key]["mAP50"] for r in seeds])}
        row["all"].update(
            mAP50_95=mean([r["all"]["mAP50_95"] for r in seeds]),
            per_class={c: {"AP50": mean([r["all"]["per_class"][c]["AP50"] for r in seeds])} for c in classes},
            at_default_threshold={"boxes_per_object": mean(
                [r["all"]["at_default_threshold"]["boxes_per_object"] for r in seeds])})
        means.append(row)
    return means


def markdown(rows: list[dict], classes: list[str]) -> str:
    def f(x, digits=3):
        return "n/a" if x is None else f"{x:.{digits}f}"

    head = ["input", "seed", "mAP@0.5", "day", "night", "mAP@0.5:0.95"] + [f"AP@0.5 {c}" for c in classes]
    head.append("boxes per object @ default threshold")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        a = r["all"]
        cells = [r["input"], str(r["seed"]), f(a["mAP50"]), f(r["day"]["mAP50"]), f(r["night"]["mAP50"]), f(a["mAP50_95"])]
        cells += [f(a["per_class"][c]["AP50"]) for c in classes]
        cells.append(f(a["at_default_threshold"]["boxes_per_object"], 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config" / "train_msrs.yaml"))
    parser.add_argument("--runs", nargs="*", default=[], type=Path, help="finished training run folders")
    parser.add_argument("--zero-shot", action="store_true", help="also score the untrained COCO detector")
    parser.add_argument("--out", type=Path, default=Path("bench_out/real_pairs"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    rows = []
    if args.zero_shot:
        for mode in ("rgb_only", "ir_only", "average"):
            trainer = Trainer({**cfg, "fusion_mode": mode}, args.out / "scratch")
            rows.append(score(trainer, f"zero-shot COCO detector, {MODE_TITLES[mode]}", "-"))
    for run in args.runs:
        model, meta = load_model(run / "model.pt")
        run_cfg = meta.info["config"]
        trainer = Trainer(scoring_config(run_cfg), args.out / "scratch")
        trainer.model.load_state_dict(model.state_dict())
        soup = meta.info.get("soup")  # training.soup: the average of several seeds' weights
        seed = f"{', '.join(str(s['seed']) for s in soup)} averaged" if soup else run_cfg.get("seed", 0)
        rows.append(score(trainer, MODE_TITLES[trainer.fusion_mode], seed))
        print(markdown(rows[-1:], trainer.det_classes).splitlines()[-1], flush=True)
    if not rows:
        parser.error("nothing to score: give --runs and/or --zero-shot")
    args.out.mkdir(parents=True, exist_ok=True)
    classes = list(trainer.det_classes)
    rows += seed_means(rows, classes)
    table = markdown(rows, classes)
    (args.out / "table.md").write_text(table + "\n")
    (args.out / "results.json").write_text(json.dumps(rows, indent=1, default=lambda x: None if x != x else str(x)))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
