"""The diffusion core: schedules, forward process, samplers and guidance; pure functions, no network."""

from lightning_modules.diffusion.forward import (PREDICTION_KINDS, PredictionKind, predicted_eps, predicted_x0,
                                                 prediction_target, q_posterior_mean_variance, q_sample)
from lightning_modules.diffusion.guidance import (ConditionalDenoiser, cfg_denoise, classifier_free_guidance,
                                                  guided_denoiser)
from lightning_modules.diffusion.samplers import Denoiser, FixedValues, ddim_sample, ddim_timesteps, ddpm_sample
from lightning_modules.diffusion.schedules import (NoiseSchedule, ScheduleName, coefficient_at, cosine_alpha_bar,
                                                   cosine_alpha_bar_schedule, linear_beta_schedule, make_schedule)

__all__ = [
    "PREDICTION_KINDS", "ConditionalDenoiser", "Denoiser", "FixedValues", "NoiseSchedule", "PredictionKind",
    "ScheduleName", "cfg_denoise", "classifier_free_guidance", "coefficient_at", "cosine_alpha_bar",
    "cosine_alpha_bar_schedule", "ddim_sample", "ddim_timesteps", "ddpm_sample", "guided_denoiser",
    "linear_beta_schedule", "make_schedule", "predicted_eps", "predicted_x0", "prediction_target",
    "q_posterior_mean_variance", "q_sample",
]
