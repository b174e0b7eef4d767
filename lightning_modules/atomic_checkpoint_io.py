"""Lightning checkpoints written through dtl_foundation.atomic_files: the file appears whole or not at all, synced
to disk before its rename, and the write's fault points (DTL_FAULT, tests/faults) apply to checkpoints too."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from dtl_foundation.atomic_files import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's own transaction
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        # through a Python file: a full disk is then an OSError (torch's own file writer reports only "unexpected
        # pos"), which atomic_path names with the checkpoint's path
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
