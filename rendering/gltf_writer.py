"""Write a FaceRig as a GLB with one morph target per shape (sparse accessors), loadable by Blender and engines."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dtl_foundation.arkit import ARKIT_NAMES
from dtl_foundation.atomic_files import atomic_write_bytes
from rendering.rig import FaceRig

_FLOAT, _UINT32, _ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 5126, 5125, 34962, 34963


def write_glb(rig: FaceRig, path: str | os.PathLike, *, target_names: dict[str, str] | None = None,
              shapes: list[str] | None = None, translation: tuple[float, float, float] | None = None,
              scale: float | None = None) -> Path:
    """Write `rig` to a GLB, atomically: one mesh, vertex colours, a sparse POSITION morph target per shape.

    `shapes` chooses which ARKit shapes to export (default: those the rig has); `target_names` renames them
    (ARKit name -> name in the file). `translation`/`scale` go on the node (the loader applies them).
    """
    import pygltflib

    names = [n for n in ARKIT_NAMES if rig.present[ARKIT_NAMES.index(n)]] if shapes is None else list(shapes)
    unknown = [n for n in names if n not in ARKIT_NAMES]
    if unknown:
        raise ValueError(f"{path}: not ARKit shape names: {unknown}")
    blob = bytearray()
    views: list[pygltflib.BufferView] = []
    accessors: list[pygltflib.Accessor] = []

    def add_view(data: np.ndarray, target: int | None) -> int:
        while len(blob) % 4:
            blob.append(0)
        views.append(pygltflib.BufferView(buffer=0, byteOffset=len(blob), byteLength=data.nbytes, target=target))
        blob.extend(data.tobytes())
        return len(views) - 1

    def add_accessor(data: np.ndarray, kind: str, component: int, target: int | None, bounds: bool = False) -> int:
        accessors.append(pygltflib.Accessor(bufferView=add_view(data, target), componentType=component,
                                            count=len(data), type=kind,
                                            min=data.min(axis=0).tolist() if bounds else None,
                                            max=data.max(axis=0).tolist() if bounds else None))
        return len(accessors) - 1

    positions = np.ascontiguousarray(rig.vertices, dtype="<f4")
    attributes = pygltflib.Attributes(
        POSITION=add_accessor(positions, "VEC3", _FLOAT, _ARRAY_BUFFER, bounds=True),
        COLOR_0=add_accessor(np.ascontiguousarray(rig.colors ** 2.2, dtype="<f4"), "VEC3", _FLOAT, _ARRAY_BUFFER))
    indices = add_accessor(np.ascontiguousarray(rig.triangles.reshape(-1, 1), dtype="<u4"), "SCALAR", _UINT32,
                           _ELEMENT_ARRAY_BUFFER)
    targets, labels = [], []
    for name in names:
        delta = rig.deltas[ARKIT_NAMES.index(name)]
        rows = np.nonzero(np.abs(delta).max(axis=1) > 0)[0]
        values = np.ascontiguousarray(delta[rows], dtype="<f4")
        sparse = pygltflib.Sparse(
            count=len(rows),
            indices=pygltflib.AccessorSparseIndices(bufferView=add_view(rows.astype("<u4"), None),
                                                    componentType=_UINT32),
            values=pygltflib.AccessorSparseValues(bufferView=add_view(values, None)))
        full = delta.astype(np.float32)
        accessors.append(pygltflib.Accessor(componentType=_FLOAT, count=len(delta), type="VEC3",
                                            sparse=sparse if len(rows) else None,
                                            min=full.min(axis=0).tolist(), max=full.max(axis=0).tolist()))
        targets.append(pygltflib.Attributes(POSITION=len(accessors) - 1))
        labels.append((target_names or {}).get(name, name))
    primitive = pygltflib.Primitive(attributes=attributes, indices=indices, targets=targets, mode=4)
    mesh = pygltflib.Mesh(name="face", primitives=[primitive], weights=[0.0] * len(targets),
                          extras={"targetNames": labels})
    node = pygltflib.Node(mesh=0, name="face", translation=list(translation) if translation else None,
                          scale=[scale] * 3 if scale else None)
    gltf = pygltflib.GLTF2(asset=pygltflib.Asset(generator="dreamtalk-lab", version="2.0"),
                           scenes=[pygltflib.Scene(nodes=[0])], scene=0, nodes=[node], meshes=[mesh],
                           accessors=accessors, bufferViews=views,
                           buffers=[pygltflib.Buffer(byteLength=len(blob))])
    gltf.set_binary_blob(bytes(blob))
    path = Path(path)
    atomic_write_bytes(path, b"".join(gltf.save_to_bytes()))
    return path
