"""Run the whole study once per seed, then one page over the seeds: `make seeds SEEDS="42 7 123"`.

    python -m lib.run.seeds --seeds 42 7 123 [--profile smoke] [--run name] [--set key=value ...] [runner options]

Each seed runs as `python -m lib.runner all --run <run>-seed<N> --set seed=<N>` with the other options given (the
run is RUN, else the profile's name, as the runner names runs), one after the other, sharing the cache. A seed's
complete stages are skipped as the runner skips them, so the same command again runs only what is missing. A seed
that fails stops the command with the runner's error; the page (`lib.pages.seeds`: `outputs/<run>-seeds/`) is
written either way, from the seeds that completed, and names the ones that did not.
"""
from __future__ import annotations

import argparse
import subprocess
import sys

from lib import SuiteError
from lib.core import params, paths, records
from lib.pages import seeds as seeds_page
from lib.run import schedule


def parse_arguments(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """The seeds, the options this command reads itself (`--profile`, `--run`, `--set`, `--from`), and the runner's
    other options, passed on as given."""
    parser = argparse.ArgumentParser(prog="python -m lib.run.seeds", description=__doc__.split("\n\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("--seeds", type=int, nargs="+", required=True, help="the seeds, one run each")
    parser.add_argument("--profile", default="auto", help="as the runner's --profile")
    parser.add_argument("--run", default="", help="the runs are <run>-seed<N>; default: the profile's name")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as the runner's --set")
    parser.add_argument("--from", dest="from_manifest", default="", help="as the runner's --from (give --run too)")
    return parser.parse_known_args(argv)


def base_run(arguments: argparse.Namespace) -> str:
    """The name the seeds' runs start with: `--run`, else the profile's name, as the runner names a run."""
    if arguments.run:
        return paths.check_run_name(arguments.run)
    if arguments.from_manifest:
        raise SuiteError("With FROM=, name the seeds' runs: make seeds FROM=... RUN=<name> SEEDS=\"...\".")
    if arguments.profile == schedule.AUTO_RUN:
        return schedule.AUTO_RUN
    return paths.check_run_name(params.load_profile(arguments.profile)["name"])


def runner_command(run: str, seed: int, profile: str, settings: list[str], options: list[str]) -> list[str]:
    """The runner's command line for the whole study with one seed into the run `run`; `settings` (KEY=VALUE) on
    top of `profile`, `options` (the runner's other options) as given."""
    if any(params.parse_assignment(item)[0] == "seed" for item in settings):
        raise SuiteError("SET=seed=... contradicts SEEDS: give the seeds as SEEDS=\"42 7 123\" only.")
    command = [sys.executable, "-m", "lib.runner", "all", "--profile", profile, "--run", run, "--set", f"seed={seed}"]
    for item in settings:
        command += ["--set", item]
    return command + options


def run_one(command: list[str]) -> int:
    """Run one seed's runner in the foreground and return its exit status. A Ctrl-C reaches the runner too (the same
    terminal), which closes its stage cleanly: this command waits for it rather than leaving it half done."""
    process = subprocess.Popen(command, cwd=paths.PROJECT_ROOT)
    while True:
        try:
            return process.wait()
        except KeyboardInterrupt:
            continue


def same_schedule(arguments: argparse.Namespace, run: str, options: list[str], number: int) -> list[str]:
    """The runner's options for the `number`-th seed. With PROFILE=auto, the first seed's run sizes the schedule and
    every later seed repeats its parameters (`--from` its manifest, the seed set anew): each new run would size its
    own, and the cache the first one filled makes the later forecasts smaller, so seeds would differ in schedule as
    well as in seed."""
    if number == 1 or arguments.profile != schedule.AUTO_RUN or arguments.from_manifest:
        return options
    first = paths.run_dir(paths.seed_run(run, arguments.seeds[0])) / records.MANIFEST_FILE
    return ["--from", str(first), *options]


def run_seeds(arguments: argparse.Namespace, options: list[str]) -> int:
    """Every seed in order, stopping at the first that fails; then the page over the seeds. The exit status: the
    failed runner's, else 0."""
    run = base_run(arguments)
    if len(set(arguments.seeds)) != len(arguments.seeds):
        raise SuiteError(f"SEEDS={' '.join(map(str, arguments.seeds))} names a seed twice: give each once.")
    if arguments.from_manifest:
        options = ["--from", arguments.from_manifest, *options]
    failures: dict[int, str] = {}
    status = 0
    for number, seed in enumerate(arguments.seeds, start=1):
        name = paths.seed_run(run, seed)
        print(f"\n##### seed {seed} ({number}/{len(arguments.seeds)}) -> run {name}", flush=True)
        status = run_one(runner_command(name, seed, arguments.profile, arguments.set,
                                        same_schedule(arguments, run, options, number)))
        if status:
            failures[seed] = f"its runner stopped with exit status {status}; see {paths.run_dir(name) / 'index.html'}"
            break
    page = seeds_page.write(run, arguments.seeds, failures)
    print(f"\nSeeds {' '.join(map(str, arguments.seeds))}: {page}", flush=True)
    return status


def main(argv: list[str] | None = None) -> int:
    arguments, options = parse_arguments(argv)
    try:
        return run_seeds(arguments, options)
    except SuiteError as error:
        print(f"\nERROR: {error}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
