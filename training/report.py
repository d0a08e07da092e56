"""Pictures of a training run: loss curves, aggregation weights over time, a fused-image grid."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def _read_log(out: Path) -> dict[str, np.ndarray]:
    """log.jsonl -> one float column per numeric key (NaN where a row lacks it)."""
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    keys = {k for r in rows for k, v in r.items() if isinstance(v, (int, float))}
    return {k: np.array([float(r.get(k, np.nan)) for r in rows]) for k in keys}


def plot_training(out: Path, trainer) -> None:
    out = Path(out)
    log = _read_log(out)
    fig, axes = plt.subplots(1, 4, figsize=(20, 4))
    panels = [(axes[0], ("fuse", "f_semantic", "F_semantic", "f_visual"), "-", "losses", "linear"),
              (axes[1], ("w_visual", "w_semantic"), ".", "aggregation weights (fusion updates)", "linear"),
              (axes[2], ("fuse_grad_norm", "task_grad_norm"), ".", "gradient norms on F (fusion updates)", "log")]
    for ax, keys, style, title, yscale in panels:
        for key in keys:
            if key in log:
                ok = ~np.isnan(log[key])
                ax.plot(log["step"][ok], log[key][ok], style, label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_yscale(yscale)
        if ax.lines:  # baseline inputs have no fusion updates to show
            ax.legend()
    val_path = out / "val.jsonl"
    if val_path.is_file():
        vals = [json.loads(line) for line in val_path.read_text().splitlines()]
        steps = [v["step"] for v in vals]
        for key in ("map50", "miou"):
            axes[3].plot(steps, [v[key] if v[key] is not None else np.nan for v in vals], "o-", label=key)
        axes[3].set_title("validation")
        axes[3].legend()
    fig.tight_layout()
    fig.savefig(out / "training.png", dpi=80)
    plt.close(fig)
    fused_grid(out / "fused_grid.png", trainer.model, trainer.val_set, count=4)


@torch.no_grad()
def fused_grid(path: Path, model, dataset, count: int = 4) -> None:
    """Rows of IR | RGB | fused for the first `count` samples of a dataset."""
    model.eval()
    rows = []
    for i in range(min(count, len(dataset))):
        s = dataset[i]
        device = next(model.parameters()).device
        fused, _ = model.fuse(s["thermal"][None].to(device), s["rgb"][None].to(device))
        ir = s["thermal"].repeat(3, 1, 1)
        rows.append(torch.cat([ir, s["rgb"], fused[0].cpu()], dim=2))
    grid = (torch.cat(rows, dim=1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    plt.imsave(path, grid)
