"""The samplers by name, as a model config or `dtl generate --sampler` chooses them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dtl_foundation.diffusion.forward import PredictionKind
from dtl_foundation.diffusion.ode_samplers import dpmpp_2m_sample, heun_sample
from dtl_foundation.diffusion.samplers import Denoiser, ddim_sample, ddpm_sample
from dtl_foundation.diffusion.schedules import NoiseSchedule

SAMPLERS: tuple[str, ...] = ("ddim", "dpmpp_2m", "heun", "ddpm")
"""ddim (eta 0), dpmpp_2m (DPM-Solver++(2M)), heun (Karras et al. 2022), ddpm (ancestral, all T steps)."""


def check_sampler(name: str) -> str:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return name


def network_calls(name: str, steps: int, num_train_steps: int) -> int:
    """How many times the sampler calls the network for `steps` timesteps."""
    check_sampler(name)
    return {"ddpm": num_train_steps, "heun": 2 * steps - 1}.get(name, steps)


def sample_by_name(name: str, denoise: Denoiser, schedule: NoiseSchedule, shape: Sequence[int],
                   kind: PredictionKind, steps: int, **kwargs: Any) -> torch.Tensor:
    """Run sampler `name` over `steps` timesteps (ddpm: all of the schedule's; `steps` is ignored)."""
    if check_sampler(name) == "ddpm":
        return ddpm_sample(denoise, schedule, shape, kind, **kwargs)
    run = {"ddim": ddim_sample, "dpmpp_2m": dpmpp_2m_sample, "heun": heun_sample}[name]
    return run(denoise, schedule, shape, kind, steps, **kwargs)
