"""Whether a stage of a run is up to date, and if not, what changed since it ran.

A complete stage is skipped when everything that shapes its results is as it was: its parameters, the
photos, the weights file, its notebook, the `lib/` modules the notebook imports (directly or through other
`lib/` modules; a change to the benchmark or the summary page redoes nothing), the library versions and
compute precision that change numbers, and the results of the stages before it in the same run.
"""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from lib.core import devices, paths, records, stages, storage
from lib.run import provenance

LIB_DIR = paths.PROJECT_ROOT / "lib"
# Libraries whose version changes the numbers a stage computes.
RESULT_PACKAGES = ("tensorflow", "keras", "numpy")


def short_hash(values: Any) -> str:
    """A short stable hash of JSON-able values."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def module_file(name: str) -> Path | None:
    """The file of a `lib` module by its dotted name (`lib.study.models`), or None when there is no such module."""
    parts = name.split(".")
    if parts[0] != "lib":
        return None
    base = paths.PROJECT_ROOT.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def lib_imports(source: str) -> set[str]:
    """Dotted names of the `lib` modules that Python source imports anywhere (functions included), with the
    packages they sit in (importing a module runs its packages' `__init__` too)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] == "lib":
            found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    modules = set()
    for name in found:
        parts = name.split(".")
        modules |= {".".join(parts[:end]) for end in range(1, len(parts) + 1) if module_file(".".join(parts[:end]))}
    return modules


def notebook_code(notebook: Path) -> str:
    """The code cells of a notebook as one Python source (IPython magics and shell lines left out)."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    lines = []
    for cell in cells:
        if cell["cell_type"] == "code":
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            lines += [line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


def code_files(code: str) -> list[Path]:
    """The `lib/` files a notebook's `code` runs: `lib/__init__.py`, the modules it imports and theirs, and
    the page templates when a page is rendered."""
    pending, seen = lib_imports(code) | {"lib"}, set()
    while pending:
        name = pending.pop()
        seen.add(name)
        pending |= lib_imports(module_file(name).read_text(encoding="utf-8")) - seen
    files = sorted({module_file(name) for name in seen})
    if any(name.startswith("lib.pages") for name in seen):
        files += sorted((LIB_DIR / "pages" / "templates").glob("*"))
    return files


def environment(mixed_precision: bool) -> dict[str, str]:
    """Python, the result-changing library versions, and the precision the stage's kernel will compute in.

    Whether a GPU is there decides the precision only when 16-bit compute is asked for; TensorFlow is only
    imported to find out when the machine has an NVIDIA device at all.
    """
    found = provenance.versions(RESULT_PACKAGES)
    gpus = devices.gpu_names() if mixed_precision and os.path.exists("/dev/nvidiactl") else []
    found["precision"] = devices.compute_policy(mixed_precision, gpus)
    return found


def stage_inputs(stage: str, values: dict[str, Any], run: str, fingerprints: dict[Any, Any]) -> dict[str, Any]:
    """What a stage reads besides its parameters, fingerprinted: data, weights, notebook, code, environment,
    earlier stages' results. `fingerprints` memoises the data and weights hashes across stages."""
    photo_set, weights = provenance.inputs_of(values, fingerprints)
    earlier = {}
    for previous in stages.earlier(stage):
        metrics_file = paths.stage_dir(run, previous.stem) / records.METRICS_FILE
        earlier[previous.stem] = storage.file_sha256(metrics_file) if metrics_file.is_file() else None
    code = notebook_code(stages.get(stage).notebook)
    inputs = {"dataset_sha256": photo_set["sha256"], "weights_sha256": weights["sha256"],
              # Its code cells only: running the notebook in Jupyter (outputs, counters) changes nothing here.
              "notebook_code_sha256": hashlib.sha256(code.encode()).hexdigest(),
              "code": {str(path.relative_to(paths.PROJECT_ROOT)): storage.file_sha256(path)
                       for path in code_files(code)},
              "environment": environment(bool(values.get("mixed_precision"))), "earlier_stages": earlier}
    inputs["hash"] = short_hash(inputs)
    return inputs


def changes(record: dict[str, Any], values: dict[str, Any], inputs: dict[str, Any]) -> list[str]:
    """What differs between a stage's `stage.json` record and the parameters and inputs of now."""
    found = []
    before = record.get("parameters", {})
    changed = sorted(key for key in set(before) | set(values) if before.get(key) != values.get(key))
    if changed:
        found.append("parameters changed: " + ", ".join(f"{key} {before.get(key)!r} -> {values.get(key)!r}"
                                                        for key in changed))
    old = record.get("inputs") or {}
    for key, what in (("dataset_sha256", "photos changed"), ("weights_sha256", "weights file changed"),
                      ("notebook_code_sha256", "notebook changed")):
        if old.get(key) != inputs.get(key):
            found.append(what)
    old_code, new_code = old.get("code") or {}, inputs["code"]
    code = sorted(name for name in set(old_code) | set(new_code) if old_code.get(name) != new_code.get(name))
    if code:
        found.append("lib/ changed (" + ", ".join(str(Path(name).relative_to("lib")) for name in code) + ")")
    old_environment = old.get("environment") or {}
    for key, value in inputs["environment"].items():
        if old_environment.get(key) != value:
            found.append(f"{key} {old_environment.get(key, 'unknown')} -> {value}")
    for stem, digest in inputs["earlier_stages"].items():
        if (old.get("earlier_stages") or {}).get(stem) != digest:
            found.append(f"{stem} was redone")
    return found


def completed(run: str, stems) -> set[str]:
    """The stages among `stems` whose results (metrics.json) are in the run folder."""
    return {stem for stem in stems if (paths.stage_dir(run, stem) / records.METRICS_FILE).is_file()}


@dataclasses.dataclass(frozen=True)
class Verdict:
    """Whether a stage of a run is up to date: `complete` when its `stage.json` is in the run folder (the runner
    writes it last, so an earlier attempt finished and running it again redoes it), `up_to_date` when, besides,
    every file is there and nothing that shapes the results has changed; `reason` says why, in words."""

    complete: bool
    up_to_date: bool
    reason: str


def verdict(stage: str, run: str, values: dict[str, Any], inputs: dict[str, Any]) -> Verdict:
    """The `Verdict` on `stage` of `run` with the parameters `values` and the `inputs` of now."""
    folder = paths.stage_dir(run, stage)
    record = records.read_stage_record(folder)  # A damaged one is set aside and reads as missing.
    if record is None:
        return Verdict(complete=False, up_to_date=False, reason="not complete in this run")
    missing = [name for name in (records.METRICS_FILE, f"{stage}.ipynb", f"{stage}.html")
               if not (folder / name).is_file()]
    if record.get("status") != "complete" or missing:
        return Verdict(complete=True, up_to_date=False, reason=f"{', '.join(missing)} missing" if missing
                       else f"its {records.STAGE_FILE} says {record.get('status')!r}")
    found = changes(record, values, inputs)
    if record.get("inputs_hash") == inputs["hash"] and record.get("parameters_hash") == short_hash(values):
        return Verdict(complete=True, up_to_date=True,
                       reason="same parameters, photos, weights, notebook, lib/ code, "
                       + ", ".join(f"{key} {value}" for key, value in inputs["environment"].items())
                       + " and earlier stages")
    return Verdict(complete=True, up_to_date=False, reason="; ".join(found) or "inputs changed")


def backed_up_epochs(folder: Path) -> dict[str, int]:
    """The training phases an interrupted stage backed up (`lib.study.backup`) and the epochs each had done."""
    done = {}
    for path in sorted(folder.glob("*.npz")):
        try:
            with np.load(path) as stored:  # Lazily: only the small "meta" entry is read.
                done[path.stem] = json.loads(str(stored["meta"]))["epochs_done"]
        except Exception:  # Damaged: the stage itself discards it.
            continue
    return done


def settle_backup(stage: str, run: str, values: dict[str, Any], inputs: dict[str, Any], force: bool) -> str:
    """Before a stage runs: keep the backup an interrupted attempt left when nothing that shapes its results has
    changed since, else discard it (FORCE=1 always does); record what this attempt runs with. Returns what to
    tell the user ("" when there was no backup)."""
    folder = paths.backup_dir(records.attempt_folder(run, stage))
    done, record_file = backed_up_epochs(folder), folder / "inputs.json"
    message = ""
    if done:
        epochs = ", ".join(f"{phase} {count}" for phase, count in done.items())
        record = records.read_record(record_file)
        found = (["FORCE=1"] if force else ["it has no record of its inputs"] if record is None
                 else changes(record, values, inputs))
        if found:
            storage.remove_tree(folder)
            message = f"discarded the backup of the interrupted attempt (epochs done: {epochs}): {'; '.join(found)}"
        else:
            message = f"resuming from the backup of the interrupted attempt (epochs done: {epochs})"
    storage.write_json(record_file, {"parameters": values, "inputs": inputs})
    return message
