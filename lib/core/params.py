"""Run profiles and notebook parameters: reading, merging, checking.

A notebook's cell tagged `parameters` is the schema: one annotated literal per line,
`epochs: int = 30  # Passes over the training features.` A profile (`params/<name>.yaml` or a user's own
YAML file) sets values for it:

    description: One line saying what the profile is for.
    common:              # keys given to every stage
      image_size: 150
    feature_extraction:  # keys for 01_feature_extraction only
      epochs: 30
    data_augmentation: {}
    fine_tuning: {}

papermill only warns about a parameter the notebook does not declare; this module refuses it, and a value
of the wrong type or out of range, before any kernel starts.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from lib import SuiteError
from lib.core import paths, report_split, stages

# Filled in by the runner, never by a profile.
RUNNER_KEYS = ("run_name", "output_dir", "profile_name")
# Parameters that an environment variable overrides, for running offline against local copies.
ENVIRONMENT_OVERRIDES = {"data_dir": "DATA_DIR", "weights": "VGG16_WEIGHTS"}
# Parameters whose value is a path, unless it is one of these words (`synthetic:N` counts as `synthetic`).
PATH_PARAMETERS = {"data_dir": {"", "synthetic"}, "weights": {"", "imagenet", "none"}}
# Environment variables that always name a folder.
FOLDER_VARIABLES = ("OUTPUTS_DIR", "CACHE_DIR")

_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list}
# A profile's description is shown on pages and kept in each run's manifest: plain text of a reasonable size.
DESCRIPTION_LIMIT_BYTES = 4096


class _Refused(yaml.YAMLError):
    """YAML that a profile or a `--set` value must not use; its message is one line."""


class ProfileLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` (no tags that construct Python objects) as a person writes parameters: an alias (`*name`)
    is refused as soon as it is met, before anything is built from it (a few lines of nested aliases expand to
    gigabytes once written out), and a number written with leading zeros is read as written, in decimal
    (`seed: 010` is 10, not YAML 1.1's octal 8; `09` is 9, not the text "09")."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(f"line {event.start_mark.line + 1}: an alias (*{event.anchor}) refers to another value; "
                           "aliases are not allowed here, write the value out")
        return super().compose_node(parent, index)

    def construct_yaml_int(self, node):
        text = self.construct_scalar(node).replace("_", "")
        if re.fullmatch(r"[-+]?0[0-9]+", text):
            return int(text, 10)
        return super().construct_yaml_int(node)


ProfileLoader.add_constructor("tag:yaml.org,2002:int", ProfileLoader.construct_yaml_int)
ProfileLoader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?0[0-9_]+$"), list("-+0"))


def read_yaml(text: str) -> Any:
    """Parameters written in YAML (a profile, a `--set` value), read with `ProfileLoader`; a `yaml.YAMLError`
    whose message is one line."""
    try:
        return yaml.load(text, Loader=ProfileLoader)  # noqa: S506  (a SafeLoader)
    except _Refused:
        raise
    except yaml.YAMLError as error:
        raise _Refused(" ".join(str(error).split())) from None


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One line of a notebook's parameters cell."""

    name: str
    type_name: str
    default: Any
    help: str


def parameters_cell_source(notebook_path: str | os.PathLike) -> str:
    """Return the source of the cell tagged `parameters` in a notebook."""
    notebook = json.loads(Path(notebook_path).read_text(encoding="utf-8"))
    for cell in notebook.get("cells", []):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = cell.get("source", "")
            return "".join(source) if isinstance(source, list) else source
    raise SuiteError(f"{notebook_path} has no cell tagged 'parameters'.")


def read_parameters(notebook_path: str | os.PathLike) -> dict[str, Parameter]:
    """Parse a notebook's parameters cell into `{name: Parameter}`.

    Every statement there must be `name: type = literal  # help`, so that the cell documents itself and
    the types can be checked before papermill injects values.
    """
    source = parameters_cell_source(notebook_path)
    lines = source.splitlines()
    parameters: dict[str, Parameter] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value):
            raise SuiteError(
                f"{notebook_path}: parameters cell line {node.lineno} is not `name: type = literal`."
            )
        type_name = ast.unparse(node.annotation)
        if type_name not in _TYPES:
            raise SuiteError(f"{notebook_path}: parameter {node.target.id} has unsupported type {type_name}.")
        line = lines[node.lineno - 1]
        help_text = line.split("#", 1)[1].strip() if "#" in line else ""
        parameters[node.target.id] = Parameter(
            node.target.id, type_name, ast.literal_eval(node.value), help_text
        )
    return parameters


def notebook_path(stage: str) -> Path:
    """Path of a stage's notebook from any of its names (`01_feature_extraction`, `feature_extraction`)."""
    return stages.get(stage).notebook


def declared(stage: str) -> dict[str, Parameter]:
    """The parameters a stage's notebook declares."""
    return read_parameters(notebook_path(stage))


