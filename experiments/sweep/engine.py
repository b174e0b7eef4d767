"""W&B-format sweep files: load and validate them, draw their points with W&B's own engine, turn points into overrides.

The engine is the `sweeps` package (the code W&B's server runs), used locally: grid, random and bayes suggest the
same points here as they would on a W&B server. Nested parameters (`model: {parameters: {lr: ...}}`) are
flattened to Hydra's dotted keys (`model.lr`) before the engine sees them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml

METHODS = ("grid", "random", "bayes")
# A Hydra override key: optional + / ++, then dotted names (`model.optimizer.lr`, `+trainer.profiler`).
HYDRA_KEY = re.compile(r"^(\+\+|\+)?[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*$")
SET_BY_THE_SWEEP = {"run_id": "the sweep names each run <sweep id>-<k>"}
_BARE_STRING = re.compile(r"^[A-Za-z_][\w\-./:]*$")
_HYDRA_LITERALS = {"true", "false", "null", "nan", "inf"}
# Top-level keys the W&B server accepts that sweeps 0.2.0's schema predates; checked here, hidden from the engine.
NEWER_KEYS = ("run_cap",)


class SweepFileError(ValueError):
    """A sweep file that cannot be run: the message names the file and the key at fault."""


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file; `config` is W&B's sweep config with parameters flattened to Hydra keys."""

    path: Path
    config: dict

    @property
    def method(self) -> str:
        return self.config["method"]

    @property
    def parameters(self) -> dict[str, dict]:
        return self.config["parameters"]

    @property
    def metric(self) -> str | None:
        return (self.config.get("metric") or {}).get("name")

    @property
    def run_cap(self) -> int | None:
        return self.config.get("run_cap")

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.path.stem)

    def fingerprint(self, overrides: list[str]) -> str:
        """A short hash of the sweep and the fixed overrides: the same command names the same sweep."""
        text = json.dumps({"sweep": self.config, "overrides": overrides}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


@contextlib.contextmanager
def _quiet_engine_import() -> Iterator[None]:
    # sweeps 0.2.0 declares a pydantic-v1 model config; pydantic 2 warns about it on import (harmless).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Valid config keys have changed")
        warnings.filterwarnings("ignore", message="Support for class-based `config` is deprecated")
        yield


def _engine():
    with _quiet_engine_import():
        import sweeps
        # next_runs imports these on its first call, and that import draws from `random`: import before seeding.
        from sweeps import bayes_search, grid_search, random_search  # noqa: F401  (imported before seeding)
        from sweeps.config import schema
    return sweeps, schema


def _flatten(parameters: Any, path: Path, prefix: str = "") -> dict[str, dict]:
    """`a: {parameters: {b: spec}}` -> `{"a.b": spec}`, checking every entry is a parameter spec."""
    where = f"parameters.{prefix[:-1]}" if prefix else "parameters"
    if not isinstance(parameters, dict) or not parameters:
        raise SweepFileError(f"{path}: {where} must be a non-empty mapping of parameter name to spec "
                             f"(value, values, or distribution with min/max), got {parameters!r}")
    flat: dict[str, dict] = {}
    for name, spec in parameters.items():
        key = f"{prefix}{name}"
        if not isinstance(name, str):
            raise SweepFileError(f"{path}: parameters.{key}: parameter names are strings (Hydra keys)")
        if not isinstance(spec, dict):
            raise SweepFileError(f"{path}: parameters.{key}: expected a mapping such as {{values: [...]}} or "
                                 f"{{min: ..., max: ...}}, got {spec!r}")
        if "parameters" in spec:
            extra = set(spec) - {"parameters"}
            if extra:
                raise SweepFileError(f"{path}: parameters.{key}: a nested group holds only `parameters`, "
                                     f"not {sorted(extra)}")
            flat.update(_flatten(spec["parameters"], path, f"{key}."))
        else:
            flat[key] = spec
    return flat


def schema_errors(config: dict, path: Path) -> list[str]:
    """W&B's sweep schema and its min/max and probability rules, each error named by its key."""
    from jsonschema.exceptions import best_match

    _, schema = _engine()
    errors = []
    for error in schema.validator.iter_errors(_for_engine(config)):
        key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        detail = error.message
        if error.context:  # "not valid under any of the given schemas": say which rule came closest
            detail += f" (closest rule: {best_match(error.context).message})"
        errors.append(f"{path}: {key}: {detail}")
    for name, spec in config.get("parameters", {}).items():
        for check in (schema.validate_min_max, schema.validate_categorical_prob):
            try:
                check(name, spec)
            except ValueError as e:
                errors.append(f"{path}: parameters.{name}: {e.args[0]}")
    return errors


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a W&B sweep YAML; SweepFileError names the file and the key at fault."""
    path = Path(path)
    if not path.is_file():
        raise SweepFileError(f"{path}: no such sweep file")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SweepFileError(f"{path}: not valid YAML: {e}") from e
    return sweep_spec(config, path)


def sweep_spec(config: Any, path: Path) -> SweepSpec:
    """Validate a sweep config read from `path` (a file, or a file and the key of a sweep inside it)."""
    if not isinstance(config, dict):
        raise SweepFileError(f"{path}: a sweep file is a mapping (method, metric, parameters, ...), "
                             f"got {type(config).__name__}")
    for key in ("method", "parameters"):
        if key not in config:
            raise SweepFileError(f"{path}: {key}: missing (W&B sweep format: method, metric, parameters)")
    if config["method"] not in METHODS:
        raise SweepFileError(f"{path}: method: {config['method']!r} is not one of {', '.join(METHODS)}")
    config = dict(config, parameters=_flatten(config["parameters"], path))
    errors = schema_errors(config, path)
    if errors:
        raise SweepFileError("\n".join(errors))
    for name in config["parameters"]:
        if not HYDRA_KEY.match(name):
            raise SweepFileError(f"{path}: parameters.{name}: not a Hydra override key (dotted names such as "
                                 "model.optimizer.lr, optionally prefixed by + or ++)")
        if name.lstrip("+") in SET_BY_THE_SWEEP:
            raise SweepFileError(f"{path}: parameters.{name}: {SET_BY_THE_SWEEP[name.lstrip('+')]}")
    spec = SweepSpec(path=path, config=config)
    hp = _hyperparameter_class()
    types = _parameter_types(spec)
    if spec.method == "grid":
        discrete = (hp.CATEGORICAL, hp.CONSTANT, hp.INT_UNIFORM, hp.Q_UNIFORM)
        continuous = [n for n, t in types.items() if t not in discrete]
        if continuous:
            raise SweepFileError(f"{path}: parameters.{continuous[0]}: grid search needs discrete parameters "
                                 "(value, values, int_uniform or q_uniform); use method random or bayes for "
                                 "distributions")
    if spec.method == "bayes":
        if not spec.metric:
            raise SweepFileError(f"{path}: metric: bayes needs `metric: {{name: ..., goal: minimize|maximize}}` "
                                 "(the run metric read from each run's CSV log)")
        if all(t == hp.CONSTANT for t in types.values()):
            raise SweepFileError(f"{path}: parameters: bayes needs at least one parameter that varies")
    if "run_cap" in config and (not isinstance(config["run_cap"], int) or config["run_cap"] < 1):
        raise SweepFileError(f"{path}: run_cap: a positive integer, got {config['run_cap']!r}")
    return spec


def _hyperparameter_class():
    with _quiet_engine_import():
        from sweeps.params import HyperParameter
    return HyperParameter


def _parameter_set(spec: SweepSpec):
    with _quiet_engine_import():
        from sweeps.params import HyperParameterSet
    return HyperParameterSet.from_config(_filled(spec)["parameters"])


def _for_engine(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in NEWER_KEYS}


def _filled(spec: SweepSpec) -> dict:
    """The config with W&B's defaults filled in (distribution names, impute strategy), as the engine wants it."""
    sweeps, _ = _engine()
    return dict(sweeps.SweepConfig(_for_engine(spec.config)))


def _parameter_types(spec: SweepSpec) -> dict[str, str]:
    return {p.name: p.type for p in _parameter_set(spec)}


def space_size(spec: SweepSpec) -> int | None:
    """How many distinct points the parameters allow; None when a distribution is continuous."""
    hp = _hyperparameter_class()
    size = 1
    for p in _parameter_set(spec):
        if p.type == hp.CATEGORICAL:
            size *= len(p.config["values"])
        elif p.type == hp.INT_UNIFORM:
            size *= p.config["max"] - p.config["min"] + 1
        elif p.type == hp.Q_UNIFORM:  # the engine's grid takes np.arange(min, max, q) for these
            size *= len(np.arange(p.config["min"], p.config["max"], p.config["q"]))
        elif p.type != hp.CONSTANT:
            return None
    return size


def plain(value: Any) -> Any:
    """Engine values (numpy scalars, nested lists) as plain Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _params_of(run) -> dict[str, Any]:
    return {name: plain(entry["value"]) for name, entry in sorted(run.config.items())}


def point_key(params: dict[str, Any]) -> str:
    """A canonical text of a point, to tell points apart."""
    return json.dumps(params, sort_keys=True, default=str)


@contextlib.contextmanager
def _seeded(seed: str) -> Iterator[None]:
    """Seed the engine's random sources from `seed` (points reproducible from the sweep id), then restore them."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16))
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every point of a grid sweep, in the engine's order."""
    sweeps, _ = _engine()
    runs = sweeps.next_runs(_filled(spec), [], n=space_size(spec) or 1)
    return [_params_of(r) for r in runs if r is not None]


def random_points(spec: SweepSpec, count: int, existing: list[dict[str, Any]], seed: str) -> list[dict[str, Any]]:
    """`count` new random points, distinct from each other and from `existing`."""
    size = space_size(spec)
    if size is not None and len(existing) + count > size:
        raise ValueError(f"{spec.path}: the parameters allow only {size} distinct points; "
                         f"{len(existing)} exist and {count} more were asked for (lower --max-runs)")
    sweeps, _ = _engine()
    seen = {point_key(p) for p in existing}
    points: list[dict[str, Any]] = []
    with _seeded(seed):
        for _ in range(1000 * (count + 1)):
            if len(points) == count:
                break
            params = _params_of(sweeps.next_runs(_filled(spec), [], n=1)[0])
            if point_key(params) not in seen:
                seen.add(point_key(params))
                points.append(params)
    if len(points) < count:
        raise ValueError(f"{spec.path}: found only {len(points)} new distinct random points of {count}")
    return points


def history_run(params: dict[str, Any], state: str, metrics: dict[str, float] | None = None):
    """A finished, failed or pending run as the engine reads it (state: done, failed, running, pending)."""
    sweeps, _ = _engine()
    engine_state = {"done": "finished", "failed": "failed", "running": "running", "pending": "pending"}[state]
    return sweeps.SweepRun(config={k: {"value": v} for k, v in params.items()}, state=engine_state,
                           summaryMetrics=dict(metrics or {}))


def bayes_point(spec: SweepSpec, history: list, seed: str) -> dict[str, Any]:
    """The next point of a bayes sweep, from the finished runs' metric (failed runs count as the worst)."""
    sweeps, _ = _engine()
    with _seeded(seed), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the Gaussian process warns while it has few points
        return _params_of(sweeps.next_runs(_filled(spec), history, n=1)[0])


def hydra_value(value: Any) -> str:
    """A value in Hydra's override grammar (strings quoted when they would read as something else)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        if _BARE_STRING.match(value) and value.lower() not in _HYDRA_LITERALS:
            return value
        escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
        escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)  # a backslash before the closing quote
        return "'" + escaped + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as a Hydra override value")


def hydra_overrides(params: dict[str, Any]) -> list[str]:
    """A point's parameters as Hydra overrides, `key=value`."""
    return [f"{name}={hydra_value(value)}" for name, value in params.items()]
