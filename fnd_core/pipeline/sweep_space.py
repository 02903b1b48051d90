"""A model search's space: a versioned file of the recipe's parameters, expanded to candidates.

``fnd sweep`` and the ``fnd_sweep`` DAG read a space (YAML or JSON; the default ships in
``sweeps/default.yaml``), expand it to at most ``budget`` candidates and estimate each on the
retraining's topic folds (:mod:`fnd_core.pipeline.sweep`). A space may come from a trigger
form, so it is read as untrusted data: safe YAML only, a size cap, known parameters only, each
value type- and range-checked, and the number of candidates capped by a setting well under
Airflow's ``max_map_length``.

The file::

    version: 1
    method: random        # grid | random
    seed: 7
    parameters:
      kind: {values: [fusion, linear]}
      hidden: {values: [128, 256]}
      lr: {min: 0.0003, max: 0.003, log: true}   # random only
      dropout: 0.1                               # fixed
    include:                                     # tried first, whatever the draws
      - {kind: linear}

A candidate holds only what matters to its kind (a linear head has no learning rate), so two
draws that differ only in what the kind ignores are one candidate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fnd_core.resources import SWEEPS_DIR

if TYPE_CHECKING:
    from fnd_core.model.config import ModelConfig
    from fnd_core.pipeline.evaluation import Recipe

DEFAULT_SPACE = SWEEPS_DIR / "default.yaml"
SPACE_VERSION = 1
METHODS = ("grid", "random")
MAX_SPACE_BYTES = 64 * 1024
MAX_VALUES = 100  # per parameter
MAX_DESCRIPTION = 2000  # characters
HARD_MAX_CANDIDATES = 256  # whatever a setting says; Airflow's max_map_length is 1,024


@dataclass(frozen=True)
class Parameter:
    """One knob a space may vary: where it goes, its type and its allowed range."""

    target: str  # "kind", "config" (ModelConfig), "options" (TrainOptions), "recipe"
    type: type
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ("fusion",)  # the kinds it matters to

    def check(self, name: str, value: Any) -> Any:
        """``value`` as this parameter's type, or a ValueError that says what is allowed."""
        if self.type is bool:
            if not isinstance(value, bool):
                raise ValueError(f"sweep parameter {name!r} takes true or false, got {value!r}")
            return value
        if self.type is str:
            if value not in self.choices:
                raise ValueError(
                    f"sweep parameter {name!r} takes one of {', '.join(self.choices)}, "
                    f"got {value!r}"
                )
            return value
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if self.type is int and not (isinstance(value, int) or (number and value == int(value))):
            raise ValueError(f"sweep parameter {name!r} takes an integer, got {value!r}")
        if not number or not math.isfinite(value):
            raise ValueError(f"sweep parameter {name!r} takes a number, got {value!r}")
        if not (self.low <= value <= self.high):
            raise ValueError(
                f"sweep parameter {name!r} must lie in [{self.low}, {self.high}], got {value!r}"
            )
        return self.type(value)


ALL_KINDS = ("fusion", "linear", "text_linear", "char_ngram")
PARAMETERS: dict[str, Parameter] = {
    "kind": Parameter("kind", str, choices=ALL_KINDS, kinds=ALL_KINDS),
    "fusion": Parameter("config", str, choices=("concat", "interaction")),
    "proj_dim": Parameter("config", int, 8, 2048),
    "hidden": Parameter("config", int, 8, 2048),
    "dropout": Parameter("config", float, 0.0, 0.9),
    "lr": Parameter("options", float, 1e-5, 0.1),
    "weight_decay": Parameter("options", float, 0.0, 1.0),
    "batch_size": Parameter("options", int, 8, 4096),
    "align_weight": Parameter("options", float, 0.0, 10.0),
    "modality_dropout": Parameter("options", float, 0.0, 0.9),
    "class_weights": Parameter("options", bool, kinds=ALL_KINDS),
    "topic_weights": Parameter("options", bool, kinds=ALL_KINDS),
    "epochs": Parameter("recipe", int, 1, 500),
}


