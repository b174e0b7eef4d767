"""The project's own default face rig: a procedural head whose 52 ARKit shapes are localized, plausible deformations.

Coordinates are metres, x towards the subject's left, y up, z out of the face (the camera looks down -z).
Every shape is defined from the neutral geometry by masks around facial landmarks; rotations (jaw, eyes,
lids) are linearised as blendshapes are: delta = rotated - neutral. The build is deterministic; it is
cached as a compressed .npz keyed by the face parameters and the generator version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dtl_foundation.arkit import ARKIT_NAMES, INDEX, NUM_BLENDSHAPES
from rendering.default_head import (
    HeadMesh,
    build_eye,
    build_mouth_interior,
    build_neck_and_ears,
    build_skin,
    gauss,
    lid_points,
    lower_edge,
    rotation,
    smoothstep,
    socket_depth,
    upper_edge,
)
from rendering.face_params import LOWER_LID, LOWER_TEETH, SKIN, TONGUE, UPPER_LID, FaceLayout, FaceParams
from rendering.rig import FaceRig, RigError

log = logging.getLogger(__name__)
GENERATOR_VERSION = 1
CACHE_ENV = "DTL_CACHE_DIR"


# --- the 52 shapes ---------------------------------------------------------------------------------------

class _ShapeBuilder:
    """Fills the (52, V, 3) deltas from the neutral vertices, part ids and the landmark layout."""

    def __init__(self, V: np.ndarray, parts: np.ndarray, skin: dict, eyes: dict, mouth: dict, L: FaceLayout,
                 lip_z: float) -> None:
        self.V, self.parts, self.skin, self.eyes, self.mouth, self.L = V, parts, skin, eyes, mouth, L
        self.lip_z = lip_z
        self.deltas = np.zeros((NUM_BLENDSHAPES, len(V), 3))
        self.x, self.y, self.z = V[:, 0], V[:, 1], V[:, 2]
        is_skin = parts == SKIN
        theta = np.zeros(len(V))
        theta[skin["slice"]] = skin["theta"]
        self.front = is_skin * np.clip(np.cos(theta), 0, 1) ** 2
        side = np.zeros(len(V))
        side[skin["slice"]] = skin["side"]
        self.upper = np.where(side > 0, 1.0, np.where(side < 0, 0.0, 0.5))  # 1 above the mouth line
        self.lower = 1.0 - self.upper

    def add(self, name: str, delta: np.ndarray) -> None:
        self.deltas[INDEX[name]] += delta

    # masks
    def near(self, cx, cy, sx, sy) -> np.ndarray:
        return self.front * gauss(self.x, self.y, cx, cy, sx, sy)

    def lips_mask(self, sx: float = 0.027, sy: float = 0.011) -> np.ndarray:
        return self.front * np.exp(-(self.x / sx) ** 4 - ((self.y - self.L.mouth_y) / sy) ** 2)

    def half(self, s: float, soft: float = 0.006) -> np.ndarray:
        """1 on the subject's side s (+1 left, -1 right), fading across the midline."""
        return smoothstep(-soft, soft, s * self.x)

    def jaw_weight(self) -> np.ndarray:
        L = self.L
        dy = self.y - L.mouth_y
        vertical = smoothstep(0.003, -0.022, dy)
        slit = np.clip(1 - (self.x / L.mouth_w) ** 2, 0, 1) * np.exp(-(dy / 0.009) ** 2)
        w = vertical + slit * np.where(self.lower > 0.5, 1 - vertical, -vertical) * (self.upper != 0.5)
        w = w * smoothstep(L.hinge[2] - 0.005, L.hinge[2] + 0.04, self.z) * (self.parts == SKIN)
        w[self.mouth[LOWER_TEETH]] = 1.0
        w[self.mouth[TONGUE]] = 1.0
        cav = self.mouth["cavity"]
        w[cav] = smoothstep(L.mouth_y + 0.004, L.mouth_y - 0.012, self.y[cav])
        return w

    def rotate_about(self, weight: np.ndarray, centre, R: np.ndarray) -> np.ndarray:
        rel = self.V - np.asarray(centre)
        return weight[:, None] * (rel @ R.T - rel)

    def build(self) -> np.ndarray:
        L = self.L
        J = self.jaw_weight()
        self.add("jawOpen", self.rotate_about(J, L.hinge, rotation("x", 17.0)))
        self.add("jawForward", J[:, None] * [0.0, 0.0, 0.007])
        self.add("jawLeft", J[:, None] * [0.009, 0.0, 0.0] + self.rotate_about(J, L.hinge, rotation("y", 3.0)))
        self.add("jawRight", J[:, None] * [-0.009, 0.0, 0.0] + self.rotate_about(J, L.hinge, rotation("y", -3.0)))
        self._mouth()
        self._eyes()
        self._brows_cheeks_nose()
        tongue = self.mouth[TONGUE]
        d = np.zeros_like(self.V)
        d[tongue] = [0.0, -0.004, 0.030]
        tip = smoothstep(self.lip_z - 0.045, self.lip_z - 0.012, self.z[tongue])
        d[tongue, 1] -= 0.004 * tip  # the tip curls down over the lower lip
        self.add("tongueOut", d)
        return self.deltas

    def _mouth(self) -> None:
        L = self.L
        lips = self.lips_mask()
        up, lo = lips * self.upper, lips * self.lower
        x = self.x
        wide = self.lips_mask(0.034, 0.018)
        self.add("mouthClose", lo[:, None] * [0.0, 0.0045, 0.003] + up[:, None] * [0.0, -0.0015, 0.0015])
        self.add("mouthFunnel", lips[:, None] * np.stack([-0.30 * x, 0.0045 * (self.upper - self.lower) *
                                                           np.exp(-(x / 0.012) ** 2), np.full_like(x, 0.009)], -1))
        self.add("mouthPucker", wide[:, None] * np.stack([-0.40 * x, np.zeros_like(x), np.full_like(x, 0.012)], -1))
        for s, side in ((1.0, "Left"), (-1.0, "Right")):
            corner = self.near(s * L.mouth_w, L.mouth_y, 0.011, 0.011) * self.half(s)
            corner_wide = self.near(s * (L.mouth_w + 0.004), L.mouth_y + 0.004, 0.016, 0.018) * self.half(s)
            self.add(f"mouth{side}", wide[:, None] * [s * 0.011, 0.0, -0.001])
            self.add(f"mouthSmile{side}", corner_wide[:, None] * [s * 0.006, 0.008, -0.004])
            self.add(f"mouthFrown{side}", corner[:, None] * [s * 0.001, -0.007, -0.001])
            dimple = self.near(s * (L.mouth_w + 0.007), L.mouth_y, 0.004, 0.005)
            self.add(f"mouthDimple{side}",
                     corner[:, None] * [s * 0.004, 0.0, -0.003] + dimple[:, None] * [0, 0, -0.004])
            self.add(f"mouthStretch{side}", corner_wide[:, None] * [s * 0.008, -0.003, -0.003])
            self.add(f"mouthPress{side}", (up * self.half(s))[:, None] * [0.0, -0.0015, -0.0025]
                     + (lo * self.half(s))[:, None] * [0.0, 0.0015, -0.0025])
            lower_lip = self.near(s * 0.011, L.mouth_y - 0.005, 0.011, 0.008) * self.lower * self.half(s, 0.003)
            upper_lip = self.near(s * 0.011, L.mouth_y + 0.005, 0.011, 0.008) * self.upper * self.half(s, 0.003)
            self.add(f"mouthLowerDown{side}", lower_lip[:, None] * [0.0, -0.0065, 0.0005])
            self.add(f"mouthUpperUp{side}", upper_lip[:, None] * [0.0, 0.006, 0.001])
        band = self.front * np.exp(-(x / 0.024) ** 4)
        lower_verm = band * self.lower * np.exp(-((self.y - L.mouth_y + 0.005) / 0.006) ** 2)
        upper_verm = band * self.upper * np.exp(-((self.y - L.mouth_y - 0.004) / 0.005) ** 2)
        self.add("mouthRollLower", lower_verm[:, None] * [0.0, 0.003, -0.006])
        self.add("mouthRollUpper", upper_verm[:, None] * [0.0, -0.0025, -0.006])
        chin = self.near(0.0, L.mouth_y - 0.02, 0.022, 0.02) * self.lower
        self.add("mouthShrugLower", chin[:, None] * [0.0, 0.004, 0.003])
        self.add("mouthShrugUpper", upper_verm[:, None] * [0.0, 0.0035, 0.002])

    def _lid_delta(self, part: int, side_centre: np.ndarray, lid: dict, state: str, edge_fn) -> np.ndarray:
        d = np.zeros_like(self.V)
        sl = lid["slice"]
        old = lid_points(side_centre, lid["radius"], lid["t"], lid["beta"], edge_fn(lid["beta"], "open"), lid["far"])
        new = lid_points(side_centre, lid["radius"], lid["t"], lid["beta"], edge_fn(lid["beta"], state), lid["far"])
        d[sl] = new - old
        return d

    def _eyes(self) -> None:
        L = self.L
        for side, eye in self.eyes.items():
            s = 1.0 if side == "Left" else -1.0
            c = eye["centre"]
            upper, lower = eye["lids"][UPPER_LID], eye["lids"][LOWER_LID]
            ball = np.zeros(len(self.V))
            ball[eye["ball"]] = 1.0
            under = self.near(s * L.eye_x, L.eye_y - 0.018, 0.016, 0.008)
            above = self.near(s * L.eye_x, L.brow_y - 0.004, 0.020, 0.009)

            def lids(up_state: str | None, low_state: str | None) -> np.ndarray:
                d = np.zeros_like(self.V)
                if up_state:
                    d += self._lid_delta(UPPER_LID, c, upper, up_state, upper_edge)
                if low_state:
                    d += self._lid_delta(LOWER_LID, c, lower, low_state, lower_edge)
                return d

            self.add(f"eyeBlink{side}", lids("closed", "closed"))
            self.add(f"eyeSquint{side}", lids("squint", "squint") + under[:, None] * [0.0, 0.0025, 0.001])
            self.add(f"eyeWide{side}", lids("wide", "wide") + above[:, None] * [0.0, 0.0015, 0.0])
            # gaze: ARKit's In is towards the nose, Out towards the ear
            self.add(f"eyeLookUp{side}", self.rotate_about(ball, c, rotation("x", -22.0)) + lids("up", None))
            self.add(f"eyeLookDown{side}", self.rotate_about(ball, c, rotation("x", 24.0)) + lids("down", None))
            self.add(f"eyeLookIn{side}", self.rotate_about(ball, c, rotation("y", -s * 28.0)))
            self.add(f"eyeLookOut{side}", self.rotate_about(ball, c, rotation("y", s * 28.0)))

    def _brows_cheeks_nose(self) -> None:
        L = self.L
        for s, side in ((1.0, "Left"), (-1.0, "Right")):
            brow = self.near(s * 0.031, L.brow_y + 0.002, 0.024, 0.014) * self.half(s)
            self.add(f"browDown{side}", brow[:, None] * [-s * 0.0025, -0.0055, -0.0015])
            outer = self.near(s * 0.046, L.brow_y + 0.003, 0.015, 0.014) * self.half(s)
            self.add(f"browOuterUp{side}", outer[:, None] * [0.0, 0.006, 0.0])
            cheek = self.near(s * 0.042, L.mouth_y + 0.008, 0.017, 0.016) * self.half(s)
            out = np.array([s * 0.55, -0.1, 0.83])
            self.add("cheekPuff", cheek[:, None] * (0.013 * out))
            squint = self.near(s * 0.036, L.eye_y - 0.022, 0.016, 0.011) * self.half(s)
            eye = self.eyes[side]
            self.add(f"cheekSquint{side}", squint[:, None] * [0.0, 0.0045, 0.0015]
                     + self._lid_delta(LOWER_LID, eye["centre"], eye["lids"][LOWER_LID], "cheek", lower_edge))
            sneer = (self.near(s * 0.012, L.nose_tip_y + 0.004, 0.007, 0.008)
                     + 0.6 * self.near(s * 0.011, (L.nose_tip_y + L.nose_root_y) / 2, 0.006, 0.012))
            sneer = sneer * self.half(s, 0.003)
            lip_side = self.near(s * 0.012, L.mouth_y + 0.006, 0.008, 0.005) * self.upper
            self.add(f"noseSneer{side}", sneer[:, None] * [s * 0.0008, 0.0035, 0.0008]
                     + lip_side[:, None] * [0.0, 0.0015, 0.0])
        inner = self.near(0.0, L.brow_y + 0.003, 0.022, 0.016) * np.exp(-(self.x / 0.026) ** 2)
        self.add("browInnerUp", inner[:, None] * [0.0, 0.0065, 0.0005])


