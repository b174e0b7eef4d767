"""EmoDiffGenerator.generate's windowing and context, with a seeded tiny denoiser (fast; no training, no corpus)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dtl_foundation.diffusion import cfg_denoise, ddim_sample
from lightning_modules.networks.emodiff_denoiser import EmoDiffDenoiser
from lightning_modules.networks.emodiff_generator import EmoDiffGenerator

AUDIO_DIM, DIM, WINDOW, CONTEXT = 6, 16, 32, 8


class Recording(nn.Module):
    """A real tiny denoiser that records the conditions it encodes (once a window)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = EmoDiffDenoiser(AUDIO_DIM, dim=DIM, layers=1, heads=2, dropout=0.0)
        for p in self.net.parameters():  # the zero-initialised heads would make every output the mean
            nn.init.normal_(p, std=0.1)
        self.dim, self.calls = DIM, []

    def encode_frames(self, cond):
        self.calls.append({k: v.clone() for k, v in cond.items()})
        return self.net.encode_frames(cond)

    def encode_condition(self, emotion_vector, init, init_known=None):
        self.calls[-1]["encoded_emotion_vector"] = emotion_vector.clone()
        return self.net.encode_condition(emotion_vector, init, init_known)

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.net, name)


def generator(autoregressive: bool = True) -> EmoDiffGenerator:
    g = EmoDiffGenerator(Recording(), diffusion_steps=50, autoregressive=autoregressive, context_frames=CONTEXT,
                         sample_steps=3, guidance_scale=1.0, generation_window=WINDOW)
    g.bs_mean.fill_(0.3)
    g.bs_std.fill_(0.05)
    return g.eval()


def request(frames: int, per_frame: bool = False) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    vector = torch.randn(1, frames, DIM) if per_frame else torch.randn(1, DIM)
    return {"audio": torch.randn(1, frames, AUDIO_DIM), "init": torch.full((1, 52), 0.3),
            "init_known": torch.tensor([False]), "emotion_vector": vector}


def windows(g: EmoDiffGenerator) -> list[dict]:
    """The conditions of each window."""
    return g.denoiser.calls


def test_autoregressive_windows_overlap_by_the_context_and_continue_it():
    g, frames = generator(), 80
    batch = request(frames, per_frame=True)
    out = g.generate(batch, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, frames, 52)
    starts = [0, WINDOW - CONTEXT, 2 * (WINDOW - CONTEXT)]  # 0, 24, 48 -> the last window is [48, 80)
    calls = windows(g)
    assert [c["audio"].shape[1] for c in calls] == [WINDOW, WINDOW, frames - starts[2]]
    normalised = g.normalize(out)
    for start, call in zip(starts, calls):
        assert torch.equal(call["audio"], batch["audio"][:, start:start + call["audio"].shape[1]])
        assert torch.equal(call["emotion_vector"], batch["emotion_vector"][:, start:start + call["audio"].shape[1]])
        if start == 0:
            assert not call["context_mask"].any() and not call["init_known"].any()
            continue
        assert call["context_mask"][0, :CONTEXT].all() and not call["context_mask"][0, CONTEXT:].any()
        # The context is the output already generated at those frames (before the output's clamp to [0, 1]);
        # the initial state its first frame.
        inside = (out[:, start:start + CONTEXT] > 0) & (out[:, start:start + CONTEXT] < 1)
        assert inside.float().mean() > 0.5
        torch.testing.assert_close(call["context"][:, :CONTEXT][inside], normalised[:, start:start + CONTEXT][inside],
                                   atol=1e-5, rtol=0)
        torch.testing.assert_close(call["init"], normalised[:, start], atol=1e-5, rtol=0)
        assert call["init_known"].all()


def test_independent_windows_without_autoregression():
    g, frames = generator(autoregressive=False), 80
    g.generate(request(frames), generator=torch.Generator().manual_seed(0))
    calls = windows(g)
    assert [c["audio"].shape[1] for c in calls] == [WINDOW, WINDOW, frames - 2 * WINDOW]
    assert not any(c["context_mask"].any() for c in calls)
    assert not any(c["init_known"].any() for c in calls)


