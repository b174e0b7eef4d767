"""The diffusion core: schedules, forward statistics, parameterisations, posterior, samplers, guidance."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import yaml

from dtl_foundation.diffusion import (NoiseSchedule, cfg_denoise, classifier_free_guidance, coefficient_at,
                                         cosine_alpha_bar_schedule, ddim_sample, ddim_timesteps, ddpm_sample,
                                         guided_denoiser, linear_beta_schedule, make_schedule, predicted_eps,
                                         predicted_x0, prediction_target, q_posterior_mean_variance, q_sample)

KINDS = ("x0", "eps", "v")


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def dummy_denoiser(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.9 * x + 0.01 * t[:, None, None]


# --- schedules -------------------------------------------------------------------------------------------------------

def test_linear_betas_endpoints() -> None:
    betas = linear_beta_schedule(1000)
    assert betas.shape == (1000,) and betas.dtype == torch.float64
    assert betas[0].item() == pytest.approx(1e-4, abs=1e-15) and betas[-1].item() == pytest.approx(2e-2, abs=1e-15)
    assert bool((betas.diff() > 0).all())


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_alpha_bar_decreases_inside_unit_interval(name: str) -> None:
    abar = make_schedule(name, 1000).alphas_cumprod
    assert bool((abar > 0).all() and (abar < 1).all())
    assert bool((abar.diff() < 0).all())
    assert abar[-1] < 1e-4  # the last step is close to pure noise


def test_cosine_alpha_bar_matches_closed_form() -> None:
    steps, s = 1000, 0.008
    f = lambda u: math.cos((u / steps + s) / (1 + s) * math.pi / 2) ** 2
    expected = torch.tensor([f(t + 1) / f(0) for t in range(steps)], dtype=torch.float64)
    betas = cosine_alpha_bar_schedule(steps, s=s)
    abar = NoiseSchedule.from_betas(betas).alphas_cumprod
    # Only the final beta (which would be 1) is clipped to max_beta; before it the product telescopes exactly.
    torch.testing.assert_close(abar[:-1], expected[:-1], rtol=1e-10, atol=1e-14)
    assert betas[-1].item() == pytest.approx(0.999) and bool((betas[:-1] < 0.999).all())


def test_schedule_is_frozen_casts_and_rejects_bad_input() -> None:
    schedule = make_schedule("cosine", 50)
    assert schedule.num_steps == 50
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.betas = schedule.betas  # type: ignore[misc]
    moved = schedule.to("cpu", torch.float32)
    assert all(getattr(moved, f.name).dtype == torch.float32 for f in dataclasses.fields(moved))
    assert schedule.betas.dtype == torch.float64  # the original is untouched
    with pytest.raises(ValueError):
        make_schedule("quadratic", 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        NoiseSchedule.from_betas(torch.tensor([0.1, 1.5]))
    with pytest.raises(ValueError, match="at least 2 steps"):  # one step has no posterior to sample from
        NoiseSchedule.from_betas(torch.tensor([0.1]))
    assert NoiseSchedule.from_betas(torch.tensor([0.1, 0.2])).num_steps == 2  # the shortest there is
    with pytest.raises(ValueError, match=r"1-D .* got shape \(2, 3\)"):
        NoiseSchedule.from_betas(torch.full((2, 3), 0.1))
    for outside in (0.0, -0.1, 1.1):
        with pytest.raises(ValueError, match=r"betas must lie in \(0, 1\]"):
            NoiseSchedule.from_betas(torch.tensor([0.1, outside]))
    assert NoiseSchedule.from_betas(torch.tensor([0.1, 1.0])).alphas_cumprod[-1] == 0  # 1 itself is allowed
    assert make_schedule("cosine", 7).num_steps == 7 and make_schedule("cosine", 8).num_steps == 8  # odd and even


def test_coefficients_broadcast_against_any_rank() -> None:
    values, t = torch.arange(5, dtype=torch.float64), torch.tensor([4, 1])
    for like in (torch.zeros(2, 3), torch.zeros(2, 3, 4), torch.zeros(2, 3, 4, 5, dtype=torch.float32)):
        out = coefficient_at(values, t, like)
        assert out.shape == (2, *[1] * (like.ndim - 1)) and out.dtype == like.dtype
        assert out.flatten().tolist() == [4.0, 1.0]


def test_ddim_timesteps_are_even_and_include_both_ends() -> None:
    assert ddim_timesteps(1000, 10).tolist() == [0, 111, 222, 333, 444, 555, 666, 777, 888, 999]
    assert torch.equal(ddim_timesteps(1000, 1000), torch.arange(1000))
    for steps in (2, 7, 49, 50):
        timesteps = ddim_timesteps(50, steps)
        assert len(timesteps) == steps and bool((timesteps.diff() > 0).all())
        assert timesteps[0] == 0 and timesteps[-1] == 49


# --- forward process -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_q_sample_statistics(name: str) -> None:
    schedule = make_schedule(name, 1000)
    t = torch.tensor([0, 100, 500, 900, 999])
    x0 = torch.full((len(t), 20_000, 1), 0.7)
    x_t = q_sample(schedule, x0, t, torch.randn(x0.shape, generator=seeded(1)))
    abar = schedule.alphas_cumprod[t].float()
    mean, var = x_t.mean(dim=(1, 2)), x_t.var(dim=(1, 2))
    standard_error = (1 - abar).sqrt() / math.sqrt(20_000)
    assert bool(((mean - abar.sqrt() * 0.7).abs() < 4 * standard_error + 1e-6).all())
    torch.testing.assert_close(var, 1 - abar, rtol=0.04, atol=1e-6)
    assert abs(mean[-1].item()) < 0.03 and abs(var[-1].item() - 1) < 0.04  # t = T-1 is ~N(0, 1)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_parameterisation_round_trips(kind: str, name: str) -> None:
    schedule = make_schedule(name, 1000)
    g = seeded(2)
    t = torch.tensor([0, 1, 250, 500, 998, 999])
    x0 = torch.randn((6, 5, 3), generator=g, dtype=torch.float64)
    noise = torch.randn((6, 5, 3), generator=g, dtype=torch.float64)
    x_t = q_sample(schedule, x0, t, noise)
    target = prediction_target(kind, schedule, x0, t, noise)
    torch.testing.assert_close(predicted_x0(kind, schedule, x_t, t, target), x0, rtol=0, atol=1e-5)
    torch.testing.assert_close(predicted_eps(kind, schedule, x_t, t, target), noise, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["x0", "eps"])
def test_a_kind_read_from_a_config_file_takes_its_own_branch(kind: str) -> None:
    # configs/model/emodiff.yaml states the kind: parsed, it is an equal string but not the interned literal, so a
    # branch comparing by identity would send it to another parameterisation's formula.
    from_config = yaml.safe_load(f"prediction: {kind}")["prediction"]
    assert from_config == kind and from_config is not kind
    schedule = make_schedule("linear", 1000)
    g = seeded(4)
    t = torch.tensor([10, 400, 900])
    x0, noise, output = (torch.randn((3, 5, 3), generator=g, dtype=torch.float64) for _ in range(3))
    x_t = q_sample(schedule, x0, t, noise)
    torch.testing.assert_close(prediction_target(from_config, schedule, x0, t, noise),
                               prediction_target(kind, schedule, x0, t, noise), rtol=0, atol=0)
    for convert in (predicted_x0, predicted_eps):
        torch.testing.assert_close(convert(from_config, schedule, x_t, t, output),
                                   convert(kind, schedule, x_t, t, output), rtol=0, atol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_parameterisation_round_trips_in_float32(kind: str) -> None:
    schedule = make_schedule("linear", 1000)
    g = seeded(3)
    t = torch.tensor([100, 500, 900])
    x0, noise = torch.randn((3, 5, 3), generator=g), torch.randn((3, 5, 3), generator=g)
    x_t = q_sample(schedule, x0, t, noise)
    target = prediction_target(kind, schedule, x0, t, noise)
    assert x_t.dtype == target.dtype == torch.float32
    torch.testing.assert_close(predicted_x0(kind, schedule, x_t, t, target), x0, rtol=0, atol=1e-4)
    torch.testing.assert_close(predicted_eps(kind, schedule, x_t, t, target), noise, rtol=0, atol=1e-4)


def test_v_target_closed_form() -> None:
    schedule = make_schedule("cosine", 100)
    t = torch.tensor([30])
    x0, noise = torch.full((1, 1, 1), 2.0, dtype=torch.float64), torch.full((1, 1, 1), -1.0, dtype=torch.float64)
    abar = schedule.alphas_cumprod[30].item()
    expected = math.sqrt(abar) * -1.0 - math.sqrt(1 - abar) * 2.0
    assert prediction_target("v", schedule, x0, t, noise).item() == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError):
        prediction_target("score", schedule, x0, t, noise)  # type: ignore[arg-type]


def test_posterior_matches_closed_form() -> None:
    betas = linear_beta_schedule(1000).tolist()
    schedule = NoiseSchedule.from_betas(torch.tensor(betas, dtype=torch.float64))
    g = seeded(4)
    x0, x_t = (torch.randn((4, 5, 3), generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.tensor([1, 10, 500, 999])
    mean, variance, log_variance = q_posterior_mean_variance(schedule, x0, x_t, t)
    assert variance.shape == log_variance.shape == (4, 1, 1)
    for row, step in enumerate(t.tolist()):
        abar_t, abar_prev = math.prod(1 - b for b in betas[:step + 1]), math.prod(1 - b for b in betas[:step])
        beta = betas[step]
        expected_mean = (math.sqrt(abar_prev) * beta / (1 - abar_t) * x0[row]
                         + math.sqrt(1 - beta) * (1 - abar_prev) / (1 - abar_t) * x_t[row])
        expected_variance = (1 - abar_prev) / (1 - abar_t) * beta
        torch.testing.assert_close(mean[row], expected_mean, rtol=1e-9, atol=1e-12)
        assert variance[row].item() == pytest.approx(expected_variance, rel=1e-9)
        assert log_variance[row].item() == pytest.approx(math.log(expected_variance), rel=1e-9)
    # t = 0: the posterior collapses onto x0.
    mean0, variance0, _ = q_posterior_mean_variance(schedule, x0, x_t, torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(mean0, x0)
    assert bool((variance0 == 0).all())


def test_posterior_mean_from_eps_is_ddpm_eq_11() -> None:
    schedule = make_schedule("cosine", 200)
    g = seeded(5)
    x_t, eps = (torch.randn((3, 5, 3), generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.tensor([1, 50, 150])
    mean, _, _ = q_posterior_mean_variance(schedule, predicted_x0("eps", schedule, x_t, t, eps), x_t, t)
    beta = schedule.betas[t][:, None, None]
    expected = (x_t - beta / schedule.sqrt_one_minus_alphas_cumprod[t][:, None, None] * eps) / (1 - beta).sqrt()
    torch.testing.assert_close(mean, expected, rtol=1e-9, atol=1e-9)


# --- samplers --------------------------------------------------------------------------------------------------------

GOLDEN_SCHEDULE = ("linear", 100)
# Computed once from this implementation (float32, CPU generator seed 1234, shape (2, 5, 3)):
# (first four values of the flattened output, float64 sum). They pin the numerics against accidental change.
GOLDEN = {
    ("ddpm", "eps"): ([-0.4711075, -0.3456931, -0.3110096, -0.5627000], -13.317477),
    ("ddpm", "x0"): ([0.7667863, 1.0097841, 1.0770454, 0.6425604], 25.792090),
    ("ddim_eta0", "eps"): ([-0.5078839, -0.7407535, -0.3416186, -0.9737599], -15.850726),
    ("ddim_eta0", "x0"): ([0.6774988, 0.3571005, 0.9062581, 0.0365142], 19.479894),
    ("ddim_eta1", "eps"): ([-0.7403544, -0.4827375, -0.7619127, -0.9021254], -21.156842),
    ("ddim_eta1", "x0"): ([0.8901370, 1.1263978, 0.9571307, 0.4640872], 26.987386),
}


@pytest.mark.parametrize(("sampler", "kind"), list(GOLDEN))
def test_golden_values(sampler: str, kind: str) -> None:
    schedule = make_schedule(*GOLDEN_SCHEDULE)
    g = seeded(1234)
    if sampler == "ddpm":
        out = ddpm_sample(dummy_denoiser, schedule, (2, 5, 3), kind, generator=g)
    else:
        out = ddim_sample(dummy_denoiser, schedule, (2, 5, 3), kind, 10, eta=float(sampler[-1]), generator=g)
    first, total = GOLDEN[(sampler, kind)]
    assert out.shape == (2, 5, 3) and out.dtype == torch.float32
    assert out.flatten()[:4].tolist() == pytest.approx(first, abs=1e-5)
    assert out.double().sum().item() == pytest.approx(total, abs=1e-5)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_determinism(eta: float) -> None:
    schedule = make_schedule("cosine", 50)
    run = lambda **kw: ddim_sample(dummy_denoiser, schedule, (2, 5, 3), "x0", 10, eta=eta, **kw)
    if eta == 0.0:
        noise = torch.randn((2, 5, 3), generator=seeded(7))
        assert torch.equal(run(noise=noise), run(noise=noise))
    assert torch.equal(run(generator=seeded(7)), run(generator=seeded(7)))
    assert not torch.allclose(run(generator=seeded(7)), run(generator=seeded(8)))


def test_ddim_all_steps_eta_one_is_ddpm() -> None:
    # With every timestep and eta = 1, DDIM's sigma is the DDPM posterior variance and its mean the posterior mean,
    # and both samplers draw noise in the same order: the same generator gives the same path.
    schedule = make_schedule("cosine", 50)
    for kind in KINDS:
        ddpm = ddpm_sample(dummy_denoiser, schedule, (2, 5, 3), kind, generator=seeded(9), dtype=torch.float64)
        ddim = ddim_sample(dummy_denoiser, schedule, (2, 5, 3), kind, 50, eta=1.0, generator=seeded(9),
                           dtype=torch.float64)
        torch.testing.assert_close(ddim, ddpm, rtol=1e-7, atol=1e-7)


def gaussian_x0_denoiser(schedule: NoiseSchedule, mu: float, sigma: float):
    """The exact E[x0 | x_t] for data x0 ~ N(mu, sigma^2)."""
    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        abar = schedule.alphas_cumprod[t].to(x_t.dtype)[:, None, None]
        gain = abar.sqrt() * sigma**2 / (abar * sigma**2 + 1 - abar)
        return mu + gain * (x_t - abar.sqrt() * mu)
    return denoise


def test_samplers_recover_a_gaussian_with_the_exact_denoiser() -> None:
    mu, sigma, n = 0.5, 0.2, 4000
    schedule = make_schedule("cosine", 1000)
    exact_x0 = gaussian_x0_denoiser(schedule, mu, sigma)

    def exact_v(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x0 = exact_x0(x_t, t)
        return prediction_target("v", schedule, x0, t, predicted_eps("x0", schedule, x_t, t, x0))

    stochastic = {
        "ddpm": ddpm_sample(exact_x0, schedule, (n, 1, 1), "x0", generator=seeded(10)),
        "ddim1000_eta1": ddim_sample(exact_x0, schedule, (n, 1, 1), "x0", 1000, eta=1.0, generator=seeded(12)),
    }
    for name, x in stochastic.items():
        # Sampling error alone: 0.016 sigma on the mean, 1.1 % on the std.
        assert abs(x.mean().item() - mu) < 0.05 * sigma, name
        assert x.std().item() == pytest.approx(sigma, rel=0.03), name

    # DDIM-50 (eta 0) with the exact denoiser is an affine map of x_T, so its outcome is known in closed form.
    # Per step, x_prev - a' mu = (a' a sigma^2 + s' s) / (a^2 sigma^2 + s^2) * (x_t - a mu) with a = sqrt(abar),
    # s = sqrt(1 - abar): a factor < 1 unless the steps are infinitesimal (Cauchy-Schwarz), so coarse DDIM
    # under-disperses; here by 6 %, which a larger data variance or more steps reduces.
    x_T = torch.randn((n, 1, 1), generator=seeded(11), dtype=torch.float64)
    x = ddim_sample(exact_v, schedule, (n, 1, 1), "v", 50, noise=x_T)
    timesteps = ddim_timesteps(1000, 50).tolist()
    gain = 1.0
    for t, prev in zip(timesteps[::-1], ([-1] + timesteps[:-1])[::-1]):
        abar, abar_prev = schedule.alphas_cumprod[t].item(), schedule.alphas_cumprod[prev].item() if prev >= 0 else 1.0
        a, s, a_prev, s_prev = math.sqrt(abar), math.sqrt(1 - abar), math.sqrt(abar_prev), math.sqrt(1 - abar_prev)
        gain *= (a_prev * a * sigma**2 + s_prev * s) / (abar * sigma**2 + 1 - abar)
    a_T = schedule.sqrt_alphas_cumprod[-1].item()
    torch.testing.assert_close(x, mu + gain * (x_T - a_T * mu), rtol=1e-7, atol=1e-9)
    assert abs(x.mean().item() - mu) < 0.05 * sigma
    assert x.std().item() == pytest.approx(sigma, rel=0.08)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_x0_fixed_pins_known_frames(sampler: str) -> None:
    schedule = make_schedule("linear", 100)
    values = torch.randn((2, 8, 3), generator=seeded(13))
    mask = torch.zeros((1, 8, 1), dtype=torch.bool)
    mask[:, :3] = True
    seen: list[tuple[int, torch.Tensor]] = []

    def spy(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append((int(t[0]), x.clone()))
        return dummy_denoiser(x, t)

    kwargs = dict(generator=seeded(14), x0_fixed=(mask, values))
    if sampler == "ddpm":
        out = ddpm_sample(spy, schedule, (2, 8, 3), "eps", **kwargs)
        free = ddpm_sample(dummy_denoiser, schedule, (2, 8, 3), "eps", generator=seeded(14))
    else:
        out = ddim_sample(spy, schedule, (2, 8, 3), "eps", 10, eta=1.0, **kwargs)
        free = ddim_sample(dummy_denoiser, schedule, (2, 8, 3), "eps", 10, eta=1.0, generator=seeded(14))
    assert torch.equal(out[:, :3], values[:, :3])
    assert bool(torch.isfinite(out).all()) and not torch.allclose(out[:, 3:], free[:, 3:])
    # What the network saw in the pinned frames is a draw of q(x_t | values): at t = 0, values plus 1e-2-scale noise.
    last_t, last_x = seen[-1]
    assert last_t == 0
    assert (last_x[:, :3] - values[:, :3]).abs().max() < 5 * schedule.sqrt_one_minus_alphas_cumprod[0].item()
    first_t, first_x = seen[0]
    assert first_t == 99 and not torch.allclose(first_x[:, :3], values[:, :3], atol=0.1)


def test_samplers_follow_dtype_and_clip() -> None:
    schedule = make_schedule("cosine", 20)
    out = ddim_sample(dummy_denoiser, schedule, (2, 5, 3), "x0", 5, generator=seeded(15), dtype=torch.float64)
    assert out.dtype == torch.float64
    out = ddpm_sample(lambda x, t: 10 * x, schedule.to(dtype=torch.float32), (2, 5, 3), "x0",
                      generator=seeded(15), clip_x0=(0.0, 1.0))
    # The last step returns the clipped x0 estimate itself.
    assert out.dtype == torch.float32 and bool(((out >= 0) & (out <= 1)).all())
    with pytest.raises(ValueError):
        ddim_sample(dummy_denoiser, schedule, (2, 5, 3), "x0", 21)


# --- guidance --------------------------------------------------------------------------------------------------------

def test_classifier_free_guidance_is_linear_in_scale() -> None:
    g = seeded(16)
    uncond, cond = torch.randn((2, 5, 3), generator=g), torch.randn((2, 5, 3), generator=g)
    torch.testing.assert_close(classifier_free_guidance(uncond, cond, 0.0), uncond)
    torch.testing.assert_close(classifier_free_guidance(uncond, cond, 1.0), cond)
    torch.testing.assert_close(classifier_free_guidance(uncond, cond, 0.25), 0.75 * uncond + 0.25 * cond)
    torch.testing.assert_close(classifier_free_guidance(uncond, cond, 3.0), uncond + 3 * (cond - uncond))


def toy_conditional_net(calls: list[int]):
    def net(x: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        calls.append(x.shape[0])
        return x * cond["style"][:, None, :] + 0.01 * t[:, None, None] + cond["emotion"][:, None, None]
    return net


@pytest.mark.parametrize("scale", [0.0, 1.0, 2.5])
def test_batched_guidance_equals_two_calls(scale: float) -> None:
    g = seeded(17)
    x, t = torch.randn((2, 5, 3), generator=g), torch.tensor([3, 40])
    cond = {"style": torch.randn((2, 3), generator=g), "emotion": torch.tensor([1.0, 2.0])}
    null = {"style": torch.zeros((2, 3)), "emotion": torch.zeros(2)}
    calls: list[int] = []
    net = toy_conditional_net(calls)
    two_calls = guided_denoiser(lambda x_, t_: net(x_, t_, cond), lambda x_, t_: net(x_, t_, null), scale)(x, t)
    calls.clear()
    torch.testing.assert_close(cfg_denoise(net, x, t, cond, null, scale), two_calls)
    assert calls == ([2] if scale == 1.0 else [4])  # one call; the doubled batch unless guidance is a no-op


def test_guided_denoiser_drives_a_sampler() -> None:
    schedule = make_schedule("cosine", 20)
    net = toy_conditional_net([])
    cond = {"style": torch.full((2, 3), 0.5), "emotion": torch.ones(2)}
    null = {"style": torch.zeros((2, 3)), "emotion": torch.zeros(2)}
    out = ddim_sample(lambda x, t: cfg_denoise(net, x, t, cond, null, 2.0), schedule, (2, 5, 3), "x0", 5,
                      generator=seeded(18))
    assert out.shape == (2, 5, 3) and bool(torch.isfinite(out).all())
