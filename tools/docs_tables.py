"""The results tables of README.md and docs/*.md, written from the records in docs/records/.

    .venv/bin/python tools/docs_tables.py           (make docs: rewrite every table from its record)
    .venv/bin/python tools/docs_tables.py --check   (make lint: fail, naming the table, where one differs)

A table generated from a record sits between two comments, `<!-- record: NAME -->` and `<!-- end record -->`,
and is written from `docs/records/NAME.json`: what was measured, the command, the CPU (model and flags) and the
date. `<!-- record: NAME, OTHER VIEW -->` draws the view VIEW (a function below) from the records named. A new
measurement is a new or changed record, then `make docs`; never a hand edit of the table, which `--check` (and
`tests/test_docs_tables.py`) would find.

Each record names its `kind`, the function below that draws it:
- `default_run`: per seed, the schedule auto chose, the validation accuracy of each stage, each stage's forecast
  and actual seconds with the forecast's error as measured, the command's minutes and the rerun's time;
- `held_out_seeds`: per stage, the held-out accuracy of each seed, their mean and spread (computed here), and the
  mean of the photos that chose;
- `held_out_rungs` (`tools/holdout_table.py --record` keeps one row per rung): per rung of auto's ladder the report
  half's mean accuracy per stage over seeds, with test-time augmentation too, and the selection half's;
- `seeds` (`tools/seeds_record.py` writes it from a `make seeds` run): per stage every seed's held-out accuracy
  with its 95% interval, their mean and range, the validation mean and the stage against the one before pooled
  over seeds; then the command, CPU, precision, versions and date it was measured with.
- `workflow_steps` (`tools/workflow_steps.py --record` writes it): each CI step run in a clone, its result and time.
Views: `times` (a `seeds` record: per seed the minutes and each stage's forecast against its actual seconds),
`needs` (a `seeds` record and a `seeds` or `default_run` one: what a run needs, the README's table), `test_times` (a
`workflow_steps` record: how long the tests take, one sentence).
"""
from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib.core import uncertainty  # noqa: E402

RECORDS = ROOT / "docs" / "records"
BLOCK = re.compile(r"(<!-- record: (?P<name>[a-z0-9-]+(?:, [a-z0-9-]+)*)(?: (?P<view>[a-z_]+))? -->\n)"
                   r"(?P<table>.*?)(<!-- end record -->)", re.DOTALL)


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join([_row(header), _row(["---"] * len(header)), *(_row(row) for row in rows)]) + "\n"


def default_run(record: dict) -> str:
    """The default `make run-all`, one row per seed."""
    rows = []
    for run in record["rows"]:
        seconds = ", ".join(f"{forecast} / {actual} ({error:+d}%)" for forecast, actual, error in run["stage_seconds"])
        rows.append([str(run["seed"]), run["schedule"], " / ".join(f"{value:.3f}" for value in run["val_accuracy"]),
                     seconds, f"{run['minutes']:.1f} min", run["again"]])
    return _table(["seed", "schedule auto chose", "validation accuracy, stages 1 / 2 / 3",
                   "stage seconds, forecast / actual (1, 2, 3)", "`make run-all`", "again"], rows)


def held_out_seeds(record: dict) -> str:
    """Held-out accuracy per stage over seeds: each seed's, the mean and the spread, and the choosing photos' mean."""
    seeds = " / ".join(str(seed) for seed in record["seeds"])
    rows = []
    for stage in record["rows"]:
        values = stage["held_out"]
        spread = max(values) - min(values)
        rows.append([stage["stage"], " / ".join(f"{value:.3f}" for value in values),
                     f"{statistics.fmean(values):.3f} ({spread:.3f})", f"{stage['choosing_mean']:.3f}"])
    return _table(["stage", f"held-out half, seeds {seeds}", "held-out mean (spread)", "choosing half mean"], rows)


def _means(values: list[list[float] | None]) -> str:
    """Per stage the mean over seeds, as `97.4 / 97.6 / 97.8`; `off` where a stage has none."""
    if any(column is None for column in values):
        return "off"
    return " / ".join(f"{100 * statistics.fmean(column):.2f}" for column in values)


