"""EmoDiff's denoiser computes adaLN-Zero (Peebles & Xie 2023 sec. 3.2) as written, with its modulations fused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_modules.networks.emodiff_denoiser import EmoDiffDenoiser, sinusoidal_embedding

AUDIO_DIM, DIM = 6, 16


def adaln_zero_as_written(net: EmoDiffDenoiser, x_t, t, frames, condition) -> torch.Tensor:
    """The denoiser's output computed block by block the plain way: each block's own modulation of c, norms
    times (1 + scale) plus shift, residuals gated."""
    h = nn.functional.linear(x_t, net.frames_in.weight[:, :52]) + frames
    h = h.repeat(condition.shape[0] // h.shape[0], 1, 1)
    c = condition + net.time_mlp(sinusoidal_embedding(t, net.dim)).repeat(condition.shape[0] // t.shape[0], 1)[:, None]
    for block in net.blocks:
        shift1, scale1, gate1, shift2, scale2, gate2 = block.modulation(c).chunk(6, dim=-1)
        x = block.norm1(h) * (1 + scale1) + shift1
        h = h + gate1 * block.attn(x, x, x, need_weights=False)[0]
        x = block.norm2(h) * (1 + scale2) + shift2
        h = h + gate2 * block.mlp(x)
    shift, scale = net.out_modulation(c).chunk(2, dim=-1)
    return net.out(net.out_norm(h) * (1 + scale) + shift)


def seeded_denoiser(layers: int) -> EmoDiffDenoiser:
    torch.manual_seed(0)
    net = EmoDiffDenoiser(AUDIO_DIM, dim=DIM, layers=layers, heads=2, dropout=0.0)
    for p in net.parameters():  # the zero-initialised modulations would hide a wrong scale or shift
        nn.init.normal_(p, std=0.3)
    return net.eval()


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("per_frame", [False, True], ids=["one_condition", "per_frame_condition"])
def test_the_fused_modulations_compute_adaln_zero_as_written(layers, per_frame):
    net, frames = seeded_denoiser(layers), 12
    g = torch.Generator().manual_seed(1)
    x_t, t = torch.randn(2, frames, 52, generator=g), torch.tensor([3, 40])
    encoded = torch.randn(2, frames, DIM, generator=g)
    condition = torch.randn(4, frames if per_frame else 1, DIM, generator=g)  # guidance's two halves stacked
    with torch.no_grad():
        expected = adaln_zero_as_written(net, x_t, t, encoded, condition)
        fused = net.denoise_encoded(x_t, t, encoded, condition)
        kept = net.denoise_encoded(x_t, t, encoded, condition, net.modulation_weights())
    assert expected.abs().mean() > 0.1
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kept, fused, rtol=0, atol=0)
    # The broken variant: the 1 of (1 + scale) on the shifts instead of the scales.
    net.scale_ones.copy_(net.scale_ones.roll(-1 * DIM))
    with torch.no_grad():
        assert (net.denoise_encoded(x_t, t, encoded, condition) - expected).abs().max() > 1e-2


def test_a_checkpoint_saved_before_the_fused_modulations_loads_strictly_and_gives_the_same_outputs():
    net = seeded_denoiser(2)
    state = net.state_dict()
    assert "scale_ones" not in state  # derived, not saved: older checkpoints have no such key
    fresh = EmoDiffDenoiser(AUDIO_DIM, dim=DIM, layers=2, heads=2, dropout=0.0).eval()
    fresh.load_state_dict(state, strict=True)
    g = torch.Generator().manual_seed(2)
    x_t, encoded, condition = torch.randn(1, 8, 52, generator=g), torch.randn(1, 8, DIM, generator=g), \
        torch.randn(2, 1, DIM, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(fresh.denoise_encoded(x_t, torch.tensor([5]), encoded, condition),
                                   adaln_zero_as_written(net, x_t, torch.tensor([5]), encoded, condition),
                                   rtol=1e-5, atol=1e-5)