def test_one_window_is_the_sampler_on_the_request_and_seeded():
    g = generator()
    batch = request(WINDOW)
    a = g.generate(batch, generator=torch.Generator().manual_seed(3))
    cond = g.conditions(batch, batch["emotion_vector"])
    b = g.denormalize(g.sample_window(cond, generator=torch.Generator().manual_seed(3)))
    c = g.generate(batch, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.allclose(a, g.denormalize(torch.zeros_like(a)))  # the tiny denoiser's output, not the mean


def test_guidance_calls_the_null_condition_in_the_same_batch():
    g = generator()
    batch = request(WINDOW)
    g.generate(batch, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
    call = g.denoiser.calls[0]
    assert call["audio"].shape[0] == 1  # the frames are encoded once for both halves
    vectors = call["encoded_emotion_vector"]  # [conditional; unconditional]
    assert vectors.shape[0] == 2
    torch.testing.assert_close(vectors[1], g.denoiser.null_vector(1)[0])
    torch.testing.assert_close(vectors[0], batch["emotion_vector"][0])


def test_style_bank_keeps_mean_and_nearest_exemplars_and_names_missing_entries():
    g = generator()
    torch.manual_seed(2)
    clips = [torch.rand(20, 52) for _ in range(6)]
    g.fill_style_bank(clips, emotions=[4, 4, 4, 4, 4, 6], levels=[3, 3, 3, 3, 3, 1])
    assert g.bank_count[4, 3] == 5 and g.bank_count[6, 1] == 1 and g.bank_count.sum() == 6
    vectors = torch.stack([g.denoiser.encode_style(g.normalize(c)[None], torch.ones(1, 20, dtype=torch.bool))[0]
                           for c in clips[:5]])
    torch.testing.assert_close(g.bank_mean[4, 3], vectors.mean(0), atol=1e-5, rtol=0)
    distances = (vectors - vectors.mean(0)).norm(dim=1)
    torch.testing.assert_close(g.bank_exemplar[4, 3, 0], vectors[distances.argmin()], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"no entry for \(emotion, level\) \[\(0, 2\)\]"):
        g.bank_style(torch.tensor([0]), torch.tensor([2]))


# --- conditions encoded once per window --------------------------------------------------------------------------

ENCODERS = ("audio_in", "init_in", "condition_norm", "style_encoder", "emotion", "level")
"""The denoiser's condition encoders: none depends on x_t or the step."""


class PerStepEncoding(EmoDiffGenerator):
    """The uncached sampler: every step runs the whole network on [conditional; unconditional] conditions."""

    def sample_window(self, cond, *, steps=None, guidance_scale=None, generator=None, sampler=None):
        b, frames = cond["audio"].shape[:2]
        null = dict(cond, emotion_vector=self.denoiser.null_vector(b))
        shape = (b, frames, 52)
        fixed = (cond["context_mask"][..., None].expand(shape), cond["context"])
        return ddim_sample(lambda x, t: cfg_denoise(self.denoiser, x, t, cond, null, guidance_scale),
                           self.noise_schedule(), shape, self.prediction, steps, generator=generator, x0_fixed=fixed)


def encoder_calls(g: EmoDiffGenerator, batch: dict[str, torch.Tensor], steps: int) -> tuple[dict, torch.Tensor]:
    """Forward calls of each condition encoder during one guided generate, counted by hooks on the modules."""
    counts = dict.fromkeys(ENCODERS, 0)
    hooks = [getattr(g.denoiser, name).register_forward_hook(lambda *_, name=name: counts.__setitem__(
        name, counts[name] + 1)) for name in ENCODERS]
    try:
        out = g.generate(batch, steps=steps, guidance_scale=2.0, generator=torch.Generator().manual_seed(5))
    finally:
        for hook in hooks:
            hook.remove()
    return counts, out


@pytest.mark.parametrize("style_clip", [True, False])
def test_conditions_are_encoded_once_per_window(style_clip: bool):
    torch.manual_seed(0)
    denoiser = EmoDiffDenoiser(AUDIO_DIM, dim=DIM, layers=1, heads=2, dropout=0.0)
    for p in denoiser.parameters():
        nn.init.normal_(p, std=0.1)
    options = dict(diffusion_steps=50, context_frames=CONTEXT, generation_window=WINDOW, sampler="ddim")
    cached = EmoDiffGenerator(denoiser, **options).eval()
    uncached = PerStepEncoding(denoiser, **options).eval()
    frames, steps, windows_ = 80, 4, 3  # windows [0, 32), [24, 56), [48, 80)
    torch.manual_seed(1)
    batch = {"audio": torch.randn(2, frames, AUDIO_DIM), "init": torch.rand(2, 52),
             "init_known": torch.tensor([True, False]), "emotion": torch.tensor([3, 5]), "level": torch.tensor([3, 1]),
             "style": torch.rand(2, 20, 52), "style_mask": torch.ones(2, 20, dtype=torch.bool) & style_clip}
    counts, out = encoder_calls(cached, batch, steps)
    assert counts == {"audio_in": windows_, "init_in": windows_, "condition_norm": windows_,
                      "style_encoder": 1, "emotion": 1, "level": 1}
    # The broken variant, encoding at every step and for both halves, is what the counts catch ...
    broken, reference = encoder_calls(uncached, batch, steps)
    assert broken["audio_in"] == broken["init_in"] == windows_ * steps and broken != counts
    # ... and it samples the same tracks: the cache changes the work, not the result.
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=0)


def denoiser_input_dtypes(g: EmoDiffGenerator, batch: dict[str, torch.Tensor]) -> set[torch.dtype]:
    """The dtypes the denoiser's linear layers computed in while `g` generated `batch`."""
    seen: set[torch.dtype] = set()
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
             for m in g.denoiser.net.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.inference_mode():
            out = g.generate(batch, generator=torch.Generator().manual_seed(0))
    finally:
        for hook in hooks:
            hook.remove()
    assert out.dtype == torch.float32  # whatever the precision, the track is fp32
    return seen


def test_sampling_precision_sets_the_denoisers_arithmetic():
    """The denoising steps run in bf16 when asked (the conditions, encoded once a window, stay fp32)."""
    g = generator()
    g.sampling_precision = "fp32"
    assert denoiser_input_dtypes(g, request(WINDOW)) == {torch.float32}
    g.sampling_precision = "bf16"
    assert torch.bfloat16 in denoiser_input_dtypes(g, request(WINDOW))


def test_bf16_samples_stay_close_to_fp32_samples():
    g = generator()
    tracks = {}
    for precision in ("fp32", "bf16"):
        g.sampling_precision = precision
        with torch.inference_mode():
            tracks[precision] = g.generate(request(WINDOW), generator=torch.Generator().manual_seed(0))
    difference = (tracks["bf16"] - tracks["fp32"]).abs().max()
    assert 0 < difference < 0.02 * tracks["fp32"].abs().max()  # rounded, not another sample


def test_auto_precision_is_bf16_only_for_cpu_batches_on_a_cpu_with_bf16(tmp_path):
    from lightning_modules.networks.emodiff_generator import (AUTO_BF16_MIN_BATCH, cpu_has_native_bf16,
                                                               samples_in_bf16)

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert samples_in_bf16("auto", cpu, AUTO_BF16_MIN_BATCH, native_bf16=True)
    assert not samples_in_bf16("auto", cpu, AUTO_BF16_MIN_BATCH - 1, native_bf16=True)
    assert not samples_in_bf16("auto", cpu, 64, native_bf16=False)
    assert not samples_in_bf16("auto", cuda, 64, native_bf16=True)
    assert samples_in_bf16("bf16", cuda, 1, native_bf16=False) and not samples_in_bf16("fp32", cpu, 64, True)
    with pytest.raises(ValueError, match="sampling_precision must be one of"):
        EmoDiffGenerator(Recording(), sampling_precision="fp16")
    flags = "flags\t\t: fpu sse2 avx2 avx512f {}\n"
    for extra, expected in (("avx512_bf16", True), ("amx_bf16 amx_tile", True), ("avx512_vnni", False)):
        cpuinfo = tmp_path / f"cpuinfo-{extra.split()[0]}"
        cpuinfo.write_text("processor\t: 0\n" + flags.format(extra))
        assert cpu_has_native_bf16(cpuinfo) is expected
    assert cpu_has_native_bf16(tmp_path / "missing") is False
