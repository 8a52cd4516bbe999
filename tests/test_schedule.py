"""The forecast's cost model and PROFILE=auto's schedule sized to a time budget."""
from __future__ import annotations

import dataclasses
import statistics

import pytest

from lib import SuiteError
from lib.core import devices, params, paths, stages, storage
from lib.run import forecast, schedule
from tools import docs_tables

RATE = 10.0  # Conv-base images per second, as on a 2-core AVX2 CPU in float32.
COUNTS = {"train": 2000, "validation": 1000, "test": 2000}


def fingerprints(counts=COUNTS) -> dict:
    """A memo as `provenance.inputs_of` fills it, for a dataset of `counts` photos (no caches on disk)."""
    dataset = {"splits": {split: {"files": [f"{split}/{index}.jpg" for index in range(count)], "sha256": split * 8}
                          for split, count in counts.items()}}
    return {("", "imagenet"): (dataset, {"sha256": "w" * 64})}


def test_conv_work_fractions_follow_the_layers():
    assert forecast.fraction(150, "block5_pool") == pytest.approx(1.0)
    assert forecast.fraction(150, "block4_pool") == pytest.approx(0.913, abs=0.002)
    assert forecast.fraction(150, "block5_pool", "block4_pool") == pytest.approx(0.087, abs=0.002)
    assert sum(forecast.layer_flops(150).values()) == pytest.approx(13.2e9 * 2 / 2, rel=0.01)  # 13.2 GFLOP


def test_cut_layer_moves_with_the_unfrozen_layers():
    assert forecast.cut_layer({}) == "block5_pool"
    assert forecast.cut_layer({"unfreeze_layers": ["block5_conv1", "block5_conv2", "block5_conv3"]}) == "block4_pool"
    assert forecast.cut_layer({"unfreeze_layers": ["block4_conv3", "block5_conv1"]}) == "block4_conv2"


def test_stages_share_the_block4_cache_and_the_pool(monkeypatch):
    cpu = params.load_profile("cpu")
    resolved = {stem: params.resolve_for_stage(stem, cpu, {"augmentation_pool": 2}) for stem in stages.STEMS}
    rates = {(150, devices.compute_policy(True, [])): RATE}  # The cpu profile asks for 16-bit where native.
    whole = forecast.plan_seconds(list(stages.STEMS), resolved, fingerprints(), [], rates)
    stage2 = resolved["02_data_augmentation"]
    alone = forecast.plan_seconds(["02_data_augmentation"], {"02_data_augmentation": stage2}, fingerprints(), [], rates)
    blocks_1_to_4 = 5000 * forecast.fraction(150, "block4_pool") / RATE
    assert whole["01_feature_extraction"] > blocks_1_to_4  # Stage 1 pays for the shared cut, once.
    # Alone, stage 2 pays for the validation and test photos' blocks 1-4 itself.
    block4, block5 = forecast.fraction(150, "block4_pool"), forecast.fraction(150, "block5_pool", "block4_pool")
    assert alone["02_data_augmentation"] - whole["02_data_augmentation"] == pytest.approx(
        (3000 * (block4 + block5) + 2000 * block4) / RATE + 5000 * forecast.DECODE_SECONDS, rel=0.01)
    pool_cost = 2 * 2000 * (forecast.fraction(150, "block4_pool") + forecast.AUGMENTATION) / RATE
    assert whole["02_data_augmentation"] > pool_cost
    stage3 = {"03_fine_tuning": resolved["03_fine_tuning"]}
    alone3 = forecast.plan_seconds(["03_fine_tuning"], stage3, fingerprints(), [], rates, {"02_data_augmentation"})
    assert alone3["03_fine_tuning"] - whole["03_fine_tuning"] > pool_cost  # In the run, stage 3 reuses stage 2's pool.


