"""A record for the docs from a `make seeds` run: `docs/records/<name>.json`, which `make docs` turns into tables.

    .venv/bin/python tools/seeds_record.py <name> --seeds-run <run> --command "<the command that ran it>"
        [--time-log <file> ...] [--what "<one sentence>"]

Reads `outputs/<run>-seeds/seeds.json` (`lib.pages.seeds`) and each complete seed's `manifest.json`, and writes what
the README's tables show, measured: the CPU (model, cores, flags) and precision the runs recorded, the versions,
the schedule `PROFILE=auto` chose (each seed's where they differ), per seed the run's minutes, what auto measured
at its start and each stage's forecasts (the one printed just before it started, and the one at the command's
start) against its actual seconds, per stage every seed's held-out and validation accuracy with counts and 95%
intervals, and the comparison with the stage before pooled over seeds.
`--time-log` is the output of `/usr/bin/time -v` around the command, or one per seed in the seeds' order: the
largest process's peak memory goes into the record, and with one per seed each command's wall clock is the seed's
minutes (otherwise the runner's own span, from its manifest). The run folders', the cache's and `.venv`'s
sizes on disk are measured here.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib import SuiteError  # noqa: E402
from lib.core import devices, paths, records, stages, storage  # noqa: E402
from lib.pages import seeds as seeds_page  # noqa: E402
from lib.run import cache_commands  # noqa: E402

RECORDS = ROOT / "docs" / "records"


def seed_row(seed: int, run: str, time_log: Path | None = None) -> dict:
    """One seed's times: its minutes (its command's wall clock from `time_log`, else the runner's span from the
    manifest) and each stage's forecasts and actual seconds."""
    manifest = records.read_manifest(run)
    if time_log:
        minutes = elapsed_minutes(time_log)
    else:
        started, finished = (datetime.fromisoformat(manifest[key]) for key in ("started", "finished"))
        minutes = round((finished - started).total_seconds() / 60, 1)
    entries = [manifest["stages"][stage.stem] for stage in stages.STAGES]
    measured = manifest.get("schedule") or {}  # What PROFILE=auto measured at the command's start.
    return {"seed": seed, "run": run, "minutes": minutes, "schedule": manifest["profile"]["description"],
            "measured_at_start": {key: measured[key] for key in ("rate_images_per_second", "training_step_seconds")
                                  if key in measured},
            "stage_seconds": [[_seconds(entry.get("forecast_seconds")), round(entry["seconds"]),
                               _seconds(entry.get("forecast_at_start_seconds") or entry.get("forecast_seconds"))]
                              for entry in entries],
            "run_folder_mb": round(cache_commands.size_of([paths.run_dir(run)]) / 1e6)}


def schedule_of(descriptions: dict[int, str]) -> str:
    """What the seeds ran: the profile's description where every seed ran the same, else the part all share once
    and each schedule with the seeds that ran it (`PROFILE=auto` sizes each command from its own measurement)."""
    texts = list(descriptions.values())
    if len(set(texts)) == 1:
        return texts[0]
    heads = {text.partition(": ")[0] for text in texts}
    head = heads.pop() + ": " if len(heads) == 1 else ""
    groups: dict[str, list[int]] = {}
    for seed, text in descriptions.items():
        groups.setdefault(text[len(head):].rstrip("."), []).append(seed)
    return head + "; ".join(f"seed{'s' if len(seeds) > 1 else ''} {' and '.join(map(str, seeds))}: {tail}"
                            for tail, seeds in groups.items()) + "."


def _seconds(value: float | None) -> int | None:
    return None if value is None else round(value)


def stage_row(stage: stages.Stage, collected: dict) -> dict:
    """One stage over the seeds: held-out and validation accuracies and the pooled comparison."""
    splits = collected["stages"][stage.stem]["splits"]
    held_out, validation = splits["test"], splits["validation"]
    keep = ("accuracy", "correct", "total", "interval_95")
    compared = held_out["compared_with_previous"]
    return {"stage": stage.heading, "held_out_photos": held_out["photos"],
            "held_out": [{key: row[key] for key in keep} for row in held_out["per_seed"]],
            "validation": [{key: row[key] for key in keep} for row in validation["per_seed"]],
            "against_previous": None if compared is None else {
                "pooled": {key: compared["pooled"][key] for key in (
                    "difference", "interval_95", "fixed", "broke", "pairs", "mcnemar_exact_p", "distinguishable")},
                "per_seed_difference": [row["difference"] for row in compared["per_seed"]],
                "seeds_better": compared["seeds_better"], "seeds_worse": compared["seeds_worse"]}}


