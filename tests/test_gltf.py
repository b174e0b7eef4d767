"""glTF/GLB avatars: ARKit name aliases, a round trip of the default rig, and a hand-made file with node transforms
and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dtl_foundation.arkit import ARKIT_NAMES, INDEX, NUM_BLENDSHAPES
from rendering.default_rig import default_rig
from rendering.gl_renderer import FaceRenderer
from rendering.gltf_loader import GltfError, arkit_name, load_gltf_rig
from rendering.gltf_writer import write_glb
from rendering.rig import FaceRig


@pytest.fixture(scope="module")
def rig(tmp_path_factory) -> FaceRig:
    return default_rig(cache_dir=tmp_path_factory.mktemp("rigs"))


@pytest.mark.parametrize("name, expected", [
    ("jawOpen", "jawOpen"), ("JawOpen", "jawOpen"), ("jaw_open", "jawOpen"), ("Jaw_Open", "jawOpen"),
    ("A25_Jaw_Open", "jawOpen"), ("blendShape1.jawOpen", "jawOpen"), ("EyeBlinkLeft", "eyeBlinkLeft"),
    ("eyeBlink_L", "eyeBlinkLeft"), ("mouthSmile.R", "mouthSmileRight"), ("A38_Mouth_Smile_Left", "mouthSmileLeft"),
    ("eyeLookIn_R", "eyeLookInRight"), ("Mouth_Roll_In_Lower", "mouthRollLower"), ("cheekPuff_L", "cheekPuff"),
    ("T10_Tongue_Out", "tongueOut"), ("mouthFunnel", "mouthFunnel"), ("viseme_aa", None), ("Fcl_ALL_Joy", None),
])
def test_arkit_name_aliases(name, expected):
    assert arkit_name(name) == expected


def test_glb_round_trip_with_alias_names_and_missing_report(rig, tmp_path):
    dropped = ["tongueOut", "cheekSquintLeft", "noseSneerRight"]
    aliases = {"jawOpen": "A25_Jaw_Open", "mouthSmileLeft": "mouthSmile_L", "eyeBlinkRight": "Eye_Blink_R",
               "browInnerUp": "blendShape1.browInnerUp", "mouthClose": "customCorrective"}
    shapes = [n for n in ARKIT_NAMES if n not in dropped]
    path = write_glb(rig, tmp_path / "avatar.glb", target_names=aliases, shapes=shapes, translation=(0.0, 1.6, 0.0))
    loaded, report = load_gltf_rig(path)
    assert report.missing == [n for n in ARKIT_NAMES if n in dropped + ["mouthClose"]] == loaded.missing
    assert report.unmatched == ["customCorrective"]
    assert report.matched["jawOpen"] == ["A25_Jaw_Open"] and report.matched["eyeBlinkRight"] == ["Eye_Blink_R"]
    assert np.allclose(loaded.vertices, rig.vertices + [0.0, 1.6, 0.0], atol=1e-6)
    for name in ARKIT_NAMES:
        expected = 0.0 if name in report.missing else rig.deltas[INDEX[name]]
        assert np.allclose(loaded.deltas[INDEX[name]], expected, atol=1e-7), name
    assert np.allclose(loaded.colors, rig.colors, atol=2e-3)
    coeffs = np.zeros((2, NUM_BLENDSHAPES))
    coeffs[1, INDEX["jawOpen"]] = 1.0
    with FaceRenderer(loaded, 64) as renderer:  # framed from the moving vertices: no landmarks in a GLB
        frames = renderer.render(coeffs).numpy().astype(int)
    assert (np.abs(frames[1] - frames[0]).sum(-1) > 24).sum() > 20
    in_centimetres, _ = load_gltf_rig(write_glb(rig, tmp_path / "cm.glb", scale=100.0))
    assert np.allclose(in_centimetres.vertices, rig.vertices * 100, rtol=1e-5, atol=1e-5)
    with FaceRenderer(in_centimetres, 64) as renderer:  # the shot does not depend on the units
        assert np.abs(renderer.render(coeffs).numpy().astype(int) - frames).mean() < 1.0


def _hand_made_glb(path: Path, names: list[str]) -> None:
    """A two-triangle GLB written with pygltflib directly: dense targets, a rotated and scaled node."""
    import pygltflib

    positions = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], "<f4")
    indices = np.array([0, 1, 2, 0, 2, 3], "<u2")
    targets = [np.eye(4, 3, dtype="<f4") * (k + 1) * 0.1 for k in range(len(names))]
    blob = positions.tobytes() + indices.tobytes() + b"".join(t.tobytes() for t in targets)
    views = [pygltflib.BufferView(buffer=0, byteOffset=0, byteLength=48),
             pygltflib.BufferView(buffer=0, byteOffset=48, byteLength=12)]
    accessors = [pygltflib.Accessor(bufferView=0, componentType=5126, count=4, type="VEC3", min=[0, 0, 0],
                                    max=[1, 1, 0]),
                 pygltflib.Accessor(bufferView=1, componentType=5123, count=6, type="SCALAR")]
    for k in range(len(names)):
        views.append(pygltflib.BufferView(buffer=0, byteOffset=60 + 48 * k, byteLength=48))
        accessors.append(pygltflib.Accessor(bufferView=len(views) - 1, componentType=5126, count=4, type="VEC3"))
    primitive = pygltflib.Primitive(attributes=pygltflib.Attributes(POSITION=0), indices=1,
                                    targets=[pygltflib.Attributes(POSITION=2 + k) for k in range(len(names))])
    quarter_turn_about_y = [0.0, np.sin(np.pi / 4), 0.0, np.cos(np.pi / 4)]
    gltf = pygltflib.GLTF2(scenes=[pygltflib.Scene(nodes=[0])], scene=0,
                           nodes=[pygltflib.Node(children=[1], scale=[2.0, 2.0, 2.0]),
                                  pygltflib.Node(mesh=0, rotation=quarter_turn_about_y)],
                           meshes=[pygltflib.Mesh(primitives=[primitive], extras={"targetNames": names})],
                           accessors=accessors, bufferViews=views, buffers=[pygltflib.Buffer(byteLength=len(blob))])
    gltf.set_binary_blob(blob)
    gltf.save_binary(str(path))


def test_hand_made_glb_with_node_transforms_and_errors(tmp_path):
    path = tmp_path / "quad.glb"
    _hand_made_glb(path, ["JawOpen", "mouth_smile_left", "viseme_O"])
    rig, report = load_gltf_rig(path)
    assert report.matched == {"jawOpen": ["JawOpen"], "mouthSmileLeft": ["mouth_smile_left"]}
    assert report.unmatched == ["viseme_O"] and len(report.missing) == 50
    # node scale 2 then a quarter turn about +y: x -> -z
    assert np.allclose(rig.vertices[1], [0, 0, -2], atol=1e-6) and np.allclose(rig.vertices[3], [0, 2, 0], atol=1e-6)
    assert np.allclose(rig.deltas[INDEX["jawOpen"], 0], [0, 0, -0.2], atol=1e-6)  # (0.1, 0, 0) transformed
    assert np.allclose(rig.deltas[INDEX["mouthSmileLeft"], 1], [0, 0.4, 0], atol=1e-6)

    _hand_made_glb(tmp_path / "visemes.glb", ["viseme_aa", "viseme_O"])
    with pytest.raises(GltfError, match="visemes.glb.*no morph target names an ARKit"):
        load_gltf_rig(tmp_path / "visemes.glb")
    (tmp_path / "broken.glb").write_bytes(b"glTF\x02\x00\x00\x00garbage")
    with pytest.raises(GltfError, match="broken.glb"):
        load_gltf_rig(tmp_path / "broken.glb")
    with pytest.raises(GltfError, match="no such file"):
        load_gltf_rig(tmp_path / "absent.glb")
