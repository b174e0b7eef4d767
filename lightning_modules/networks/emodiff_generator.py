"""EmoDiff for inference: the denoiser with its data normalisation, emotion conditioning, style bank and sampler.

Everything a checkpoint needs to generate lives here (as NVlabs/edm's preconditioned network does); the
LightningModule in lightning_modules/emodiff.py only trains it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dtl_foundation.arkit import NUM_BLENDSHAPES
from dtl_foundation.mead import NUM_EMOTIONS
from dtl_foundation.diffusion import check_sampler, classifier_free_guidance, make_schedule, sample_by_name
from lightning_modules.networks.emodiff_denoiser import EmoDiffDenoiser

STYLE_SOURCES = ("bank", "label", "clip")
"""Where a request's style term comes from: the checkpoint's style bank, none (label only), a reference clip."""
SAMPLING_PRECISIONS = ("auto", "fp32", "bf16")
"""fp32; bf16 autocast; auto: bf16 autocast for CPU batches of at least AUTO_BF16_MIN_BATCH on a CPU with native
bf16 arithmetic (AVX512-BF16 or AMX), fp32 otherwise. bf16 samples match fp32's on every quality metric
(benchmarks/README.md, "EmoDiff samplers"); on such a CPU they are faster from that batch size and slower below."""
AUTO_BF16_MIN_BATCH = 4


@functools.cache
def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU has bf16 instructions (Linux's CPU flags; False where they cannot be read)."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_sampling_precision(precision: str) -> str:
    if precision not in SAMPLING_PRECISIONS:
        raise ValueError(f"sampling_precision must be one of {SAMPLING_PRECISIONS}, not {precision!r}")
    return precision


def samples_in_bf16(precision: str, device: torch.device, batch_size: int, native_bf16: bool) -> bool:
    """Whether sampling runs under bf16 autocast (see SAMPLING_PRECISIONS)."""
    if check_sampling_precision(precision) == "auto":
        return device.type == "cpu" and batch_size >= AUTO_BF16_MIN_BATCH and native_bf16
    return precision == "bf16"


class EmoDiffGenerator(nn.Module):
    """Blendshape sequences from audio and an emotion, window by window.

    Blendshapes are diffused in a per-coefficient standardised space (`bs_mean`, `bs_std`: corpus statistics).
    The style bank holds, per (emotion, level), the mean style-encoder vector of the training clips and up to
    `bank_exemplars` of them (those nearest the mean), so a request without a reference clip can still use the
    learned style of its emotion.
    """

    def __init__(self, denoiser: EmoDiffDenoiser, *, diffusion_steps: int = 500, schedule: str = "cosine",
                 prediction: str = "x0", autoregressive: bool = True, context_frames: int = 10,
                 sample_steps: int = 10, guidance_scale: float = 1.5, generation_window: int = 64,
                 max_level: int = 3, bank_exemplars: int = 4, sampler: str = "dpmpp_2m",
                 sampling_precision: str = "auto") -> None:
        super().__init__()
        self.denoiser = denoiser
        self.sampler = check_sampler(sampler)
        self.sampling_precision = check_sampling_precision(sampling_precision)
        self.prediction, self.autoregressive, self.context_frames = prediction, autoregressive, context_frames
        self.sample_steps, self.guidance_scale, self.generation_window = sample_steps, guidance_scale, generation_window
        self.schedule = make_schedule(schedule, diffusion_steps)
        self.register_buffer("bs_mean", torch.zeros(NUM_BLENDSHAPES))
        self.register_buffer("bs_std", torch.ones(NUM_BLENDSHAPES))
        dim = denoiser.dim
        self.register_buffer("bank_mean", torch.zeros(NUM_EMOTIONS, max_level + 1, dim))
        self.register_buffer("bank_exemplar", torch.zeros(NUM_EMOTIONS, max_level + 1, bank_exemplars, dim))
        self.register_buffer("bank_count", torch.zeros(NUM_EMOTIONS, max_level + 1, dtype=torch.long))

    @classmethod
    def from_options(cls, denoiser: EmoDiffDenoiser, options: Mapping[str, Any]) -> EmoDiffGenerator:
        """The generator with those of `options` (EmoDiff's hyperparameters or model config) that it takes; its
        defaults for the others."""
        names = inspect.signature(cls).parameters.keys() - {"denoiser"}
        return cls(denoiser, **{name: options[name] for name in names if name in options})

    # --- data space ----------------------------------------------------------------------------------------
    def normalize(self, blendshapes: torch.Tensor) -> torch.Tensor:
        return (blendshapes - self.bs_mean) / self.bs_std

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.bs_std + self.bs_mean).clamp(0.0, 1.0)

    def noise_schedule(self):
        if self.schedule.device != self.bs_mean.device:
            self.schedule = self.schedule.to(self.bs_mean.device)
        return self.schedule

    # --- style bank ----------------------------------------------------------------------------------------
    @torch.no_grad()
    def fill_style_bank(self, clips: list[torch.Tensor], emotions: list[int], levels: list[int]) -> None:
        """Encode training clips ((S, 52) each, raw blendshapes) and keep per (emotion, level) their mean vector
        and the exemplars nearest to it."""
        if not clips:
            raise ValueError("the style bank needs at least one training clip")
        frames = max(len(c) for c in clips)
        style = torch.zeros(len(clips), frames, NUM_BLENDSHAPES, device=self.bs_mean.device)
        mask = torch.zeros(len(clips), frames, dtype=torch.bool, device=self.bs_mean.device)
        for i, clip in enumerate(clips):
            style[i, : len(clip)] = clip.to(style)
            mask[i, : len(clip)] = True
        was_training = self.training
        self.eval()
        vectors = torch.cat([self.denoiser.encode_style(self.normalize(style[i:i + 256]) * mask[i:i + 256, :, None],
                                                        mask[i:i + 256]) for i in range(0, len(clips), 256)])
        self.train(was_training)
        self.bank_mean.zero_(), self.bank_exemplar.zero_(), self.bank_count.zero_()
        keys = torch.tensor(emotions) * self.bank_mean.shape[1] + torch.tensor(levels)
        for key in keys.unique().tolist():
            emotion, level = divmod(key, self.bank_mean.shape[1])
            members = vectors[(keys == key).to(vectors.device)]
            mean = members.mean(0)
            nearest = (members - mean).norm(dim=1).argsort()[: self.bank_exemplar.shape[2]]
            self.bank_mean[emotion, level] = mean
            self.bank_exemplar[emotion, level, : len(nearest)] = members[nearest]
            self.bank_count[emotion, level] = len(members)

    def bank_style(self, emotion: torch.Tensor, level: torch.Tensor, exemplar: int | None = None) -> torch.Tensor:
        """(B, dim) bank vectors (the mean, or exemplar number `exemplar`); a clear error where the bank is empty."""
        counts = self.bank_count[emotion, level]
        if bool((counts == 0).any()):
            missing = [(int(e), int(lv)) for e, lv, n in zip(emotion, level, counts) if n == 0]
            raise ValueError(f"the checkpoint's style bank has no entry for (emotion, level) {missing}: trained "
                             "before style banks, or without clips of that emotion; use style_from='label' or a clip")
        if exemplar is None:
            return self.bank_mean[emotion, level]
        if not 0 <= exemplar < int(counts.min().clamp(max=self.bank_exemplar.shape[2])):
            raise ValueError(f"exemplar {exemplar} out of range: the bank keeps {int(counts.min())} for this request")
        return self.bank_exemplar[emotion, level, exemplar]

    # --- conditions ----------------------------------------------------------------------------------------
    def emotion_vector(self, emotion: torch.Tensor, level: torch.Tensor, *, style_from: str = "bank",
                       style: torch.Tensor | None = None, style_mask: torch.Tensor | None = None,
                       exemplar: int | None = None) -> torch.Tensor:
        """(B, dim) condition for labels (B,) and levels (B,): label term plus the style term from `style_from`
        (bank; label = none; clip = the style encoder of `style` (B, S, 52 raw) where `style_mask` has frames)."""
        if style_from not in STYLE_SOURCES:
            raise ValueError(f"style_from must be one of {STYLE_SOURCES}, not {style_from!r}")
        embedding = None
        if style_from == "bank":
            embedding = self.bank_style(emotion, level, exemplar)
        elif style_from == "clip":
            if style is None or style_mask is None or not bool(style_mask.any(1).all()):
                raise ValueError("style_from='clip' needs a reference clip with frames for every batch item")
            embedding = self.denoiser.encode_style(self.normalize(style) * style_mask[..., None], style_mask)
        return self.denoiser.emotion_vector(emotion, level, embedding)

    def batch_emotion_vector(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The batch's own condition: its `emotion_vector` if given, else its labels plus its style clip where the
        clip has frames (label only where not)."""
        if "emotion_vector" in batch:
            return batch["emotion_vector"]
        mask = batch["style_mask"]
        embedding = self.denoiser.encode_style(self.normalize(batch["style"]) * mask[..., None], mask)
        return self.denoiser.emotion_vector(batch["emotion"], batch["level"], embedding, drop_style=~mask.any(1))

    def conditions(self, batch: dict[str, torch.Tensor], emotion_vector: torch.Tensor,
                   context: torch.Tensor | None = None, context_mask: torch.Tensor | None = None) -> dict:
        b, frames = batch["audio"].shape[:2]
        device = batch["audio"].device
        return {"audio": batch["audio"], "emotion_vector": emotion_vector, "init": self.normalize(batch["init"]),
                "init_known": batch.get("init_known", torch.ones(b, dtype=torch.bool, device=device)),
                "context": context if context is not None else batch["audio"].new_zeros(b, frames, NUM_BLENDSHAPES),
                "context_mask": (context_mask if context_mask is not None
                                 else torch.zeros(b, frames, dtype=torch.bool, device=device))}

    # --- sampling ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample_window(self, cond: dict[str, torch.Tensor], *, steps: int | None = None,
                      guidance_scale: float | None = None, generator: torch.Generator | None = None,
                      sampler: str | None = None) -> torch.Tensor:
        """One window in standardised space by `sampler` (default: the model's) over `steps` timesteps; `steps=0`
        runs full DDPM. The conditions are encoded once here, not at every step (and the adaLN modulations'
        weights gathered once); with guidance, the conditional and unconditional halves share the frame encoding
        and the initial expression's."""
        scale = self.guidance_scale if guidance_scale is None else guidance_scale
        b, frames = cond["audio"].shape[:2]
        denoiser = self.denoiser
        vector = cond["emotion_vector"]
        guided = not (isinstance(scale, (int, float)) and scale == 1)
        if guided:
            null_vector = denoiser.null_vector(b)
            vector = torch.cat([vector, null_vector[:, None].expand_as(vector) if vector.ndim == 3 else null_vector])
        encoded_frames = denoiser.encode_frames(cond)
        condition = denoiser.encode_condition(vector, cond["init"], cond.get("init_known"))
        modulation_weights = denoiser.modulation_weights()
        shape = (b, frames, NUM_BLENDSHAPES)
        fixed = (cond["context_mask"][..., None].expand(shape), cond["context"])

        def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            out = denoiser.denoise_encoded(x_t, t, encoded_frames, condition, modulation_weights)
            if not guided:
                return out
            out_cond, out_uncond = out.chunk(2)
            return classifier_free_guidance(out_uncond, out_cond, scale)

        steps = self.sample_steps if steps is None else steps
        name = "ddpm" if steps == 0 else self.sampler if sampler is None else sampler
        device = cond["audio"].device
        bf16 = samples_in_bf16(self.sampling_precision, device, b, device.type == "cpu" and cpu_has_native_bf16())
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            return sample_by_name(name, denoise, self.noise_schedule(), shape, self.prediction, steps,
                                  generator=generator, x0_fixed=fixed).float()

    @torch.no_grad()
    def generate(self, batch: dict[str, torch.Tensor], *, steps: int | None = None,
                 guidance_scale: float | None = None, generator: torch.Generator | None = None,
                 sampler: str | None = None) -> torch.Tensor:
        """Blendshapes (B, T, 52) for audio of any length T: overlapping windows, each continuing the previous
        one's last `context_frames` frames (autoregressive), or independent windows from the initial expression.

        The emotion comes from `batch["emotion_vector"]` ((B, dim), or (B, T, dim) to change over time) when
        given, else from the batch's labels and style clip."""
        frames = batch["audio"].shape[1]
        window, context_frames = self.generation_window, self.context_frames
        hop = window - context_frames if self.autoregressive else window
        emotion_vector = self.batch_emotion_vector(batch)
        out = batch["audio"].new_zeros(batch["audio"].shape[0], frames, NUM_BLENDSHAPES)
        start = 0
        while True:
            stop = min(start + window, frames)
            piece = dict(batch, audio=batch["audio"][:, start:stop])
            context = context_mask = None
            if self.autoregressive and start > 0:
                context = out.new_zeros(out.shape[0], stop - start, NUM_BLENDSHAPES)
                context[:, :context_frames] = out[:, start:start + context_frames]
                context_mask = torch.zeros(out.shape[0], stop - start, dtype=torch.bool, device=out.device)
                context_mask[:, :context_frames] = True
                piece["init"] = self.denormalize(out[:, start])
                piece["init_known"] = torch.ones(out.shape[0], dtype=torch.bool, device=out.device)
            vector = emotion_vector[:, start:stop] if emotion_vector.ndim == 3 else emotion_vector
            cond = self.conditions(piece, vector, context, context_mask)
            out[:, start:stop] = self.sample_window(cond, steps=steps, guidance_scale=guidance_scale,
                                                    generator=generator, sampler=sampler)
            if stop == frames:
                break
            start += hop
        return self.denormalize(out)
