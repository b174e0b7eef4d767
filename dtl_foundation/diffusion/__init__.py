"""The diffusion core: schedules, forward process, samplers and guidance; pure functions, no network."""

from dtl_foundation.diffusion.forward import (PREDICTION_KINDS, PredictionKind, predicted_eps, predicted_x0,
                                                 prediction_target, q_posterior_mean_variance, q_sample)
from dtl_foundation.diffusion.guidance import (ConditionalDenoiser, cfg_denoise, classifier_free_guidance,
                                                  guided_denoiser)
from dtl_foundation.diffusion.ode_samplers import dpmpp_2m_sample, heun_sample, karras_timesteps
from dtl_foundation.diffusion.sampler_names import SAMPLERS, check_sampler, network_calls, sample_by_name
from dtl_foundation.diffusion.samplers import Denoiser, FixedValues, ddim_sample, ddim_timesteps, ddpm_sample
from dtl_foundation.diffusion.schedules import (NoiseSchedule, ScheduleName, coefficient_at, cosine_alpha_bar,
                                                   cosine_alpha_bar_schedule, linear_beta_schedule, make_schedule)

__all__ = [
    "PREDICTION_KINDS", "SAMPLERS", "ConditionalDenoiser", "Denoiser", "FixedValues", "NoiseSchedule",
    "PredictionKind", "ScheduleName", "cfg_denoise", "check_sampler", "classifier_free_guidance", "coefficient_at",
    "cosine_alpha_bar", "cosine_alpha_bar_schedule", "ddim_sample", "ddim_timesteps", "ddpm_sample",
    "dpmpp_2m_sample", "guided_denoiser", "heun_sample", "karras_timesteps", "linear_beta_schedule", "make_schedule",
    "network_calls", "predicted_eps", "predicted_x0", "prediction_target", "q_posterior_mean_variance", "q_sample",
    "sample_by_name",
]
