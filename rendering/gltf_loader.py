"""Load a glTF/GLB avatar whose morph targets carry ARKit names (Ready Player Me, VRM, CC4, MetaHuman exports).

Target names are matched to ARKit's by a normalised key (case, separators, namespaces such as
`blendShape1.`, numbered CC4 prefixes such as `A25_`, `_L`/`.R` side suffixes) and a small alias table;
targets that map to the same ARKit shape (CC4's split cheekPuff) are summed. The meshes are merged into
one FaceRig in scene coordinates; colours come from COLOR_0, the base colour texture (sampled per vertex)
and the material's base colour factor.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dtl_foundation.arkit import ARKIT_NAMES, INDEX, NUM_BLENDSHAPES
from rendering.rig import FaceRig

_BY_KEY = {name.lower(): name for name in ARKIT_NAMES}
# normalised keys (lower case, letters and digits only) that name an ARKit shape in other words
ALIASES: dict[str, str] = {
    "mouthrollinlower": "mouthRollLower", "mouthrollinupper": "mouthRollUpper",
    "mouthrolllowerin": "mouthRollLower", "mouthrollupperin": "mouthRollUpper",
    "cheekpuffleft": "cheekPuff", "cheekpuffright": "cheekPuff",
    "browinnerupleft": "browInnerUp", "browinnerupright": "browInnerUp",
    "browraiseinnerleft": "browInnerUp", "browraiseinnerright": "browInnerUp",
    "browraiseouterleft": "browOuterUpLeft", "browraiseouterright": "browOuterUpRight",
    "browdropleft": "browDownLeft", "browdropright": "browDownRight",
    "jawdrop": "jawOpen", "jawthrust": "jawForward",
    "tongueoutside": "tongueOut", "tongueextend": "tongueOut",
}
_COMPONENT_TYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32,
                    5126: np.float32}
_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_TRIANGLES = 4


class GltfError(ValueError):
    """A glTF file that cannot be used as a face rig; the message names the file and the problem."""


def arkit_name(target_name: str) -> str | None:
    """The ARKit shape a morph target's name means ('A25_Jaw_Open', 'jaw_open', 'mouthSmile_L', ...), or None."""
    name = re.sub(r"\.([LRlr])$", r"_\1", target_name.strip())  # Blender's mouthSmile.L
    name = re.split(r"[.:|/]", name)[-1]  # namespaces: blendShape1.jawOpen, Face:jawOpen
    name = re.sub(r"^[A-Z]\d{2}_", "", name)  # CC4 numbering: A25_Jaw_Open, T10_Tongue_Out
    name = re.sub(r"^(arkit|bs|blendshape|shape)[_\s-]+", "", name, flags=re.IGNORECASE)
    side = re.match(r"^(.*?)[_\s-](l|r|left|right)$", name, flags=re.IGNORECASE)
    if side:
        name = side.group(1) + ("Left" if side.group(2).lower().startswith("l") else "Right")
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    if key in _BY_KEY:
        return _BY_KEY[key]
    if key in ALIASES:
        return ALIASES[key]
    if key[-1:] in ("l", "r"):  # eyeBlinkL, mouthSmileR
        widened = key[:-1] + ("left" if key[-1] == "l" else "right")
        return _BY_KEY.get(widened, ALIASES.get(widened))
    return None


@dataclass
class GltfReport:
    """What a load used and found: meshes, the targets behind each ARKit shape, what is missing or unknown."""

    path: str
    meshes: list[str] = field(default_factory=list)
    matched: dict[str, list[str]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"{self.path}: {len(self.matched)} of {NUM_BLENDSHAPES} ARKit shapes from meshes {self.meshes}")
        if self.missing:
            text += f"; missing {self.missing}"
        if self.unmatched:
            text += f"; unknown targets {self.unmatched}"
        return text


def _srgb(linear: np.ndarray) -> np.ndarray:
    return np.clip(linear, 0.0, 1.0) ** (1 / 2.2)


def _linear(srgb: np.ndarray) -> np.ndarray:
    return np.clip(srgb, 0.0, 1.0) ** 2.2