def test_forecast_grows_with_pool_and_epochs():
    values = {"epochs": 5, "steps_per_epoch": 100, "batch_size": 20, "augmentation_pool": 2}
    base = forecast.stage_seconds("03_fine_tuning", values, COUNTS, RATE)
    assert forecast.stage_seconds("03_fine_tuning", {**values, "epochs": 10}, COUNTS, RATE) > base
    assert forecast.stage_seconds("03_fine_tuning", {**values, "augmentation_pool": 4}, COUNTS, RATE) > base
    online = forecast.stage_seconds("03_fine_tuning", {**values, "augmentation_pool": 0}, COUNTS, RATE)
    assert online > base  # Online augmentation pushes every photo through blocks 1-4 each epoch.


def rate_at(size: int) -> float:
    """`RATE` at 150 pixels; the conv base's work grows with the pixels."""
    return RATE * (150 / size) ** 2


def chosen(budget: float, monkeypatch, counts=COUNTS, overrides=None):
    monkeypatch.setattr(forecast, "measure", lambda size, policy, layers: forecast.Speed(rate_at(size)))
    base = params.load_profile("cpu")
    return schedule.choose(base, budget, list(stages.STEMS), overrides or {}, fingerprints(counts), set())


def forecast_minutes(rung: schedule.Rung, budget: float) -> float:
    profile = schedule.with_rung(params.load_profile("cpu"), rung, budget)
    resolved = {stem: params.resolve_for_stage(stem, profile, {}) for stem in stages.STEMS}
    rates = {(rung.image_size, devices.compute_policy(True, [])): rate_at(rung.image_size)}
    return sum(forecast.plan_seconds(list(stages.STEMS), resolved, fingerprints(), [], rates).values()) / 60


def test_auto_takes_the_most_accurate_rung_that_fits_80_percent_of_the_budget(monkeypatch):
    rung, seconds, speed, policy = chosen(30, monkeypatch)
    assert speed.forward == rate_at(rung.image_size) and sum(seconds.values()) <= 0.8 * 30 * 60
    assert forecast_minutes(rung, 30) == pytest.approx(sum(seconds.values()) / 60)
    for better in schedule.LADDER[schedule.LADDER.index(rung) + 1:]:  # Every more accurate rung would not fit.
        assert forecast_minutes(better, 30) > 0.8 * 30
    assert chosen(120, monkeypatch)[0] != rung  # More time, a more accurate schedule.


def test_auto_measures_each_image_size_it_reaches_once(monkeypatch):
    measured = []

    def measure(size, policy, layers):
        measured.append(size)
        return forecast.Speed(rate_at(size))

    monkeypatch.setattr(forecast, "measure", measure)
    schedule.choose(params.load_profile("cpu"), 30, list(stages.STEMS), {}, fingerprints(), set())
    assert sorted(measured) == sorted(set(measured)) and {rung.image_size for rung in schedule.LADDER} >= set(measured)


def test_an_image_size_set_on_the_command_line_holds_for_every_rung(monkeypatch):
    rung = chosen(30, monkeypatch, overrides={"image_size": 224})[0]
    assert rung.image_size == 224
    assert {rung.image_size for rung in schedule.ladder({"image_size": 224})} == {224}
    assert len(schedule.ladder({"image_size": 224})) == len(set(schedule.ladder({"image_size": 224})))


def test_a_rung_reads_back_from_its_key():
    for rung in schedule.LADDER:
        assert schedule.Rung.parse(rung.key()) == rung
    assert schedule.Rung.parse("1,20,2") == schedule.Rung(1, 20, 2, 150, False)
    assert schedule.Rung.parse("2, 30, 8, 180, tta") == schedule.Rung(2, 30, 8, 180, True)
    for wrong in ("1,20", "a,b,c", "1,2,3,4,5,6"):
        with pytest.raises(SuiteError, match="give the pool size"):
            schedule.Rung.parse(wrong)
    profile = schedule.with_rung(params.load_profile("cpu"), schedule.Rung(2, 30, 8, 180, True), 30)
    values = params.resolve_for_stage("03_fine_tuning", profile, {})
    assert (values["image_size"], values["test_time_augmentation"], values["epochs"]) == (180, True, 8)


