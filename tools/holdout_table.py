"""An honest measure of a schedule: choices on one half of the validation photos, scores on the other.

    DATA_DIR=... VGG16_WEIGHTS=... .venv/bin/python tools/holdout_table.py [--profile cpu] [--rung 1,20,2]
        [--seeds 42 7 123] [--set key=value ...] [--record NAME]

Splits the validation photos of `DATA_DIR` in two by name within each class (the selection half: the first 250
cats and 250 dogs, shown to the stages as their validation photos, so every choice a stage makes (best epoch,
temperature, what the next stage starts from) is made there; the report half: the other 500, shown as the test
split, which no stage chooses on). Training photos are unchanged; everything is linked, nothing copied
(`outputs/holdout-table/data`). It then runs all three stages of the profile once per seed (the runner's command
line of `make seeds`, `lib.run.seeds`), with `--set` values on top (the levers under study), and prints per stage
the report half's accuracy for each seed, its mean and spread (largest minus smallest), with the selection half's
mean beside it. `--rung POOL,EPOCHS2,EPOCHS3[,SIZE[,tta]]` runs the profile with one rung of `PROFILE=auto`'s
ladder (`lib.run.schedule.LADDER`, `Rung.key`). A schedule's recipe is chosen on the selection half; only the
report half's columns say what it is worth. `--record NAME` keeps the rung's row (every seed, the command, the
CPU) in `docs/records/NAME.json`, the table of measured rungs that orders auto's ladder (`make docs` draws it).

The seeds share one cache (`outputs/holdout-table/cache`): blocks 1-4 of each photo are computed once.
On a 2-core CPU with native bfloat16 (AVX-512) the default three seeds of the cpu profile take 25-30 minutes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib import SuiteError  # noqa: E402
from lib.core import devices, marks, params, paths, records, stages, storage  # noqa: E402
from lib.pages import compare, seeds  # noqa: E402
from lib.run import schedule  # noqa: E402
from lib.run import seeds as seeds_command  # noqa: E402
from tools.pool_table import split  # noqa: E402


def run_name(profile: str, seed: int, settings: list[str]) -> str:
    """The run folder of one seed: runs with other --set values get their own (a rerun of the same settings
    skips what is done)."""
    levers = "-" + hashlib.sha256("\n".join(sorted(settings)).encode()).hexdigest()[:6] if settings else ""
    return f"holdout-{Path(profile).stem}{levers}-s{seed}"


def run(data: Path, profile: str, seed: int, settings: list[str], work: Path) -> dict[str, dict]:
    """One run of all stages on the split photos; per stage, what `compare.stage_results` reads."""
    name = run_name(profile, seed, settings)
    env = dict(os.environ, DATA_DIR=str(data), CACHE_DIR=str(work / "cache"))
    command = seeds_command.runner_command(name, seed, profile, settings, ["--no-forecast"])
    print(f"{name}: running (log: {work / (name + '.log')})", flush=True)
    with open(work / f"{name}.log", "w") as log:
        subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    recorded = records.read_manifest(name)["stages"]
    return {stage.stem: compare.stage_results(name, stage, recorded[stage.stem]) for stage in stages.STAGES}


def rung_profile(profile: str, rung: str, work: Path) -> str:
    """A profile file: `profile` with the rung `POOL,EPOCHS2,EPOCHS3[,SIZE[,tta]]` of auto's ladder
    (`schedule.with_rung`)."""
    try:
        chosen = schedule.Rung.parse(rung)
    except SuiteError as error:
        raise SystemExit(f"--rung: {error}") from None
    sized = schedule.with_rung(params.load_profile(profile), chosen, schedule.DEFAULT_BUDGET_MINUTES)
    path = work / f"{Path(profile).stem}-rung-{chosen.key().replace(',', '-')}.yaml"
    storage.write_text(path, yaml.safe_dump({key: value for key, value in sized.items() if key not in ("name", "path")},
                                            sort_keys=False))
    return str(path)


def rung_of(manifest: dict) -> schedule.Rung:
    """The rung of auto's ladder that a run ran: its pool, epochs, image size and test-time augmentation as its
    `manifest` recorded them."""
    recorded = manifest["stages"]
    values = {stem: recorded[stem]["parameters"] for stem in ("02_data_augmentation", "03_fine_tuning")}
    third = values["03_fine_tuning"]
    return schedule.Rung(third["augmentation_pool"], values["02_data_augmentation"]["epochs"], third["epochs"],
                         third["image_size"], bool(third.get("test_time_augmentation")))


def per_seed(values: list[float]) -> str:
    """Accuracies of the seeds in order, the way the tables print them."""
    return " / ".join(f"{value:.3f}" for value in values)


def spread(values: list[float]) -> str:
    """The mean of `values` and their spread (largest minus smallest, `lib.pages.seeds.spread`, as `make seeds`
    computes them), the way the table prints them."""
    found = seeds.spread(values)
    return f"{found['mean']:.4f} (spread {found['range']:.3f})"


def table(results: dict[int, dict[str, dict]], seeds: list[int]) -> list[str]:
    """The printed table: one row per stage, the report half's accuracy per seed, its mean and spread."""
    lines = [f"| stage | report half, seeds {' / '.join(map(str, seeds))} | report half mean | "
             "selection half mean | report half with TTA |", "| --- | --- | --- | --- | --- |"]
    for stage in stages.STAGES:
        rows = [results[seed][stage.stem] for seed in seeds]
        report = [row["test_accuracy"] for row in rows]
        selection = [row["val_accuracy"] for row in rows]
        tta = [row["test_accuracy_tta"] for row in rows if row.get("test_accuracy_tta") is not None]
        lines.append(f"| {stage.number}. {stage.title} | {per_seed(report)} | "
                     f"{spread(report)} | {statistics.fmean(selection):.4f} | "
                     f"{spread(tta) if len(tta) == len(seeds) else 'off'} |")
    return lines


