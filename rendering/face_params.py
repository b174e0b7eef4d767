"""The parameters of a procedural default-rig face and the landmark layout they give (metres; x towards the
subject's left, y up, z out of the face)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from rendering.rig import RigError

# part ids of the vertices
SKIN, EYEBALL, UPPER_LID, LOWER_LID, UPPER_TEETH, LOWER_TEETH, TONGUE, CAVITY, NECK, EAR = range(10)


@dataclass(frozen=True)
class FaceParams:
    """A face's identity: colours (sRGB in [0, 1]) and proportions (1.0 = the default face)."""

    skin: tuple[float, float, float] = (0.80, 0.62, 0.52)
    lips: tuple[float, float, float] = (0.72, 0.40, 0.40)
    hair: tuple[float, float, float] = (0.22, 0.15, 0.10)
    brows: tuple[float, float, float] = (0.25, 0.17, 0.12)
    iris: tuple[float, float, float] = (0.33, 0.45, 0.55)
    head_width: float = 1.0
    head_height: float = 1.0
    jaw_width: float = 1.0
    nose_length: float = 1.0
    nose_width: float = 1.0
    eye_spacing: float = 1.0
    lip_fullness: float = 1.0
    brow_thickness: float = 1.0
    hairline: float = 0.0  # metres: + moves the hairline up

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                if len(value) != 3 or not all(0.0 <= c <= 1.0 for c in value):
                    raise RigError(f"FaceParams.{f.name} must be an RGB triple in [0, 1], got {value}")
            elif f.name == "hairline":
                if not -0.03 <= value <= 0.03:
                    raise RigError(f"FaceParams.hairline must be within +-0.03 m, got {value}")
            elif not 0.7 <= value <= 1.3:
                raise RigError(f"FaceParams.{f.name} must be a scale within [0.7, 1.3], got {value}")

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "FaceParams":
        """A random plausible face (the identity of a synthetic speaker)."""
        tone = rng.uniform(0.0, 1.0)  # light to dark skin along a natural-looking line
        skin = np.array([0.87, 0.70, 0.60]) * (1 - tone) + np.array([0.45, 0.30, 0.22]) * tone
        skin = skin * rng.uniform(0.96, 1.04, 3)
        hair = np.array([0.08, 0.06, 0.05]) + rng.uniform(0.0, 1.0) * np.array([0.55, 0.40, 0.22])
        lips = skin * np.array([0.92, 0.62, 0.62]) * rng.uniform(0.92, 1.05)
        iris = rng.choice(np.array([[0.35, 0.22, 0.12], [0.30, 0.45, 0.58], [0.32, 0.45, 0.30], [0.20, 0.13, 0.08]]))

        def rgb(a) -> tuple[float, float, float]:
            return tuple(float(np.clip(c, 0.0, 1.0)) for c in a)  # type: ignore[return-value]

        def scale(spread: float) -> float:
            return float(np.clip(rng.normal(1.0, spread), 0.75, 1.25))

        return cls(skin=rgb(skin), lips=rgb(lips), hair=rgb(hair), brows=rgb(hair * 0.85), iris=rgb(iris),
                   head_width=scale(0.05), head_height=scale(0.04), jaw_width=scale(0.08),
                   nose_length=scale(0.08), nose_width=scale(0.10), eye_spacing=scale(0.05),
                   lip_fullness=scale(0.12), brow_thickness=scale(0.15),
                   hairline=float(np.clip(rng.normal(0.0, 0.008), -0.02, 0.02)))


@dataclass(frozen=True)
class FaceLayout:
    """Landmark positions of one face (metres)."""

    ax: float  # head half-width
    ay: float  # head half-height
    az: float  # head half-depth
    mouth_y: float
    mouth_w: float  # half-width of the mouth slit
    eye_x: float
    eye_y: float
    eye_r: float
    brow_y: float
    nose_root_y: float
    nose_tip_y: float
    chin_y: float
    hinge: tuple[float, float, float]  # jaw rotation centre

    @classmethod
    def of(cls, p: FaceParams) -> "FaceLayout":
        h = p.head_height
        return cls(ax=0.074 * p.head_width, ay=0.112 * h, az=0.097, mouth_y=-0.047 * h, mouth_w=0.0235,
                   eye_x=0.032 * p.eye_spacing, eye_y=0.012 * h, eye_r=0.0118, brow_y=0.031 * h,
                   nose_root_y=0.010 * h, nose_tip_y=(0.010 - 0.032 * p.nose_length) * h, chin_y=-0.092 * h,
                   hinge=(0.0, -0.004 * h, -0.008))
