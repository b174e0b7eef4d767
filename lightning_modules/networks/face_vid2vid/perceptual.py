"""Multi-scale perceptual loss on VGG19 features (Johnson et al. 2016; face-vid2vid's weights: relu1_1..relu5_1).

The ImageNet VGG19 comes from torchvision's cache ($TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth), checked against
the sha256 prefix torch.hub embeds in its name, never downloaded: a missing file is a MissingWeightsError saying
where to put it.
"""

from __future__ import annotations

import torch
from torch import nn

from dtl_foundation.weights import REGISTRY, verified_path

VGG19_WEIGHTS = REGISTRY["vgg19"]
# torchvision vgg19.features indices that end at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
SLICE_ENDS = (2, 7, 12, 21, 30)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """Frozen VGG19 returning the five relu*_1 activations of an image in [0, 1]."""

    def __init__(self, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        from torchvision.models import vgg19

        features = vgg19(weights=None).features
        if state_dict is None:
            state_dict = torch.load(verified_path(VGG19_WEIGHTS), map_location="cpu", weights_only=True)
        features.load_state_dict({k[len("features."):]: v for k, v in state_dict.items() if k.startswith("features.")})
        starts = (0, *SLICE_ENDS[:-1])
        self.slices = nn.ModuleList(nn.Sequential(*features[a:b]) for a, b in zip(starts, SLICE_ENDS))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "VGG19Features":
        return super().train(False)  # always frozen

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        x = (image - self.mean) / self.std
        out = []
        for block in self.slices:
            x = block(x)
            out.append(x)
        return out


def perceptual_loss(vgg: VGG19Features, generated: dict[float, torch.Tensor], real: dict[float, torch.Tensor],
                    layer_weights: tuple[float, ...]) -> torch.Tensor:
    """sum over pyramid scales and VGG layers of weight x mean |phi(generated) - phi(real)|."""
    total = generated[next(iter(generated))].new_zeros(())
    for scale in generated:
        fake, true = vgg(generated[scale]), vgg(real[scale])
        for weight, a, b in zip(layer_weights, fake, true):
            if weight:
                total = total + weight * (a - b.detach()).abs().mean()
    return total
