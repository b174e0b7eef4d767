"""A generated take in a real consumer: Blender (headless) imports `dtl generate blendshapes`'s Live Link Face CSV
onto the project's glTF head as shape-key keyframes (tools/blender_import_live_link.py); its curves equal the CSV."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dtl_foundation.arkit import ARKIT_NAMES
from dtl_foundation.arkit_live_link import read_live_link_csv
from experiments.generate.command import main as generate
from rendering.default_rig import default_rig
from rendering.gltf_writer import write_glb

IMPORTER = Path(__file__).resolve().parents[1] / "tools" / "blender_import_live_link.py"


def blender_curves(head: Path, take: Path, fps: float, out: Path) -> dict:
    done = subprocess.run(["blender", "--background", "--factory-startup", "--python", str(IMPORTER), "--",
                           str(head), str(take), str(fps), "--curves", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and out.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("fps", [24.0, 29.97])
def test_blender_shape_key_curves_equal_the_generated_csv(tiny_emodiff_run, tiny_corpus, tmp_path, fps, capsys):
    speech = sorted(tiny_corpus.glob("W002/audio/sad/level_3/*.wav"))[0]
    assert generate(["blendshapes", "--checkpoint", str(tiny_emodiff_run), "--audio", str(speech), "--emotion", "sad",
                     "--level", "3", "--steps", "2", "--fps", str(fps), "--out", str(tmp_path)]) == 0
    take_path = tmp_path / f"{speech.stem}_sad_level_3.csv"
    head = write_glb(default_rig(cache_dir=tmp_path / "rigs"), tmp_path / "head.glb")
    result = blender_curves(head, take_path, fps, tmp_path / "curves.json")
    take = read_live_link_csv(take_path, fps=fps)
    assert result["frames"] == list(range(len(take.blendshapes)))
    assert result["fps"] == pytest.approx(fps, rel=1e-6)
    assert sorted(result["curves"]) == sorted(ARKIT_NAMES)
    for i, name in enumerate(ARKIT_NAMES):
        np.testing.assert_allclose(result["curves"][name], take.blendshapes[:, i], atol=1e-6, err_msg=name)
    moving = take.blendshapes.std(axis=0) > 1e-3
    assert moving.sum() > 10  # a real take: the comparison is not of constants


def test_blender_reads_jaw_left_from_the_jaw_left_column(tmp_path):
    """A take with only jawLeft raised keys only Blender's jawLeft shape key (columns go by name, not index)."""
    from dtl_foundation.arkit import INDEX
    from dtl_foundation.arkit_live_link import LiveLinkTrack, write_live_link_csv

    values = np.zeros((3, 52), np.float32)
    values[:, INDEX["jawLeft"]] = [0.2, 0.6, 1.0]
    write_live_link_csv(tmp_path / "take.csv", LiveLinkTrack(values, fps=30.0))
    head = write_glb(default_rig(cache_dir=tmp_path / "rigs"), tmp_path / "head.glb")
    curves = blender_curves(head, tmp_path / "take.csv", 30.0, tmp_path / "curves.json")["curves"]
    assert curves["jawLeft"] == pytest.approx([0.2, 0.6, 1.0]) and curves["jawRight"] == [0.0, 0.0, 0.0]
