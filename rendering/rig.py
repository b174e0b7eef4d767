"""FaceRig: a neutral mesh plus one vertex delta per ARKit blendshape, posed in torch for whole sequences."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from dtl_foundation.arkit import ARKIT_NAMES, NUM_BLENDSHAPES
from dtl_foundation.atomic_files import atomic_write_bytes


class RigError(ValueError):
    """A rig whose arrays do not fit together, or coefficients that do not fit the rig."""


@dataclass(eq=False)
class FaceRig:
    """Neutral vertices (V, 3), triangles (F, 3), deltas (52, V, 3) in ARKit order, vertex colours (V, 3) in [0, 1].

    `present[i]` says whether the rig carries a shape for ARKIT_NAMES[i] (a loaded avatar may lack some; their
    deltas are zero). `landmarks` names optional 3D points (eye_left, mouth, ...) in the rig's frame. `name`
    says where the rig came from, for error messages and reports. Treat the arrays as read-only: torch copies
    of them are cached on first use.
    """

    vertices: np.ndarray
    triangles: np.ndarray
    deltas: np.ndarray
    colors: np.ndarray | None = None
    present: np.ndarray | None = None
    name: str = "rig"
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)
    _torch_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32)
        self.triangles = np.ascontiguousarray(self.triangles, dtype=np.int32)
        self.deltas = np.ascontiguousarray(self.deltas, dtype=np.float32)
        v = len(self.vertices)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3 or v == 0:
            raise RigError(f"{self.name}: vertices must be (V, 3) with V > 0, got {self.vertices.shape}")
        if self.triangles.ndim != 2 or self.triangles.shape[1] != 3 or len(self.triangles) == 0:
            raise RigError(f"{self.name}: triangles must be (F, 3) with F > 0, got {self.triangles.shape}")
        if self.triangles.min() < 0 or self.triangles.max() >= v:
            raise RigError(f"{self.name}: triangle indices outside [0, {v})")
        if self.deltas.shape != (NUM_BLENDSHAPES, v, 3):
            raise RigError(f"{self.name}: deltas must be ({NUM_BLENDSHAPES}, {v}, 3), got {self.deltas.shape}")
        if not (np.isfinite(self.vertices).all() and np.isfinite(self.deltas).all()):
            raise RigError(f"{self.name}: vertices or deltas hold NaN or inf")
        if self.colors is None:
            self.colors = np.full((v, 3), 0.75, dtype=np.float32)
        self.colors = np.ascontiguousarray(self.colors, dtype=np.float32)
        if self.colors.shape != (v, 3):
            raise RigError(f"{self.name}: colors must be ({v}, 3), got {self.colors.shape}")
        if self.present is None:
            self.present = np.abs(self.deltas).reshape(NUM_BLENDSHAPES, -1).max(axis=1) > 0
        self.present = np.asarray(self.present, dtype=bool)
        if self.present.shape != (NUM_BLENDSHAPES,):
            raise RigError(f"{self.name}: present must be ({NUM_BLENDSHAPES},), got {self.present.shape}")
        self.landmarks = {k: np.asarray(point, dtype=np.float32).reshape(3) for k, point in self.landmarks.items()}

    @property
    def num_vertices(self) -> int:
        return len(self.vertices)

    @property
    def missing(self) -> list[str]:
        """ARKit names this rig has no shape for."""
        return [n for n, p in zip(ARKIT_NAMES, self.present) if not p]

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = ("shapes", str(device))
        if key not in self._torch_cache:
            self._torch_cache[key] = (torch.from_numpy(self.vertices).to(device),
                                      torch.from_numpy(self.deltas.reshape(NUM_BLENDSHAPES, -1)).to(device))
        return self._torch_cache[key]

    def _check(self, coeffs: torch.Tensor | np.ndarray, device) -> torch.Tensor:
        coeffs = torch.as_tensor(coeffs, dtype=torch.float32)
        if device is not None:
            coeffs = coeffs.to(device)
        if coeffs.shape[-1:] != (NUM_BLENDSHAPES,):
            raise RigError(f"{self.name}: coefficients must end in {NUM_BLENDSHAPES} (ARKit order), "
                           f"got shape {tuple(coeffs.shape)}")
        if not torch.isfinite(coeffs).all():
            raise RigError(f"{self.name}: coefficients hold NaN or inf")
        return coeffs

    def apply(self, coeffs: torch.Tensor | np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
        """Posed vertices (..., V, 3) for coefficients (..., 52) in ARKit order: neutral + sum_i c_i * delta_i."""
        coeffs = self._check(coeffs, device)
        neutral, deltas = self._tensors(coeffs.device)
        moved = (coeffs.reshape(-1, NUM_BLENDSHAPES) @ deltas).reshape(*coeffs.shape[:-1], -1, 3)
        return neutral + moved

    def _blend_tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Neutral (V, 6) positions+normals and (52, V * 6) position and normal deltas of each shape at 1."""
        key = ("blend", str(device))
        if key not in self._torch_cache:
            neutral = torch.from_numpy(self.vertices)
            shaped = neutral + torch.from_numpy(self.deltas)
            n0 = self.vertex_normals(neutral)
            normal_deltas = torch.zeros_like(shaped)
            present = torch.from_numpy(np.nonzero(self.present)[0])
            normal_deltas[present] = self.vertex_normals(shaped[present]) - n0
            base = torch.cat([neutral, n0], dim=-1)
            deltas = torch.cat([torch.from_numpy(self.deltas), normal_deltas], dim=-1).reshape(NUM_BLENDSHAPES, -1)
            self._torch_cache[key] = (base.to(device), deltas.to(device))
        return self._torch_cache[key]

    def posed_geometry(self, coeffs: torch.Tensor | np.ndarray, device: torch.device | str | None = None
                       ) -> torch.Tensor:
        """(..., V, 6): posed positions and unit normals, the normals blended linearly as glTF morph targets do.

        One matrix product per batch: much cheaper than `vertex_normals` of the posed mesh, and equal to it
        at rest and for any single shape at 1.
        """
        coeffs = self._check(coeffs, device)
        base, deltas = self._blend_tensors(coeffs.device)
        out = base + (coeffs.reshape(-1, NUM_BLENDSHAPES) @ deltas).reshape(-1, self.num_vertices, 6)
        out = torch.cat([out[..., :3], torch.nn.functional.normalize(out[..., 3:], dim=-1, eps=1e-12)], dim=-1)
        return out.reshape(*coeffs.shape[:-1], self.num_vertices, 6)

    def _corner_matrix(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Triangle corner indices (F, 3) and the sparse (V, F) matrix summing each vertex's faces."""
        key = ("adjacency", str(device))
        if key not in self._torch_cache:
            tris = torch.as_tensor(self.triangles, dtype=torch.long)
            faces = torch.arange(len(tris)).repeat_interleave(3)
            adjacency = torch.sparse_coo_tensor(torch.stack([tris.reshape(-1), faces]), torch.ones(tris.numel()),
                                                (self.num_vertices, len(tris)), check_invariants=True)
            self._torch_cache[key] = (tris.to(device), adjacency.coalesce().to(device))
        return self._torch_cache[key]

    def vertex_normals(self, vertices: torch.Tensor) -> torch.Tensor:
        """Unit area-weighted vertex normals (..., V, 3) of posed vertices (..., V, 3)."""
        tris, adjacency = self._corner_matrix(vertices.device)
        lead = vertices.shape[:-2]
        flat = vertices.reshape(-1, self.num_vertices, 3)
        a, b, c = (flat[:, tris[:, k]] for k in range(3))
        face = torch.cross(b - a, c - a, dim=-1)  # length = 2 x area: larger faces weigh more
        summed = adjacency @ face.permute(1, 0, 2).reshape(len(tris), -1)
        normals = summed.reshape(self.num_vertices, -1, 3).permute(1, 0, 2)
        return torch.nn.functional.normalize(normals, dim=-1, eps=1e-12).reshape(*lead, self.num_vertices, 3)

    def save(self, path) -> None:
        """Write the rig as a compressed .npz, atomically."""
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, vertices=self.vertices, triangles=self.triangles, deltas=self.deltas,
                            colors=self.colors, present=self.present, names=np.array(ARKIT_NAMES),
                            rig_name=np.array(self.name),
                            **{f"landmark_{k}": v for k, v in self.landmarks.items()})
        atomic_write_bytes(path, buf.getvalue())

    @classmethod
    def load(cls, path) -> "FaceRig":
        """Read a rig written by `save`; its shape names must be ARKit's, in ARKit order."""
        try:
            with np.load(path, allow_pickle=False) as data:
                names = tuple(str(n) for n in data["names"])
                if names != ARKIT_NAMES:
                    raise RigError(f"{path}: shapes are not the 52 ARKit names in Apple order")
                return cls(vertices=data["vertices"], triangles=data["triangles"], deltas=data["deltas"],
                           colors=data["colors"], present=data["present"], name=str(data["rig_name"]),
                           landmarks={k[len("landmark_"):]: data[k] for k in data.files if k.startswith("landmark_")})
        except (OSError, KeyError, ValueError, EOFError) as e:
            if isinstance(e, RigError):
                raise
            raise RigError(f"{path}: unreadable rig file ({e})") from e
