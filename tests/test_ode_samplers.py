"""The probability-flow ODE samplers (DPM-Solver++(2M), Heun), their timesteps and the samplers by name."""

from __future__ import annotations

import math

import pytest
import torch
from test_diffusion_core import dummy_denoiser, gaussian_x0_denoiser, seeded

from dtl_foundation.diffusion import (SAMPLERS, ddim_sample, ddim_timesteps, dpmpp_2m_sample, heun_sample,
                                         karras_timesteps, make_schedule, network_calls, sample_by_name)

GOLDEN_SCHEDULE = ("linear", 100)
# Computed once from this implementation (float32, CPU generator seed 1234, shape (2, 5, 3), 10 steps):
# (first four values of the flattened output, float64 sum). They pin the numerics against accidental change.
GOLDEN = {
    ("dpmpp_2m", "eps"): ([-0.4281947, -0.6684347, -0.2566668, -0.9088160], -13.479486),
    ("dpmpp_2m", "x0"): ([0.5724715, 0.2904723, 0.7738146, 0.0083076], 16.430355),
    ("heun", "eps"): ([-0.4358296, -0.6760590, -0.2643096, -0.9164296], -13.708507),
    ("heun", "x0"): ([0.5350341, 0.2687799, 0.7251355, 0.0023692], 15.348762),
}


@pytest.mark.parametrize(("sampler", "kind"), list(GOLDEN))
def test_golden_values(sampler: str, kind: str) -> None:
    out = sample_by_name(sampler, dummy_denoiser, make_schedule(*GOLDEN_SCHEDULE), (2, 5, 3), kind, 10,
                         generator=seeded(1234))
    first, total = GOLDEN[(sampler, kind)]
    assert out.shape == (2, 5, 3) and out.dtype == torch.float32
    assert out.flatten()[:4].tolist() == pytest.approx(first, abs=1e-5)
    assert out.double().sum().item() == pytest.approx(total, abs=1e-5)


def test_karras_timesteps_are_distinct_dense_at_low_noise_and_capped() -> None:
    schedule = make_schedule("cosine", 500)
    t = karras_timesteps(schedule, 10)
    assert t[0] == 0 and len(t) == 10 and bool((t.diff() > 0).all())
    sigma = ((1 - schedule.alphas_cumprod) / schedule.alphas_cumprod).sqrt()
    # The top is the timestep nearest sigma 10: the cosine schedule's last ones reach 1e4, where a step does nothing.
    assert sigma[t[-1] - 1] < 10 < sigma[t[-1] + 1] and sigma[-1] > 1e4
    assert karras_timesteps(schedule, 10, sigma_max=80)[-1] > t[-1]
    assert t.diff()[0] < t.diff()[4]  # Karras' rho = 7 crowds the steps at low noise
    with pytest.raises(ValueError):
        karras_timesteps(schedule, 501)


