"""pytorch-fid's own InceptionV3 on a seeded random-weight FID Inception (metrics.fid), for parity tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytorch_fid.inception import InceptionV3

from metrics.fid import write_seeded_fid_inception as seeded_inception_home  # noqa: F401  (for the tests)


def reference_inception(home: Path, dims: int) -> InceptionV3:
    """pytorch-fid's own InceptionV3 for `dims`, loaded from `home`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCH_HOME", str(home))
        return InceptionV3([InceptionV3.BLOCK_INDEX_BY_DIM[dims]]).eval()
