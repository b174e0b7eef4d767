"""`dtl data extract --backend mediapipe`: blendshape scores by name, the model file checked, its pose as the renderer's
angles, and the CLI's message without the model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dtl_foundation.arkit import INDEX, MEDIAPIPE_NAMES
from datamodules.extraction.landmark_fit import RigCamera
from datamodules.extraction.mediapipe_backend import (MODEL_URL, MediaPipeBackend, MediaPipeUnavailableError,
                                                      matrix_to_pose, resolve_model, scores_to_arkit)

REPO = Path(__file__).resolve().parents[1]


def test_mediapipe_scores_are_mapped_by_name():
    scores = np.arange(len(MEDIAPIPE_NAMES), dtype=np.float32) / 100  # each shape its own value
    mapped = scores_to_arkit(list(MEDIAPIPE_NAMES), scores)
    for i, name in enumerate(MEDIAPIPE_NAMES):
        if name != "_neutral":
            assert mapped[INDEX[name]] == pytest.approx(scores[i])
    assert mapped[INDEX["tongueOut"]] == 0.0
    order = np.random.default_rng(1).permutation(len(MEDIAPIPE_NAMES))  # any order gives the same track
    np.testing.assert_array_equal(scores_to_arkit([MEDIAPIPE_NAMES[i] for i in order], scores[order]), mapped)


def test_mediapipe_model_is_required_and_checked(tmp_path, monkeypatch):
    monkeypatch.delenv("DTL_MEDIAPIPE_TASK", raising=False)
    monkeypatch.delenv("DTL_MEDIAPIPE_TASK_SHA256", raising=False)
    with pytest.raises(MediaPipeUnavailableError, match="face_landmarker.task") as missing:
        resolve_model(None, None)
    assert MODEL_URL in str(missing.value)
    model = tmp_path / "face_landmarker.task"
    with pytest.raises(MediaPipeUnavailableError, match="no such model file"):
        resolve_model(model, "0" * 64)
    model.write_bytes(b"a model file")
    with pytest.raises(MediaPipeUnavailableError, match="expected sha256"):
        resolve_model(model, None)
    with pytest.raises(MediaPipeUnavailableError, match="differs from the expected"):
        resolve_model(model, "0" * 64)
    import hashlib

    digest = hashlib.sha256(b"a model file").hexdigest()
    assert resolve_model(model, digest) == model
    try:
        import mediapipe  # noqa: F401  (whether it is installed)
    except ImportError:
        with pytest.raises(MediaPipeUnavailableError, match=r"pip install -e '\.\[mediapipe\]'"):
            MediaPipeBackend(model, digest)


def test_mediapipe_rotation_matrix_reads_back_as_renderer_angles():
    angles = torch.tensor([[12.0, -7.0, 4.0]], dtype=torch.float64)
    matrix = np.eye(4)
    matrix[:3, :3] = RigCamera.rotation(angles)[0].numpy() * 2.5  # MediaPipe's matrices may carry a scale
    matrix[:3, 3] = [1.0, -2.0, -40.0]
    pose = matrix_to_pose(matrix)
    np.testing.assert_allclose(pose[:3], angles[0].numpy(), atol=1e-9)
    np.testing.assert_allclose(pose[3:], [0.01, -0.02, -0.4])


def test_cli_extract_reports_a_missing_mediapipe_model(tmp_path):
    corpus = tmp_path / "corpus" / "M001" / "video" / "front" / "neutral" / "level_1"
    corpus.mkdir(parents=True)
    (corpus / "001.mp4").write_bytes(b"x")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DTL_MEDIAPIPE")}
    done = subprocess.run([sys.executable, "-m", "experiments.cli", "data", "extract", str(tmp_path / "corpus"),
                           "--backend", "mediapipe"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "face_landmarker.task" in done.stderr and MODEL_URL in done.stderr