def test_a_budget_too_small_takes_the_smallest_rung_and_says_so(monkeypatch):
    rung, seconds, _, _ = chosen(2, monkeypatch)
    assert rung == schedule.LADDER[0] and sum(seconds.values()) > 0.8 * 2 * 60


def test_auto_keeps_the_schedule_a_run_chose(monkeypatch):
    monkeypatch.setattr(schedule.devices, "gpu_descriptions", lambda: [])
    monkeypatch.setattr(forecast, "measure", lambda size, policy, layers: forecast.Speed(rate_at(size)))
    memo = fingerprints()
    profile, choice, recorded = schedule.auto_profile("auto", 30, {}, memo)
    assert profile["name"] == "auto" and "forecast" in choice.message and recorded["budget_minutes"] == 30
    assert not choice.kept
    # Sized for the whole study whatever the command runs (a stage-1 command must not pick the top rung).
    assert set(recorded["forecast_seconds"]) == set(stages.STEMS)
    assert set(recorded["rung"]) == {"augmentation_pool", "augmentation_epochs", "fine_tuning_epochs", "image_size",
                                     "test_time_augmentation"}
    storage.write_json(paths.run_dir("auto") / "manifest.json", {"schedule": recorded, "stages": {}})

    def no_measuring(size, policy, layers):
        raise AssertionError("a run that chose its schedule must not measure again")

    monkeypatch.setattr(forecast, "measure", no_measuring)
    again, choice, kept = schedule.auto_profile("auto", 30, {}, memo)
    assert kept == recorded and again["fine_tuning"] == profile["fine_tuning"] and choice.kept
    with pytest.raises(AssertionError, match="must not measure"):
        schedule.auto_profile("auto", 45, {}, memo)  # Another budget: chosen again.


def test_auto_on_a_gpu_runs_the_full_profile(monkeypatch):
    monkeypatch.setattr(schedule.devices, "gpu_descriptions", lambda: ["NVIDIA H100"])
    profile, choice, recorded = schedule.auto_profile("", None, {}, {})
    assert profile["name"] == "full" and "H100" in choice.message and not choice.kept and recorded is None


def test_budget_must_be_positive(monkeypatch):
    monkeypatch.setenv("BUDGET_MINUTES", "45")
    assert schedule.budget_minutes(None) == 45 and schedule.budget_minutes(20) == 20
    with pytest.raises(SuiteError, match="BUDGET_MINUTES=0"):
        schedule.budget_minutes(0)


def test_forecast_grows_with_the_work():
    counts = {"train": 2000, "validation": 1000}
    schedule = {"steps_per_epoch": 100, "batch_size": 20}
    short = forecast.stage_seconds("02_data_augmentation", {"epochs": 5, **schedule}, counts, 40)
    long = forecast.stage_seconds("02_data_augmentation", {"epochs": 50, **schedule}, counts, 40)
    assert 0 < short < long
    # Stage 1: a kernel and a report, decoding, the conv base once per photo, 30 classifier epochs.
    expected = (forecast.STAGE_SECONDS + 3000 * forecast.DECODE_SECONDS + 3000 / 30
                + 30 * 2000 * forecast.CLASSIFIER_STEP / 30)
    assert forecast.stage_seconds("01_feature_extraction", {"epochs": 30}, counts, 30) == pytest.approx(expected)


def test_stage_one_feature_flips_cost_block5_once_and_twice_the_classifier_epochs():
    counts = {"train": 2000, "validation": 1000}
    plain = forecast.stage_seconds("01_feature_extraction", {"epochs": 30}, counts, 30)
    flips = forecast.stage_seconds("01_feature_extraction", {"epochs": 30, "feature_flips": True}, counts, 30)
    block5 = 2000 * forecast.fraction(150, "block5_pool", "block4_pool") / 30
    assert flips - plain == pytest.approx(block5 + 30 * 2000 * forecast.CLASSIFIER_STEP / 30)