# --- assembly and cache ----------------------------------------------------------------------------------

def build_default_rig(params: FaceParams = FaceParams()) -> FaceRig:
    """Build the procedural head for `params` (no cache: see `default_rig`)."""
    L = FaceLayout.of(params)
    mesh = HeadMesh()
    skin = build_skin(mesh, L, params)
    skin_v = mesh.vertices[0]
    front_row = skin_v[(np.abs(skin_v[:, 0]) < 0.002) & (np.abs(skin_v[:, 1] - L.mouth_y) < 0.001)]
    lip_z = float(front_row[:, 2].max())
    eyes = {}
    for side, s in (("Left", 1.0), ("Right", -1.0)):
        near_eye = skin_v[(np.abs(skin_v[:, 0] - s * L.eye_x) < 0.006) & (np.abs(skin_v[:, 1] - L.eye_y) < 0.006)]
        surface_z = float(np.median(near_eye[:, 2] + socket_depth(near_eye[:, 0], near_eye[:, 1], L)))
        centre = np.array([s * L.eye_x, L.eye_y, surface_z - L.eye_r + 0.0015])
        eyes[side] = build_eye(mesh, centre, L, params)
    mouth = build_mouth_interior(mesh, L, lip_z)
    build_neck_and_ears(mesh, L, params)
    V, tris, colors, parts = mesh.arrays()
    deltas = _ShapeBuilder(V, parts, skin, eyes, mouth, L, lip_z).build()
    landmarks = {"eye_left": eyes["Left"]["centre"], "eye_right": eyes["Right"]["centre"],
                 "mouth": np.array([0.0, L.mouth_y, lip_z]), "nose_tip": np.array([0.0, L.nose_tip_y, lip_z + 0.01]),
                 "brow_left": np.array([0.03, L.brow_y, lip_z - 0.01]),
                 "brow_right": np.array([-0.03, L.brow_y, lip_z - 0.01]),
                 "chin": np.array([0.0, L.chin_y, lip_z - 0.005])}
    return FaceRig(vertices=V, triangles=tris, deltas=deltas, colors=np.clip(colors, 0, 1),
                   present=np.ones(NUM_BLENDSHAPES, bool), name="default rig", landmarks=landmarks)


def default_cache_dir() -> Path:
    """$DTL_CACHE_DIR/rigs, else ~/.cache/dreamtalk-lab/rigs."""
    base = os.environ.get(CACHE_ENV)
    return Path(base) / "rigs" if base else Path.home() / ".cache" / "dreamtalk-lab" / "rigs"


def cache_key(params: FaceParams) -> str:
    text = json.dumps({"version": GENERATOR_VERSION, "params": asdict(params)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_rig(params: FaceParams = FaceParams(), cache_dir: str | os.PathLike | None = None) -> FaceRig:
    """The default rig for `params`, read from the .npz cache or built and cached on first use."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"default_rig-v{GENERATOR_VERSION}-{cache_key(params)}.npz"
    if path.is_file():
        try:
            return FaceRig.load(path)
        except RigError as e:
            log.warning("rebuilding the default rig: %s", e)
    rig = build_default_rig(params)
    try:
        rig.save(path)
    except OSError as e:  # a read-only cache must not stop rendering
        log.warning("could not cache the default rig at %s (%s)", path, e)
    return rig


__all__ = ["FaceParams", "build_default_rig", "default_rig", "default_cache_dir", "ARKIT_NAMES"]
