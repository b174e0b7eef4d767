"""The optimizer configuration every single-optimizer module returns from `configure_optimizers`."""

from __future__ import annotations

from functools import partial
from typing import Any, Iterable

import torch


def optimizer_config(owner: str, optimizer: partial | None, scheduler: partial | None,
                     params: Iterable[torch.nn.Parameter]) -> dict[str, Any]:
    """Build the `_partial_` optimizer (and per-step scheduler) from the config over `params`."""
    if optimizer is None:
        raise ValueError(f"{owner} was built without an optimizer: it cannot be trained")
    built = optimizer(params=params)
    if scheduler is None:
        return {"optimizer": built}
    return {"optimizer": built, "lr_scheduler": {"scheduler": scheduler(optimizer=built), "interval": "step"}}
