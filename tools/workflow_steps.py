"""Run the GitHub Actions workflows' commands here, in the order a push runs them, and time each one.

    .venv/bin/python tools/workflow_steps.py [--event push] [--list] [.github/workflows/ci.yml ...]

Reads .github/workflows/*.yml (or the files named), keeps the workflows that `--event` starts, and runs each
job's `run:` steps in this clone as a runner would (`bash --noprofile --norc -eo pipefail`, CI=true, the
workflow's, job's and step's `env:`), a job after the jobs it `needs`. Steps that need GitHub itself
(`uses:` actions: checkout, setup-python, cache, upload-artifact) are listed as skipped, and so are workflows
the event does not start (the scheduled real-data job, which downloads the photos and weights). On GitHub each
job has a fresh runner; here they run one after another in one clone. A failed step ends its job and skips the
jobs that need it; the table at the end gives every step's seconds, and the exit status is 1 if one failed.
`--list` prints the plan without running it. `--record NAME` also writes the steps' outcomes and seconds, with
the CPU, the command and the date, to `docs/records/NAME.json`, from which `make docs` writes the timing tables
(`tools/docs_tables.py`: kind `workflow_steps`). `make_targets` and `makefile_targets` also serve the tests.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib.core import devices  # noqa: E402

WORKFLOWS_DIR = ROOT / ".github" / "workflows"
SHELL = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]
_MAKE_CALL = re.compile(r"(?<![\w./-])make[ \t]+([^;&|\n)#]*)")
# make's options whose value is the next word (always, or when it is a number).
_OPTIONS_WITH_VALUE = {"-C", "-f", "-I", "-o", "-W", "--directory", "--file", "--makefile", "--include-dir",
                       "--old-file", "--assume-old", "--new-file", "--assume-new", "--what-if"}
_OPTIONS_WITH_NUMBER = {"-j", "--jobs", "-l", "--load-average"}
_MAKE_RULE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:(?!=)", re.MULTILINE)
_PYTEST_SUMMARY = re.compile(r"^=*\s*(\d+ passed[^=]*?)(?: in [\d.]+s.*)?\s*=*$")


def load(path: Path) -> dict:
    """A workflow file as a dict, its `on:` under "on" (YAML 1.1 reads a bare `on` key as True)."""
    workflow = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def triggers(workflow: dict) -> set[str]:
    """The events that start a workflow (`on:` as a name, a list of names, or a mapping)."""
    events = workflow.get("on") or []
    return {events} if isinstance(events, str) else set(events)


def job_order(jobs: dict) -> list[str]:
    """The jobs' names in file order, each after the jobs it `needs`."""
    ordered: list[str] = []
    while len(ordered) < len(jobs):
        ready = [name for name, job in jobs.items() if name not in ordered
                 and set(_needs(job)) <= set(ordered)]
        if not ready:
            raise ValueError(f"jobs {sorted(set(jobs) - set(ordered))} need each other or an unknown job")
        ordered.append(ready[0])
    return ordered


def _needs(job: dict) -> list[str]:
    needs = job.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def make_targets(script: str) -> list[str]:
    """The targets of every `make` call in a shell script (`make lint`, `make -C .. run-all PROFILE=smoke` ...):
    its words less options (and their values) and variable settings."""
    targets = []
    for call in _MAKE_CALL.finditer(script):
        words = shlex.split(call.group(1))
        value_next = False
        for index, word in enumerate(words):
            if value_next:
                value_next = False
            elif word in _OPTIONS_WITH_VALUE or word in _OPTIONS_WITH_NUMBER:
                following = words[index + 1] if index + 1 < len(words) else ""
                value_next = word in _OPTIONS_WITH_VALUE or following.isdigit()
            elif "=" not in word and not word.startswith("-"):
                targets.append(word)
    return targets


def makefile_targets(text: str) -> set[str]:
    """The targets a Makefile defines by name (pattern and file rules such as `$(VENV)/.installed` aside)."""
    return set(_MAKE_RULE.findall(text))


def _skip_reason(step: dict) -> str | None:
    if "uses" in step:
        return f"needs GitHub: {step['uses']}"
    if step.get("if") not in (None, "always()", "success()", "${{ always() }}"):
        return f"condition needs GitHub: {step['if']}"
    return None


