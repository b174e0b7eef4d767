"""A sweep point as a `dtl train` run: its overrides, run id `<sweep_id>-<k>`, run directory, W&B group and tag."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from experiments.config import compose_config
from experiments.sweep.engine import hydra_overrides, hydra_value
from experiments.sweep.store import PlannedRun


# A child run must start its own W&B service and be its own run, whatever this process runs under.
INHERITED_WANDB = ("WANDB_SERVICE", "WANDB_RUN_ID", "WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH")


def child_env() -> dict[str, str]:
    """This process's environment less the W&B variables a child run must not inherit."""
    return {k: v for k, v in os.environ.items() if k not in INHERITED_WANDB}


class SweepRunError(ValueError):
    """A point whose overrides do not compose into a training config (the message names the point and the cause)."""


def override_key(override: str) -> str:
    """`+model.lr=1` -> `model.lr` (the config key an override sets)."""
    return override.split("=", 1)[0].lstrip("+~")


def sweep_tag(sweep_id: str) -> str:
    return f"sweep:{sweep_id}"


def compose_run(overrides: list[str], where: str) -> DictConfig:
    try:
        return compose_config(overrides)
    except (HydraException, OmegaConfBaseException, ValueError) as e:
        raise SweepRunError(f"{where}: `dtl train {' '.join(overrides)}` does not compose: {e}") from e


def plan_run(sweep_id: str, index: int, params: dict[str, Any], fixed: list[str], where: str,
             suffix: str | None = None) -> PlannedRun:
    """The run of one point: fixed overrides, the point's parameters, run_id, then the sweep's W&B group and tag."""
    run_id = f"{sweep_id}-{index if suffix is None else suffix}"
    base = [*fixed, *hydra_overrides(params), f"run_id={run_id}"]
    cfg = compose_run(base, f"{where} (run {run_id})")
    grouping = []
    if "wandb" in (cfg.get("logger") or {}):
        grouping.append(f"logger.wandb.group={hydra_value(sweep_id)}")
    tags = [str(t) for t in cfg.get("tags") or []]
    grouping.append(f"tags={hydra_value(tags + [sweep_tag(sweep_id)] if sweep_tag(sweep_id) not in tags else tags)}")
    return PlannedRun(index=index, run_id=run_id, params=params, overrides=base + grouping,
                      run_dir=str(Path(cfg.paths.run_dir).resolve()))