def held_out_rungs(record: dict) -> str:
    """Rungs of auto's ladder, each over seeds (`tools/holdout_table.py --record`): per stage the report half's mean
    accuracy, with test-time augmentation too, and the selection half's; then each row's command and CPU."""
    rows, commands = [], []
    for row in record["rows"]:
        stages = row["stages"]
        rows.append([f"`{row['rung']}`: {row['schedule']}", " / ".join(map(str, row["seeds"])),
                     _means([stage["held_out"] for stage in stages]),
                     _means([stage["held_out_tta"] for stage in stages]),
                     _means([stage["selection"] for stage in stages])])
        commands.append(f"- `{row['rung']}`: `{row['command']}`, {row['minutes']:.1f} min for the seeds on an "
                        f"{_cpu(row)} in {row['precision']}, suite {row['suite']}, {row['date']}.")
    return _table(["rung", "seeds", "report half, mean %, stages 1 / 2 / 3", "with test-time augmentation",
                   "selection half, mean %"], rows) + "\n" + "\n".join(commands) + "\n"


def _percent(value: float) -> str:
    return f"{100 * value:.2f}%"


def _measured_with(record: dict) -> str:
    versions = record["versions"]
    return (f"Measured with `{record['command']}` on an {_cpu(record)} in {record['precision']}, suite "
            f"{versions['suite']}, TensorFlow "
            f"{versions['tensorflow']}, Keras {versions['keras']}, {record['date']}; schedule: "
            f"{record['schedule'][0].lower()}{record['schedule'][1:]}\n")


def _against_previous(compared: dict | None, seeds: int) -> str:
    if compared is None:
        return ""
    pooled = compared["pooled"]
    low, high = pooled["interval_95"]
    verdict = uncertainty.PairedComparison(pooled["fixed"], pooled["broke"], pooled["pairs"], pooled["difference"],
                                           low, high, pooled["mcnemar_exact_p"]).verdict
    return (f"{100 * pooled['difference']:+.2f} points ({100 * low:+.2f} to {100 * high:+.2f}), fixed "
            f"{pooled['fixed']}, broke {pooled['broke']}: {verdict}; seeds better / worse alone: "
            f"{compared['seeds_better']} / {compared['seeds_worse']} of {seeds}")


def seeds(record: dict) -> str:
    """A `make seeds` run: per stage each seed's held-out accuracy with its interval, mean and range, validation
    mean, the stage against the one before (every seed's photos pooled), then what it was measured with."""
    rows = []
    for stage in record["stages"]:
        held_out = [row["accuracy"] for row in stage["held_out"]]
        each = " / ".join(f"{_percent(row['accuracy'])} ({100 * row['interval_95'][0]:.1f}-"
                          f"{100 * row['interval_95'][1]:.1f})" for row in stage["held_out"])
        rows.append([stage["stage"], each, f"{_percent(statistics.fmean(held_out))} ({_percent(min(held_out))}-"
                     f"{_percent(max(held_out))})",
                     _percent(statistics.fmean(row["accuracy"] for row in stage["validation"])),
                     _against_previous(stage["against_previous"], len(record["seeds"]))])
    seeds_named = " / ".join(str(seed) for seed in record["seeds"])
    first = record["stages"][0]
    table = _table(["stage", f"held-out accuracy (95% interval), seeds {seeds_named}", "mean (range)",
                    "validation mean", "against the stage before, seeds pooled (95% interval)"], rows)
    return table + f"\nHeld out: {first['held_out_photos']}. " + _measured_with(record)


def times(record: dict) -> str:
    """A `make seeds` run's times: per seed the minutes, each stage's forecast and actual seconds, the run folder."""
    rows = []
    for run in record["runs"]:
        stage_seconds = ", ".join(_forecast_cell(*seconds) for seconds in run["stage_seconds"])
        rows.append([str(run["seed"]), f"{run['minutes']:.1f} min", stage_seconds, f"{run['run_folder_mb']} MB"])
    return _table(["seed", "the seed's run", "stage seconds, forecast / actual (1, 2, 3)", "run folder"],
                  rows) + "\n" + _measured_with(record)


def _forecast_cell(forecast: int | None, actual: int, at_start: int | None = None) -> str:
    """`forecast / actual (error)`, the forecast printed just before the stage; where the one at the command's
    start differed (newer records keep both), that one too, with its own error."""
    if not forecast:
        return f"none / {actual}"
    cell = f"{forecast} / {actual} ({100 * (actual - forecast) / forecast:+.0f}%)"
    if at_start and at_start != forecast:
        cell += f" [at the start {at_start}: {100 * (actual - at_start) / at_start:+.0f}%]"
    return cell


