"""Load a checkpoint in the layout of the public face-vid2vid reimplementation (zhanglonghao1992/One-Shot_Free-View_
Neural_Talking_Head_Synthesis, the one SadTalker builds on): {"generator", "kp_detector", "he_estimator",
"discriminator"} -> state dicts. The key mapping (docs/renderer.md):

  generator.{first,down_blocks,second,resblocks_3d}.*   -> appearance.*
  generator.dense_motion_network.*                      -> dense_motion.*
  generator.{third,fourth,resblocks_2d,up_blocks,final}.* -> decoder.*
  kp_detector.*                                         -> kp_detector.*
  he_estimator.*                                        -> he_estimator.*, except that the layer the reference
      names fc_roll predicts yaw there (and fc_yaw roll), so fc_roll <-> fc_yaw are swapped
  discriminator.*                                       -> discriminator.* (MultiScaleDiscriminator, same names)

Tensors whose shapes differ (another config, SadTalker's SPADE decoder) are skipped and reported, never forced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

APPEARANCE_PARTS = ("first.", "down_blocks.", "second.", "resblocks_3d.")
DECODER_PARTS = ("third.", "fourth.", "resblocks_2d.", "up_blocks.", "final.")
HEAD_SWAP = {"fc_roll.": "fc_yaw.", "fc_yaw.": "fc_roll."}
REFERENCE_PARTS = ("generator", "kp_detector", "he_estimator", "discriminator")


def map_reference_key(part: str, key: str) -> str | None:
    """Our key for `key` of the reference's `part` state dict, or None when we have no such tensor."""
    if part == "generator":
        if key.startswith("dense_motion_network."):
            return "dense_motion." + key[len("dense_motion_network."):]
        if key.startswith(APPEARANCE_PARTS):
            return "appearance." + key
        if key.startswith(DECODER_PARTS):
            return "decoder." + key
        return None
    if part == "he_estimator":
        for theirs, ours in HEAD_SWAP.items():
            if key.startswith(theirs):
                return "he_estimator." + ours + key[len(theirs):]
        return "he_estimator." + key
    if part in ("kp_detector", "discriminator"):
        return f"{part}.{key}"
    return None


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    shape_mismatch: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (reference key, theirs, ours)
    unmapped: list[str] = field(default_factory=list)  # reference keys we have no tensor for
    missing: list[str] = field(default_factory=list)  # our keys the checkpoint did not fill

    def summary(self) -> str:
        return (f"{len(self.loaded)} tensors loaded, {len(self.shape_mismatch)} skipped for shape, "
                f"{len(self.unmapped)} without a counterpart, {len(self.missing)} of ours left as they were")


def load_reference_state(networks: dict[str, nn.Module], checkpoint: dict[str, dict[str, torch.Tensor]],
                         source: str = "checkpoint") -> LoadReport:
    """Copy the reference tensors into `networks` ({"model": FaceVid2Vid, "discriminator": ...}) where shapes allow."""
    parts = [p for p in REFERENCE_PARTS if p in checkpoint]
    if not parts:
        raise ValueError(f"{source}: not a face-vid2vid checkpoint of the public layout (expected the keys "
                         f"{', '.join(REFERENCE_PARTS)}; found {', '.join(map(str, list(checkpoint)[:8]))})")
    ours = {}
    for owner, module in networks.items():
        for key, tensor in module.state_dict().items():
            ours[key if owner == "model" else f"{owner}.{key}"] = (owner, key, tensor)
    report = LoadReport()
    filled: set[str] = set()
    updates: dict[str, dict[str, torch.Tensor]] = {owner: {} for owner in networks}
    for part in parts:
        for key, tensor in checkpoint[part].items():
            target = map_reference_key(part, key.removeprefix("module."))
            if target is None or target not in ours:
                report.unmapped.append(f"{part}.{key}")
                continue
            owner, local, mine = ours[target]
            if tuple(mine.shape) != tuple(tensor.shape):
                report.shape_mismatch.append((f"{part}.{key}", tuple(tensor.shape), tuple(mine.shape)))
                continue
            updates[owner][local] = tensor.to(mine.dtype)
            report.loaded.append(f"{part}.{key}")
            filled.add(target)
    for owner, module in networks.items():
        module.load_state_dict(updates[owner], strict=False)
    report.missing = sorted(k for k, (owner, _, _) in ours.items()
                            if k not in filled and (owner == "model" or "discriminator" in parts))
    return report


def load_reference_checkpoint(path: str | os.PathLike, networks: dict[str, nn.Module]) -> LoadReport:
    """load_reference_state from a .pth/.tar file (e.g. SadTalker's facevid2vid_00189-model.pth.tar)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such face-vid2vid checkpoint")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickles with optimizer objects, truncated files
        raise ValueError(f"{path}: not a loadable torch checkpoint ({e})") from e
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: holds a {type(checkpoint).__name__}, not a dict of state dicts")
    return load_reference_state(networks, checkpoint, source=str(path))
