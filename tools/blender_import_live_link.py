"""Import a Live Link Face CSV onto a glTF head's ARKit shape keys in Blender, as keyframes (one a frame).

    blender --background --factory-startup --python tools/blender_import_live_link.py -- HEAD.glb TAKE.csv FPS \
        [--save OUT.blend] [--curves OUT.json]

Runs inside Blender (its own Python, `bpy`); nothing here imports the project. Columns are matched to shape keys by
name (`JawLeft` -> `jawLeft`), so the CSV's column order does not matter; the timecode's frame count sets the frame.
--curves writes what Blender's animation curves hold at every keyed frame, per shape key, for checking.
"""

import argparse
import csv
import json
import sys

import bpy

NOT_SHAPES = {"timecode", "blendshapecount", "headyaw", "headpitch", "headroll", "lefteyeyaw", "lefteyepitch",
              "lefteyeroll", "righteyeyaw", "righteyepitch", "righteyeroll"}


def timecode_frame(timecode: str, rate: int) -> int:
    hh, mm, ss, ff = timecode.split(":")
    return ((int(hh) * 60 + int(mm)) * 60 + int(ss)) * rate + int(float(ff))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="blender_import_live_link")
    parser.add_argument("head", help="a .glb/.gltf with ARKit-named shape keys (morph targets)")
    parser.add_argument("take", help="a Live Link Face CSV")
    parser.add_argument("fps", type=float, help="the take's frame rate (23.976, 24, 25, 29.97, 30, 50, 59.94, 60)")
    parser.add_argument("--save", help="save the animated scene as a .blend")
    parser.add_argument("--curves", help="write the keyed shape-key curves as JSON")
    args = parser.parse_args(argv)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    # SMOOTH shading: Debian 12's Blender 3.4 guesses flat faces (the default NORMALS) with np.bool, gone in NumPy 1.24
    bpy.ops.import_scene.gltf(filepath=args.head, import_shading="SMOOTH")
    meshes = [o for o in bpy.context.scene.objects if o.type == "MESH" and o.data.shape_keys]
    if not meshes:
        print(f"{args.head}: no mesh with shape keys", file=sys.stderr)
        return 2
    keys = meshes[0].data.shape_keys
    blocks = {kb.name.lower(): kb for kb in keys.key_blocks[1:]}  # [0] is the basis

    rate = round(args.fps)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = rate, rate / args.fps  # 29.97 = 30 / 1.001

    with open(args.take, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if c.lower() not in NOT_SHAPES] if rows else []
    missing = [c for c in columns if c.lower() not in blocks]
    if missing:
        print(f"{args.head}: no shape keys for the columns {missing} of {args.take}", file=sys.stderr)
        return 2
    frames = []
    for row in rows:
        frame = timecode_frame(row["Timecode"], rate)
        frames.append(frame)
        for column in columns:
            block = blocks[column.lower()]
            block.value = float(row[column])
            block.keyframe_insert("value", frame=frame)
    scene.frame_start, scene.frame_end = min(frames), max(frames)

    if args.curves:
        fcurves = {c.data_path: c for c in keys.animation_data.action.fcurves}
        curves = {blocks[c.lower()].name: [fcurves[f'key_blocks["{blocks[c.lower()].name}"].value'].evaluate(t)
                                           for t in frames] for c in columns}
        with open(args.curves, "w") as f:
            json.dump({"frames": frames, "fps": scene.render.fps / scene.render.fps_base, "curves": curves}, f)
    if args.save:
        bpy.ops.wm.save_as_mainfile(filepath=args.save)
    print(f"{args.take}: {len(rows)} frames of {len(columns)} shape keys onto {meshes[0].name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []))