class _Document:
    """A parsed glTF with its buffers in memory and accessor decoding."""

    def __init__(self, path: Path) -> None:
        import pygltflib

        self.path = path
        try:
            self.gltf = pygltflib.GLTF2().load(str(path))
        except Exception as e:  # pygltflib raises whatever its parser hits on a damaged file
            raise GltfError(f"{path}: not a readable glTF/GLB file ({type(e).__name__}: {e})") from e
        if self.gltf is None:
            raise GltfError(f"{path}: not a readable glTF/GLB file")
        self.buffers = []
        for k, buffer in enumerate(self.gltf.buffers):
            try:
                data = self.gltf.get_data_from_buffer_uri(buffer.uri)
            except OSError as e:
                raise GltfError(f"{path}: buffer {k} ({buffer.uri}) cannot be read ({e})") from e
            if data is None or len(data) < (buffer.byteLength or 0):
                where = f" ({buffer.uri})" if buffer.uri and not buffer.uri.startswith("data:") else ""
                raise GltfError(f"{path}: buffer {k}{where} is missing or shorter than its byteLength")
            self.buffers.append(bytes(data))

    def _view(self, view_index: int, offset: int, count: int, dtype, width: int) -> np.ndarray:
        view = self.gltf.bufferViews[view_index]
        raw = self.buffers[view.buffer]
        start = (view.byteOffset or 0) + (offset or 0)
        item = np.dtype(dtype).itemsize * width
        stride = view.byteStride or item
        end = start + stride * (count - 1) + item if count else start
        if end > (view.byteOffset or 0) + view.byteLength or end > len(raw):
            raise GltfError(f"{self.path}: bufferView {view_index} is too short for its accessor")
        array = np.ndarray((count, width), dtype=np.dtype(dtype).newbyteorder("<"), buffer=raw, offset=start,
                           strides=(stride, np.dtype(dtype).itemsize))
        return array.astype(np.dtype(dtype).newbyteorder("="))

    def accessor(self, index: int) -> np.ndarray:
        """(count, width) values of an accessor, sparse substitutions applied, normalised integers as floats."""
        acc = self.gltf.accessors[index]
        dtype = _COMPONENT_TYPES.get(acc.componentType)
        width = _WIDTHS.get(acc.type)
        if dtype is None or width is None:
            raise GltfError(f"{self.path}: accessor {index} has an unknown type ({acc.componentType}, {acc.type})")
        if acc.bufferView is None:
            data = np.zeros((acc.count, width), dtype=dtype)
        else:
            data = self._view(acc.bufferView, acc.byteOffset, acc.count, dtype, width)
        if acc.sparse is not None and acc.sparse.count:
            sparse = acc.sparse
            idx_type = _COMPONENT_TYPES[sparse.indices.componentType]
            rows = self._view(sparse.indices.bufferView, sparse.indices.byteOffset, sparse.count, idx_type, 1)[:, 0]
            values = self._view(sparse.values.bufferView, sparse.values.byteOffset, sparse.count, dtype, width)
            if rows.size and rows.max() >= acc.count:
                raise GltfError(f"{self.path}: accessor {index} has sparse indices beyond its {acc.count} elements")
            data = data.copy()
            data[rows.astype(np.int64)] = values
        if acc.normalized and np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            data = np.maximum(data.astype(np.float64) / info.max, -1.0)
        return data.astype(np.float64) if np.issubdtype(data.dtype, np.floating) else data

    def image(self, index: int) -> np.ndarray | None:
        """An image as (H, W, 3) float sRGB in [0, 1], or None when it cannot be decoded."""
        from PIL import Image

        img = self.gltf.images[index]
        try:
            if img.bufferView is not None:
                view = self.gltf.bufferViews[img.bufferView]
                raw = self.buffers[view.buffer][(view.byteOffset or 0):(view.byteOffset or 0) + view.byteLength]
            elif img.uri:
                raw = self.gltf.get_data_from_buffer_uri(img.uri)
            else:
                return None
            return np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), dtype=np.float64) / 255.0
        except Exception:  # noqa: BLE001  (an undecodable texture leaves the base colour factor in charge)
            return None


