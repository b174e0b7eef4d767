"""LPIPS (the `lpips` package's network) as a torchmetrics Metric averaged over image pairs."""

from __future__ import annotations

import warnings

import lpips
import torch
from torch import nn
from torchmetrics import Metric

from dtl_foundation.weights import resolve_weights

BACKBONE_WEIGHTS = {"alex": "alexnet", "vgg": "vgg16"}


def lpips_network(net: str, backbone_state_dict: dict[str, torch.Tensor]) -> lpips.LPIPS:
    """lpips.LPIPS with its v0.1 linear heads (shipped in the wheel) and the backbone from a torchvision state_dict.

    The backbone is built untrained (pnet_rand=True, so torchvision downloads nothing) and then given the torchvision
    `features.<i>.*` tensors, which lpips keeps as `net.slice<k>.<i>.*`.
    """
    if net not in BACKBONE_WEIGHTS:
        raise ValueError(f"net must be one of {sorted(BACKBONE_WEIGHTS)}, got {net!r}")
    with warnings.catch_warnings():
        # lpips still passes torchvision's deprecated `pretrained=` argument.
        warnings.filterwarnings("ignore", message=".*(pretrained|weight enum).*", category=UserWarning)
        model = lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
    backbone = {name: backbone_state_dict["features." + name.split(".", 1)[1]] for name in model.net.state_dict()}
    model.net.load_state_dict(backbone)
    return model.eval()


def pretrained_lpips_network(net: str) -> lpips.LPIPS:
    """LPIPS with the registry-verified ImageNet backbone from torchvision's cache; raises when the file is absent."""
    path = resolve_weights(BACKBONE_WEIGHTS[net])
    return lpips_network(net, torch.load(path, map_location="cpu", weights_only=True))


class LPIPS(Metric):
    """Mean LPIPS distance over all pairs seen; lower is more similar.

    `update(preds, target)` takes (B, 3, H, W) RGB in [-1, 1], or in [0, 1] with normalize=True (lpips' own flag).
    weights: "pretrained" (linear heads from the wheel, backbone from the registry's sha-checked torchvision file, never
    downloaded) or an lpips.LPIPS module.
    """

    is_differentiable = True
    higher_is_better = False
    full_state_update = False

    def __init__(
        self, net: str = "alex", weights: str | nn.Module = "pretrained", normalize: bool = False, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(weights, str):
            if weights != "pretrained":
                raise ValueError(f"weights must be 'pretrained' or an lpips.LPIPS module, got {weights!r}")
            weights = pretrained_lpips_network(net)
        self.network = weights.eval().requires_grad_(False)
        self.normalize = normalize
        self.add_state("distance_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("pair_count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def train(self, mode: bool = True) -> LPIPS:
        # lpips' linear heads carry dropout: keep the network in eval mode whatever the enclosing module does.
        super().train(mode)
        self.network.eval()
        return self

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.shape != target.shape or preds.ndim != 4 or preds.shape[1] != 3:
            raise ValueError(f"expected two (B, 3, H, W) batches, got {tuple(preds.shape)} and {tuple(target.shape)}")
        distances = self.network(preds.float(), target.float(), normalize=self.normalize)
        self.distance_sum += distances.double().sum()
        self.pair_count += distances.numel()

    def compute(self) -> torch.Tensor:
        return (self.distance_sum / self.pair_count).float()