def test_first_order_dpm_solver_is_ddim() -> None:
    # With three timesteps every update is first order (the first step, and the lower-order final one), and
    # DPM-Solver++'s first-order update is DDIM's with eta = 0 (Lu et al. 2022 sec. 4.1).
    schedule = make_schedule("cosine", 100)
    noise = torch.randn((2, 5, 3), generator=seeded(3), dtype=torch.float64)
    ddim = ddim_sample(dummy_denoiser, schedule, (2, 5, 3), "eps", 3, noise=noise)
    dpm = dpmpp_2m_sample(dummy_denoiser, schedule, (2, 5, 3), "eps", 3, noise=noise,
                          timesteps=ddim_timesteps(100, 3))
    torch.testing.assert_close(dpm, ddim, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(dpmpp_2m_sample(dummy_denoiser, schedule, (2, 5, 3), "eps", 4, noise=noise,
                                              timesteps=ddim_timesteps(100, 4)),
                              ddim_sample(dummy_denoiser, schedule, (2, 5, 3), "eps", 4, noise=noise))


def test_second_order_samplers_converge_to_the_exact_ode_solution_of_a_gaussian() -> None:
    # For data N(mu, s_d^2) the exact denoiser makes the probability-flow ODE linear: in y = x_t / sqrt(abar),
    # sigma = sqrt((1 - abar) / abar), y - mu grows as sqrt(s_d^2 + sigma^2) (Karras et al. 2022 eq. 4). The
    # samplers end with a jump from their t = 0 estimate, so the reference is the ODE from the first timestep
    # down to t = 0 followed by the exact denoiser there. Doubling the steps divides the error by ~4 for the
    # second-order solvers and by ~2 for DDIM (Euler).
    mu, s_d, n = 0.3, 0.5, 1000
    schedule = make_schedule("cosine", 1000)
    denoise = gaussian_x0_denoiser(schedule, mu, s_d)
    x_T = torch.randn((n, 1, 1), generator=seeded(11), dtype=torch.float64)
    sigma = lambda t: math.sqrt((1 - schedule.alphas_cumprod[t].item()) / schedule.alphas_cumprod[t].item())

    def error(name: str, steps: int) -> float:
        first = int((ddim_timesteps(1000, steps) if name == "ddim" else karras_timesteps(schedule, steps))[-1])
        y_T = x_T * math.sqrt(1 + sigma(first) ** 2)
        exact = mu + (y_T - mu) * math.sqrt((s_d**2 + sigma(0) ** 2) / (s_d**2 + sigma(first) ** 2)) \
            * s_d**2 / (s_d**2 + sigma(0) ** 2)
        return (sample_by_name(name, denoise, schedule, (n, 1, 1), "x0", steps, noise=x_T) - exact).abs().max().item()

    for name in ("dpmpp_2m", "heun"):
        errors = [error(name, steps) for steps in (20, 40, 80)]
        assert errors[2] < 0.01, name
        assert errors[0] / errors[1] > 3.5 and errors[1] / errors[2] > 3.5, (name, errors)
    ddim = [error("ddim", steps) for steps in (20, 40, 80)]
    assert 1.8 < ddim[0] / ddim[1] < 2.2 and 1.8 < ddim[1] / ddim[2] < 2.2, ddim


@pytest.mark.parametrize("sampler", ["dpmpp_2m", "heun"])
def test_ode_samplers_pin_known_frames_and_count_their_calls(sampler: str) -> None:
    schedule = make_schedule("linear", 100)
    values = torch.randn((2, 8, 3), generator=seeded(13))
    mask = torch.zeros((1, 8, 1), dtype=torch.bool)
    mask[:, :3] = True
    seen: list[int] = []

    def mixing(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # frames see each other, as through attention
        return dummy_denoiser(x, t) + 0.1 * x.mean(1, keepdim=True)

    def spy(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(int(t[0]))
        return mixing(x, t)

    run = {"dpmpp_2m": dpmpp_2m_sample, "heun": heun_sample}[sampler]
    out = run(spy, schedule, (2, 8, 3), "eps", 6, generator=seeded(14), x0_fixed=(mask, values))
    free = run(mixing, schedule, (2, 8, 3), "eps", 6, generator=seeded(14))
    assert torch.equal(out[:, :3], values[:, :3]) and not torch.allclose(out[:, 3:], free[:, 3:])
    assert len(seen) == network_calls(sampler, 6, 100) and seen[0] == 99 and seen[-1] == 0


def test_samplers_by_name() -> None:
    schedule = make_schedule("cosine", 50)
    assert set(SAMPLERS) == {"ddim", "dpmpp_2m", "heun", "ddpm"}
    for name in SAMPLERS:
        out = sample_by_name(name, dummy_denoiser, schedule, (2, 5, 3), "x0", 5, generator=seeded(4))
        assert out.shape == (2, 5, 3) and bool(torch.isfinite(out).all()), name
    ddim = ddim_sample(dummy_denoiser, schedule, (2, 5, 3), "x0", 5, generator=seeded(4))
    torch.testing.assert_close(sample_by_name("ddim", dummy_denoiser, schedule, (2, 5, 3), "x0", 5,
                                              generator=seeded(4)), ddim)
    assert [network_calls(name, 5, 50) for name in SAMPLERS] == [5, 5, 9, 50]
    with pytest.raises(ValueError, match="unknown sampler 'euler'; choose one of ddim, dpmpp_2m, heun, ddpm"):
        sample_by_name("euler", dummy_denoiser, schedule, (2, 5, 3), "x0", 5)
