"""face-vid2vid networks, the reference checkpoint layout, relative motion transfer and the portrait crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightning_modules.networks.face_vid2vid import FaceVid2Vid, MultiScaleDiscriminator
from lightning_modules.networks.face_vid2vid.checkpoint_layout import load_reference_state, map_reference_key
from lightning_modules.networks.face_vid2vid.head_expression import (bins_to_degrees, rotation_matrix,
                                                                     transform_keypoints)
from rendering.motion_transfer import MotionTransfer, hull_area, movement_scale, relative_keypoints

TINY = dict(image_size=64, num_kp=10, feature_channels=8, feature_depth=8,
            generator=dict(block_expansion=16, num_down_blocks=2, num_resblocks=2),
            kp_detector=dict(block_expansion=16, num_blocks=3, max_features=64, volume_depth=8, scale_factor=0.5),
            he_estimator=dict(block_expansion=16, widths=[32, 64, 128, 128], blocks=[1, 1, 1, 1]),
            dense_motion=dict(block_expansion=16, num_blocks=2, max_features=64, compress=2))

# Read from zhanglonghao1992/One-Shot_Free-View_Neural_Talking_Head_Synthesis (config/vox-256.yaml, modules/*.py):
# the state-dict keys and shapes of its generator, kp_detector, he_estimator and discriminator for vox-256.
REFERENCE_KEYS = {
    "generator": {
        "first.conv.weight": (64, 3, 7, 7),
        "down_blocks.1.conv.weight": (256, 128, 3, 3),
        "second.weight": (512, 256, 1, 1),
        "resblocks_3d.3dr5.conv2.weight": (32, 32, 3, 3, 3),
        "third.conv.weight": (256, 512, 3, 3),
        "fourth.weight": (256, 256, 1, 1),
        "resblocks_2d.2dr0.norm1.running_var": (256,),
        "up_blocks.0.conv.weight": (128, 256, 3, 3),
        "up_blocks.1.conv.weight": (64, 128, 3, 3),
        "final.weight": (3, 64, 7, 7),
        "dense_motion_network.hourglass.encoder.down_blocks.0.conv.weight": (64, 80, 3, 3, 3),
        "dense_motion_network.hourglass.encoder.down_blocks.4.conv.weight": (1024, 512, 3, 3, 3),
        "dense_motion_network.hourglass.decoder.up_blocks.0.conv.weight": (512, 1024, 3, 3, 3),
        "dense_motion_network.hourglass.decoder.up_blocks.4.conv.weight": (32, 128, 3, 3, 3),
        "dense_motion_network.hourglass.decoder.conv.weight": (112, 112, 3, 3, 3),
        "dense_motion_network.mask.weight": (16, 112, 7, 7, 7),
        "dense_motion_network.compress.weight": (4, 32, 1, 1, 1),
        "dense_motion_network.norm.weight": (4,),
        "dense_motion_network.occlusion.weight": (1, 1792, 7, 7),
    },
    "kp_detector": {
        "predictor.down_blocks.down0.conv.weight": (64, 3, 3, 3),
        "predictor.down_blocks.down4.conv.weight": (1024, 512, 3, 3),
        "predictor.conv.weight": (16384, 1024, 1, 1),
        "predictor.up_blocks.up0.conv.weight": (512, 1024, 3, 3, 3),
        "predictor.up_blocks.up4.conv.weight": (32, 64, 3, 3, 3),
        "kp.weight": (15, 32, 3, 3, 3),
        "down.weight": (3, 1, 13, 13),
    },
    "he_estimator": {
        "conv1.weight": (64, 3, 7, 7),
        "norm1.weight": (64,),
        "conv2.weight": (256, 64, 1, 1),
        "block1.b1_2.conv3.weight": (256, 64, 1, 1),
        "conv3.weight": (512, 256, 1, 1),
        "block2.skip.weight": (512, 512, 1, 1),
        "block2.norm4.weight": (512,),
        "block3.b3_2.conv2.weight": (128, 128, 3, 3),
        "conv4.weight": (1024, 512, 1, 1),
        "block4.conv2.weight": (256, 256, 3, 3),
        "block5.b5_4.conv1.weight": (256, 1024, 1, 1),
        "conv5.weight": (2048, 1024, 1, 1),
        "block6.skip.weight": (2048, 2048, 1, 1),
        "block7.b7_1.conv3.weight": (2048, 512, 1, 1),
        "fc_roll.weight": (66, 2048),
        "fc_pitch.weight": (66, 2048),
        "fc_yaw.bias": (66,),
        "fc_t.weight": (3, 2048),
        "fc_exp.weight": (45, 2048),
    },
    "discriminator": {
        "discs.1.down_blocks.0.conv.weight_orig": (64, 3, 4, 4),
        "discs.1.down_blocks.0.conv.weight_u": (64,),
        "discs.1.down_blocks.1.norm.weight": (128,),
        "discs.1.down_blocks.3.conv.weight_v": (4096,),
        "discs.1.conv.weight_orig": (1, 512, 1, 1),
    },
}
# Whole state dicts of the reference at vox-256: (number of tensors, number of values).
REFERENCE_TOTALS = {"generator": (304, 53_116_322), "kp_detector": (75, 41_946_516),
                    "he_estimator": (402, 30_315_182), "discriminator": (26, 2_767_538)}
OUR_PARTS = {"generator": ("appearance.", "dense_motion.", "decoder."), "kp_detector": ("kp_detector.",),
             "he_estimator": ("he_estimator.",), "discriminator": ("discriminator.",)}


@pytest.fixture(scope="module")
def default_state() -> dict[str, tuple[int, ...]]:
    torch.manual_seed(0)
    model = FaceVid2Vid()
    disc = MultiScaleDiscriminator(scales=(1,), block_expansion=32, num_blocks=4, max_features=512, sn=True)
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state.update({f"discriminator.{k}": tuple(v.shape) for k, v in disc.state_dict().items()})
    return state


def test_default_config_maps_onto_the_reference_layout(default_state):
    for part, keys in REFERENCE_KEYS.items():
        for key, shape in keys.items():
            ours = map_reference_key(part, key)
            assert ours in default_state, f"{part}.{key} -> {ours} has no tensor here"
            assert default_state[ours] == shape, f"{part}.{key}: reference {shape}, ours {default_state[ours]}"
    # The reference names the layer that predicts yaw fc_roll: it must land on our fc_yaw.
    assert map_reference_key("he_estimator", "fc_roll.weight") == "he_estimator.fc_yaw.weight"
    assert map_reference_key("he_estimator", "fc_yaw.bias") == "he_estimator.fc_roll.bias"
    assert map_reference_key("generator", "second.weight") == "appearance.second.weight"
    for part, (count, values) in REFERENCE_TOTALS.items():
        mine = {k: s for k, s in default_state.items() if k.startswith(OUR_PARTS[part])}
        assert len(mine) == count, part
        assert sum(int(np.prod(s)) for s in mine.values()) == values, part


def test_loading_a_reference_checkpoint_copies_tensors_and_reports_mismatches():
    torch.manual_seed(0)
    model = FaceVid2Vid(**TINY)
    state = model.state_dict()
    yaw_layer = torch.randn_like(state["he_estimator.fc_yaw.weight"])
    checkpoint = {
        "generator": {"second.weight": torch.full_like(state["appearance.second.weight"], 0.5),
                      "dense_motion_network.mask.bias": torch.full_like(state["dense_motion.mask.bias"], -1.0),
                      "final.weight": torch.zeros(3, 99, 7, 7),  # a shape of another config
                      "decoder.fc.weight": torch.zeros(4)},  # SadTalker's SPADE decoder: no counterpart
        "he_estimator": {"fc_roll.weight": yaw_layer},
    }
    report = load_reference_state({"model": model}, checkpoint)
    after = model.state_dict()
    assert torch.equal(after["appearance.second.weight"], checkpoint["generator"]["second.weight"])
    assert torch.equal(after["dense_motion.mask.bias"], checkpoint["generator"]["dense_motion_network.mask.bias"])
    assert torch.equal(after["he_estimator.fc_yaw.weight"], yaw_layer)
    assert torch.equal(after["decoder.final.weight"], state["decoder.final.weight"])  # left as it was
    assert sorted(report.loaded) == ["generator.dense_motion_network.mask.bias", "generator.second.weight",
                                     "he_estimator.fc_roll.weight"]
    assert report.shape_mismatch == [("generator.final.weight", (3, 99, 7, 7), (3, 16, 7, 7))]
    assert report.unmapped == ["generator.decoder.fc.weight"]
    with pytest.raises(ValueError, match="not a face-vid2vid checkpoint"):
        load_reference_state({"model": model}, {"state_dict": {}})


def test_tiny_network_shapes_and_ranges():
    torch.manual_seed(0)
    model = FaceVid2Vid(**TINY).eval()
    source, driving = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = model(source, driving)
    assert out["prediction"].shape == (2, 3, 64, 64)
    assert 0 <= float(out["prediction"].min()) and float(out["prediction"].max()) <= 1
    assert out["kp_canonical"].shape == (2, 10, 3) and float(out["kp_canonical"].abs().max()) <= 1
    assert out["occlusion"].shape == (2, 1, 16, 16)
    assert out["deformation"].shape == (2, 8, 16, 16, 3)
    assert torch.allclose(out["mask"].sum(1), torch.ones(2, 8, 16, 16), atol=1e-5)
    with pytest.raises(ValueError, match="does not halve"):
        FaceVid2Vid(**{**TINY, "image_size": 40})


def test_pose_bins_rotation_and_keypoint_transform():
    uniform = torch.zeros(1, 66)
    assert bins_to_degrees(uniform).item() == pytest.approx(3 * 32.5 - 99)
    peaked = torch.full((1, 66), -1e4)
    peaked[0, 33] = 0
    assert bins_to_degrees(peaked).item() == pytest.approx(0.0)
    r = rotation_matrix(torch.tensor([90.0]), torch.tensor([0.0]), torch.tensor([0.0]))[0]
    assert torch.allclose(r @ torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 0, -1]), atol=1e-6)
    r = rotation_matrix(torch.tensor([0.0]), torch.tensor([90.0]), torch.tensor([0.0]))[0]
    assert torch.allclose(r @ torch.tensor([0.0, 1, 0]), torch.tensor([0.0, 0, 1]), atol=1e-6)
    canonical = torch.randn(2, 5, 3)
    head = {"yaw": peaked.expand(2, -1), "pitch": peaked.expand(2, -1), "roll": peaked.expand(2, -1),
            "t": torch.tensor([[0.1, 0.0, 0.0], [0.0, 0.0, 0.0]]), "exp": torch.zeros(2, 5, 3)}
    head["exp"][1, 2] = torch.tensor([0.0, 0.2, 0.0])
    posed = transform_keypoints(canonical, head)
    assert torch.allclose(posed[0], canonical[0] + torch.tensor([0.1, 0, 0]), atol=1e-5)
    assert torch.allclose(posed[1, 2], canonical[1, 2] + torch.tensor([0, 0.2, 0]), atol=1e-5)


def test_relative_motion_on_numbers():
    square = np.array([[0, 0, 0.3], [1, 0, 0.1], [1, 1, 0.2], [0, 1, 0.0], [0.5, 0.5, 0.9]])
    assert hull_area(square) == pytest.approx(1.0)
    assert movement_scale(square * 2, square) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="span no area"):
        hull_area(np.array([[0, 0], [1, 1], [2, 2]]))
    source = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]])
    first = torch.tensor([[[5.0, 5.0, 5.0], [6.0, 6.0, 6.0]]])
    driving = first + torch.tensor([[[0.1, -0.2, 0.0], [0.0, 0.3, 0.0]]])
    moved = relative_keypoints(source, driving, first, scale=2.0)
    assert torch.allclose(moved, torch.tensor([[[0.2, -0.4, 0.0], [1.0, 1.6, 1.0]]]))
    assert torch.equal(relative_keypoints(source, first, first), source)


def test_motion_transfer_starts_from_the_source_pose():
    torch.manual_seed(0)
    model = FaceVid2Vid(**TINY).eval()
    source = torch.rand(3, 64, 64)
    driving = torch.rand(5, 3, 64, 64)
    transfer = MotionTransfer(model, source, adapt_scale=True, batch_size=2)
    frames = torch.cat(list(transfer(driving)))
    assert frames.shape == (5, 3, 64, 64)
    with torch.no_grad():
        encoded = model.encode_source(source[None])
        unmoved = model.generate(encoded.volume, encoded.keypoints, encoded.keypoints)["prediction"]
    # Relative mode: the first driving frame is the reference, so frame 0 shows the source's own pose and expression.
    assert torch.allclose(frames[0], unmoved[0], atol=1e-5)
    assert transfer.scale > 0 and float((frames[1] - frames[0]).abs().max()) > 0

    # A reference frame (the rig's neutral face in `dtl generate video`): frames equal to it show the source as it is,
    # and the first driving frame no longer does.
    neutral = driving[3]
    with_reference = MotionTransfer(model, source, batch_size=2, reference=neutral)
    referenced = torch.cat(list(with_reference(driving)))
    assert torch.allclose(referenced[3], unmoved[0], atol=1e-5)
    with torch.no_grad():
        kp_first, _ = model.driving_keypoints(encoded.canonical, driving[:1])
    assert not torch.allclose(with_reference.kp_driving_first, kp_first)  # the first frame is not the reference
    assert float((referenced[0] - unmoved[0]).abs().max()) > 0


def test_rig_head_angles_map_onto_the_estimators_rotation():
    """The head-pose loss compares the estimator with rig-convention pose tracks: a roll or a yaw of the rendered rig
    must move the face on screen the way the estimator's rotation of the mapped angles moves keypoints (x right,
    y down; the face in front of the pivot, at negative depth)."""
    from dtl_foundation.arkit import NUM_BLENDSHAPES
    from lightning_modules.networks.face_vid2vid.head_expression import angles_from_rig
    from dtl_foundation.media.face_detect import LEFT_EYE, NOSE_TIP, RIGHT_EYE, FaceLandmarker
    from rendering.default_rig import default_rig
    from rendering.speaker_faces import speaker_face_params
    from rendering.gl_renderer import FaceRenderer

    poses = np.zeros((3, 6))
    poses[1, 2], poses[2, 0] = 10.0, 10.0  # roll, then yaw, of 10 degrees
    with FaceRenderer(default_rig(speaker_face_params("M001")), 256) as renderer:
        frames = renderer.render(np.zeros((3, NUM_BLENDSHAPES), np.float32), poses).numpy()
    landmarker = FaceLandmarker()
    neutral, rolled, turned = (landmarker.detect(f).landmarks for f in frames)

    def eye_line_degrees(points):  # in image axes (y down)
        dx, dy = points[RIGHT_EYE].mean(0) - points[LEFT_EYE].mean(0)
        return np.degrees(np.arctan2(dy, dx))

    def rotated(point, rig_angles):
        yaw, pitch, roll = angles_from_rig(torch.tensor([rig_angles], dtype=torch.float32)).unbind(-1)
        return (rotation_matrix(yaw, pitch, roll)[0] @ torch.tensor(point)).numpy()

    screen_roll = eye_line_degrees(rolled) - eye_line_degrees(neutral)
    model_roll = np.degrees(np.arctan2(*rotated([1.0, 0.0, 0.0], [0.0, 0.0, 10.0])[[1, 0]]))
    assert abs(screen_roll) > 5 and np.sign(screen_roll) == np.sign(model_roll)
    nose_shift = turned[NOSE_TIP, 0] - neutral[NOSE_TIP, 0]
    assert abs(nose_shift) > 3 and np.sign(nose_shift) == np.sign(rotated([0.0, 0.0, -0.3], [10.0, 0.0, 0.0])[0])