def test_a_measurement_takes_the_median_so_one_slow_call_does_not_size_the_run(monkeypatch):
    clock = iter([0.0, 1.0, 1.0, 2.0, 2.0, 9.0, 9.0, 10.2, 10.2, 11.1])  # Calls of 1, 1, 7 (disturbed), 1.2, 0.9 s.
    monkeypatch.setattr(forecast.time, "perf_counter", lambda: next(clock))
    calls = []
    assert forecast.median_seconds(lambda: calls.append(1), 5) == pytest.approx(1.0)
    assert len(calls) == 5


def test_the_forecast_measures_the_training_steps_it_prices():
    """A measured training step replaces the factor; the measurement trains the layers above the cut for real."""
    seconds = forecast.training_step_seconds(32, "float32", "block4_pool", batch_size=4, steps=2, sustain=0.2)
    classifier = forecast.training_step_seconds(32, "float32", "block5_pool", batch_size=4, steps=2, sustain=0.2)
    assert 0 < classifier < seconds < 1
    values = {"epochs": 5, "steps_per_epoch": 100, "batch_size": 20, "augmentation_pool": 1}
    assert forecast.trained_cuts(params.with_defaults("03_fine_tuning", values), "03_fine_tuning") == {
        "block4_pool", "block5_pool"}
    factors = forecast.stage_seconds("03_fine_tuning", values, COUNTS, RATE)
    measured = forecast.Speed(RATE, {"block4_pool": forecast.Speed(RATE).step(150, "block4_pool") * 2})
    slower = forecast.stage_seconds("03_fine_tuning", values, COUNTS, measured)
    assert slower - factors == pytest.approx(5 * 100 * 20 * forecast.Speed(RATE).step(150, "block4_pool"))


def test_short_training_steps_are_timed_for_the_sustained_time(monkeypatch):
    """Steps of a few milliseconds are timed in many, not eight: enough to fill `sustain` seconds, at most MAX_STEPS."""
    timed = []
    real = forecast.median_seconds

    def counting(work, times):
        timed.append(times)
        return real(work, times)

    monkeypatch.setattr(forecast, "median_seconds", counting)
    forecast.training_step_seconds(32, "float32", "block5_pool", batch_size=4, steps=2, sustain=0.3)
    first, steps = timed
    assert first == 1
    assert 2 < steps <= forecast.MAX_STEPS


def test_measured_training_steps_are_priced_with_the_epochs_overhead(monkeypatch):
    monkeypatch.setattr(forecast, "conv_base_rate", lambda size, policy: 11.0)
    monkeypatch.setattr(forecast, "training_step_seconds", lambda size, policy, layer: 0.02)
    speed = forecast.measure(150, "float32", {"block4_pool", "block5_pool"})
    assert speed.forward == 11.0
    assert speed.step_seconds == {"block4_pool": pytest.approx(0.02 * forecast.BLOCK5_STEP_OVERHEAD),
                                  "block5_pool": pytest.approx(0.02 * forecast.STEP_OVERHEAD)}
    assert forecast.STEP_OVERHEAD > forecast.BLOCK5_STEP_OVERHEAD > 1


