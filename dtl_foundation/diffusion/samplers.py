"""Network-independent samplers: DDPM ancestral sampling and DDIM over any subset of timesteps."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from tqdm.auto import tqdm

from dtl_foundation.diffusion.forward import (PredictionKind, predicted_eps, predicted_x0, q_posterior_mean_variance,
                                                 q_sample)
from dtl_foundation.diffusion.schedules import NoiseSchedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""denoise(x_t, t) -> model output of the sampler's prediction kind; x_t (B, ...), t long (B,)."""

FixedValues = tuple[torch.Tensor, torch.Tensor]
"""(mask, values): entries where the boolean mask is True are known and pinned to values (both broadcast to x)."""


def ddim_timesteps(num_train_steps: int, steps: int) -> torch.Tensor:
    """`steps` timesteps evenly spaced over [0, T-1], ends included (DDIM's tau, Song et al. 2021 sec. 4.2)."""
    if not 1 <= steps <= num_train_steps:
        raise ValueError(f"steps must be in [1, {num_train_steps}], got {steps}")
    if steps == 1:
        return torch.tensor([num_train_steps - 1])
    i = torch.arange(steps)
    # Round i * (T-1) / (steps-1) to nearest in integer arithmetic: exact, and distinct since the spacing is >= 1.
    return (2 * i * (num_train_steps - 1) + (steps - 1)) // (2 * (steps - 1))


def _initial_noise(shape: Sequence[int], schedule: NoiseSchedule, generator: torch.Generator | None,
                   noise: torch.Tensor | None, dtype: torch.dtype | None) -> torch.Tensor:
    if noise is not None:
        if tuple(noise.shape) != tuple(shape):
            raise ValueError(f"noise has shape {tuple(noise.shape)}, expected {tuple(shape)}")
        return noise
    return torch.randn(tuple(shape), generator=generator, device=schedule.device,
                       dtype=dtype or torch.get_default_dtype())


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _pin_noisy(schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor, x0_fixed: FixedValues | None,
               generator: torch.Generator | None) -> torch.Tensor:
    """Replace the known entries of x_t by a fresh draw of q(x_t | known values): the model sees them at level t."""
    if x0_fixed is None:
        return x_t
    mask, values = x0_fixed
    noisy = q_sample(schedule, values.to(x_t).expand_as(x_t), t, _randn_like(x_t, generator))
    return torch.where(mask.to(device=x_t.device, dtype=torch.bool), noisy, x_t)


def _pin_clean(x0: torch.Tensor, x0_fixed: FixedValues | None) -> torch.Tensor:
    if x0_fixed is None:
        return x0
    mask, values = x0_fixed
    return torch.where(mask.to(device=x0.device, dtype=torch.bool), values.to(x0), x0)


def _clip(x0: torch.Tensor, clip_x0: tuple[float, float] | None) -> torch.Tensor:
    return x0 if clip_x0 is None else x0.clamp(*clip_x0)


@torch.no_grad()
def ddpm_sample(denoise: Denoiser, schedule: NoiseSchedule, shape: Sequence[int], kind: PredictionKind, *,
                generator: torch.Generator | None = None, clip_x0: tuple[float, float] | None = None,
                progress: bool = False, noise: torch.Tensor | None = None, x0_fixed: FixedValues | None = None,
                dtype: torch.dtype | None = None) -> torch.Tensor:
    """Ancestral sampling over all T steps, x_{t-1} ~ q(x_{t-1} | x_t, x0_hat) (Ho et al. 2020 Alg. 2, eqs. 6-7)."""
    x = _initial_noise(shape, schedule, generator, noise, dtype)
    for step in tqdm(range(schedule.num_steps - 1, -1, -1), desc="ddpm", disable=not progress, leave=False):
        t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
        x = _pin_noisy(schedule, x, t, x0_fixed, generator)
        x0 = _clip(predicted_x0(kind, schedule, x, t, denoise(x, t)), clip_x0)
        mean, _, log_variance = q_posterior_mean_variance(schedule, x0, x, t)
        x = mean + (0.5 * log_variance).exp() * _randn_like(x, generator) if step > 0 else mean
    return _pin_clean(x, x0_fixed)


@torch.no_grad()
def ddim_sample(denoise: Denoiser, schedule: NoiseSchedule, shape: Sequence[int], kind: PredictionKind,
                steps: int, *, eta: float = 0.0, generator: torch.Generator | None = None,
                clip_x0: tuple[float, float] | None = None, progress: bool = False,
                noise: torch.Tensor | None = None, x0_fixed: FixedValues | None = None,
                dtype: torch.dtype | None = None) -> torch.Tensor:
    """DDIM over `steps` evenly spaced timesteps (Song et al. 2021 eq. 12, sigma eq. 16); eta=1 on all steps is DDPM."""
    x = _initial_noise(shape, schedule, generator, noise, dtype)
    timesteps = ddim_timesteps(schedule.num_steps, steps).tolist()
    previous = [-1] + timesteps[:-1]
    alphas_cumprod = schedule.alphas_cumprod
    for step, prev in tqdm(list(zip(timesteps, previous))[::-1], desc="ddim", disable=not progress, leave=False):
        t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
        x = _pin_noisy(schedule, x, t, x0_fixed, generator)
        output = denoise(x, t)
        x0 = _clip(predicted_x0(kind, schedule, x, t, output), clip_x0)
        # With clipping, eps must be re-derived from the clipped x0 so that the update stays consistent with it.
        eps = (predicted_eps(kind, schedule, x, t, output) if clip_x0 is None
               else predicted_eps("x0", schedule, x, t, x0))
        abar = alphas_cumprod[step]
        abar_prev = alphas_cumprod[prev] if prev >= 0 else torch.ones_like(abar)
        sigma = eta * ((1 - abar_prev) / (1 - abar) * (1 - abar / abar_prev)).sqrt()
        direction = (1 - abar_prev - sigma**2).clamp(min=0).sqrt()
        abar_prev, sigma, direction = (c.to(device=x.device, dtype=x.dtype) for c in (abar_prev, sigma, direction))
        x = abar_prev.sqrt() * x0 + direction * eps
        if eta > 0 and prev >= 0:
            x = x + sigma * _randn_like(x, generator)
    return _pin_clean(x, x0_fixed)
