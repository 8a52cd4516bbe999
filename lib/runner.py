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
from lib import SuiteError, params, paths, provenance, reporting, storage

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


def run_stage(stage: str, profile: dict[str, Any], run: str, values: dict[str, Any],
              inputs: dict[str, Any] | None = None) -> dict[str, Any]:
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
    print(f" {stage}  (run {run}, profile {profile['name']}) -> {folder}", flush=True)
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
    if partial.exists():
        os.replace(partial, executed)
        render_html(executed, folder / f"{stage}.html")
    if failure:
        raise SuiteError(failure + f" (see {executed})")
    if not (folder / reporting.METRICS_FILE).is_file():
        raise SuiteError(f"{stage} finished without writing {folder / reporting.METRICS_FILE}.")
    finished = time.time()
    record = {
        "stage": stage, "status": "complete", "run": run, "profile": profile["name"],
        "profile_path": profile["path"], "parameters": values, "parameters_hash": parameters_hash(values),
        "started": started, "finished": finished, "seconds": round(finished - started, 1),
        "notebook": executed.name, "report": f"{stage}.html",
        "inputs": inputs or {}, "inputs_hash": (inputs or {}).get("hash"),
    }
    storage.write_json(folder / STAGE_FILE, record)
    print(f"=== {stage} done in {record['seconds']:.0f} s: {folder / (stage + '.html')}", flush=True)
    return record


def choose_auto_profile() -> tuple[str, str]:
    """`PROFILE=auto`: the full reference profile when TensorFlow sees a GPU, the CPU profile otherwise."""
    gpus = provenance.gpu_descriptions()
    if gpus:
        return "full", f"PROFILE=auto chose 'full': TensorFlow sees {len(gpus)} GPU(s) ({', '.join(gpus)})."
    return "cpu", "PROFILE=auto chose 'cpu': TensorFlow sees no GPU, so the reference schedule would take hours."


def profile_from_manifest(path: str) -> dict[str, Any]:
    """A profile that repeats the parameters a manifest recorded for each stage (`FROM=manifest.json`)."""
    manifest_path = Path(path)
    if not manifest_path.is_file():
        raise SuiteError(f"Manifest {path} does not exist: give outputs/<run>/manifest.json of an earlier run.")
    manifest = storage.read_json(manifest_path)
    profile: dict[str, Any] = {"name": manifest.get("profile", {}).get("name", "from-manifest"),
                               "path": str(manifest_path),
                               "description": f"parameters of run {manifest.get('run')} ({manifest_path})"}
    sections = {stage: section for section, stage in params.SECTIONS.items()}
    for stage, record in manifest.get("stages", {}).items():
        profile[sections[stage]] = dict(record["parameters"])
    return profile


def stage_inputs(stage: str, values: dict[str, Any], run: str, fingerprints: dict[str, Any]) -> dict[str, Any]:
    """What a stage reads besides its parameters: data, weights, its notebook, the earlier stages' results."""
    key = (values.get("data_dir", ""), values.get("weights", "imagenet"))
    if key not in fingerprints:
        fingerprints[key] = (provenance.dataset_fingerprint(key[0]), provenance.weights_fingerprint(key[1]))
    dataset, weights = fingerprints[key]
    earlier = {}
    for previous in paths.STAGES[: paths.STAGES.index(stage)]:
        metrics_file = paths.stage_dir(run, previous) / reporting.METRICS_FILE
        earlier[previous] = provenance.file_sha256(metrics_file) if metrics_file.is_file() else None
    inputs = {"dataset_sha256": dataset["sha256"], "weights_sha256": weights["sha256"],
              "notebook_sha256": provenance.file_sha256(params.notebook_path(stage)), "earlier_stages": earlier}
    inputs["hash"] = parameters_hash(inputs)
    return inputs


def is_up_to_date(stage: str, run: str, values: dict[str, Any], inputs: dict[str, Any]) -> bool:
    """A stage can be skipped: complete, with every artifact, same parameters and same inputs."""
    folder = paths.stage_dir(run, stage)
    record_file = folder / STAGE_FILE
    if not record_file.is_file():
        return False
    record = storage.read_json(record_file)
    needed = (reporting.METRICS_FILE, f"{stage}.ipynb", f"{stage}.html")
    return (record.get("status") == "complete" and record.get("parameters_hash") == parameters_hash(values)
            and record.get("inputs_hash") == inputs["hash"] and all((folder / name).is_file() for name in needed))