def test_a_later_stage_is_forecast_again_with_its_steps_measured_just_before_it_runs(monkeypatch, capsys):
    """The first stage a command runs is forecast from one measurement; each later one has its training steps
    measured again just before it runs, its forecast moves with them, and the first forecast is kept beside it."""
    step = {"seconds": 0.02}
    measured = []
    monkeypatch.setattr(forecast, "conv_base_rate", lambda size, policy: RATE)
    monkeypatch.setattr(forecast, "training_step_seconds",
                        lambda size, policy, layer: measured.append(layer) or step["seconds"])
    monkeypatch.setattr(devices, "gpu_names", lambda: [])
    cpu = params.load_profile("cpu")
    resolved = {stem: params.resolve_for_stage(stem, cpu, {"mixed_precision": False}) for stem in stages.STEMS}
    forecasts = forecast.Forecasts(enabled=True)
    stems = list(stages.STEMS)
    first = forecasts.before(stems, resolved, fingerprints(), set())
    assert first == forecasts.seconds["01_feature_extraction"] and forecasts.at_start == {}
    start = dict(forecasts.seconds)
    assert sorted(measured) == ["block4_pool", "block5_pool"]  # One measurement for the whole command.
    measured.clear()
    assert forecasts.before(stems[1:], resolved, fingerprints(), set()) == pytest.approx(start["02_data_augmentation"])
    assert measured == ["block5_pool"]  # Stage 2 trains the classifier alone.
    step["seconds"] = 0.04  # The machine slowed down.
    later = forecasts.before(stems[2:], resolved, fingerprints(), set())
    assert forecasts.at_start["03_fine_tuning"] == start["03_fine_tuning"]
    values = params.with_defaults("03_fine_tuning", resolved["03_fine_tuning"])
    photos = values["epochs"] * (values["steps_per_epoch"] * values["batch_size"] or COUNTS["train"])
    assert later - start["03_fine_tuning"] == pytest.approx(photos * 0.02 * forecast.BLOCK5_STEP_OVERHEAD, rel=0.01)
    assert "forecast 03_fine_tuning, its training step measured again" in capsys.readouterr().out
    assert forecast.Forecasts(enabled=False).before(stems, resolved, fingerprints(), set()) is None


def test_a_measurement_that_fails_between_stages_keeps_the_start_forecast(monkeypatch, capsys):
    monkeypatch.setattr(forecast, "conv_base_rate", lambda size, policy: RATE)
    monkeypatch.setattr(forecast, "training_step_seconds", lambda size, policy, layer: 0.02)
    monkeypatch.setattr(devices, "gpu_names", lambda: [])
    cpu = params.load_profile("cpu")
    resolved = {stem: params.resolve_for_stage(stem, cpu, {"mixed_precision": False}) for stem in stages.STEMS}
    forecasts, stems = forecast.Forecasts(enabled=True), list(stages.STEMS)
    forecasts.before(stems, resolved, fingerprints(), set())
    start = dict(forecasts.seconds)

    def out_of_memory(size, policy, layer):
        raise MemoryError("no room for block 5")

    monkeypatch.setattr(forecast, "training_step_seconds", out_of_memory)
    assert forecasts.before(stems[1:], resolved, fingerprints(), set()) == start["02_data_augmentation"]
    assert forecasts.at_start == {}  # Nothing measured again: one forecast, the start's.
    assert "02_data_augmentation: not measured again (MemoryError: no room for block 5)" in capsys.readouterr().out


def measured_rungs() -> dict[schedule.Rung, float]:
    """Stage 3's mean report-half accuracy of each rung in docs/records/ladder-held-out.json: a row with test-time
    augmentation measures its rung with it and, from the same models, without it."""
    record = docs_tables.load("ladder-held-out")
    found = {}
    for row in record["rows"]:
        rung, third = schedule.Rung.parse(row["rung"]), row["stages"][-1]
        found[dataclasses.replace(rung, test_time_augmentation=False)] = statistics.fmean(third["held_out"])
        if third["held_out_tta"]:
            found[dataclasses.replace(rung, test_time_augmentation=True)] = statistics.fmean(third["held_out_tta"])
    return found


def test_the_ladder_is_in_the_order_of_the_measured_accuracy():
    measured = {rung: accuracy for rung, accuracy in measured_rungs().items() if rung in schedule.LADDER}
    assert len(measured) >= 2, "the record measures at least two rungs of the ladder"
    for rung, accuracy in measured.items():
        for other, other_accuracy in measured.items():
            if accuracy < other_accuracy:
                assert schedule.LADDER.index(rung) < schedule.LADDER.index(other), (rung, other)
