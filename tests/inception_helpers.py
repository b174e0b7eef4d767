"""A FID Inception with seeded random weights under the official file name, for parity tests against pytorch-fid."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pytorch_fid.inception import InceptionV3
from torch import nn

from metrics.fid import fid_inception_architecture
from metrics.weights import REGISTRY


def seeded_inception_home(home: Path) -> Path:
    """A TORCH_HOME whose hub cache holds a seeded random-weight FID Inception under the official file name.

    Convolutions get He-normal weights so that pool3 features are O(0.1) rather than the ~1e-8 of PyTorch's default
    init; pytorch-fid's own InceptionV3 then loads the file exactly as it would the published one.
    """
    torch.manual_seed(0)
    network = fid_inception_architecture()
    for module in network.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    checkpoints = home / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(network.state_dict(), checkpoints / REGISTRY["fid_inception"].filename)
    return home


def reference_inception(home: Path, dims: int) -> InceptionV3:
    """pytorch-fid's own InceptionV3 for `dims`, loaded from `home`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(home))
        return InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[dims]]).eval()
