"""`make seeds`: the whole study once per seed, and one page over the seeds (the aggregation on hand-made runs, the
command line it gives the runner, `make compare` on its folder; one slow test runs it on the smoke profile)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, complete_stage

from lib import SuiteError
from lib.core import marks, paths, photo_results, records, stages, storage, uncertainty
from lib.pages import compare
from lib.pages import seeds as seeds_page
from lib.run import seeds as seeds_command
from tools import docs_tables, seeds_record


def rows(flags: list[bool]) -> list[dict]:
    return [{"file": f"cats/cat.{index}.jpg", "label": 0, "p_dog": 0.1, "right": flag}
            for index, flag in enumerate(flags)]


def counted(correct: int, total: int, split: str) -> dict:
    found = uncertainty.accuracy(correct, total)
    return {f"{split}_accuracy": found.value, f"{split}_correct": correct, f"{split}_total": total,
            f"{split}_accuracy_interval_95": [found.low, found.high]}


def seed_run(run: str, seed: int, wrong: dict[str, int], photos: int = 100, test: bool = True) -> None:
    """A complete run `<run>-seed<seed>` whose stage `stem` got the first `wrong[stem]` photos wrong (validation and
    test alike), with its manifest and per-photo results."""
    name = paths.seed_run(run, seed)
    for stage in stages.STAGES:
        flags = [index >= wrong[stage.stem] for index in range(photos)]
        splits = {"validation": rows(flags), **({"test": rows(flags)} if test else {})}
        complete_stage(name, stage.stem, **counted(sum(flags), photos, "val"),
                       **(counted(sum(flags), photos, "test") if test else {}))
        photo_results.write(paths.stage_dir(name, stage.stem), splits)
    storage.write_json(paths.run_dir(name) / records.MANIFEST_FILE, {
        "run": name, "status": "complete", "stages": {stem: {"status": "complete"} for stem in stages.STEMS}})


FIRST, SECOND, THIRD = stages.STEMS


def test_the_spread_over_seeds_is_the_mean_range_and_sample_standard_deviation():
    found = seeds_page.spread([0.96, 0.97, 0.98])
    assert found["mean"] == pytest.approx(0.97) and found["range"] == pytest.approx(0.02)
    assert (found["min"], found["max"]) == (0.96, 0.98) and found["standard_deviation"] == pytest.approx(0.01)
    assert seeds_page.spread([0.9])["standard_deviation"] == 0.0
    with pytest.raises(ValueError):
        seeds_page.spread([])


def test_the_pooled_sentence_counts_photo_seed_pairs_and_says_they_are_not_independent():
    comparison = uncertainty.compare([False] * 8 + [True] * 190, [True] * 198)
    text = seeds_page.pooled_sentence(comparison, "fine tuning, 2 seeds pooled", [100, 98])
    assert text.startswith("fine tuning, 2 seeds pooled: +4.04 points (95% interval")
    assert "fixed 8 photo-seed pairs, broke 0; exact McNemar p = 0.00781): better on these 198 photo-seed pairs " \
           "(100 + 98 photos of 2 seeds; optimistic: the same photo in several seeds is not an independent pair)." \
           in text


def test_each_stage_gets_every_seeds_accuracy_their_spread_and_the_comparison_pooled_over_seeds():
    seed_run("study", 42, {FIRST: 10, SECOND: 6, THIRD: 6})
    seed_run("study", 7, {FIRST: 8, SECOND: 8, THIRD: 5})
    collected = seeds_page.collect("study", [42, 7])
    assert collected["complete_seeds"] == [42, 7] and collected["failed_seeds"] == {}
    assert collected["runs"] == {"42": "study-seed42", "7": "study-seed7"}
    second = collected["stages"][SECOND]["splits"]
    assert list(second) == ["test", "validation"]  # Test photos first: they chose nothing.
    test = second["test"]
    assert [row["text"] for row in test["per_seed"]] == [uncertainty.accuracy(94, 100).text(),
                                                        uncertainty.accuracy(92, 100).text()]
    assert test["mean"] == pytest.approx(0.93) and test["range"] == pytest.approx(0.02)
    assert test["photos"] == "test photos (no choice made on them)"
    compared = test["compared_with_previous"]
    # Seed 42: stage 1 wrong on photos 0-9, stage 2 on 0-5: fixed 4. Seed 7: the same photos wrong: no change.
    assert [(row["seed"], row["fixed"], row["broke"]) for row in compared["per_seed"]] == [(42, 4, 0), (7, 0, 0)]
    pooled = uncertainty.compare([index >= 10 for index in range(100)] + [index >= 8 for index in range(100)],
                                 [index >= 6 for index in range(100)] + [index >= 8 for index in range(100)])
    assert {key: compared["pooled"][key] for key in pooled.record()} == pooled.record()
    assert compared["pooled"]["pairs"] == 200
    assert "on these 200 photo-seed pairs (100 photos x 2 seeds; optimistic" in compared["pooled"]["sentence"]
    assert compared["difference_over_seeds"]["mean"] == pytest.approx(0.02)
    assert compared["difference_over_seeds"]["min"] == 0.0
    assert compared["difference_over_seeds"]["max"] == pytest.approx(0.04)
    assert collected["stages"][FIRST]["splits"]["test"]["compared_with_previous"] is None  # Nothing before it.


def test_without_a_test_split_the_validation_photos_are_scored_and_said_to_have_chosen():
    seed_run("valonly", 1, {FIRST: 3, SECOND: 2, THIRD: 2}, test=False)
    splits = seeds_page.collect("valonly", [1])["stages"][THIRD]["splits"]
    assert list(splits) == ["validation"]
    assert splits["validation"]["photos"] == "validation photos (these chose the best epoch)"


def test_a_failed_seed_is_named_and_left_out_and_the_page_is_written_and_marked():
    seed_run("study", 42, {FIRST: 10, SECOND: 6, THIRD: 6})
    seed_run("study", 7, {FIRST: 8, SECOND: 8, THIRD: 5})
    (paths.stage_dir("study-seed7", THIRD) / records.METRICS_FILE).unlink()
    storage.write_json(paths.run_dir("study-seed7") / records.MANIFEST_FILE, {"run": "study-seed7", "status": "failed",
                       "stages": {THIRD: {"status": "failed", "message": "03_fine_tuning failed in cell [12]"}}})
    page = seeds_page.write("study", [42, 7, 123], {7: "its runner stopped with exit status 2"})
    folder = paths.seeds_dir("study")
    assert page == folder / "index.html" and marks.kind_of(folder) == seeds_page.FOLDER_KIND
    recorded = json.loads((folder / seeds_page.SEEDS_FILE).read_text())
    assert recorded["complete_seeds"] == [42]
    assert recorded["failed_seeds"]["7"] == ("03_fine_tuning failed: 03_fine_tuning failed in cell [12]; its runner "
                                             "stopped with exit status 2")
    assert recorded["failed_seeds"]["123"] == "not run"
    assert [row["seed"] for row in recorded["stages"][SECOND]["splits"]["test"]["per_seed"]] == [42]
    text = page.read_text()
    assert "Seed 7 (study-seed7) did not complete" in text and "Seed 123 (study-seed123) did not complete" in text
    assert "not an independent pair" in text and "sample standard deviation" in text
    assert "On the test photos (no choice made on them)" in text
    assert "On the validation photos (these chose the best epoch)" in text


def test_the_page_never_writes_into_a_folder_the_suite_did_not_make_for_it():
    seed_run("mine", 42, {FIRST: 10, SECOND: 6, THIRD: 6})
    folder = paths.seeds_dir("mine")
    folder.mkdir(parents=True)
    (folder / "index.html").write_text("my own page")
    with pytest.raises(SuiteError, match="in the way of the seeds' page"):
        seeds_page.write("mine", [42])
    assert (folder / "index.html").read_text() == "my own page" and not (folder / seeds_page.SEEDS_FILE).exists()


def test_make_compare_accepts_the_seeds_folder_for_the_runs_of_its_complete_seeds():
    seed_run("study", 42, {FIRST: 10, SECOND: 6, THIRD: 6})
    seed_run("study", 7, {FIRST: 8, SECOND: 8, THIRD: 5})
    seeds_page.write("study", [42, 7, 5])
    assert compare.expand_seeds(["study-seeds", "study-seed42"]) == ["study-seed42", "study-seed7"]
    assert compare.collect(["study-seeds"])["runs"] == ["study-seed42", "study-seed7"]
    (paths.seeds_dir("study") / seeds_page.SEEDS_FILE).write_text("{cut")
    with pytest.raises(SuiteError, match="run make seeds again"):
        compare.collect(["study-seeds"])


def test_the_runner_gets_the_whole_study_with_the_seed_into_its_own_run():
    arguments, options = seeds_command.parse_arguments(
        ["--seeds", "42", "7", "--profile", "smoke", "--set", "epochs=2", "--force", "--budget-minutes", "9"])
    assert arguments.seeds == [42, 7] and options == ["--force", "--budget-minutes", "9"]
    assert seeds_command.base_run(arguments) == "smoke"
    command = seeds_command.runner_command(paths.seed_run("smoke", 7), 7, "smoke", arguments.set, options)
    assert command[1:] == ["-m", "lib.runner", "all", "--profile", "smoke", "--run", "smoke-seed7", "--set", "seed=7",
                           "--set", "epochs=2", "--force", "--budget-minutes", "9"]
    assert seeds_command.base_run(seeds_command.parse_arguments(["--seeds", "1", "--run", "mine"])[0]) == "mine"
    with pytest.raises(SuiteError, match="contradicts SEEDS"):
        seeds_command.runner_command("x-seed1", 1, "smoke", ["seed=3"], [])
    assert seeds_command.main(["--seeds", "1", "1", "--profile", "smoke"]) == 2  # A seed twice: one line, no run.


def test_with_profile_auto_every_seed_after_the_first_repeats_the_first_seeds_schedule(monkeypatch):
    commands = []
    monkeypatch.setattr(seeds_command, "run_one", lambda command: commands.append(command) or 0)
    assert seeds_command.main(["--seeds", "42", "7", "123", "--profile", "auto", "--budget-minutes", "20"]) == 0
    first = str(paths.run_dir("auto-seed42") / records.MANIFEST_FILE)
    assert "--from" not in commands[0] and commands[0][-2:] == ["--budget-minutes", "20"]
    for command, run in zip(commands[1:], ("auto-seed7", "auto-seed123")):
        assert command[command.index("--from") + 1] == first and command[command.index("--run") + 1] == run
    commands.clear()  # A named profile is the same schedule for every seed already.
    assert seeds_command.main(["--seeds", "1", "2", "--profile", "smoke"]) == 0
    assert not any("--from" in command for command in commands)


def test_a_record_names_each_seeds_schedule_where_auto_chose_differently():
    head = "The cpu profile sized to this CPU for a 30-minute budget: "
    same = {42: head + "180 px, augmentation_pool=4.", 7: head + "180 px, augmentation_pool=4."}
    assert seeds_record.schedule_of(same) == head + "180 px, augmentation_pool=4."
    differ = {**same, 123: head + "180 px, augmentation_pool=3."}
    assert seeds_record.schedule_of(differ) == (head + "seeds 42 and 7: 180 px, augmentation_pool=4; "
                                                "seed 123: 180 px, augmentation_pool=3.")
    assert seeds_record.schedule_of({1: "Smoke: tiny.", 2: "Cpu: small."}) == "seed 1: Smoke: tiny; seed 2: Cpu: small."


@pytest.mark.slow
def test_make_seeds_runs_the_smoke_study_per_seed_and_writes_its_page(tmp_path, monkeypatch):
    outputs = tmp_path / "outputs"
    env = {key: value for key, value in os.environ.items() if key not in {"DATA_DIR", "VGG16_WEIGHTS", "CACHE_DIR"}}
    env.update(OUTPUTS_DIR=str(outputs), PYTHONUNBUFFERED="1")
    venv = Path(sys.prefix)

    def make(*arguments: str) -> subprocess.CompletedProcess:
        done = subprocess.run(["make", "-o", str(venv / ".installed"), f"VENV={venv}", *arguments], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done

    make("seeds", "PROFILE=smoke", "SEEDS=1 2")
    recorded = json.loads((outputs / "smoke-seeds" / "seeds.json").read_text())
    assert recorded["complete_seeds"] == [1, 2] and (outputs / "smoke-seeds" / "index.html").is_file()
    for stem in stages.STEMS:
        split = next(iter(recorded["stages"][stem]["splits"].values()))
        assert [row["seed"] for row in split["per_seed"]] == [1, 2]
        if stem != FIRST:
            assert split["compared_with_previous"]["pooled"]["pairs"] == 2 * split["per_seed"][0]["total"]
    assert (outputs / "smoke-seed1" / "index.html").is_file() and (outputs / "smoke-seed2" / "index.html").is_file()
    again = make("seeds", "PROFILE=smoke", "SEEDS=1 2").stdout  # Complete: every stage of both seeds skipped.
    assert again.count(": skipped, complete with the") == 2 * len(stages.STEMS)
    make("compare", "RUNS=smoke-seeds")
    assert json.loads((outputs / "compare.json").read_text())["runs"] == ["smoke-seed1", "smoke-seed2"]
    # The docs' record of the seeds (tools/seeds_record.py) and the tables drawn from it.
    monkeypatch.setenv("OUTPUTS_DIR", str(outputs))
    time_logs = [tmp_path / f"time-{seed}.log" for seed in (1, 2)]  # As /usr/bin/time -v writes them, one per seed.
    for time_log, elapsed, kbytes in zip(time_logs, ("1:02.50", "1:00:30.00"), (2_000_000, 3_000_000)):
        time_log.write_text(f"\tElapsed (wall clock) time (h:mm:ss or m:ss): {elapsed}\n"
                            f"\tMaximum resident set size (kbytes): {kbytes}\n")
    assert seeds_record.main(["smoke", "--seeds-run", "smoke", "--command", "make seeds PROFILE=smoke SEEDS=\"1 2\"",
                              "--time-log", *map(str, time_logs)], records_folder=tmp_path) == 0
    record = json.loads((tmp_path / "smoke.json").read_text())
    assert [run["minutes"] for run in record["runs"]] == [1.0, 60.5] and record["peak_memory_gb"] == 3.1
    held_out = recorded["stages"][THIRD]["splits"]["test"]["per_seed"]
    assert [row["accuracy"] for row in record["stages"][2]["held_out"]] == [row["accuracy"] for row in held_out]
    assert record["cpu"]["cores"] >= 1 and record["versions"]["suite"]
    assert [run["seed"] for run in record["runs"]] == [1, 2]
    assert record["schedule"] == record["runs"][0]["schedule"] == record["runs"][1]["schedule"]
    table = docs_tables.seeds(record)
    assert f"{100 * held_out[0]['accuracy']:.2f}%" in table and "make seeds PROFILE=smoke" in table
    assert docs_tables.times(record).count("\n| ") == 3  # The header's rule and one row per seed.
