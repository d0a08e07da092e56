"""PyTorch eager backend: the reference, and the fallback wherever no exported graph exists.

CPU or CUDA; on CUDA the network runs in float16 by default (inputs cast on the device, outputs returned
as float32). Always under torch.inference_mode.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import FUSION_MAP_OUTPUT, OUTPUT_NAMES, BackendUnavailableError, Engine, ModelFileError, ModelInfo


class TorchEngine(Engine):
    backend = "torch"

    def __init__(
        self,
        model_path: str | Path,
        device: str = "cpu",
        *,
        fp16: bool | None = None,
        num_threads: int | None = None,
        **options,
    ):
        import torch

        from ..checkpoint import load_model

        if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
            raise BackendUnavailableError(f"torch backend: device must be 'cpu' or 'cuda[:N]', got {device!r}")
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailableError(
                f"torch backend: device {device!r} requested but this torch ({torch.__version__}) sees no CUDA GPU; "
                "use device='cpu'"
            )
        if num_threads:
            torch.set_num_threads(int(num_threads))  # process-wide: torch has no per-model thread pool
        path = Path(model_path)
        try:
            model, meta = load_model(path, device="cpu")
        except FileNotFoundError as exc:
            raise ModelFileError(f"torch backend: {exc}") from None
        except ValueError as exc:
            raise ModelFileError(f"torch backend: {exc} (re-save or re-train the model file)") from None
        info = ModelInfo(
            det_classes=tuple(meta.det_classes),
            seg_classes=tuple(meta.seg_classes),
            input_size=tuple(meta.input_size),
            thermal_range=tuple(meta.thermal_range),
            dynamic=True,
            model_version=str((meta.info or {}).get("version", "")),
            source=str(path),
            chroma=model.cfg.chroma,
            fusion_head=model.cfg.fusion.output,
            segmentation_labels=meta.segmentation_labels,
        )
        super().__init__(info, **options)
        self.device = torch.device(device)
        self.fp16 = self.device.type == "cuda" if fp16 is None else bool(fp16)
        if self.fp16 and self.device.type != "cuda":
            raise BackendUnavailableError("torch backend: fp16 needs device='cuda' (CPU half convs are slow/missing)")
        self.dtype = torch.float16 if self.fp16 else torch.float32
        self.model = model.to(self.device, self.dtype).eval()
        self.backend = f"torch-{self.device.type}" + ("-fp16" if self.fp16 else "")
        self.has_fusion_map = model.fusion.has_map
        self._torch = torch

    def _run(self, thermal: np.ndarray, rgb: np.ndarray) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            t = torch.from_numpy(thermal).to(self.device, self.dtype, non_blocking=True)
            r = torch.from_numpy(rgb).to(self.device, self.dtype, non_blocking=True)
            out = self.model(t, r)
            names = OUTPUT_NAMES + ((FUSION_MAP_OUTPUT,) if self.has_fusion_map else ())
            return {name: getattr(out, name).float().cpu().numpy() for name in names}

    def close(self) -> None:
        self.model = None
