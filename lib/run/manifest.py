"""Keeping the run's manifest, `outputs/<run>/manifest.json`, true at every step: what the run was made from and
how each stage ended (its schema and how it is read: `lib.core.records`).

Written atomically whenever something changes: a stage is `running` only while a runner is working on it (a
manifest left `running` by a runner that was killed outright is read as `interrupted`), then `complete`,
`failed` or `interrupted`.
"""
from __future__ import annotations

import os
import platform
import sys
from typing import Any

from lib import SuiteError
from lib.core import devices, paths, records, storage, versions
from lib.run import provenance


def start(run: str, profile: dict[str, Any], choice: str, schedule: dict[str, Any] | None = None,
          planned: list[str] = ()) -> records.Manifest:
    """The run's manifest as it stands before any stage runs: earlier stages' records kept, and the `planned`
    stages not complete shown as `waiting`."""
    gpus = devices.gpu_descriptions() if "tensorflow" in sys.modules else []
    earlier = records.read_manifest(run)
    stages = earlier.get("stages", {})
    stages.update({stem: records.ManifestStage(status="waiting") for stem in planned
                   if stages.get(stem, {}).get("status") != "complete"})
    return records.Manifest(
        run=run,
        profile={"name": profile["name"], "path": profile["path"], "description": profile.get("description", ""),
                 "choice": choice},
        schedule=schedule or earlier.get("schedule"), command=" ".join(sys.argv) if sys.argv else "",
        started=records.now(), finished=None, status="running", runner={"pid": os.getpid(), "host": platform.node()},
        versions={"suite": versions.SUITE_VERSION, **provenance.versions()}, git=provenance.git_state(),
        hardware={"cpu": devices.describe_cpu(), "gpus": gpus, "gpus_checked": "tensorflow" in sys.modules},
        environment={name: os.environ.get(name) for name in
                     ("DATA_DIR", "VGG16_WEIGHTS", "TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA")},
        stages=stages,
    )


def write(run: str, manifest: records.Manifest, fingerprints: dict[Any, Any]) -> None:
    """Write the manifest atomically, with the data and weights fingerprints seen so far."""
    if "tensorflow" in sys.modules and not manifest["hardware"].get("gpus_checked"):
        manifest["hardware"].update(gpus=devices.gpu_descriptions(), gpus_checked=True)
    if fingerprints:
        manifest["inputs"] = [{"dataset": dataset, "weights": weights} for dataset, weights in fingerprints.values()]
    seeds = {record.get("parameters", {}).get("seed") for record in manifest["stages"].values()}
    manifest["seed"] = seeds.pop() if len(seeds) == 1 else sorted(s for s in seeds if s is not None)
    path = paths.run_dir(run) / records.MANIFEST_FILE
    try:
        storage.write_json(path, manifest)
    except OSError as error:  # A full disk is a SuiteError already (`lib.core.storage`).
        raise SuiteError(f"Could not write the run's manifest {path} ({error.strerror or error}). Fix the output "
                         "folder (space, permissions), then run the same command again.") from None


def running(parameters: dict[str, Any]) -> records.ManifestStage:
    """A stage's entry while a runner works on it."""
    return records.ManifestStage(status="running", parameters=parameters)


def completed(record: records.StageRecord, forecast_seconds: float | None, skipped: bool,
              at_start: float | None = None) -> records.ManifestStage:
    """A completed stage's entry: its `stage.json` record, the forecast it had just before it ran (and the one made at
    the command's start, where it was measured again), and whether this command skipped it."""
    entry = records.ManifestStage(**record, forecast_seconds=forecast_seconds, skipped_this_time=skipped)
    if at_start is not None:
        entry["forecast_at_start_seconds"] = at_start
    return entry


def kept(earlier: records.ManifestStage, record: records.StageRecord) -> records.ManifestStage:
    """A skipped stage's entry: its `stage.json` record, with the forecasts the manifest had for it when they were
    made for that same run of the stage (else none)."""
    same = earlier.get("finished") == record.get("finished")
    return completed(record, earlier.get("forecast_seconds") if same else None, True,
                     earlier.get("forecast_at_start_seconds") if same else None)


def finish(run: str, manifest: records.Manifest) -> None:
    """Close the manifest whatever happened: no stage is left `running` or `waiting`. It is the runner's last word,
    said after the run's own outcome: a failure to write it is one line, never an error on top of that outcome (the
    manifest on disk then still says `running`, which readers take as interrupted once the runner is gone)."""
    manifest["finished"] = records.now()
    records.close_running_stages(manifest, "failed" if manifest.get("status") == "failed" else "interrupted",
                                 "the runner stopped while this stage ran")
    try:
        write(run, manifest, {})
    except SuiteError as error:
        print(f"(The manifest was not closed: {error})", file=sys.stderr, flush=True)