@dataclass(frozen=True)
class SweepSpace:
    """A parsed, checked space: per parameter either its values or a range (random only)."""

    method: str
    seed: int
    values: dict[str, list[Any]]
    ranges: dict[str, tuple[float, float, bool]]  # name -> (low, high, log)
    source: dict[str, Any]  # the file's content, as recorded with the sweep
    include: tuple[dict[str, Any], ...] = ()  # candidates tried first (today's recipes)

    @property
    def sha256(self) -> str:
        text = json.dumps(self.source, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def expand(self, budget: int) -> list[dict[str, Any]]:
        """At most ``budget`` distinct candidates: the ``include``d ones first, then the grid
        (a seeded sample of it when larger than what is left), or random draws."""
        if not 1 <= budget <= HARD_MAX_CANDIDATES:
            raise ValueError(f"a sweep's budget must be 1 to {HARD_MAX_CANDIDATES}, got {budget}")
        first = _distinct(self.include, limit=budget)
        rng = random.Random(self.seed)
        if self.method == "grid":
            names = list(self.values)
            grid = _distinct(
                dict(zip(names, combo, strict=True))
                for combo in itertools.product(*(self.values[n] for n in names))
            )
            grid = [c for c in grid if c not in first]
            left = budget - len(first)
            if len(grid) > left:
                grid = [grid[i] for i in sorted(rng.sample(range(len(grid)), left))]
            return first + grid
        draws = (self._draw(rng) for _ in range(50 * budget))
        return _distinct([*first, *draws], limit=budget)

    def _draw(self, rng: random.Random) -> dict[str, Any]:
        drawn = {name: rng.choice(values) for name, values in self.values.items()}
        for name, (low, high, log) in self.ranges.items():
            u = rng.random()
            x = (
                math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
                if log
                else (low + u * (high - low))
            )
            parameter = PARAMETERS[name]
            drawn[name] = round(x) if parameter.type is int else float(f"{x:.4g}")
        return drawn


def load_space(source: str | Path | dict[str, Any] | None = None) -> SweepSpace:
    """The space of a file (YAML or JSON), or of an already-parsed mapping (a trigger form);
    the default space when None."""
    if source is None:
        source = DEFAULT_SPACE
    if isinstance(source, dict):
        if len(json.dumps(source)) > MAX_SPACE_BYTES:
            raise ValueError(f"a sweep space is at most {MAX_SPACE_BYTES} bytes")
        return parse_space(source)
    path = Path(source)
    if path.stat().st_size > MAX_SPACE_BYTES:
        raise ValueError(f"{path}: a sweep space is at most {MAX_SPACE_BYTES} bytes")
    import yaml

    text = path.read_text(encoding="utf-8")
    # An alias repeats a value without writing it out: a 1 KiB file of nested aliases stands for
    # gigabytes once recorded (a "billion laughs"). A space writes every value out.
    if any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, yaml.SafeLoader)):
        raise ValueError(f"{path}: a sweep space may not use YAML aliases (*name); write it out")
    data = yaml.safe_load(text)  # JSON is YAML too
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a sweep space is a mapping with version, method, parameters")
    return parse_space(data)


