"""`dtl export`: a DeepSpeed ZeRO checkpoint directory (as Lightning saves it) -> one fp32 checkpoint file."""

from __future__ import annotations

import argparse
import contextlib
import io
import pickle
import sys
from pathlib import Path

import torch

from dtl_foundation.atomic_files import atomic_path
from dtl_foundation.run_layout import RUN_CHECKPOINTS, RunLayout, is_zero_checkpoint


def resolve_zero_checkpoint(path: str | Path) -> Path:
    """A ZeRO checkpoint directory, or a run directory holding checkpoints/best.ckpt (else last.ckpt) as one."""
    path = Path(path)
    if path.is_file():
        raise ValueError(f"{path}: a single-file checkpoint, not a DeepSpeed ZeRO checkpoint directory "
                         "(it loads with torch.load as it is; nothing to export)")
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such run directory or checkpoint directory")
    if is_zero_checkpoint(path):
        return path
    in_run = RunLayout(path).zero_checkpoint()
    if in_run is not None:
        return in_run
    if (path / "latest").is_file():
        tag = (path / "latest").read_text().strip()
        raise ValueError(f"{path}: not a complete DeepSpeed ZeRO checkpoint: its 'latest' names '{tag}', "
                         f"which holds no *model_states.pt and *optim_states.pt files")
    raise ValueError(f"{path}: not a DeepSpeed ZeRO checkpoint directory (no 'latest' file) nor a run directory "
                     f"with one at checkpoints/{' or checkpoints/'.join(RUN_CHECKPOINTS)}")


def default_output(checkpoint_dir: Path) -> Path:
    """Beside the directory: checkpoints/best.ckpt/ -> checkpoints/best.fp32.ckpt (so the run's config is found)."""
    return checkpoint_dir.with_name(f"{checkpoint_dir.name.removesuffix('.ckpt')}.fp32.ckpt")


def export_fp32(checkpoint: str | Path, out: str | Path | None = None) -> Path:
    """Consolidate the ZeRO shards into fp32 weights plus Lightning's state; written atomically. Returns the file."""
    from lightning.pytorch.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict

    checkpoint_dir = resolve_zero_checkpoint(checkpoint)
    out = Path(out) if out is not None else default_output(checkpoint_dir)
    if out.is_dir():
        raise ValueError(f"--out {out}: a directory; give the file to write")
    if out.resolve().is_relative_to(checkpoint_dir.resolve()):
        raise ValueError(f"--out {out}: inside the checkpoint directory {checkpoint_dir}; choose a path outside it")
    with atomic_path(out) as tmp:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints the temporary file's name
            convert_zero_checkpoint_to_fp32_state_dict(checkpoint_dir, tmp)
        try:
            torch.load(tmp, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:  # the file's promise: plain tensors and containers only
            raise ValueError(f"{checkpoint_dir}: the exported state does not load with weights_only=True: {e}") from e
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dtl export",
        description="Convert a DeepSpeed ZeRO-2/3 checkpoint directory into one fp32 checkpoint file that loads "
                    "without DeepSpeed (torch.load(..., weights_only=True); its 'state_dict' fits the module).")
    parser.add_argument("path", help="run directory (uses checkpoints/best.ckpt, else last.ckpt) or a ZeRO "
                                     "checkpoint directory")
    parser.add_argument("--out", help="output file (default: beside the checkpoint, NAME.fp32.ckpt)")
    args = parser.parse_args(argv)
    try:
        out = export_fp32(args.path, args.out)
    except (ValueError, FileNotFoundError) as e:  # bad input: say which path and what, no traceback
        print(f"dtl export: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0
