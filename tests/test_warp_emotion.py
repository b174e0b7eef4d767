"""An emotion held from the first frame to the last reaches the portrait (renderer=warp, motion relative to the
rig's neutral face), measured in video space: dlib's landmarks of the rendered frames against the portrait's own.
Relative to the track's first frame (face-vid2vid's relative mode, the broken variant) the same track leaves the
portrait as it is."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from dtl_foundation.arkit import INDEX, NUM_BLENDSHAPES
from dtl_foundation.media.face_detect import LEFT_EYE, RIGHT_EYE
from dtl_foundation.media.portrait import find_face

# ARKit expressions of three emotions, held for the whole clip
HELD = {
    "happy": {"mouthSmileLeft": 0.8, "mouthSmileRight": 0.8, "cheekSquintLeft": 0.4, "cheekSquintRight": 0.4},
    "surprised": {"browInnerUp": 0.9, "browOuterUpLeft": 0.9, "browOuterUpRight": 0.9, "eyeWideLeft": 0.8,
                  "eyeWideRight": 0.8},
    "sad": {"mouthFrownLeft": 0.8, "mouthFrownRight": 0.8, "browInnerUp": 0.7, "mouthPressLeft": 0.3,
            "mouthPressRight": 0.3},
}
# the landmark measure each emotion moves, and the least change it must show (in inter-ocular distances; signed)
EXPECTED = {"happy": ("corners_up", 0.025), "surprised": ("brows_up", 0.015), "sad": ("corners_up", -0.025)}


def held(frames: int, shapes: dict[str, float]) -> np.ndarray:
    coeffs = np.zeros((frames, NUM_BLENDSHAPES), np.float32)
    for name, value in shapes.items():
        coeffs[:, INDEX[name]] = value
    return coeffs


def measures(image: np.ndarray) -> dict[str, float]:
    """Mouth corners above the lips' centre and brows above the eyes, in inter-ocular distances (dlib's 68)."""
    points = find_face(image).landmarks.astype(np.float64)
    interocular = np.linalg.norm(points[LEFT_EYE].mean(0) - points[RIGHT_EYE].mean(0))
    lips_centre = (points[62, 1] + points[66, 1]) / 2
    return {"corners_up": (lips_centre - (points[48, 1] + points[54, 1]) / 2) / interocular,
            "brows_up": (points[36:48, 1].mean() - points[17:27, 1].mean()) / interocular}


@pytest.fixture(scope="module")
def warp():
    from rendering.warp.renderer import WarpRenderer

    with WarpRenderer() as renderer:
        yield renderer


@pytest.mark.parametrize("portrait", ["astronaut", "camera"])
def test_a_held_emotion_shows_relative_to_neutral_and_vanishes_relative_to_the_first_frame(warp, portrait):
    image = skimage.data.astronaut() if portrait == "astronaut" else np.repeat(skimage.data.camera()[..., None], 3, -1)
    landmarks = find_face(image).landmarks
    before = measures(image)
    for emotion, shapes in HELD.items():
        coeffs = held(2, shapes)
        frame = next(warp.animate(image, landmarks, coeffs))[0]
        key, least = EXPECTED[emotion]
        change = measures(frame)[key] - before[key]
        print(f"{portrait} {emotion}: {key} {change:+.3f} inter-ocular (relative to neutral)")
        assert change >= least if least > 0 else change <= least, (portrait, emotion, change)

        cancelled = next(warp.animate(image, landmarks, coeffs, reference=coeffs[0]))[0]
        assert np.abs(cancelled.astype(int) - image).max() <= 1, (portrait, emotion)