def resolve_profile_path(profile: str) -> Path:
    """Turn a profile name (`cpu`) or a path to a YAML file into an existing path."""
    candidate = Path(profile)
    if candidate.suffix in {".yaml", ".yml"} or os.sep in profile:
        if not candidate.is_file():
            raise SuiteError(f"Profile file {profile} does not exist.")
        return candidate
    named = paths.PARAMS_DIR / f"{profile}.yaml"
    if not named.is_file():
        known = ", ".join(sorted(p.stem for p in paths.PARAMS_DIR.glob("*.yaml")))
        raise SuiteError(
            f"Unknown profile {profile!r}: choose one of {known}, or give the path to your own YAML file."
        )
    return named


def load_profile(profile: str) -> dict[str, Any]:
    """Read a profile safely and check its shape; returns the parsed mapping plus `name` and `path`.

    `read_yaml` refuses tags that would construct Python objects, and aliases.
    """
    path = resolve_profile_path(profile)
    try:
        content = read_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise SuiteError(f"Profile {path} is not valid YAML ({error}). Fix the file and run again.") from None
    except (UnicodeDecodeError, OSError) as error:
        raise SuiteError(f"Profile {path} cannot be read as UTF-8 text ({error}). Fix the file, run again.") from None
    if not isinstance(content, dict):
        raise SuiteError(f"Profile {path} must be a mapping of sections, not {type(content).__name__}.")
    allowed = {"description", "common", *(stage.section for stage in stages.STAGES)}
    for key, value in content.items():
        if key not in allowed:
            raise SuiteError(
                f"Profile {path}: unknown section {key!r}. Allowed: {', '.join(sorted(allowed))}."
            )
        if key != "description" and value is not None and not isinstance(value, dict):
            raise SuiteError(f"Profile {path}: section {key!r} must be a mapping of parameter: value.")
    _check_description(path, content.get("description"))
    return {**content, "name": path.stem, "path": str(path)}


def _check_description(path: Path, description: Any) -> None:
    """A `SuiteError` unless a profile's description is plain text (or absent) of at most 4 KB."""
    if description is not None and not isinstance(description, str):
        kind = {"dict": "a mapping", "list": "a list"}.get(type(description).__name__,
                                                           f"a value of type {type(description).__name__}")
        raise SuiteError(f"Profile {path}: description must be plain text (one YAML string), not {kind}. Write it "
                         "as one line, or as a `>-` block of lines.")
    size = len((description or "").encode("utf-8"))
    if size > DESCRIPTION_LIMIT_BYTES:
        raise SuiteError(f"Profile {path}: description is {size:,} bytes; keep it under {DESCRIPTION_LIMIT_BYTES:,} "
                         "(a few lines saying what the profile is for).")


def stage_values(profile: dict[str, Any], stage: str) -> dict[str, Any]:
    """Merge a profile's `common` section with the section of `stage` (stage wins)."""
    section = stages.get(stage).section
    return {**(profile.get("common") or {}), **(profile.get(section) or {})}


def overridden(name: str, value: Any) -> Any:
    """`value`, unless the environment variable that overrides parameter `name` is set (`DATA_DIR` for
    `data_dir`, `VGG16_WEIGHTS` for `weights`): the one place that applies these overrides."""
    variable = ENVIRONMENT_OVERRIDES.get(name)
    return os.environ.get(variable) or value if variable else value


def environment_overrides(parameters: dict[str, Parameter]) -> dict[str, str]:
    """The parameters among `parameters` that an environment variable overrides now, with its value."""
    return {name: overridden(name, None) for name in ENVIRONMENT_OVERRIDES
            if name in parameters and overridden(name, None)}


def absolute(name: str, value: Any) -> Any:
    """The value of parameter `name` with a relative path made absolute from the current folder (where the command
    was started), `~` expanded; words such as `imagenet` or `synthetic` and other parameters are left as they are.
    The kernels run in `notebooks/`, so a relative path must not reach them."""
    words = PATH_PARAMETERS.get(name)
    if words is None or not isinstance(value, str) or value.lower().split(":")[0] in words:
        return value
    return os.path.abspath(os.path.expanduser(value))


def absolute_environment() -> None:
    """Make `DATA_DIR`, `VGG16_WEIGHTS`, `OUTPUTS_DIR` and `CACHE_DIR` absolute in this process's environment, once,
    before anything reads them (the runner, and the kernels and workers that inherit its environment)."""
    for name, variable in ENVIRONMENT_OVERRIDES.items():
        if os.environ.get(variable):
            os.environ[variable] = absolute(name, os.environ[variable])
    for variable in FOLDER_VARIABLES:
        if os.environ.get(variable):
            os.environ[variable] = os.path.abspath(os.path.expanduser(os.environ[variable]))


def _check_type(name: str, value: Any, parameter: Parameter, where: str) -> Any:
    expected = _TYPES[parameter.type_name]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is float and isinstance(value, str):
        # YAML 1.1 reads `1e-5` (no dot) as a string; accept what is plainly a number.
        try:
            value = float(value)
        except ValueError:
            pass
    if expected is not bool and isinstance(value, bool) or not isinstance(value, expected):
        raise SuiteError(
            f"{where}: parameter {name!r} must be {parameter.type_name}, got {value!r} "
            f"({type(value).__name__}). {parameter.help}"
        )
    return value