def parser_of(description: str) -> argparse.ArgumentParser:
    """The command line of a holdout run (`--profile`, `--rung`, `--seeds`, `--set`), which the tools reading it
    share."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="cpu", help="a profile name (cpu, full, smoke) or a YAML file")
    parser.add_argument("--rung", default="", help="POOL,EPOCHS2,EPOCHS3: a rung of PROFILE=auto's ladder, e.g. 1,20,2")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 123])
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a parameter for every run, as make's SET (repeatable)")
    parser.add_argument("--record", default="", metavar="NAME",
                        help="also keep the rung's row in docs/records/NAME.json (the ladder's table, make docs)")
    return parser


def prepare(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[Path, Path, str]:
    """The holdout folder, the split photos (made if missing) and the profile the runs use."""
    if not os.environ.get("DATA_DIR"):
        parser.error("set DATA_DIR to the photos (train/, validation/) and VGG16_WEIGHTS to the weights file")
    work = marks.make_folder(paths.outputs_root() / "holdout-table", "holdout table runs")
    data = split(Path(os.environ["DATA_DIR"]).resolve(), work / "data")
    return work, data, rung_profile(args.profile, args.rung, work) if args.rung else args.profile


def record_row(results: dict[int, dict[str, dict]], seeds: list[int], names: list[str]) -> dict:
    """The rung's row of a `held_out_rungs` record from the runs `names` (one per seed): what ran, on which CPU, the
    stages' minutes summed, and per stage each seed's report-half accuracy (with test-time augmentation too where
    it was on) and selection-half accuracy."""
    manifests = [records.read_manifest(name) for name in names]
    manifest, rung = manifests[0], rung_of(manifests[0])
    first = records.read_metrics(paths.stage_dir(names[0], stages.STEMS[0]))

    def column(stage: stages.Stage, key: str) -> list[float] | None:
        found = [results[seed][stage.stem].get(key) for seed in seeds]
        return None if None in found else [round(value, 4) for value in found]

    minutes = sum(stage["seconds"] for each in manifests for stage in each["stages"].values()) / 60
    return {"rung": rung.key(), "schedule": rung.describe(), "command": " ".join([
            "DATA_DIR=... VGG16_WEIGHTS=... .venv/bin/python tools/holdout_table.py", *sys.argv[1:]]),
            "minutes": round(minutes, 1), "cpu": devices.cpu_fields(manifest["hardware"]["cpu"]),
            "precision": first["precision"],
            "suite": manifest["versions"]["suite"], "date": manifest["started"][:10], "seeds": seeds,
            "stages": [{"stage": f"{stage.number}. {stage.title}", "held_out": column(stage, "test_accuracy"),
                        "held_out_tta": column(stage, "test_accuracy_tta"),
                        "selection": column(stage, "val_accuracy")} for stage in stages.STAGES]}


def keep_row(path: Path, row: dict) -> None:
    """Put `row` into the `held_out_rungs` record at `path`, in place of an earlier row of the same rung."""
    record = storage.read_json(path) if path.is_file() else {
        "kind": "held_out_rungs", "what": "Rungs of PROFILE=auto's ladder, each run once per seed: every stage "
        "chooses on 250 cats and 250 dogs of the validation photos (the selection half) and is scored on the other "
        "500 (the report half), which no choice was made on.", "rows": []}
    record["rows"] = [kept for kept in record["rows"] if kept["rung"] != row["rung"]] + [row]
    storage.write_text(path, json.dumps(record, indent=1) + "\n")
    print(f"kept the row of rung {row['rung']} in {path}; make docs writes its table")


def main() -> None:
    parser = parser_of(__doc__)
    args = parser.parse_args()
    work, data, profile = prepare(parser, args)
    results = {seed: run(data, profile, seed, args.settings, work) for seed in args.seeds}
    print("\n".join(table(results, args.seeds)))
    if args.record:
        row = record_row(results, args.seeds, [run_name(profile, seed, args.settings) for seed in args.seeds])
        keep_row(ROOT / "docs" / "records" / f"{args.record}.json", row)


if __name__ == "__main__":
    main()
