"""The results tables of README.md and docs/*.md, written from the records in docs/records/.

    .venv/bin/python tools/docs_tables.py           (make docs: rewrite every table from its record)
    .venv/bin/python tools/docs_tables.py --check   (make lint: fail, naming the table, where one differs)

A table generated from a record sits between two comments, `<!-- record: NAME -->` and `<!-- end record -->`,
and is written from `docs/records/NAME.json`: what was measured (`rows`), the command, the CPU (model and flags)
and the date. A new measurement is a new or changed record, then `make docs`; never a hand edit of the table,
which `--check` (and `tests/test_docs_tables.py`) would find.

Each record names its `kind`, the function below that draws it:
- `default_run`: per seed, the schedule auto chose, the validation accuracy of each stage, each stage's forecast
  and actual seconds with the forecast's error as measured, the command's minutes and the rerun's time;
- `held_out_seeds`: per stage, the held-out accuracy of each seed, their mean and spread (computed here), and the
  mean of the photos that chose.
"""
from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "docs" / "records"
BLOCK = re.compile(r"(<!-- record: (?P<name>[a-z0-9-]+) -->\n)(?P<table>.*?)(<!-- end record -->)", re.DOTALL)


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


KINDS = {"default_run": default_run, "held_out_seeds": held_out_seeds}


def render(name: str) -> str:
    """The table of the record `name`."""
    path = RECORDS / f"{name}.json"
    if not path.is_file():
        raise SystemExit(f"No record {path} for the table <!-- record: {name} -->: add it, or remove the markers.")
    record = json.loads(path.read_text(encoding="utf-8"))
    return KINDS[record["kind"]](record)


def rewritten(text: str) -> str:
    """`text` with every table between record markers written from its record."""
    return BLOCK.sub(lambda found: found.group(1) + render(found.group("name")) + found.group(4), text)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def differing() -> list[str]:
    """Each table that differs from its record, as `<file>: <record>`."""
    found = []
    for page in pages():
        text = page.read_text(encoding="utf-8")
        for block in BLOCK.finditer(text):
            if block.group("table") != render(block.group("name")):
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
