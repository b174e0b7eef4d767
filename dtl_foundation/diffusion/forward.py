"""The forward (noising) process, the training targets of each parameterisation and the conversions between them."""

from __future__ import annotations

from typing import Literal

import torch

from dtl_foundation.diffusion.schedules import NoiseSchedule, coefficient_at

PredictionKind = Literal["x0", "eps", "v"]
PREDICTION_KINDS: tuple[str, ...] = ("x0", "eps", "v")


def _check_kind(kind: str) -> None:
    if kind not in PREDICTION_KINDS:
        raise ValueError(f"unknown prediction kind {kind!r}; choose one of {PREDICTION_KINDS}")


def _scales(schedule: NoiseSchedule, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)), broadcastable against like."""
    return (coefficient_at(schedule.sqrt_alphas_cumprod, t, like),
            coefficient_at(schedule.sqrt_one_minus_alphas_cumprod, t, like))


def q_sample(schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise, a draw of q(x_t | x0) (Ho et al. 2020 DDPM eq. 4)."""
    a, s = _scales(schedule, t, x0)
    return a * x0 + s * noise


def prediction_target(kind: PredictionKind, schedule: NoiseSchedule, x0: torch.Tensor, t: torch.Tensor,
                      noise: torch.Tensor) -> torch.Tensor:
    """Target x0, eps (Ho et al. 2020 eq. 14) or v = sqrt(abar) eps - sqrt(1-abar) x0 (Salimans & Ho 2022)."""
    _check_kind(kind)
    if kind == "x0":
        return x0
    if kind == "eps":
        return noise
    a, s = _scales(schedule, t, x0)
    return a * noise - s * x0


def predicted_x0(kind: PredictionKind, schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor,
                 model_output: torch.Tensor) -> torch.Tensor:
    """x0 from any output kind (Ho et al. 2020 eq. 15; Salimans & Ho 2022: x0 = sqrt(abar) x_t - sqrt(1-abar) v)."""
    _check_kind(kind)
    if kind == "x0":
        return model_output
    a, s = _scales(schedule, t, x_t)
    if kind == "eps":
        return (x_t - s * model_output) / a
    return a * x_t - s * model_output


def predicted_eps(kind: PredictionKind, schedule: NoiseSchedule, x_t: torch.Tensor, t: torch.Tensor,
                  model_output: torch.Tensor) -> torch.Tensor:
    """eps from any output kind (Ho et al. 2020 eq. 4; Salimans & Ho 2022: eps = sqrt(1-abar) x_t + sqrt(abar) v)."""
    _check_kind(kind)
    if kind == "eps":
        return model_output
    a, s = _scales(schedule, t, x_t)
    if kind == "x0":
        return (x_t - a * model_output) / s
    return s * x_t + a * model_output


def q_posterior_mean_variance(schedule: NoiseSchedule, x0: torch.Tensor, x_t: torch.Tensor,
                              t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, variance, clipped log-variance: q(x_{t-1} | x_t, x0) (Ho et al. 2020 eqs. 6-7); last two (B, 1, ...)."""
    mean = (coefficient_at(schedule.posterior_mean_coef_x0, t, x_t) * x0
            + coefficient_at(schedule.posterior_mean_coef_xt, t, x_t) * x_t)
    return (mean, coefficient_at(schedule.posterior_variance, t, x_t),
            coefficient_at(schedule.posterior_log_variance_clipped, t, x_t))