def forecast(stages: list[str], resolved: dict[str, dict], fingerprints: dict[str, Any]) -> None:
    """Print roughly how long the stages will take here, from a short conv-base measurement."""
    from lib import estimate

    settings = {(values.get("image_size", 150), values.get("mixed_precision", False)) for values in resolved.values()}
    rates = {setting: estimate.conv_base_rate(*setting) for setting in settings}
    total = 0.0
    for stage in stages:
        values = resolved[stage]
        dataset = fingerprints[(values.get("data_dir", ""), values.get("weights", "imagenet"))][0]
        counts = {split: len(info["files"]) for split, info in dataset["splits"].items()}
        if values.get("max_images_per_class"):
            counts = {split: min(count, 2 * values["max_images_per_class"]) for split, count in counts.items()}
        rate = rates[(values.get("image_size", 150), values.get("mixed_precision", False))]
        seconds = estimate.stage_seconds(stage, values, counts, rate)
        total += seconds
        print(f"    forecast {stage}: about {seconds / 60:.0f} min", flush=True)
    rate_text = ", ".join(f"{rate:.0f} images/s at {size}px{' (16-bit)' if mixed else ''}"
                          for (size, mixed), rate in rates.items())
    print(f"    forecast total: about {total / 60:.0f} min (conv base measured here: {rate_text}; "
          "cached features make it shorter)", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib.runner", description=__doc__.split("\n\n")[0])
    parser.add_argument("stages", nargs="+", help="feature_extraction, data_augmentation, fine_tuning, all")
    parser.add_argument("--profile", default="auto",
                        help="auto (full with a GPU, else cpu), a profile name in params/, or a YAML file")
    parser.add_argument("--run", default="", help="run name (output folder); default: the profile's name")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one parameter for every stage that has it")
    parser.add_argument("--force", action="store_true", help="redo stages even when they are up to date")
    parser.add_argument("--from", dest="from_manifest", default="",
                        help="rerun with the parameters recorded in an earlier run's manifest.json")
    parser.add_argument("--no-forecast", action="store_true", help="skip the duration forecast")
    arguments = parser.parse_args(argv)
    _configure_logging()
    run = ""
    manifest: dict[str, Any] = {}
    try:
        stages = list(paths.STAGES) if arguments.stages == ["all"] else [stage_name(s) for s in arguments.stages]
        choice = ""
        if arguments.from_manifest:
            profile = profile_from_manifest(arguments.from_manifest)
            choice = f"Parameters repeated from {arguments.from_manifest}."
        elif arguments.profile == "auto":
            name, choice = choose_auto_profile()
            profile = params.load_profile(name)
        else:
            profile = params.load_profile(arguments.profile)
        if choice:
            print(choice, flush=True)
        run = paths.check_run_name(arguments.run or profile["name"])
        overrides = dict(params.parse_assignment(item) for item in arguments.set)
        for key in overrides:
            if not any(key in params.read_parameters(params.notebook_path(s)) for s in stages):
                raise SuiteError(f"--set {key}: no stage among {stages} has a parameter {key!r}.")
        # Check every stage's parameters before running any, so a typo in stage 3 fails in seconds.
        resolved = {stage: resolve_stage_parameters(stage, profile, overrides) for stage in stages}
        if any(values.get("require_gpu") for values in resolved.values()) and not provenance.gpu_descriptions():
            raise SuiteError(
                f"Profile {profile['name']} asks for a GPU (require_gpu: true), but TensorFlow sees none. Use "
                "PROFILE=cpu (or auto), or SET=require_gpu=false to run this schedule on the CPU anyway (hours)."
            )
        folder = paths.run_dir(run)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            storage.write_text(folder / ".write-check", "ok\n")
            storage.remove(folder / ".write-check")
        except OSError as error:
            raise SuiteError(f"Cannot write to the output folder {folder} ({error.strerror}). Set OUTPUTS_DIR "
                             "to a writable folder, or fix the folder's permissions.") from None
        manifest = start_manifest(run, profile, choice, arguments)
        fingerprints: dict[str, Any] = {}
        forecast_done = arguments.no_forecast
        for number, stage in enumerate(stages, start=1):
            values = resolved[stage]
            inputs = stage_inputs(stage, values, run, fingerprints)
            if not arguments.force and is_up_to_date(stage, run, values, inputs):
                record = storage.read_json(paths.stage_dir(run, stage) / STAGE_FILE)
                print(f"\n=== [{number}/{len(stages)}] {stage}: skipped, complete with the same parameters and "
                      f"inputs ({paths.stage_dir(run, stage)}). FORCE=1 redoes it.", flush=True)
                manifest["stages"][stage] = {**record, "skipped_this_time": True}
                write_manifest(run, manifest, fingerprints)
                continue
            if not forecast_done:
                forecast(stages[number - 1:], resolved, fingerprints)
                forecast_done = True
            print(f"\n=== [{number}/{len(stages)}]", end="", flush=True)
            manifest["stages"][stage] = {"status": "running", "parameters": values}
            write_manifest(run, manifest, fingerprints)
            try:
                record = run_stage(stage, profile, run, values, inputs)
            except SuiteError:
                manifest["stages"][stage]["status"] = "failed"
                raise
            manifest["stages"][stage] = {**record, "skipped_this_time": False}
            write_manifest(run, manifest, fingerprints)
        manifest["status"] = "complete"
    except SuiteError as error:
        manifest["status"] = "failed"
        print(f"\nERROR: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        manifest["status"] = "interrupted"
        print("\nInterrupted: the stage that was running is left incomplete and will be redone.",
              file=sys.stderr, flush=True)
        return 130
    finally:
        if run and manifest:
            finish_run(run, manifest)
    return 0


def start_manifest(run: str, profile: dict[str, Any], choice: str, arguments) -> dict[str, Any]:
    """The run's manifest as it stands before any stage runs (earlier stages' records kept)."""
    existing_file = paths.run_dir(run) / "manifest.json"
    existing = storage.read_json(existing_file) if existing_file.is_file() else {}
    gpus = provenance.gpu_descriptions() if "tensorflow" in sys.modules else []
    return {
        "run": run,
        "profile": {"name": profile["name"], "path": profile["path"],
                    "description": profile.get("description", ""), "choice": choice},
        "command": " ".join(sys.argv) if sys.argv else "",
        "started": reporting.now(), "finished": None, "status": "running",
        "versions": provenance.versions(), "git": provenance.git_state(),
        "hardware": {"cpu": provenance.cpu_description(), "gpus": gpus, "gpus_checked": "tensorflow" in sys.modules},
        "environment": {name: os.environ.get(name) for name in ("DATA_DIR", "VGG16_WEIGHTS", "TF_ENABLE_ONEDNN_OPTS")},
        "stages": existing.get("stages", {}),
    }


def write_manifest(run: str, manifest: dict[str, Any], fingerprints: dict[str, Any]) -> None:
    """Write the manifest atomically, with the data and weights fingerprints seen so far."""
    if "tensorflow" in sys.modules and not manifest["hardware"].get("gpus_checked"):
        manifest["hardware"].update(gpus=provenance.gpu_descriptions(), gpus_checked=True)
    if fingerprints:
        manifest["inputs"] = [{"dataset": dataset, "weights": weights} for dataset, weights in fingerprints.values()]
    seeds = {record.get("parameters", {}).get("seed") for record in manifest["stages"].values()}
    manifest["seed"] = seeds.pop() if len(seeds) == 1 else sorted(s for s in seeds if s is not None)
    storage.write_json(paths.run_dir(run) / "manifest.json", manifest)


def finish_run(run: str, manifest: dict[str, Any]) -> None:
    """Close the manifest and rewrite the run's summary page, whatever happened."""
    from lib import summary

    manifest["finished"] = reporting.now()
    try:
        write_manifest(run, manifest, {})
        page = summary.write(run)
        print(f"Summary: {page}", flush=True)
    except Exception as error:  # The summary must never hide the run's own outcome.
        print(f"(Could not write the summary page: {error})", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
