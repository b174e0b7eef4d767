"""Headless OpenGL rendering of a FaceRig (moderngl, EGL): shaded frames of whole blendshape sequences.

EGL runs on NVIDIA drivers and, without a GPU, on Mesa's llvmpipe CPU rasterizer. Head pose per frame is
(yaw, pitch, roll) in degrees and (tx, ty, tz) in metres: right-handed rotations about +y (up), +x (the
subject's left) and +z (towards the camera), applied roll first, then pitch, then yaw, about a pivot
behind and below the face; positive yaw turns the face to the subject's left, positive pitch lowers it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from dtl_foundation.system_packages import SystemPackageMissing
from rendering.rig import FaceRig

EGL_DEBIAN_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri libgl1"  # libgl1: glcontext loads libGL too
POSE_COLUMNS = ("yaw", "pitch", "roll", "tx", "ty", "tz")


class EGLUnavailableError(SystemPackageMissing):
    """No headless OpenGL context could be made (no EGL library, no driver, or moderngl missing)."""


class RenderError(ValueError):
    """Inputs the renderer cannot use (wrong shapes, sizes, poses)."""


def create_context(device_index: int | None = None):
    """A standalone OpenGL 3.3+ context through EGL, or EGLUnavailableError saying what to install."""
    try:
        import moderngl
    except ImportError as e:
        raise EGLUnavailableError("moderngl is not installed: pip install moderngl") from e
    # Loading triton (torch's optimizers import it through torch._dynamo) after an EGL context exists
    # crashes the process in Mesa; loading it first is harmless.
    import torch._dynamo  # noqa: F401

    kwargs = {"backend": "egl", "require": 330}
    if device_index is not None:
        kwargs["device_index"] = device_index
    try:
        return moderngl.create_standalone_context(**kwargs)
    except Exception as e:  # glcontext raises bare Exceptions for a missing library or display
        raise EGLUnavailableError(
            f"headless OpenGL through EGL is unavailable ({e}): Mesa's EGL and its llvmpipe CPU rasterizer are not "
            f"installed. apt-get install {EGL_DEBIAN_PACKAGES}, or run `make demo`, which installs them; on a GPU "
            f"machine, an NVIDIA driver that provides EGL") from e


@dataclass(frozen=True)
class Camera:
    """A perspective camera on +z looking down -z at the face.

    The shot is a face crop: with the rig's eye and mouth landmarks, FFHQ's rule (side = 2 x max(2.0 x eye
    distance, 1.8 x eye-to-mouth distance), centred a tenth of the way from the eyes to the mouth); without
    them, 1.55 x the extent of the vertices the shapes move. `zoom` > 1 frames tighter. `target` and
    `distance` (in the rig's units) override the fitted look-at point and camera distance; the clipping
    planes sit at 1/20 and 20 times the distance.
    """

    fov_deg: float = 16.0
    zoom: float = 1.0
    target: tuple[float, float, float] | None = None
    distance: float | None = None


def face_box(rig: FaceRig) -> tuple[np.ndarray, float]:
    """(centre, side in metres) of the face crop of a rig at rest."""
    marks = rig.landmarks
    if {"eye_left", "eye_right", "mouth"} <= set(marks):
        eyes = (marks["eye_left"] + marks["eye_right"]) / 2
        eye_to_mouth = marks["mouth"] - eyes
        side = 2 * max(2.0 * float(np.linalg.norm(marks["eye_left"] - marks["eye_right"])),
                       1.8 * float(np.linalg.norm(eye_to_mouth)))
        return (eyes + 0.1 * eye_to_mouth).astype(np.float64), side
    moved = np.abs(rig.deltas).max(axis=(0, 2))
    region = rig.vertices[moved > 0.05 * moved.max()] if moved.max() > 0 else rig.vertices
    if len(region) < 3:
        region = rig.vertices
    lo, hi = region.min(axis=0), region.max(axis=0)
    return ((lo + hi) / 2).astype(np.float64), 1.55 * float(max(hi[1] - lo[1], hi[0] - lo[0], 1e-6))


_VERTEX_SHADER = """
#version 330
uniform mat4 u_model;
uniform mat4 u_viewproj;
in vec3 in_pos;
in vec3 in_normal;
in vec3 in_color;
out vec3 v_pos;
out vec3 v_normal;
out vec3 v_color;
void main() {
    vec4 world = u_model * vec4(in_pos, 1.0);
    v_pos = world.xyz;
    v_normal = mat3(u_model) * in_normal;
    v_color = in_color;
    gl_Position = u_viewproj * world;
}
"""

_FRAGMENT_SHADER = """
#version 330
uniform vec3 u_eye;
in vec3 v_pos;
in vec3 v_normal;
in vec3 v_color;
out vec4 f_color;
void main() {
    vec3 n = normalize(v_normal);
    if (!gl_FrontFacing) n = -n;  // two-sided: the winding of imported meshes is not trusted
    vec3 view = normalize(u_eye - v_pos);
    vec3 albedo = v_color;  // linear: converted from sRGB once, on upload
    vec3 key = normalize(vec3(-0.45, 0.50, 0.74));
    vec3 fill = normalize(vec3(0.70, 0.05, 0.55));
    float diffuse = 0.95 * max(dot(n, key), 0.0) + 0.30 * max(dot(n, fill), 0.0) + 0.18;
    float rim = 0.10 * pow(1.0 - max(dot(n, view), 0.0), 3.0);
    float specular = 0.10 * pow(max(dot(n, normalize(key + view)), 0.0), 40.0);
    vec3 linear = albedo * diffuse + vec3(specular + rim);
    f_color = vec4(pow(clamp(linear, 0.0, 1.0), vec3(1.0 / 2.2)), 1.0);
}
"""


def _rotation_matrix(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(T, 3, 3) R = Ry(yaw) Rx(pitch) Rz(roll), angles in degrees."""
    y, p, r = (np.radians(a) for a in (yaw, pitch, roll))
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    one, zero = np.ones_like(y), np.zeros_like(y)
    Ry = np.stack([np.stack([cy, zero, sy], -1), np.stack([zero, one, zero], -1), np.stack([-sy, zero, cy], -1)], -2)
    Rx = np.stack([np.stack([one, zero, zero], -1), np.stack([zero, cp, -sp], -1), np.stack([zero, sp, cp], -1)], -2)
    Rz = np.stack([np.stack([cr, -sr, zero], -1), np.stack([sr, cr, zero], -1), np.stack([zero, zero, one], -1)], -2)
    return Ry @ Rx @ Rz


def _perspective(fov_deg: float, aspect: float, near: float, far: float) -> np.ndarray:
    f = 1.0 / np.tan(np.radians(fov_deg) / 2)
    return np.array([[f / aspect, 0, 0, 0], [0, f, 0, 0],
                     [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)], [0, 0, -1, 0]])


