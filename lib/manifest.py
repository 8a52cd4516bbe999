"""The run's manifest, `outputs/<run>/manifest.json`: what the run was made from and how each stage ended.

Written atomically whenever something changes, so that it always tells the truth: a stage is `running`
only while a runner is working on it (a manifest left `running` by a runner that was killed outright is
read as `interrupted`), then `complete`, `failed` or `interrupted`.
"""
from __future__ import annotations

import os
import platform
import sys
from typing import Any

from lib import devices, paths, provenance, reporting, storage

MANIFEST_FILE = "manifest.json"


def _runner_alive(record: dict[str, Any]) -> bool:
    runner = record.get("runner") or {}
    if runner.get("host") != platform.node() or not runner.get("pid"):
        return False
    try:
        os.kill(runner["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # Someone else's live process.
        return True
    return True


def read(run: str) -> dict[str, Any]:
    """The run's manifest ({} when there is none), with a runner that is gone shown as `interrupted`."""
    path = paths.run_dir(run) / MANIFEST_FILE
    if not path.is_file():
        return {}
    manifest = storage.read_json(path)
    if manifest.get("status") == "running" and not _runner_alive(manifest):
        manifest["status"] = "interrupted"
        _close_running_stages(manifest, "interrupted", "the runner was killed while this stage ran")
    elif manifest.get("status") != "running":
        _close_running_stages(manifest, "interrupted", "the runner stopped while this stage ran")
    return manifest


def _close_running_stages(manifest: dict[str, Any], status: str, message: str) -> None:
    """No stage is shown `running` once its runner is gone."""
    for record in manifest.get("stages", {}).values():
        if record.get("status") == "running":
            record["status"] = status
            record["message"] = message


def start(run: str, profile: dict[str, Any], choice: str, schedule: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's manifest as it stands before any stage runs (earlier stages' records kept)."""
    gpus = devices.gpu_descriptions() if "tensorflow" in sys.modules else []
    return {
        "run": run,
        "profile": {"name": profile["name"], "path": profile["path"],
                    "description": profile.get("description", ""), "choice": choice},
        "schedule": schedule or read(run).get("schedule"),
        "command": " ".join(sys.argv) if sys.argv else "",
        "started": reporting.now(), "finished": None, "status": "running",
        "runner": {"pid": os.getpid(), "host": platform.node()},
        "versions": provenance.versions(), "git": provenance.git_state(),
        "hardware": {"cpu": devices.describe_cpu(), "gpus": gpus, "gpus_checked": "tensorflow" in sys.modules},
        "environment": {name: os.environ.get(name) for name in
                        ("DATA_DIR", "VGG16_WEIGHTS", "TF_ENABLE_ONEDNN_OPTS", "ONEDNN_MAX_CPU_ISA")},
        "stages": read(run).get("stages", {}),
    }


def write(run: str, manifest: dict[str, Any], fingerprints: dict[Any, Any]) -> None:
    """Write the manifest atomically, with the data and weights fingerprints seen so far."""
    if "tensorflow" in sys.modules and not manifest["hardware"].get("gpus_checked"):
        manifest["hardware"].update(gpus=devices.gpu_descriptions(), gpus_checked=True)
    if fingerprints:
        manifest["inputs"] = [{"dataset": dataset, "weights": weights} for dataset, weights in fingerprints.values()]
    seeds = {record.get("parameters", {}).get("seed") for record in manifest["stages"].values()}
    manifest["seed"] = seeds.pop() if len(seeds) == 1 else sorted(s for s in seeds if s is not None)
    storage.write_json(paths.run_dir(run) / MANIFEST_FILE, manifest)


def finish(run: str, manifest: dict[str, Any]) -> None:
    """Close the manifest and rewrite the run's summary page, whatever happened."""
    from lib import summary

    manifest["finished"] = reporting.now()
    _close_running_stages(manifest, "failed" if manifest.get("status") == "failed" else "interrupted",
                          "the runner stopped while this stage ran")
    try:
        write(run, manifest, {})
        print(f"Summary: {summary.write(run)}", flush=True)
    except Exception as error:  # The summary must never hide the run's own outcome.
        print(f"(Could not write the summary page: {type(error).__name__}: {error})", file=sys.stderr, flush=True)