def _local_matrix(node) -> np.ndarray:
    if node.matrix is not None:
        return np.asarray(node.matrix, dtype=np.float64).reshape(4, 4).T  # glTF stores column-major
    T, R, S = np.eye(4), np.eye(4), np.eye(4)
    if node.translation is not None:
        T[:3, 3] = node.translation
    if node.rotation is not None:
        x, y, z, w = node.rotation
        R[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    if node.scale is not None:
        S[:3, :3] = np.diag(node.scale)
    return T @ R @ S


def _target_names(mesh, primitive, count: int) -> list[str]:
    for holder in (mesh, primitive):
        extras = holder.extras if isinstance(holder.extras, dict) else {}
        names = extras.get("targetNames")
        if isinstance(names, list) and len(names) == count:
            return [str(n) for n in names]
    return [f"target_{k}" for k in range(count)]


def _sample_texture(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear samples (N, 3) of an (H, W, 3) image at glTF UVs (N, 2), repeating outside [0, 1]."""
    h, w = image.shape[:2]
    x = (uv[:, 0] % 1.0) * w - 0.5
    y = (uv[:, 1] % 1.0) * h - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0, x1, y0, y1 = x0 % w, (x0 + 1) % w, y0 % h, (y0 + 1) % h
    return ((image[y0, x0] * (1 - fx) + image[y0, x1] * fx) * (1 - fy)
            + (image[y1, x0] * (1 - fx) + image[y1, x1] * fx) * fy)


def _primitive_colors(doc: _Document, primitive, count: int, notes: list[str]) -> np.ndarray:
    """sRGB vertex colours of a primitive: COLOR_0, else the base colour texture, times the base colour factor."""
    linear = np.ones((count, 3))
    attrs = primitive.attributes
    material = doc.gltf.materials[primitive.material] if primitive.material is not None else None
    pbr = material.pbrMetallicRoughness if material is not None else None
    if getattr(attrs, "COLOR_0", None) is not None:
        linear = doc.accessor(attrs.COLOR_0)[:, :3]
    elif pbr is not None and pbr.baseColorTexture is not None:
        texture = doc.gltf.textures[pbr.baseColorTexture.index]
        uv_set = f"TEXCOORD_{pbr.baseColorTexture.texCoord or 0}"
        image = doc.image(texture.source) if texture.source is not None else None
        if image is not None and getattr(attrs, uv_set, None) is not None:
            linear = _linear(_sample_texture(image, doc.accessor(getattr(attrs, uv_set))[:, :2]))
        else:
            notes.append(f"material {material.name or primitive.material}: base colour texture not decoded; "
                         "using its base colour factor")
    factor = np.asarray(pbr.baseColorFactor[:3] if pbr is not None and pbr.baseColorFactor else [1, 1, 1])
    if material is None and getattr(attrs, "COLOR_0", None) is None:
        factor = np.array([0.6, 0.6, 0.6])  # glTF's default material is white: a grey shades better
    return _srgb(linear * factor[None, :])


def load_gltf_rig(path: str | os.PathLike, *, meshes: str | list[str] = "morph") -> tuple[FaceRig, GltfReport]:
    """A FaceRig from the glTF/GLB at `path` and a report of what it found.

    meshes="morph" takes every mesh with morph targets (head, teeth, eyes of an avatar; not its body or
    clothes), "all" every mesh, a list the meshes of those names. Shapes the file lacks are listed in
    `report.missing` and `rig.missing` (their deltas are zero). Raises GltfError for an unreadable file,
    or one with no morph target that names an ARKit shape.
    """
    path = Path(path)
    if not path.is_file():
        raise GltfError(f"{path}: no such file")
    doc = _Document(path)
    gltf = doc.gltf
    report = GltfReport(path=str(path))
    if not gltf.scenes:
        roots = [i for i in range(len(gltf.nodes))
                 if not any(i in (n.children or []) for n in gltf.nodes)]
    else:
        roots = gltf.scenes[gltf.scene or 0].nodes or []
    placed: list[tuple[int, np.ndarray, bool]] = []

    def visit(index: int, parent: np.ndarray, depth: int) -> None:
        if depth > 256:
            raise GltfError(f"{path}: the node hierarchy is deeper than 256 (a cycle?)")
        node = gltf.nodes[index]
        world = parent @ _local_matrix(node)
        if node.mesh is not None:
            placed.append((node.mesh, world, node.skin is not None))
        for child in node.children or []:
            visit(child, world, depth + 1)

    for root in roots:
        visit(root, np.eye(4), 0)

    vertices, triangles, colors, deltas = [], [], [], []
    offset = 0
    for mesh_index, world, skinned in placed:
        mesh = gltf.meshes[mesh_index]
        label = mesh.name or f"mesh_{mesh_index}"
        has_targets = any(p.targets for p in mesh.primitives)
        if meshes == "morph" and not has_targets:
            continue
        if isinstance(meshes, list) and label not in meshes:
            continue
        if skinned:
            world = np.eye(4)  # glTF: a skinned mesh ignores its node's transform; the bind pose is used
            report.notes.append(f"{label}: skinned; used in its bind pose")
        if any(w for w in (mesh.weights or [])):
            report.notes.append(f"{label}: default morph weights {mesh.weights} ignored (neutral = base mesh)")
        linear = world[:3, :3]
        report.meshes.append(label)
        for p_index, primitive in enumerate(mesh.primitives):
            if primitive.mode not in (None, _TRIANGLES):
                report.notes.append(f"{label} primitive {p_index}: mode {primitive.mode} is not triangles; skipped")
                continue
            if primitive.attributes.POSITION is None:
                continue
            pos = doc.accessor(primitive.attributes.POSITION)[:, :3]
            n = len(pos)
            tris = (doc.accessor(primitive.indices)[:, 0].astype(np.int64) if primitive.indices is not None
                    else np.arange(n - n % 3)).reshape(-1, 3)
            if tris.size and tris.max() >= n:
                raise GltfError(f"{path}: {label} primitive {p_index} has indices beyond its {n} vertices")
            shape_deltas = np.zeros((NUM_BLENDSHAPES, n, 3))
            names = _target_names(mesh, primitive, len(primitive.targets or []))
            for target, target_name in zip(primitive.targets or [], names):
                position = target.get("POSITION") if isinstance(target, dict) else getattr(target, "POSITION", None)
                arkit = arkit_name(target_name)
                if arkit is None:
                    if target_name not in report.unmatched:
                        report.unmatched.append(target_name)
                    continue
                if position is None:
                    continue
                shape_deltas[INDEX[arkit]] += doc.accessor(position)[:, :3] @ linear.T
                sources = report.matched.setdefault(arkit, [])
                if target_name not in sources:
                    sources.append(target_name)
            vertices.append(pos @ linear.T + world[:3, 3])
            triangles.append(tris + offset)
            colors.append(_primitive_colors(doc, primitive, n, report.notes))
            deltas.append(shape_deltas)
            offset += n
    if not report.matched:
        found = sorted({name for mi, _, _ in placed for p in gltf.meshes[mi].primitives
                        for name in _target_names(gltf.meshes[mi], p, len(p.targets or []))})
        raise GltfError(f"{path}: no morph target names an ARKit blendshape (targets found: {found[:20]}"
                        f"{' ...' if len(found) > 20 else ''})")
    if not any(len(t) for t in triangles):
        raise GltfError(f"{path}: the meshes with ARKit targets hold no triangles")
    present = np.array([name in report.matched for name in ARKIT_NAMES])
    report.missing = [name for name in ARKIT_NAMES if name not in report.matched]
    rig = FaceRig(vertices=np.concatenate(vertices), triangles=np.concatenate(triangles),
                  deltas=np.concatenate(deltas, axis=1), colors=np.concatenate(colors), present=present,
                  name=str(path))
    return rig, report
