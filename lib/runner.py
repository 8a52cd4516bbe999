"""Run the stage notebooks headlessly, skipping the ones that are up to date.

    python -m lib.runner feature_extraction --profile cpu --run my-run [--set epochs=5] [--force]

Before any kernel starts: the profile's values are checked against each notebook's parameters cell
(unknown keys, wrong types and out-of-range values stop here), and each notebook against its paired `.py`.
Then for each stage: skip it when it is up to date (`lib.run.freshness`), else execute it
(`lib.run.execution`), and keep the run's manifest (`lib.run.manifest`) true at every step; at the end, whatever
happened, write the run's summary page (`lib.pages.summary`). Any failure ends with one line naming the
stage, what happened and what to do, and a non-zero exit status.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

import lib  # noqa: F401  (sets TensorFlow's environment before any kernel inherits it)
from lib import SuiteError
from lib.core import devices, locks, marks, params, paths, records, stages, storage
from lib.pages import summary
from lib.run import (
    budget,
    cluster,
    execution,
    forecast,
    freshness,
    housekeeping,
    manifest,
    pairing,
    provenance,
    rerun,
    schedule,
)
from lib.study import distribute


@dataclasses.dataclass
class Plan:
    """What a command will do: the run, its profile and the checked parameters of each stage, in order."""

    run: str
    profile: dict[str, Any]
    choice: schedule.Choice
    parameters: dict[str, dict[str, Any]]
    schedule: dict[str, Any] | None = None
    fingerprints: dict[Any, Any] = dataclasses.field(default_factory=dict)
    workers: int = 1
    verbose: bool = False
    budget_minutes: float | None = None  # The time the command should fit in (`lib.run.budget`), if any.
    started: float = 0.0  # When the command started, on `budget.now`'s clock.
    cuts: list[budget.Cut] = dataclasses.field(default_factory=list)  # Epochs cut to keep the budget.
    budget_notes: list[str] = dataclasses.field(default_factory=list)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lib.runner", description=__doc__.split("\n\n")[0])
    parser.add_argument("stages", nargs="+", help=", ".join(stage.section for stage in stages.STAGES) + " or all")
    parser.add_argument("--profile", default="auto",
                        help="auto (full with a GPU, else sized to the CPU), a profile name in params/, or a YAML file")
    parser.add_argument("--run", default="", help="run name (output folder); default: the profile's name")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one parameter for every stage that has it")
    parser.add_argument("--force", action="store_true", help="redo stages even when they are up to date")
    parser.add_argument("--from", dest="from_manifest", default="",
                        help="rerun with the parameters recorded in an earlier run's manifest.json")
    parser.add_argument("--no-forecast", action="store_true", help="skip the duration forecast")
    parser.add_argument("--forecast-only", action="store_true",
                        help="print how long each stage would take here (from scratch) and stop")
    parser.add_argument("--cell-timeout", type=int, default=execution.DEFAULT_CELL_TIMEOUT,
                        help="stop a notebook cell that runs longer than this many seconds")
    parser.add_argument("--budget-minutes", type=float, default=None,
                        help="the time the whole run should fit in (PROFILE=auto on a CPU: default 30): the epochs "
                             "of later stages are cut when an earlier one ran long")
    parser.add_argument("--verbose", action="store_true",
                        help="show everything papermill and the kernels print (VERBOSE=1 on the make line)")
    parser.add_argument("--workers", type=int, default=1,
                        help="run each stage on a local cluster of this many worker processes "
                             "(distribution=multi_worker, for testing; WORKERS=2 on the make line)")
    return parser.parse_args(argv)


def profile_from_manifest(path: str) -> dict[str, Any]:
    """A profile that repeats the parameters a manifest recorded for each stage (`FROM=manifest.json`)."""
    manifest_path = Path(path)
    if not manifest_path.is_file():
        raise SuiteError(f"Manifest {path} does not exist: give outputs/<run>/manifest.json of an earlier run.")
    try:
        recorded = storage.read_json(manifest_path)
        profile: dict[str, Any] = {"name": recorded.get("profile", {}).get("name", "from-manifest"),
                                   "path": str(manifest_path), "from_run": recorded.get("run"),
                                   "description": f"parameters of run {recorded.get('run')} ({manifest_path})"}
        for stem, record in recorded["stages"].items():
            profile[stages.get(stem).section] = dict(record["parameters"])
    except (ValueError, KeyError, TypeError, AttributeError, SuiteError) as error:
        raise SuiteError(f"{path} is not a run's manifest with the parameters of its stages ({type(error).__name__}: "
                         f"{error}): give FROM=outputs/<run>/manifest.json of an earlier run.") from None
    return profile


def choose_profile(arguments: argparse.Namespace, overrides: dict[str, Any],
                   fingerprints: dict[Any, Any]) -> tuple[dict[str, Any], schedule.Choice, dict[str, Any] | None]:
    """The profile to run, why it was chosen, and (PROFILE=auto on a CPU) the schedule sized to the budget."""
    if arguments.from_manifest:
        choice = schedule.Choice(f"Parameters repeated from {arguments.from_manifest}.")
        return profile_from_manifest(arguments.from_manifest), choice, None
    if arguments.profile != "auto":
        return params.load_profile(arguments.profile), schedule.Choice(), None
    return schedule.auto_profile(arguments.run, arguments.budget_minutes, overrides, fingerprints)


def prepare(arguments: argparse.Namespace) -> Plan:
    """Everything checked before a kernel starts: stages, profile, parameters, GPU, notebooks, output folder."""
    stems = list(stages.STEMS) if arguments.stages == ["all"] else [stages.get(s).stem for s in arguments.stages]
    overrides = dict(params.parse_assignment(item) for item in arguments.set)
    overrides.update(cluster_overrides(arguments.workers, overrides))
    for key in overrides:
        if not any(key in params.declared(stem) for stem in stems):
            raise SuiteError(f"--set {key}: no stage among {', '.join(stems)} has a parameter {key!r}.")
    for stem in stems:  # Their types and ranges too, before PROFILE=auto starts TensorFlow to measure the machine.
        params.resolve(stem, {key: value for key, value in overrides.items() if key in params.declared(stem)},
                       where="--set")
    fingerprints: dict[Any, Any] = {}
    profile, choice, sized = choose_profile(arguments, overrides, fingerprints)
    run = arguments.run or profile["name"]
    if arguments.from_manifest and not arguments.run:  # Never into the folder of the run it repeats, or another's.
        run = unused_run_name(profile.get("from_run"), profile["name"])
        choice = dataclasses.replace(
            choice, message=f"{choice.message.rstrip('.')}, into the new run {run} (RUN=<name> names it).")
    if choice.message:
        print(choice.message, flush=True)
    run = paths.check_run_name(run)
    # Every stage's parameters before running any, so that a typo in stage 3 fails in seconds.
    resolved = {stem: params.resolve_for_stage(stem, profile, overrides) for stem in stems}
    if any(values.get("require_gpu") for values in resolved.values()):
        devices.require_gpu(True, devices.gpu_names(), where=f"Profile {profile['name']}")
    for stem in stems:
        pairing.check_in_sync(stem)
    plan = Plan(run, profile, choice, resolved, sized, fingerprints, arguments.workers, arguments.verbose,
                sized["budget_minutes"] if sized else arguments.budget_minutes)
    if plan.budget_minutes is not None:  # The same command again: the cuts it made, so that their stages skip.
        cuts, plan.budget_notes = budget.recorded(run, plan.budget_minutes)
        plan.cuts = budget.reapply(plan.parameters, cuts)
        if plan.cuts:
            print(f"With the cuts this run made to keep its budget: {', '.join(c.describe() for c in plan.cuts)}.")
    if not worker_index(plan):  # A cluster's other machines write nothing into the run folder.
        check_writable(run)
        if not arguments.forecast_only:
            claim_run(run)
    return plan


def unused_run_name(recorded_run: Any, profile_name: str) -> str:
    """A run name no folder in OUTPUTS_DIR has yet, for `FROM=` without `RUN=`: `<recorded run>-from-<date>`, then
    `-2`, `-3` and so on."""
    try:
        base = f"{paths.check_run_name(recorded_run)}-from-{time.strftime('%Y%m%d')}"
    except SuiteError:  # A manifest whose run has no usable name.
        base = f"{profile_name}-from-{time.strftime('%Y%m%d')}"
    run, number = base, 1
    while os.path.lexists(paths.run_dir(run)):
        number += 1
        run = f"{base}-{number}"
    return run


def cluster_overrides(workers: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """What `WORKERS=N` sets (`distribution=multi_worker` for N > 1); a `SuiteError` for what contradicts it."""
    if workers < 1:
        raise SuiteError(f"WORKERS={workers}: give the number of worker processes, 1 or more.")
    if workers == 1:
        return {}
    if os.environ.get("TF_CONFIG"):
        raise SuiteError("WORKERS starts a cluster of its own on this machine, but TF_CONFIG is already set "
                         f"({os.environ['TF_CONFIG'][:80]}). Unset TF_CONFIG, or drop WORKERS and run "
                         "SET=distribution=multi_worker on each machine of your cluster.")
    if overrides.get("distribution", "multi_worker") != "multi_worker":
        raise SuiteError(f"WORKERS={workers} runs distribution=multi_worker; it contradicts "
                         f"SET=distribution={overrides['distribution']}. Drop one of them.")
    return {"distribution": "multi_worker"}


def check_writable(run: str) -> None:
    """A `SuiteError` naming OUTPUTS_DIR when the run folder cannot be written."""
    folder = paths.run_dir(run)
    try:
        marks.make_folder(folder, "run")  # Marked as the suite's, for `make clean`, when this makes it.
        storage.write_text(folder / ".write-check", "ok\n")
        storage.remove(folder / ".write-check")
    except OSError as error:
        raise SuiteError(f"Cannot write to the output folder {folder} ({error.strerror}). Set OUTPUTS_DIR "
                         "to a writable folder, or fix the folder's permissions.") from None


def claim_run(run: str) -> int:
    """Hold the run folder's lock for the rest of this command (the kernel drops it when the runner ends, however it
    ends), then remove what killed runs left behind (`lib.run.housekeeping`); a `SuiteError` naming the runner
    that holds the run."""
    try:
        hold = locks.hold_run(paths.run_dir(run))
    except locks.RunInUse as holder:
        raise SuiteError(f"Run {run} is being run by another runner: {holder}. Wait for it to end or stop it, then "
                         "run the same command again; or give this one another RUN=.") from None
    removed = housekeeping.remove_leftovers()
    if removed:
        print(f"Removed {len(removed)} unfinished files and folders left by killed runs (such as {removed[0]}).",
              flush=True)
    return hold


def injected_parameters(plan: Plan, stem: str, folder: Path | None = None) -> dict[str, Any]:
    """What papermill gives a stage's notebook: its checked parameters and the runner's own keys (`folder`: where
    it writes, by default the stage's folder)."""
    return {**plan.parameters[stem], "run_name": plan.run,
            "output_dir": str(folder or paths.stage_dir(plan.run, stem)), "profile_name": plan.profile["name"]}


def run_stage(plan: Plan, stem: str, inputs: dict[str, Any], cell_timeout: int) -> dict[str, Any]:
    """Execute one stage into the run folder; return its `stage.json` record (written last). A stage that has a
    complete result runs beside it and replaces it only once complete (`lib.run.rerun`)."""
    values = plan.parameters[stem]
    folder, result = records.attempt_folder(plan.run, stem), paths.stage_dir(plan.run, stem)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (records.STAGE_FILE, records.METRICS_FILE):  # Not complete until it says so again.
        storage.remove(folder / stale)
    print(f" {stem}  (run {plan.run}, profile {plan.profile['name']}) -> {folder}", flush=True)
    if folder != result:
        print(f"    the last complete result stays in {result} until this one is complete", flush=True)
    print("    parameters: " + ", ".join(f"{k}={v!r}" for k, v in sorted(values.items())), flush=True)
    try:
        seconds = execution.execute(stem, folder, injected_parameters(plan, stem, folder), cell_timeout,
                                    plan.workers, plan.verbose)
        metrics = records.read_metrics(folder)
        if metrics is None:
            raise execution.StageFailed(f"{stem} finished without writing {folder / records.METRICS_FILE}.")
    except execution.StageFailed as failure:
        if folder == result:
            raise
        raise execution.StageFailed(f"{failure}; its last complete result is kept in {result}",
                                    failure.status) from None
    record = records.stage_record(stem=stem, run=plan.run, profile=plan.profile, parameters=values,
                                  parameters_hash=freshness.short_hash(values), seconds=seconds, finished=time.time(),
                                  inputs=inputs, metrics=metrics)
    with execution.signals_held():  # Complete, and in its place: a Ctrl-C now must not leave it half swapped.
        storage.write_json(folder / records.STAGE_FILE, record)
        rerun.swap_in(plan.run, stem, folder)
    print(f"=== {stem} done in {seconds:.0f} s: {result / (stem + '.html')}", flush=True)
    return record


def measured_speeds(plan: Plan) -> dict[tuple[int, str], forecast.Speed] | None:
    """The speeds PROFILE=auto measured a moment ago to size `plan` (one image size and precision), else None."""
    if not plan.schedule or plan.choice.kept:
        return None
    sizes = {params.with_defaults(stem, values)["image_size"] for stem, values in plan.parameters.items()}
    if len(sizes) != 1:
        return None
    speed = forecast.Speed(plan.schedule["rate_images_per_second"], plan.schedule.get("training_step_seconds", {}))
    return {(sizes.pop(), plan.schedule["precision"]): speed}


def run_plan(plan: Plan, force: bool, with_forecasts: bool, cell_timeout: int) -> int:
    """Run or skip each stage of `plan` in order, keeping the manifest; the exit status."""
    record = manifest.start(plan.run, plan.profile, plan.choice.message, plan.schedule, planned=list(plan.parameters))
    fingerprints = plan.fingerprints
    if plan.cuts:
        record["budget"] = budget.record(plan.budget_minutes, plan.cuts, plan.budget_notes)
    forecasts = forecast.Forecasts(with_forecasts)
    if with_forecasts and plan.schedule and not plan.choice.kept:
        forecasts.speeds, forecasts.seconds = measured_speeds(plan) or {}, dict(plan.schedule["forecast_seconds"])
    try:
        for number, stem in enumerate(plan.parameters, start=1):
            inputs = freshness.stage_inputs(stem, plan.parameters[stem], plan.run, fingerprints)
            verdict = freshness.verdict(stem, plan.run, plan.parameters[stem], inputs)
            if verdict.up_to_date and not force:
                skip(plan, record, stem, f"[{number}/{len(plan.parameters)}] {stem}", verdict.reason)
                continue
            expected = forecasts.before(list(plan.parameters)[number - 1:], plan.parameters, fingerprints,
                                        freshness.completed(plan.run, plan.parameters))
            if (resized := keep_budget(plan, forecasts, list(plan.parameters)[number - 1:], record)) is not None:
                expected, inputs = resized, freshness.stage_inputs(stem, plan.parameters[stem], plan.run, fingerprints)
            reason = f" (redone: {'FORCE=1' if force else verdict.reason})" if verdict.complete else ""
            print(f"\n=== [{number}/{len(plan.parameters)}]{reason}", flush=True)
            if backup_note := freshness.settle_backup(stem, plan.run, plan.parameters[stem], inputs, force):
                print(f"    {stem}: {backup_note}", flush=True)
            tell_workers(plan, record, stem, "run")
            record["stages"][stem] = manifest.running(plan.parameters[stem])
            publish(plan.run, record, fingerprints)
            try:
                stage_record = run_stage(plan, stem, inputs, cell_timeout)
            except execution.StageFailed as failure:
                record["stages"][stem].update(status=failure.status, message=str(failure))
                record["status"] = failure.status
                raise
            record["stages"][stem] = manifest.completed(stage_record, expected, skipped=False,
                                                        at_start=forecasts.at_start.get(stem))
            publish(plan.run, record, fingerprints)
        record["status"] = "complete"
        return 0
    except execution.StageFailed as failure:
        print(f"\nERROR: {failure}", file=sys.stderr, flush=True)
        return 130 if failure.status == "interrupted" else 2
    except SuiteError as error:
        record["status"] = "failed"
        print(f"\nERROR: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        record["status"] = "interrupted"
        running = [stem for stem, stage in record["stages"].items() if stage.get("status") == "running"]
        where = f" while {running[0]} was being closed" if running else " between stages"
        print(f"\nInterrupted{where}: the run can be continued with the same command.", file=sys.stderr, flush=True)
        return 130
    finally:
        manifest.finish(plan.run, record)
        write_summary(plan.run)


def skip(plan: Plan, record: records.Manifest, stem: str, heading: str, reason: str) -> None:
    """A stage complete with the same inputs: said, and kept in the manifest as it was."""
    tell_workers(plan, record, stem, "skip")
    print(f"\n=== {heading}: skipped, complete with the {reason} ({paths.stage_dir(plan.run, stem)}). FORCE=1 redoes "
          "it.", flush=True)
    stage_record = storage.read_json(paths.stage_dir(plan.run, stem) / records.STAGE_FILE)
    record["stages"][stem] = manifest.kept(record["stages"].get(stem, {}), stage_record)
    publish(plan.run, record, plan.fingerprints)


def keep_budget(plan: Plan, forecasts: forecast.Forecasts, stems_left: list[str],
                record: records.Manifest) -> float | None:
    """Before a stage: where the time the command has spent and the forecast of the stages left would end past the
    budget, cut the epochs of the stages left (`lib.run.budget`), say so and record it; the stage's forecast after
    a cut, else None. Not on a cluster of machines, whose other runners read the parameters themselves."""
    if plan.budget_minutes is None or not forecasts.speeds or not forecasts.stems or cluster_of_machines(plan):
        return None
    budget_seconds, spent, gpus = plan.budget_minutes * 60, budget.now() - plan.started, devices.gpu_names()

    def seconds_of(resolved: dict[str, dict]) -> dict[str, float]:
        every = forecast.plan_seconds(forecasts.stems, resolved, plan.fingerprints, gpus, forecasts.speeds,
                                      forecasts.run_has)
        return {stem: every[stem] for stem in stems_left}

    try:
        found = budget.fit(spent, budget_seconds, stems_left, plan.parameters, lambda r: sum(seconds_of(r).values()))
    except Exception as error:  # A forecast informs: it never stops a run.
        print(f"    budget: not weighed ({type(error).__name__}: {error}); the schedule stands", flush=True)
        return None
    if found is None:
        return None
    cuts = found.cuts(plan.parameters)
    plan.budget_notes.append(found.sentence(cuts))
    plan.parameters.update(found.resolved)
    plan.cuts.extend(cuts)
    record["budget"] = budget.record(plan.budget_minutes, plan.cuts, plan.budget_notes)
    print(f"    {plan.budget_notes[-1]}", flush=True)
    forecasts.seconds.update(seconds_of(found.resolved))
    return forecasts.seconds[stems_left[0]]


def publish(run: str, record: records.Manifest, fingerprints: dict[Any, Any]) -> None:
    """Write the manifest and rewrite the run's summary page from it, so that a run can be watched as it goes."""
    manifest.write(run, record, fingerprints)
    write_summary(run, quiet=True)


def write_summary(run: str, quiet: bool = False) -> None:
    """Rewrite the run's summary page (and say where it is unless `quiet`); a failure to do so never hides the
    run's own outcome."""
    try:
        page = summary.write(run)
        if not quiet:
            print(f"Summary: {page}", flush=True)
    except Exception as error:
        print(f"(Could not write the summary page: {type(error).__name__}: {error})", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    arguments, started = parse_arguments(argv), budget.now()
    params.absolute_environment()  # Before anything reads them: the kernels run in notebooks/.
    execution.configure_logging(arguments.verbose)
    execution.raise_on_sigterm()
    execution.raise_on_hangup()
    try:
        plan = prepare(arguments)
    except SuiteError as error:
        print(f"\nERROR: {error}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        print("\nInterrupted before any stage started.", file=sys.stderr, flush=True)
        return 130
    if arguments.forecast_only:
        return forecast_only(plan)
    plan.started = started
    worker = worker_index(plan)
    if worker:
        return run_as_worker(plan, worker)
    return run_plan(plan, arguments.force, not arguments.no_forecast, arguments.cell_timeout)


def forecast_only(plan: Plan) -> int:
    """`make forecast`: print how long each stage of `plan` would take here, and run nothing; the exit status."""
    if not plan.choice.message:  # prepare() has printed the choice.
        print(f"Profile {plan.profile['name']}, run {plan.run}.", flush=True)
    try:
        for values in plan.parameters.values():
            provenance.inputs_of(values, plan.fingerprints)  # The photos and weights the forecast looks up.
        forecast.print_forecast(list(plan.parameters), plan.parameters, plan.fingerprints, speeds=measured_speeds(plan))
    except SuiteError as error:
        print(f"\nERROR: {error}", file=sys.stderr, flush=True)
        return 2
    return 0


def tell_workers(plan: Plan, record: dict[str, Any], stem: str, decision: str) -> None:
    """On the chief of a cluster of machines: say whether `stem` runs, for the other machines' runners."""
    if cluster_of_machines(plan):
        cluster.record_decision(paths.run_dir(plan.run) / cluster.WORKERS_DIR, record["started"], stem, decision)


def cluster_of_machines(plan: Plan) -> bool:
    """Whether the stages run as one worker of a cluster that `TF_CONFIG` describes (not a WORKERS cluster)."""
    distributions = {values.get("distribution") for values in plan.parameters.values()}
    return plan.workers == 1 and "multi_worker" in distributions


def worker_index(plan: Plan) -> int:
    """This machine's index in a cluster of machines (`cluster_of_machines`); 0 (the chief) otherwise."""
    return distribute.cluster_spec()[1] if cluster_of_machines(plan) else 0


def run_as_worker(plan: Plan, index: int) -> int:
    """A machine of a cluster other than the chief: each stage the chief's runner decides to run (it says so in
    `workers/decisions.json`), executed here too; it writes only its executed notebooks, to `workers/`."""
    folder = paths.run_dir(plan.run) / cluster.WORKERS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    since = time.time()
    for stem in plan.parameters:
        print(f"=== {stem}: waiting for the chief's runner to decide it ...", flush=True)
        if not cluster.chief_decision(folder, stem, since):
            print(f"=== {stem}: skipped, as the chief skips it.", flush=True)
            continue
        print(f"=== {stem} as worker {index} of the cluster in TF_CONFIG -> {folder}", flush=True)
        if execution.run_worker(stem, injected_parameters(plan, stem), folder / f"{stem}-worker{index}.ipynb"):
            print(f"\nERROR: {stem} failed on worker {index}; see {folder / f'{stem}-worker{index}.ipynb'}.",
                  file=sys.stderr, flush=True)
            return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
