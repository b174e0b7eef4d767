"""The mutation score of cosmic-ray sessions: killed / (killed + survived), the filtered (skipped) mutants left out.

    python benchmarks/mutation/score.py outputs/mutation/*.sqlite
"""

from __future__ import annotations

import sqlite3
import sys
from collections import Counter


def outcomes(session: str) -> Counter:
    with sqlite3.connect(session) as db:
        rows = db.execute("SELECT r.worker_outcome, r.test_outcome FROM work_items w "
                          "LEFT JOIN work_results r ON r.job_id = w.job_id").fetchall()
    counts: Counter = Counter()
    for worker, test in rows:
        counts["pending" if worker is None else "filtered" if worker == "SKIPPED"
               else (test or worker).lower()] += 1
    return counts


def main(sessions: list[str]) -> None:
    print("| session | mutants | filtered | killed | survived | incompetent/timeout | pending | score |")
    print("|---|---|---|---|---|---|---|---|")
    for session in sessions:
        c = outcomes(session)
        tested = c["killed"] + c["survived"]
        other = sum(v for k, v in c.items() if k not in ("killed", "survived", "filtered", "pending"))
        score = f"{100 * c['killed'] / tested:.0f} %" if tested else "n/a"
        print(f"| {session} | {sum(c.values())} | {c['filtered']} | {c['killed']} | {c['survived']} | {other} | "
              f"{c['pending']} | {score} |")


if __name__ == "__main__":
    main(sys.argv[1:])
