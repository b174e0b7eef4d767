"""The W&B run a report command logs into (`dtl eval`, `dtl study report`): offline unless DTL_WANDB_OFFLINE=false,
and its run file complete when the command returns."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def report_run(out_dir: Path, job_type: str, name: str, group: str | None, project: str | None,
               config: dict[str, Any]) -> Iterator[Any]:
    import wandb

    offline = os.environ.get("DTL_WANDB_OFFLINE", "true").lower() not in ("false", "0", "no")
    run = wandb.init(project=project or os.environ.get("WANDB_PROJECT", "dreamtalk-lab"), group=group,
                     job_type=job_type, name=name, dir=str(out_dir), mode="offline" if offline else "online",
                     config=config, reinit="finish_previous")
    try:
        yield run
    finally:
        run.finish()
        # finish() only informs wandb-core, which closes the run file later; until then the file may hold no
        # more than its header. Shutting the service down waits for that (the next wandb.init starts another).
        wandb.teardown()
