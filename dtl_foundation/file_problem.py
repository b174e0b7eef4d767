"""The error of a file that cannot be used: its message is "<path>: <problem>", and it survives the trip back from a
worker process (pickled from its path and problem)."""

from __future__ import annotations

import os


class FileProblem(ValueError):
    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem

    def __reduce__(self):
        return self.__class__, (self.path, self.problem)
