"""Plots predicted against true blendshape curves of held-out clips, saved as PNG and logged to W&B."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from dtl_foundation.arkit import INDEX
from dtl_foundation.atomic_files import atomic_path

DEFAULT_SHAPES = ("jawOpen", "mouthClose", "mouthSmileLeft", "mouthFunnel", "browInnerUp", "eyeBlinkLeft")


class BlendshapeFigure(L.Callback):
    """At the end of testing, draw `clips` test windows: truth (grey) and prediction (colour) per blendshape."""

    def __init__(self, out_dir: str, shapes: tuple[str, ...] = DEFAULT_SHAPES, clips: int = 3) -> None:
        self.out_dir = Path(out_dir)
        self.shapes = tuple(shapes)
        self.clips = clips

    @torch.no_grad()
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        dataset = trainer.datamodule.datasets["test"]
        firsts = [i for i, (_, start) in enumerate(dataset.items) if start == 0]  # whole windows, not clip tails
        step = max(len(firsts) // self.clips, 1)
        items = [dataset[i] for i in firsts[::step][: self.clips]]
        batch = {k: torch.stack([it[k] for it in items]).to(pl_module.device) for k in items[0]}
        was_training = pl_module.training
        pl_module.eval()
        pred = pl_module(batch).float().cpu()
        pl_module.train(was_training)

        fig, axes = plt.subplots(len(self.shapes), len(items), figsize=(4 * len(items), 1.6 * len(self.shapes)),
                                 sharex=True, squeeze=False)
        for col, item in enumerate(items):
            clip = dataset.clips[int(item["clip_index"])]
            n = int(item["mask"].sum())
            for row, name in enumerate(self.shapes):
                ax = axes[row, col]
                ax.plot(item["blendshapes"][:n, INDEX[name]], color="0.6", label="truth")
                ax.plot(pred[col, :n, INDEX[name]], color="C0", label="prediction")
                ax.set_ylim(-0.02, 1.02)
                if col == 0:
                    ax.set_ylabel(name, fontsize=8)
            axes[0, col].set_title(clip.clip_id, fontsize=8)
            axes[-1, col].set_xlabel("frame")
        axes[0, 0].legend(fontsize=7, loc="upper right")
        fig.suptitle(f"{type(pl_module).__name__}, held-out speakers, step {trainer.global_step}", fontsize=10)
        fig.tight_layout()
        path = self.out_dir / f"test_blendshapes_step{trainer.global_step}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="test/blendshapes", images=[str(path)], step=trainer.global_step)
