"""The layout of a run directory `outputs/<experiment>/<run_id>`, the one description every reader and writer uses.

In it: `checkpoints/` (best.ckpt, last.ckpt; `dtl export` adds *.fp32.ckpt beside DeepSpeed ZeRO directories),
`hpc_ckpt_<n>.ckpt` (Lightning's requeue saves), `wandb_id`, `meta/attempt_<k>/` (resolved config, command line,
git commit and diff of each launch), `csv/attempt_<k>/metrics.csv`, and `dtl.lock` with `dtl.lock.json` while a
process holds the run (dtl_foundation.directory_lock).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

WANDB_ID_FILE = "wandb_id"
RUN_CHECKPOINTS = ("best.ckpt", "last.ckpt")
EXPORTED_CHECKPOINTS = ("best.fp32.ckpt", "last.fp32.ckpt")  # `dtl export` of ZeRO runs
_ATTEMPT = re.compile(r"attempt_(\d+)")


def attempt_number(path: Path) -> int:
    """meta/attempt_3/config.yaml -> 3 (-1 outside an attempt folder)."""
    return next((int(m.group(1)) for part in path.parts if (m := _ATTEMPT.fullmatch(part))), -1)


def is_zero_checkpoint(path: Path) -> bool:
    """Lightning's DeepSpeed layout: a directory with a `latest` file naming a tag folder of model/optim states."""
    latest = path / "latest"
    if not latest.is_file():
        return False
    tag_dir = path / latest.read_text().strip()
    return any(tag_dir.glob("*model_states.pt")) and any(tag_dir.glob("*optim_states.pt"))


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @classmethod
    def of_checkpoint(cls, checkpoint: Path) -> RunLayout:
        """The run a checkpoint file belongs to: <run>/checkpoints/<name>.ckpt."""
        return cls(Path(checkpoint).parent.parent)

    @classmethod
    def of_attempt_file(cls, path: Path) -> RunLayout:
        """The run a file of an attempt belongs to: <run>/meta/attempt_<k>/<file> or <run>/csv/attempt_<k>/<file>."""
        return cls(Path(path).parents[2])

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def wandb_id_file(self) -> Path:
        return self.root / WANDB_ID_FILE

    def attempt_meta(self, attempt: int) -> Path:
        return self.root / "meta" / f"attempt_{attempt}"

    def attempts(self) -> list[int]:
        """The attempt numbers with a meta folder, in order."""
        return sorted(n for p in (self.root / "meta").glob("attempt_*") if (n := attempt_number(p)) >= 0)

    def next_attempt(self) -> int:
        return max(self.attempts(), default=-1) + 1

    def configs(self) -> list[Path]:
        """Each attempt's resolved config, oldest first."""
        return sorted(self.root.glob("meta/attempt_*/config.yaml"), key=attempt_number)

    def csv_logs(self) -> list[Path]:
        """Each attempt's CSV metrics, oldest first (a later attempt continues or replaces an earlier one)."""
        return sorted(self.root.glob("csv/attempt_*/metrics.csv"), key=attempt_number)

    def resume_candidates(self) -> list[Path]:
        """checkpoints/*.ckpt and requeue saves that are files or DeepSpeed directories (completeness unchecked)."""
        paths = list(self.checkpoints.glob("*.ckpt")) + list(self.root.glob("hpc_ckpt_*.ckpt"))
        return [p for p in paths if p.is_file() or (p / "latest").is_file()]

    def temporaries(self) -> list[Path]:
        """Atomic writes' temporary files (.NAME.XXXX.tmp) in the run: a killed writer's, once nobody holds the run."""
        return [p for pattern in (".*.tmp", "checkpoints/.*.tmp", "meta/attempt_*/.*.tmp")
                for p in self.root.glob(pattern)]

    def inference_checkpoint(self) -> Path | None:
        """The file to load for inference: best, else last, else their `dtl export` conversions."""
        return next((self.checkpoints / n for n in RUN_CHECKPOINTS + EXPORTED_CHECKPOINTS
                     if (self.checkpoints / n).is_file()), None)

    def zero_checkpoint(self) -> Path | None:
        """checkpoints/best.ckpt (else last.ckpt) when it is a complete DeepSpeed ZeRO directory."""
        return next((self.checkpoints / n for n in RUN_CHECKPOINTS
                     if (self.checkpoints / n).is_dir() and is_zero_checkpoint(self.checkpoints / n)), None)