def parse_space(data: dict[str, Any]) -> SweepSpace:
    """Check a space's content; every error names the key and what it may hold."""
    keys = {"version", "method", "seed", "parameters", "include", "description"}
    unknown = sorted(set(data) - keys)
    if unknown:
        raise ValueError(f"unknown sweep space keys {unknown}")
    if data.get("version") != SPACE_VERSION:
        version = data.get("version")
        raise ValueError(f"sweep space version must be {SPACE_VERSION}, got {version!r}")
    method = data.get("method", "random")
    if method not in METHODS:
        raise ValueError(f"sweep space method must be one of {', '.join(METHODS)}, got {method!r}")
    description = data.get("description", "")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise ValueError(
            f"sweep space description is a text of at most {MAX_DESCRIPTION} characters"
        )
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise ValueError(f"sweep space seed must be an integer in [0, 2**31), got {seed!r}")
    parameters = data.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        raise ValueError("a sweep space needs a non-empty mapping `parameters`")
    values: dict[str, list[Any]] = {}
    ranges: dict[str, tuple[float, float, bool]] = {}
    for name, spec in parameters.items():
        if name not in PARAMETERS:
            raise ValueError(
                f"unknown sweep parameter {name!r}; known: {', '.join(sorted(PARAMETERS))}"
            )
        parameter = PARAMETERS[name]
        if not isinstance(spec, dict):
            values[name] = [parameter.check(name, spec)]
        elif "values" in spec:
            listed = spec["values"]
            if set(spec) != {"values"} or not isinstance(listed, list) or not listed:
                raise ValueError(f"sweep parameter {name!r}: `values` is a non-empty list alone")
            if len(listed) > MAX_VALUES:
                raise ValueError(f"sweep parameter {name!r}: at most {MAX_VALUES} values")
            values[name] = [parameter.check(name, v) for v in listed]  # repeats weigh a draw
        else:
            ranges[name] = _range(name, parameter, spec, method)
    include = data.get("include", [])
    if not isinstance(include, list) or len(include) > MAX_VALUES:
        raise ValueError(f"sweep space `include` is a list of at most {MAX_VALUES} candidates")
    for candidate in include:
        if not isinstance(candidate, dict):
            raise ValueError(f"sweep space `include` holds mappings, got {candidate!r}")
        for name, value in candidate.items():
            if name not in PARAMETERS:
                raise ValueError(f"unknown sweep parameter {name!r} in `include`")
            PARAMETERS[name].check(name, value)
    return SweepSpace(method, seed, values, ranges, dict(data), tuple(include))


def _range(name: str, parameter: Parameter, spec: dict[str, Any], method: str) -> tuple:
    if method != "random":
        raise ValueError(f"sweep parameter {name!r}: a range needs method random; list values")
    if parameter.type not in (int, float) or not set(spec) <= {"min", "max", "log"}:
        raise ValueError(f"sweep parameter {name!r}: give `values`, or numeric `min`/`max`/`log`")
    low, high = parameter.check(name, spec.get("min")), parameter.check(name, spec.get("max"))
    log = spec.get("log", False)
    if not isinstance(log, bool) or low > high or (log and low <= 0):
        raise ValueError(f"sweep parameter {name!r}: need min <= max, log true/false, log > 0")
    return float(low), float(high), log


def canonical(params: dict[str, Any]) -> dict[str, Any]:
    """What of ``params`` matters to its kind (fusion unless stated) and differs from the
    training options' defaults, sorted by name: two ways of writing one recipe are one."""
    from fnd_core.model.train.recipe import TrainOptions

    kind = params.get("kind", "fusion")
    defaults = TrainOptions()
    return {
        k: params[k]
        for k in sorted(params)
        if kind in PARAMETERS[k].kinds
        and not (PARAMETERS[k].target == "options" and params[k] == getattr(defaults, k))
    }


def _distinct(draws: Any, limit: int | None = None) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for draw in draws:
        candidate = canonical(draw)
        seen.setdefault(json.dumps(candidate, sort_keys=True), candidate)
        if limit is not None and len(seen) >= limit:
            break
    return list(seen.values())


def apply(
    params: dict[str, Any], config: ModelConfig, recipe: Recipe
) -> tuple[str, ModelConfig, Recipe]:
    """The candidate's kind, architecture and recipe: ``params`` over today's defaults."""
    for name, value in params.items():
        if name not in PARAMETERS:
            raise ValueError(f"unknown sweep parameter {name!r}")
        PARAMETERS[name].check(name, value)
    by_target: dict[str, dict[str, Any]] = {"config": {}, "options": {}, "recipe": {}}
    for name, value in params.items():
        if name != "kind":
            by_target[PARAMETERS[name].target][name] = value
    return (
        params.get("kind", "fusion"),
        config.replace(**by_target["config"]),
        dataclasses.replace(
            recipe,
            options=dataclasses.replace(recipe.options, **by_target["options"]),
            **by_target["recipe"],
        ),
    )
