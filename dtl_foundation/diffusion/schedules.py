"""Noise schedules (betas) and the per-timestep coefficients of the Gaussian diffusion derived from them."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Literal

import torch

ScheduleName = Literal["linear", "cosine"]


def linear_beta_schedule(steps: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> torch.Tensor:
    """Betas evenly spaced from beta_start to beta_end (Ho et al. 2020 DDPM, sec. 4), float64 (steps,)."""
    return torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)


def cosine_alpha_bar(t: torch.Tensor, s: float) -> torch.Tensor:
    """alpha_bar(t) = f(t) / f(0), f(t) = cos^2((t + s) / (1 + s) pi / 2) on [0, 1] (Nichol & Dhariwal 2021 eq. 17)."""
    f = lambda u: torch.cos((u + s) / (1 + s) * (math.pi / 2)) ** 2
    return f(t) / f(torch.zeros_like(t))


def cosine_alpha_bar_schedule(steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Betas 1 - alpha_bar(t+1) / alpha_bar(t), clipped at max_beta (Nichol & Dhariwal 2021 eq. 17 and sec. 3.2)."""
    alpha_bar = cosine_alpha_bar(torch.arange(steps + 1, dtype=torch.float64) / steps, s)
    # The clip only bites at the last steps, where alpha_bar -> 0 would give beta -> 1 (a singular step).
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=max_beta)


def coefficient_at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] cast to like's dtype and device, shaped (B, 1, ..., 1) to broadcast against like."""
    return values.to(like.device)[t.to(like.device)].to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """The constants of a discrete Gaussian diffusion, indexed by t in [0, T) (Ho et al. 2020 DDPM eqs. 4, 6, 7)."""

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    alphas_cumprod_prev: torch.Tensor
    sqrt_alphas_cumprod: torch.Tensor
    sqrt_one_minus_alphas_cumprod: torch.Tensor
    posterior_mean_coef_x0: torch.Tensor
    posterior_mean_coef_xt: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor

    @classmethod
    def from_betas(cls, betas: torch.Tensor) -> NoiseSchedule:
        """All coefficients from betas (Ho et al. 2020 eqs. 4, 6, 7), computed in float64."""
        betas = torch.as_tensor(betas).to(torch.float64)
        if betas.ndim != 1 or betas.numel() < 2:
            raise ValueError(f"betas must be 1-D with at least 2 steps, got shape {tuple(betas.shape)}")
        if not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError("betas must lie in (0, 1]")
        alphas = 1 - betas
        alphas_cumprod = torch.cumprod(alphas, dim=0)
        alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
        posterior_variance = betas * (1 - alphas_cumprod_prev) / (1 - alphas_cumprod)
        return cls(
            betas=betas,
            alphas_cumprod=alphas_cumprod,
            alphas_cumprod_prev=alphas_cumprod_prev,
            sqrt_alphas_cumprod=alphas_cumprod.sqrt(),
            sqrt_one_minus_alphas_cumprod=(1 - alphas_cumprod).sqrt(),
            posterior_mean_coef_x0=betas * alphas_cumprod_prev.sqrt() / (1 - alphas_cumprod),
            posterior_mean_coef_xt=(1 - alphas_cumprod_prev) * alphas.sqrt() / (1 - alphas_cumprod),
            posterior_variance=posterior_variance,
            # The variance is 0 at t = 0; its log takes the t = 1 value there (the step adds no noise anyway).
            posterior_log_variance_clipped=torch.cat([posterior_variance[1:2], posterior_variance[1:]]).log(),
        )

    @property
    def num_steps(self) -> int:
        """T, the number of diffusion steps."""
        return self.betas.shape[0]

    @property
    def device(self) -> torch.device:
        """Where the coefficients live."""
        return self.betas.device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> NoiseSchedule:
        """A copy with every coefficient moved (and cast, e.g. to float32 for devices without float64)."""
        return replace(self, **{f.name: getattr(self, f.name).to(device=device, dtype=dtype) for f in fields(self)})


def make_schedule(name: ScheduleName, steps: int, **kwargs: float) -> NoiseSchedule:
    """A NoiseSchedule by name: "linear" (Ho et al. 2020) or "cosine" (Nichol & Dhariwal 2021 eq. 17)."""
    builders = {"linear": linear_beta_schedule, "cosine": cosine_alpha_bar_schedule}
    if name not in builders:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(builders)}")
    return NoiseSchedule.from_betas(builders[name](steps, **kwargs))
