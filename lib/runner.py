"""Execute the stage notebooks headlessly with papermill and render their HTML reports.

    python -m lib.runner feature_extraction --profile cpu --run my-run [--set epochs=5] [--force]

For each stage: check the profile's values against the notebook's parameters cell (unknown keys, wrong
types and out-of-range values stop here, before a kernel starts), execute the notebook into
`outputs/<run>/<stem>/<stem>.ipynb`, render `<stem>.html` beside it, and record `stage.json`. A failed
notebook is still saved and rendered (papermill marks the failing cell), and the command exits non-zero
with the stage, the cell and the error on one line.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import lib  # noqa: F401  (sets TensorFlow's environment before any kernel inherits it)
from lib import SuiteError, params, paths, reporting, storage

STAGE_ALIASES = {
    "feature_extraction": "01_feature_extraction", "01": "01_feature_extraction",
    "data_augmentation": "02_data_augmentation", "02": "02_data_augmentation",
    "fine_tuning": "03_fine_tuning", "03": "03_fine_tuning",
}
STAGE_FILE = "stage.json"


def stage_name(text: str) -> str:
    """Turn `feature_extraction`, `01` or `01_feature_extraction` into the notebook stem."""
    if text in paths.STAGES:
        return text
    if text in STAGE_ALIASES:
        return STAGE_ALIASES[text]
    raise SuiteError(f"Unknown stage {text!r}: use one of {', '.join(sorted(STAGE_ALIASES))} or 'all'.")


def resolve_stage_parameters(stage: str, profile: dict[str, Any], overrides: dict[str, Any]
                             ) -> dict[str, Any]:
    """Profile values, then command-line overrides, then `DATA_DIR`/`VGG16_WEIGHTS`; all checked."""
    declared = params.read_parameters(params.notebook_path(stage))
    values = params.stage_values(profile, stage)
    values.update({key: value for key, value in overrides.items() if key in declared})
    values.update(params.environment_overrides(declared))
    return params.resolve(stage, values, where=f"profile {profile['path']}")


def parameters_hash(values: dict[str, Any]) -> str:
    """A short stable hash of resolved parameters."""
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def render_html(notebook_file: Path, html_file: Path) -> Path:
    """Render an executed notebook to a standalone HTML report (images embedded), atomically."""
    import nbconvert
    import nbformat

    notebook = nbformat.read(notebook_file, as_version=4)
    body, _ = nbconvert.HTMLExporter().from_notebook_node(notebook)
    return storage.write_text(html_file, body)


def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("papermill")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


def run_stage(stage: str, profile: dict[str, Any], run: str, values: dict[str, Any]) -> dict[str, Any]:
    """Execute one stage notebook into the run folder and render it; return its `stage.json` record."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    folder = paths.stage_dir(run, stage)
    folder.mkdir(parents=True, exist_ok=True)
    # A stage being redone is not complete until it says so again.
    for stale in (STAGE_FILE, reporting.METRICS_FILE):
        storage.remove(folder / stale)
    executed = folder / f"{stage}.ipynb"
    partial = folder / f".{stage}.running.ipynb"
    injected = {**values, "run_name": run, "output_dir": str(folder), "profile_name": profile["name"]}
    print(f"\n=== {stage}  (run {run}, profile {profile['name']}) -> {folder}", flush=True)
    print("    parameters: " + ", ".join(f"{k}={v!r}" for k, v in sorted(values.items())), flush=True)
    started = time.time()
    failure = None
    try:
        papermill.execute_notebook(
            str(params.notebook_path(stage)), str(partial), parameters=injected, kernel_name="python3",
            cwd=str(paths.NOTEBOOKS_DIR), log_output=True, progress_bar=False,
        )
    except PapermillExecutionError as error:
        failure = (f"{stage} failed in cell [{error.exec_count}]: {error.ename}: "
                   f"{str(error.evalue).splitlines()[0] if error.evalue else ''}")
    except KeyboardInterrupt:
        raise
    if partial.exists():
        os.replace(partial, executed)
        render_html(executed, folder / f"{stage}.html")
    if failure:
        raise SuiteError(failure + f" (see {executed})")
    if not (folder / reporting.METRICS_FILE).is_file():
        raise SuiteError(f"{stage} finished without writing {folder / reporting.METRICS_FILE}.")
    record = {
        "stage": stage, "status": "complete", "run": run, "profile": profile["name"],
        "profile_path": profile["path"], "parameters": values, "parameters_hash": parameters_hash(values),
        "started": started, "finished": time.time(), "seconds": round(time.time() - started, 1),
        "notebook": executed.name, "report": f"{stage}.html",
    }
    storage.write_json(folder / STAGE_FILE, record)
    print(f"=== {stage} done in {record['seconds']:.0f} s: {folder / (stage + '.html')}", flush=True)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.runner", description=__doc__.split("\n\n")[0])
    parser.add_argument("stages", nargs="+", help="feature_extraction, data_augmentation, fine_tuning, all")
    parser.add_argument("--profile", default="cpu", help="profile name in params/ or path to a YAML file")
    parser.add_argument("--run", default="", help="run name (output folder); default: the profile's name")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one parameter for every stage that has it")
    arguments = parser.parse_args(argv)
    _configure_logging()
    try:
        stages = list(paths.STAGES) if arguments.stages == ["all"] else [stage_name(s) for s in arguments.stages]
        profile = params.load_profile(arguments.profile)
        run = paths.check_run_name(arguments.run or profile["name"])
        overrides = dict(params.parse_assignment(item) for item in arguments.set)
        for key in overrides:
            if not any(key in params.read_parameters(params.notebook_path(s)) for s in stages):
                raise SuiteError(f"--set {key}: no stage among {stages} has a parameter {key!r}.")
        # Check every stage's parameters before running any, so a typo in stage 3 fails in seconds.
        resolved = {stage: resolve_stage_parameters(stage, profile, overrides) for stage in stages}
        for stage in stages:
            run_stage(stage, profile, run, resolved[stage])
    except SuiteError as error:
        print(f"\nERROR: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted: the stage that was running is left incomplete and will be redone.",
              file=sys.stderr, flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