VGG16_LAYERS_WITH_WEIGHTS = tuple(
    f"block{block}_conv{conv}" for block, convs in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3))
    for conv in range(1, convs + 1)
)

# Ranges that a value must fall in for the run to make sense; checked before a kernel starts.
_RANGES = {
    "epochs": (lambda v: v >= 1, "at least 1"),
    "steps_per_epoch": (lambda v: v >= 0, "0 (whole training set) or more"),
    "batch_size": (lambda v: v >= 1, "at least 1"),
    "learning_rate": (lambda v: 0 < v < 1 and math.isfinite(v), "greater than 0 and less than 1"),
    "fine_tune_learning_rate": (lambda v: 0 < v < 1 and math.isfinite(v), "greater than 0 and less than 1"),
    "dropout": (lambda v: 0 <= v < 1, "from 0 up to, not including, 1"),
    "image_size": (lambda v: v >= 32, "at least 32 (VGG16 halves the image five times)"),
    "rotation_degrees": (lambda v: 0 <= v <= 180, "from 0 to 180"),
    "width_shift": (lambda v: 0 <= v < 1, "from 0 up to, not including, 1"),
    "height_shift": (lambda v: 0 <= v < 1, "from 0 up to, not including, 1"),
    "zoom": (lambda v: 0 <= v < 1, "from 0 up to, not including, 1"),
    "preprocessing": (lambda v: v in {"vgg16", "rescale"}, "'vgg16' or 'rescale'"),
    "start_from": (lambda v: v in {"auto", "previous", "scratch"}, "'auto', 'previous' or 'scratch'"),
    "max_images_per_class": (lambda v: v >= 0, "0 (all images) or more"),
    "augmentation_pool": (lambda v: 0 <= v <= 64, "0 (online augmentation) to 64 variants per photo"),
    "seed": (lambda v: v >= 0, "0 or more"),
    "distribution": (lambda v: v in {"none", "mirrored", "multi_worker", "auto"},
                     "'none', 'mirrored', 'multi_worker' or 'auto'"),
    "image_store": (lambda v: v in {"auto", "memory", "disk"}, "'auto', 'memory' or 'disk'"),
    "report_split": (lambda v: v in report_split.CHOICES, "'auto', 'test', 'held_out' or 'none'"),
    "replicas": (lambda v: v == 0 or v >= 2, "0 (the default: all GPUs, or 2 CPU devices) or at least 2"),
    "verbose": (lambda v: v in {0, 1, 2}, "0, 1 or 2"),
    "unfreeze_layers": (lambda v: bool(v) and all(name in VGG16_LAYERS_WITH_WEIGHTS for name in v),
                        "a non-empty list of VGG16 layer names: " + ", ".join(VGG16_LAYERS_WITH_WEIGHTS)),
}


def check_value(name: str, value: Any) -> None:
    """Raise a `SuiteError` if a (type-checked) value is out of its range."""
    rule = _RANGES.get(name)
    if rule and not rule[0](value):
        raise SuiteError(f"Parameter {name!r} = {value!r} is out of range: it must be {rule[1]}.")


def resolve(stage: str, values: dict[str, Any], where: str = "profile") -> dict[str, Any]:
    """Check `values` against the stage notebook's parameters cell; return them type-normalised.

    Unknown keys, wrong types and out-of-range values raise a `SuiteError` naming the key and the fix.
    """
    known = declared(stage)
    resolved: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known or name in RUNNER_KEYS:
            candidates = ", ".join(sorted(set(known) - set(RUNNER_KEYS)))
            raise SuiteError(
                f"{where}: unknown parameter {name!r} for {stage}. Known parameters: {candidates}."
            )
        resolved[name] = _check_type(name, value, known[name], where)
        check_value(name, resolved[name])
    return resolved


def resolve_for_stage(stage: str, profile: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A stage's parameters for a run: the profile's values, then command-line overrides (those the stage
    declares), then `DATA_DIR`/`VGG16_WEIGHTS`; all checked."""
    known = declared(stage)
    values = stage_values(profile, stage)
    values.update({key: value for key, value in overrides.items() if key in known})
    values.update(environment_overrides(known))
    values = {name: absolute(name, value) for name, value in values.items()}
    return resolve(stage, values, where=f"profile {profile['path']}")


def with_defaults(stage: str, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with the notebook's defaults filled in for the parameters they leave out."""
    return {**{name: parameter.default for name, parameter in declared(stage).items()}, **values}


def check_defaults(stage: str) -> None:
    """Check a notebook's own defaults against the ranges (used by tests and the runner)."""
    for parameter in declared(stage).values():
        check_value(parameter.name, parameter.default)


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse a command-line `key=value` override; the value is read as YAML (`epochs=3`, `weights=none`)."""
    if "=" not in text:
        raise SuiteError(f"Override {text!r} must look like key=value.")
    key, raw = text.split("=", 1)
    try:
        return key.strip(), read_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        problem = str(error)
        raise SuiteError(f"SET {text!r}: the value is not valid YAML ({problem}). Quote it, e.g. "
                         f"SET=\"{key.strip()}='...'\", or fix it.") from None
