"""Few-step solvers of the probability-flow ODE on the discrete schedule: DPM-Solver++(2M) and Heun.

Both step over Karras et al.'s timesteps (`karras_timesteps`: dense at low noise, none above sigma 10, where
a step on standardised data changes little) unless given others, and finish with a jump to clean data from the
last (t = 0) prediction, as DDIM does; with first-order updates both are DDIM with eta = 0 (Euler's method on
the ODE in Karras et al.'s coordinates).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from dtl_foundation.diffusion.forward import PredictionKind, predicted_x0
from dtl_foundation.diffusion.samplers import Denoiser, FixedValues, _clip, _initial_noise, _pin_clean, _pin_noisy
from dtl_foundation.diffusion.schedules import NoiseSchedule


def _alpha_sigma(schedule: NoiseSchedule, step: int) -> tuple[float, float]:
    """(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)) at an integer step, as Python floats (float64 precision)."""
    return float(schedule.sqrt_alphas_cumprod[step]), float(schedule.sqrt_one_minus_alphas_cumprod[step])


def _x0_at(denoise: Denoiser, schedule: NoiseSchedule, x: torch.Tensor, step: int, kind: PredictionKind,
           clip_x0: tuple[float, float] | None) -> torch.Tensor:
    t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
    return _clip(predicted_x0(kind, schedule, x, t, denoise(x, t)), clip_x0)


def _pin(schedule: NoiseSchedule, x: torch.Tensor, step: int, x0_fixed: FixedValues | None,
         generator: torch.Generator | None) -> torch.Tensor:
    t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
    return _pin_noisy(schedule, x, t, x0_fixed, generator)


def karras_timesteps(schedule: NoiseSchedule, steps: int, rho: float = 7.0, sigma_max: float = 10.0) -> torch.Tensor:
    """`steps` ascending timesteps whose sigma = sqrt((1 - abar) / abar) follow Karras et al. 2022 eq. 5
    between the schedule's smallest sigma and min(largest, sigma_max), each the nearest in log sigma.

    sigma_max 10 (Karras et al. take 80 for images of std 0.5) suits standardised data of std 1: on EmoDiff's
    blendshapes it beat 2, 4, 6 and 80 at 4-8 steps (benchmarks/README.md, "EmoDiff samplers")."""
    sigmas = ((1 - schedule.alphas_cumprod) / schedule.alphas_cumprod).sqrt().cpu()
    if not 1 <= steps <= schedule.num_steps:
        raise ValueError(f"steps must be in [1, {schedule.num_steps}], got {steps}")
    lo, hi = sigmas[0] ** (1 / rho), sigmas[-1].clamp(max=sigma_max) ** (1 / rho)
    wanted = (lo + torch.linspace(0, 1, steps, dtype=torch.float64) * (hi - lo)) ** rho
    t = (sigmas.log()[None] - wanted.log()[:, None]).abs().argmin(1)
    for i in range(1, steps):  # near t = 0 the discrete sigmas are sparse: keep the steps distinct
        t[i] = max(int(t[i]), int(t[i - 1]) + 1)
    if int(t[-1]) >= schedule.num_steps:
        raise ValueError(f"{steps} steps do not fit {schedule.num_steps} timesteps with distinct values")
    return t


def _descending(schedule: NoiseSchedule, steps: int, timesteps: torch.Tensor | None) -> list[int]:
    if timesteps is None:
        timesteps = karras_timesteps(schedule, steps)
    if len(timesteps) != steps:
        raise ValueError(f"{len(timesteps)} timesteps given for {steps} steps")
    return timesteps.flip(0).tolist()


@torch.no_grad()
def dpmpp_2m_sample(denoise: Denoiser, schedule: NoiseSchedule, shape: Sequence[int], kind: PredictionKind,
                    steps: int, *, generator: torch.Generator | None = None,
                    clip_x0: tuple[float, float] | None = None, progress: bool = False,
                    noise: torch.Tensor | None = None, x0_fixed: FixedValues | None = None,
                    dtype: torch.dtype | None = None, timesteps: torch.Tensor | None = None) -> torch.Tensor:
    """DPM-Solver++(2M), multistep second order in the data prediction (Lu et al. 2022, Alg. 2), `steps` calls;
    first order into the last timestep, where the step in log-SNR jumps (their lower_order_final)."""
    x = _initial_noise(shape, schedule, generator, noise, dtype)
    timesteps = _descending(schedule, steps, timesteps)
    previous_x0, previous_h = None, None
    for i, step in enumerate(tqdm(timesteps, desc="dpm++2m", disable=not progress, leave=False)):
        x = _pin(schedule, x, step, x0_fixed, generator)
        x0 = _x0_at(denoise, schedule, x, step, kind, clip_x0)
        if i == len(timesteps) - 1:
            x = x0  # lambda -> infinity: the first-order jump to clean data (as DDIM's last step)
            break
        alpha, sigma = _alpha_sigma(schedule, step)
        alpha_next, sigma_next = _alpha_sigma(schedule, timesteps[i + 1])
        h = math.log(alpha_next / sigma_next) - math.log(alpha / sigma)  # the step in log-SNR / 2, lambda
        if previous_x0 is None or i == len(timesteps) - 2:
            data = x0
        else:
            r = previous_h / h
            data = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * previous_x0
        x = (sigma_next / sigma) * x - alpha_next * math.expm1(-h) * data
        previous_x0, previous_h = x0, h
    return _pin_clean(x, x0_fixed)


@torch.no_grad()
def heun_sample(denoise: Denoiser, schedule: NoiseSchedule, shape: Sequence[int], kind: PredictionKind,
                steps: int, *, generator: torch.Generator | None = None,
                clip_x0: tuple[float, float] | None = None, progress: bool = False,
                noise: torch.Tensor | None = None, x0_fixed: FixedValues | None = None,
                dtype: torch.dtype | None = None, timesteps: torch.Tensor | None = None) -> torch.Tensor:
    """Heun's method on dy/dsigma = (y - x0_hat) / sigma, y = x_t / sqrt(abar) (Karras et al. 2022 Alg. 1,
    no churn): 2 * steps - 1 calls over the `steps` timesteps, an Euler (DDIM) jump from the last one."""
    x = _initial_noise(shape, schedule, generator, noise, dtype)
    timesteps = _descending(schedule, steps, timesteps)

    def slope(y: torch.Tensor, step: int) -> torch.Tensor:
        alpha, sigma = _alpha_sigma(schedule, step)
        x_t = _pin(schedule, alpha * y, step, x0_fixed, generator)
        y = x_t / alpha  # the pinned entries as the network saw them
        return (y - _x0_at(denoise, schedule, x_t, step, kind, clip_x0)) / (sigma / alpha)

    y = x / _alpha_sigma(schedule, timesteps[0])[0]
    for i, step in enumerate(tqdm(timesteps, desc="heun", disable=not progress, leave=False)):
        alpha, sigma = _alpha_sigma(schedule, step)
        d = slope(y, step)
        if i == len(timesteps) - 1:
            y = y - (sigma / alpha) * d  # Euler to sigma = 0: y becomes the network's x0 estimate
            break
        alpha_next, sigma_next = _alpha_sigma(schedule, timesteps[i + 1])
        dsigma = sigma_next / alpha_next - sigma / alpha
        y_euler = y + dsigma * d
        y = y + dsigma * 0.5 * (d + slope(y_euler, timesteps[i + 1]))
    return _pin_clean(y, x0_fixed)