def plan(paths: list[Path], event: str) -> list[dict]:
    """Every step of the workflows `event` starts, in order: workflow, job, name, and the command to run or
    why it is skipped (`skip`)."""
    steps = []
    for path in paths:
        workflow = load(path)
        if event not in triggers(workflow):
            steps.append(dict(workflow=path.name, job="*", name=workflow.get("name", path.stem),
                              skip=f"not started by {event} (on: {', '.join(sorted(triggers(workflow)))})"))
            continue
        for job_name in job_order(workflow.get("jobs", {})):
            job = workflow["jobs"][job_name]
            for number, step in enumerate(job.get("steps", []), start=1):
                environment = {**workflow.get("env", {}), **job.get("env", {}), **step.get("env", {})}
                command = step.get("run")
                if command and "${{" in command + "".join(str(value) for value in environment.values()):
                    raise ValueError(f"{path.name} {job_name} step {number}: a `${{{{ }}}}` expression in a run: "
                                     "step or its env needs GitHub to expand it; keep run: steps plain commands")
                steps.append(dict(workflow=path.name, job=job_name, needs=_needs(job), command=command,
                                  name=step.get("name") or command or step.get("uses"), skip=_skip_reason(step),
                                  env={key: str(value) for key, value in environment.items()},
                                  directory=step.get("working-directory", ".")))
    return steps


def run(steps: list[dict]) -> list[tuple]:
    """Run the steps not skipped; print each step's outcome and seconds; the rows (job, step, result, time or why
    it was skipped)."""
    ended: dict[str, str] = {}  # Job -> why its remaining steps do not run.
    rows = []
    for step in steps:
        job = f"{step['workflow']}:{step['job']}"
        if job not in ended and any(f"{step['workflow']}:{need}" in ended for need in step.get("needs", [])):
            ended[job] = "a job it needs did not pass"
        reason = step["skip"] or ended.get(job)
        if reason:
            rows.append((job, step["name"], "skipped", reason))
            continue
        print(f"\n=== {job}: {step['name']}\n$ {step['command'].strip()}", flush=True)
        started = time.monotonic()
        returncode, tests = run_step(step)
        seconds = time.monotonic() - started
        rows.append((job, step["name"], ("passed" if returncode == 0 else f"FAILED ({returncode})") + tests,
                     f"{seconds:.0f} s"))
        if returncode:
            ended[job] = "an earlier step failed"
    print("\n| job | step | result | time or reason |\n| --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(str(cell).replace("\n", " ").strip() for cell in row) + " |")
    return rows


def run_step(step: dict) -> tuple[int, str]:
    """Run one step, its output shown as it comes; its exit status and pytest's count (`: 361 passed`), if any."""
    process = subprocess.Popen([*SHELL, step["command"]], cwd=ROOT / step["directory"], text=True,
                               env={**os.environ, "CI": "true", **step["env"]}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    tests = ""
    for line in process.stdout:
        print(line, end="", flush=True)
        found = _PYTEST_SUMMARY.match(line.strip())
        tests = f": {found[1].strip()}" if found else tests
    return process.wait(), tests


def write_record(name: str, rows: list[tuple], argv: list[str], folder: Path = ROOT / "docs" / "records") -> Path:
    """`docs/records/<name>.json`: every step's job, name, result and time, with the CPU, command and date."""
    path = folder / f"{name}.json"
    record = {"kind": "workflow_steps", "what": "The push workflows' run: steps in a fresh clone, one after another.",
              "command": " ".join([".venv/bin/python tools/workflow_steps.py", *argv]),
              "cpu": devices.cpu_fields(devices.describe_cpu()), "date": datetime.date.today().isoformat(),
              "rows": [dict(zip(("job", "step", "result", "time"), (str(cell).strip() for cell in row)))
                       for row in rows]}
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workflows", nargs="*", type=Path, help="default: .github/workflows/*.yml")
    parser.add_argument("--event", default="push", help="the event whose workflows run (default: push)")
    parser.add_argument("--list", action="store_true", help="print the steps without running them")
    parser.add_argument("--record", default="", help="also write docs/records/<RECORD>.json (make docs)")
    arguments = parser.parse_args(argv)
    steps = plan(arguments.workflows or sorted(WORKFLOWS_DIR.glob("*.yml")), arguments.event)
    if arguments.list:
        for step in steps:
            print(f"{step['workflow']}:{step['job']}: " + (f"skip ({step['skip']})" if step["skip"]
                                                          else f"$ {step['command'].strip()}"))
        return 0
    rows = run(steps)
    if arguments.record:
        write_record(arguments.record, rows, [item for item in argv if not item.startswith("--record")
                                              and item != arguments.record])
    return 1 if any(row[2].startswith("FAILED") for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