def time_field(time_log: Path, label: str, value: str) -> re.Match:
    """The `value` pattern after `label:` in the output of `/usr/bin/time -v` that `time_log` holds."""
    found = re.search(re.escape(label) + r": " + value, time_log.read_text())
    if not found:
        raise SystemExit(f"{time_log} has no '{label}' line: give /usr/bin/time -v's output.")
    return found


def peak_memory_gb(time_logs: list[Path]) -> float:
    """The largest peak memory of the runs that `/usr/bin/time -v` wrote `time_logs` for (one, or one per seed)."""
    peaks = [int(time_field(log, "Maximum resident set size (kbytes)", r"(\d+)")[1]) for log in time_logs]
    return round(max(peaks) * 1024 / 1e9, 1)


def elapsed_minutes(time_log: Path) -> float:
    """The wall-clock minutes of the command that `/usr/bin/time -v` wrote `time_log` for."""
    found = time_field(time_log, "Elapsed (wall clock) time (h:mm:ss or m:ss)", r"(?:(\d+):)?(\d+):([\d.]+)")
    return round((int(found[1] or 0) * 3600 + int(found[2]) * 60 + float(found[3])) / 60, 1)


def build(arguments: argparse.Namespace) -> dict:
    collected = storage.read_json(paths.seeds_dir(arguments.seeds_run) / seeds_page.SEEDS_FILE)
    if collected["failed_seeds"]:
        raise SystemExit(f"Seeds that did not complete: {collected['failed_seeds']}; a record holds complete runs.")
    runs = {int(seed): run for seed, run in collected["runs"].items()}
    time_logs = [Path(log) for log in arguments.time_log]
    # One time log per seed, in the seeds' order, gives each seed its command's own wall clock.
    per_seed = time_logs if len(time_logs) == len(collected["seeds"]) else [None] * len(collected["seeds"])
    first = records.read_manifest(runs[collected["seeds"][0]])
    precision = records.read_metrics(paths.stage_dir(runs[collected["seeds"][0]], stages.STEMS[0]))["precision"]
    rows = [seed_row(seed, runs[seed], log) for seed, log in zip(collected["seeds"], per_seed)]
    record = {"kind": "seeds", "what": arguments.what, "command": arguments.command,
              "cpu": devices.cpu_fields(first["hardware"]["cpu"]), "precision": precision,
              "schedule": schedule_of({row["seed"]: row["schedule"] for row in rows}),
              "versions": {name: first["versions"][name] for name in ("suite", "tensorflow", "keras")},
              "date": first["started"][:10], "seeds": collected["seeds"], "runs": rows,
              "stages": [stage_row(stage, collected) for stage in stages.STAGES],
              "cache_gb": round(cache_commands.size_of([paths.cache_root()]) / 1e9, 1),
              "venv_gb": round(cache_commands.size_of([ROOT / ".venv"]) / 1e9, 1)}
    if time_logs:
        record["peak_memory_gb"] = peak_memory_gb(time_logs)
    return record


def main(argv: list[str], records_folder: Path = RECORDS) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="the record's name: docs/records/<name>.json")
    parser.add_argument("--seeds-run", required=True, help="the RUN of make seeds (its page is outputs/<run>-seeds/)")
    parser.add_argument("--command", required=True, help="the command that ran the seeds, as a reader would type it")
    parser.add_argument("--time-log", nargs="*", default=[],
                        help="/usr/bin/time -v's output around the command (or one per seed, where each ran alone)")
    parser.add_argument("--what", default="The default make run-all (PROFILE=auto, a 30-minute budget) from cold "
                        "caches on the real photos and ImageNet weights, once per seed.")
    arguments = parser.parse_args(argv)
    path = records_folder / f"{arguments.name}.json"
    try:
        record = build(arguments)
    except SuiteError as error:
        raise SystemExit(str(error)) from None
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}; make docs writes its tables")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