def as_poses(poses, frames: int) -> np.ndarray:
    """(frames, 6) float64 poses from None (rest), one (6,) pose, or a (frames, 6) array."""
    if poses is None:
        return np.zeros((frames, 6))
    poses = np.asarray(poses.detach().cpu() if isinstance(poses, torch.Tensor) else poses, dtype=np.float64)
    if poses.shape == (6,):
        return np.tile(poses, (frames, 1))
    if poses.shape != (frames, 6):
        raise RenderError(f"poses must be (6,) or ({frames}, 6) columns {POSE_COLUMNS}, got {poses.shape}")
    if not np.isfinite(poses).all():
        raise RenderError("poses hold NaN or inf")
    return poses


class FaceRenderer:
    """Renders a FaceRig at `size` x `size` pixels; `render` turns (T, 52) coefficients into (T, H, W, 3) uint8.

    Anti-aliasing: `supersample` k renders k x k samples a pixel and averages them (on llvmpipe this is
    cheaper than the same number of MSAA `samples`; on a GPU either is cheap).
    """

    def __init__(self, rig: FaceRig, size: int = 256, *, camera: Camera = Camera(), supersample: int = 2,
                 samples: int = 0, background: tuple[float, float, float] = (0.34, 0.35, 0.38), context=None,
                 device_index: int | None = None, torch_device: str | torch.device = "cpu") -> None:
        if not isinstance(size, (int, np.integer)) or not 16 <= size <= 4096:
            raise RenderError(f"size must be an int pixel count in [16, 4096], got {size!r}")
        if supersample not in (1, 2, 3, 4):
            raise RenderError(f"supersample must be 1, 2, 3 or 4, got {supersample!r}")
        self.rig, self.size, self.camera, self.background = rig, int(size), camera, tuple(background)
        self.supersample = int(supersample)
        self.torch_device = torch.device(torch_device)
        self.ctx = context if context is not None else create_context(device_index)
        self._owns_context = context is None
        self.samples = int(min(max(samples, 0), self.ctx.max_samples)) if samples > 1 else 0
        self._frame_rig()
        # every GL call runs with this renderer's context current: another renderer's context may have been made
        # current (or released) since, and a context shared by several renderers is left as it was found
        with self.ctx:
            self._make_gl_objects()

    # --- geometry of the shot ---------------------------------------------------------------------------
    def _frame_rig(self) -> None:
        cam = self.camera
        centre, side = face_box(self.rig)
        side /= cam.zoom
        self.target = np.asarray(cam.target, dtype=np.float64) if cam.target is not None else centre
        half_fov = np.radians(cam.fov_deg) / 2
        self.distance = float(cam.distance) if cam.distance is not None else side / 2 / np.tan(half_fov)
        self.pivot = self.target + np.array([0.0, -0.30 * side, -0.35 * side])  # about the upper neck
        self.eye = self.target + np.array([0.0, 0.0, self.distance])
        view = np.eye(4)
        view[:3, 3] = -self.eye
        self.viewproj = _perspective(cam.fov_deg, 1.0, self.distance / 20, self.distance * 20) @ view

    def model_matrices(self, poses: np.ndarray) -> np.ndarray:
        """(T, 4, 4) model matrices for (T, 6) poses: rotate about the pivot, then translate."""
        R = _rotation_matrix(poses[:, 0], poses[:, 1], poses[:, 2])
        M = np.tile(np.eye(4), (len(poses), 1, 1))
        M[:, :3, :3] = R
        M[:, :3, 3] = self.pivot - (R @ self.pivot) + poses[:, 3:6]
        return M

    def project(self, points, pose=None) -> np.ndarray:
        """Pixel coordinates (N, 2) (x right, y down, pixel centres at +0.5) of rig-frame points (N, 3)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        M = self.model_matrices(as_poses(pose, 1))[0]
        clip = (self.viewproj @ M @ np.c_[points, np.ones(len(points))].T).T
        ndc = clip[:, :2] / clip[:, 3:4]
        return np.stack([(ndc[:, 0] + 1) / 2 * self.size, (1 - ndc[:, 1]) / 2 * self.size], -1)

    # --- GL objects ---------------------------------------------------------------------------------------
    def _make_gl_objects(self) -> None:
        ctx, rig = self.ctx, self.rig
        self.program = ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        self.geometry = ctx.buffer(reserve=rig.num_vertices * 6 * 4, dynamic=True)
        self.color_buffer = ctx.buffer(np.ascontiguousarray(np.clip(rig.colors, 0, 1) ** 2.2, dtype="f4").tobytes())
        self.index_buffer = ctx.buffer(np.ascontiguousarray(rig.triangles, dtype="i4").tobytes())
        self.vao = ctx.vertex_array(self.program, [(self.geometry, "3f 3f", "in_pos", "in_normal"),
                                                   (self.color_buffer, "3f", "in_color")],
                                    index_buffer=self.index_buffer, index_element_size=4)
        shape = (self.size * self.supersample,) * 2
        self.resolved = ctx.framebuffer(color_attachments=[ctx.renderbuffer(shape)],
                                        depth_attachment=ctx.depth_renderbuffer(shape))
        if self.samples:
            self.target_fbo = ctx.framebuffer(
                color_attachments=[ctx.renderbuffer(shape, samples=self.samples)],
                depth_attachment=ctx.depth_renderbuffer(shape, samples=self.samples))
        else:
            self.target_fbo = self.resolved
        self.program["u_viewproj"].write(self.viewproj.T.astype("f4").tobytes())
        self.program["u_eye"].value = tuple(float(v) for v in self.eye)

    def release(self) -> None:
        """Free the GL objects (and the context when this renderer made it)."""
        with self.ctx:
            for obj in (self.vao, self.geometry, self.color_buffer, self.index_buffer, self.program, self.resolved):
                obj.release()
            if self.target_fbo is not self.resolved:
                self.target_fbo.release()
        if self._owns_context:
            self.ctx.release()

    def __enter__(self) -> "FaceRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # --- rendering ----------------------------------------------------------------------------------------
    def _geometry(self, coeffs: torch.Tensor) -> np.ndarray:
        """(t, V, 6) float32 posed positions and normals."""
        with torch.no_grad():
            geometry = self.rig.posed_geometry(coeffs, device=self.torch_device)
            return geometry.to("cpu", torch.float32).contiguous().numpy()

    def _draw(self, geometry: np.ndarray, model: np.ndarray, out: np.ndarray) -> None:
        import moderngl

        self.geometry.write(geometry.tobytes())
        self.program["u_model"].write(model.T.astype("f4").tobytes())
        self.target_fbo.use()
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.ctx.disable(moderngl.CULL_FACE)
        self.target_fbo.clear(*self.background, 1.0)
        self.vao.render(moderngl.TRIANGLES)
        if self.target_fbo is not self.resolved:
            self.ctx.copy_framebuffer(self.resolved, self.target_fbo)
        data = self.resolved.read(components=3, alignment=1)
        k, n = self.supersample, self.size
        image = np.frombuffer(data, dtype=np.uint8).reshape(n * k, n * k, 3)[::-1]
        if k == 1:
            out[:] = image
        else:  # box filter: the mean of each k x k block, rounded
            summed = np.zeros((n, n, 3), dtype=np.uint16)
            for dy in range(k):
                for dx in range(k):
                    summed += image[dy::k, dx::k]
            out[:] = (summed + k * k // 2) // (k * k)

    def _coefficients(self, coeffs) -> torch.Tensor:
        coeffs = torch.as_tensor(np.asarray(coeffs) if not isinstance(coeffs, torch.Tensor) else coeffs,
                                 dtype=torch.float32)
        if coeffs.ndim == 1:
            coeffs = coeffs[None]
        if coeffs.ndim != 2:
            raise RenderError(f"coefficients must be (T, 52) or (52,), got shape {tuple(coeffs.shape)}")
        return coeffs

    def iter_render(self, coeffs, poses=None, chunk: int = 32) -> Iterator[torch.Tensor]:
        """Yield (t, H, W, 3) uint8 chunks of the frames for (T, 52) coefficients and optional (T, 6) poses."""
        coeffs = self._coefficients(coeffs)
        poses = as_poses(poses, len(coeffs))
        models = self.model_matrices(poses)
        for start in range(0, len(coeffs), chunk):
            geometry = self._geometry(coeffs[start:start + chunk])
            frames = np.empty((len(geometry), self.size, self.size, 3), dtype=np.uint8)
            with self.ctx:
                for k in range(len(geometry)):
                    self._draw(geometry[k], models[start + k], frames[k])
            yield torch.from_numpy(frames)

    def render(self, coeffs, poses=None, chunk: int = 32) -> torch.Tensor:
        """All frames (T, H, W, 3) uint8 for (T, 52) coefficients (a single (52,) gives T = 1)."""
        parts = list(self.iter_render(coeffs, poses, chunk))
        return torch.cat(parts) if parts else torch.empty((0, self.size, self.size, 3), dtype=torch.uint8)


def render_sequence(rig: FaceRig, coeffs, poses=None, size: int = 256, **kwargs) -> torch.Tensor:
    """One-call rendering: a FaceRenderer for `rig` made, used and released."""
    with FaceRenderer(rig, size, **kwargs) as renderer:
        return renderer.render(coeffs, poses)
