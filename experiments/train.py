"""`dtl train`: compose the config, instantiate data, model, callbacks, loggers and trainer, fit, test."""

from __future__ import annotations

import logging
import os
import sys

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict

from dtl_foundation.faults import FAULT_ENV
from experiments.config import CONFIG_DIR
from experiments.run_dir import RunState, holding_run, resolve_run_id
from lightning_modules.callbacks.step_faults import StepFaults

log = logging.getLogger("experiments.train")  # the same name when `dtl train` runs this module as __main__


def instantiate_group(group: DictConfig | None) -> list:
    return [hydra.utils.instantiate(c) for c in (group or {}).values() if c is not None and "_target_" in c]


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (resuming when the run directory holds a checkpoint), then test the best checkpoint."""
    L.seed_everything(cfg.seed, workers=True)
    with holding_run(cfg) as state:
        return _fit_and_test(cfg, state)


def _fit_and_test(cfg: DictConfig, state: RunState) -> dict[str, float]:
    uses_wandb = "wandb" in (cfg.get("logger") or {})
    with open_dict(cfg):
        if uses_wandb:
            cfg.logger.wandb.id = state.wandb_id
        if "csv" in (cfg.get("logger") or {}):
            cfg.logger.csv.version = f"attempt_{state.attempt}"
    if uses_wandb:
        import wandb

        wandb.finish()  # a run left open in this process would swallow this run's logs (no-op without one)

    # plain lists and dicts, not OmegaConf containers: Lightning stores the datamodule's arguments in every
    # checkpoint, which then would not load with torch.load(weights_only=True) (e.g. data.test_speakers=[M001])
    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    model = hydra.utils.instantiate(cfg.model)
    callbacks = instantiate_group(cfg.get("callbacks"))
    if os.environ.get(FAULT_ENV):  # the tests' injected faults (dtl_foundation.faults)
        callbacks.append(StepFaults())
    loggers = instantiate_group(cfg.get("logger"))
    try:
        trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
        for lg in loggers:
            lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))

        trainer.fit(model, datamodule=datamodule,
                    ckpt_path=str(state.resume_checkpoint) if state.resume_checkpoint else None)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if cfg.get("test"):
            best = next((c.best_model_path for c in callbacks
                         if isinstance(c, L.pytorch.callbacks.ModelCheckpoint) and c.best_model_path), None)
            trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        log.info("metrics: %s", metrics)
    finally:
        if uses_wandb:
            wandb.finish()  # release the run now, also after an error, not at interpreter exit
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    train(cfg)


def run_train(overrides: list[str]) -> int:
    """`dtl train [overrides]`: a run id from the command line, the Slurm job or a new one, then Hydra's `main`."""
    explicit = next((o.split("=", 1)[1] for o in overrides if o.startswith("run_id=")), None)
    if explicit is None:
        run_id = resolve_run_id()
        if "-m" in overrides or "--multirun" in overrides:  # one run directory per job of the sweep
            os.environ.setdefault("DTL_SWEEP_ID", run_id)
            run_id = f"{run_id}-job" + "${hydra:job.num}"
        overrides = overrides + [f"run_id={run_id}"]
    # `dtl train` runs this module as __main__ (experiments/cli.py), so single-node DDP's ranks 1..N-1, which Lightning
    # starts as `python -m experiments.train <sys.argv[1:]>`, come here too, with rank 0's run id.
    sys.argv = [sys.argv[0], *overrides]
    main()
    return 0


if __name__ == "__main__":
    sys.exit(run_train(sys.argv[1:]))