def needs(record: dict, slow: dict) -> str:
    """What a run needs, from a `make seeds` record (memory, disk, time on its CPU) and a `seeds` or `default_run`
    one (time on a slow CPU)."""
    minutes = [run["minutes"] for run in record["runs"]]
    slow_minutes = [run["minutes"] for run in slow.get("runs", slow.get("rows"))]
    return _table(["", "the default run on a 2-core CPU"], [
        ["Python, tools", f"Python 3.11, `make`, {record['venv_gb']} GB for `.venv` (TensorFlow "
         f"{record['versions']['tensorflow']}, Keras {record['versions']['keras']}; `requirements.txt` pins all)"],
        ["memory", f"{record['peak_memory_gb']} GB at peak (the largest process, `/usr/bin/time -v`)"],
        ["disk", f"{record['cache_gb']} GB of cache in `outputs/cache/` per configuration (photos, weights, image "
         f"size, precision), {max(run['run_folder_mb'] for run in record['runs'])} MB per run folder"],
        ["time, slow CPU (AVX2, no AVX-512)", f"{min(slow_minutes):.1f}-{max(slow_minutes):.1f} minutes at the speed "
         f"of a 2-core AVX2 CPU (an {_cpu(slow)} held to {slow['cpu']['held_to']}); `PROFILE=auto` fits the run "
         "into 30"],
        ["time, CPU with bfloat16 (AVX-512)", f"{min(minutes):.1f}-{max(minutes):.1f} minutes per seed on an "
         f"{_cpu(record)} in {record['precision']}"],
        ["GPU", "optional: `PROFILE=auto` then runs the full reference schedule"]])


def _cpu(record: dict) -> str:
    cpu = record["cpu"]
    return f"{cpu['model']} ({cpu['cores']} cores, flags {' '.join(cpu['flags']) or 'none of avx2/avx512'})"


def workflow_steps(record: dict) -> str:
    """The CI workflows' steps run in a clone (`tools/workflow_steps.py --record`): each step that ran, its
    result and time."""
    rows = [[row["job"].split(":")[-1], f"`{row['step']}`", row["result"], row["time"]] for row in record["rows"]
            if row["result"] != "skipped"]
    return (_table(["job", "step", "result", "time"], rows) + f"\nMeasured with `{record['command']}` in a fresh "
            f"clone on an {_cpu(record)}, {record['date']}.\n")


def test_times(record: dict) -> str:
    """One sentence for the README: how long `make test-fast` and `make test-slow` took (`make test` runs both)."""
    took = {row["job"].split(":")[-1]: int(row["time"].split()[0]) for row in record["rows"]
            if row["result"].startswith("passed:")}  # The steps that ran pytest.
    if not {"fast-tests", "slow-tests"} <= set(took):
        raise SystemExit(f"The record's pytest steps are in jobs {sorted(took)}, not fast-tests and slow-tests.")
    fast, slow = took["fast-tests"], took["slow-tests"]
    return (f"`make test-fast` took {fast / 60:.0f} minutes and `make test-slow` {slow / 60:.0f} (`make test` runs "
            f"both: about {(fast + slow) / 60:.0f} minutes), measured with `{record['command']}` in a fresh clone on "
            f"an {_cpu(record)}, {record['date']}.\n")


KINDS = {"default_run": default_run, "held_out_seeds": held_out_seeds, "held_out_rungs": held_out_rungs, "seeds": seeds,
         "workflow_steps": workflow_steps}
VIEWS = {"times": times, "needs": needs, "test_times": test_times}


def load(name: str) -> dict:
    path = RECORDS / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"No record {path} for the table <!-- record: {name} -->: add it, or remove the markers.")
    return json.loads(path.read_text(encoding="utf-8"))


def render(names: str, view: str | None = None) -> str:
    """The table of the records `names` (comma-separated): drawn by `view`, else by the first record's kind."""
    loaded = [load(name.strip()) for name in names.split(",")]
    if view:
        return VIEWS[view](*loaded)
    return KINDS[loaded[0]["kind"]](loaded[0])


def _block(found: re.Match) -> str:
    return render(found.group("name"), found.group("view"))


def rewritten(text: str) -> str:
    """`text` with every table between record markers written from its records."""
    return BLOCK.sub(lambda found: found.group(1) + _block(found) + found.group(5), text)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def differing() -> list[str]:
    """Each table that differs from its record, as `<file>: <record>`."""
    found = []
    for page in pages():
        text = page.read_text(encoding="utf-8")
        for block in BLOCK.finditer(text):
            if block.group("table") != _block(block):
                found.append(f"{page.relative_to(ROOT)}: {block.group('name')}")
    return found


def main(arguments: list[str]) -> int:
    if arguments == ["--check"]:
        drifted = differing()
        for item in drifted:
            print(f"{item}: the table differs from docs/records/{item.split(': ')[1]}.json; run make docs",
                  file=sys.stderr)
        return 1 if drifted else 0
    for page in pages():
        text = page.read_text(encoding="utf-8")
        if rewritten(text) != text:
            page.write_text(rewritten(text), encoding="utf-8")
            print(f"rewrote the record tables of {page.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
