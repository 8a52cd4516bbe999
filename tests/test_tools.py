"""The measurement tools behind the README's tables and pictures: the honest measure's split and table, the replay
of stage 3's endings, and the heatmaps' copy."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import make_dataset

from lib.core import params
from tools import fine_tuning_levers, holdout_table, screenshots


def test_the_holdout_split_halves_the_validation_photos_by_name_and_keeps_them_apart(tmp_path):
    source = make_dataset(tmp_path / "photos", per_class=6)
    data = holdout_table.split(source, tmp_path / "split")
    for label in ("cats", "dogs"):
        names = sorted(path.name for path in (source / "validation" / label).iterdir())
        selection = sorted(path.name for path in (data / "validation" / label).iterdir())
        report = sorted(path.name for path in (data / "test" / label).iterdir())
        assert selection == names[:3] and report == names[3:]  # Halves by name, nothing in both.
    assert (data / "train").resolve() == (source / "train").resolve()
    assert holdout_table.split(source, tmp_path / "split") == data  # A second call finds the links in place.


def test_the_holdout_table_reports_the_report_half_per_seed_with_its_mean_and_spread():
    def stage(report: float, selection: float, tta: float | None = None) -> dict:
        return {"test_accuracy": report, "val_accuracy": selection, "test_accuracy_tta": tta}

    results = {seed: {"01_feature_extraction": stage(0.96 + step, 0.97, 0.965),
                      "02_data_augmentation": stage(0.97, 0.98), "03_fine_tuning": stage(0.974 - step, 0.99)}
               for seed, step in ((42, 0.0), (7, 0.004), (123, 0.002))}
    lines = holdout_table.table(results, [42, 7, 123])
    assert lines[0].startswith("| stage | report half, seeds 42 / 7 / 123 |") and len(lines) == 5
    assert lines[2] == ("| 1. Feature extraction | 0.960 / 0.964 / 0.962 | 0.9620 (spread 0.004) | 0.9700 | "
                        "0.9650 (spread 0.000) |")
    assert lines[3].endswith("| 0.9800 | off |")  # No TTA measured: said, not averaged.
    assert "0.9720 (spread 0.004)" in lines[4]


def test_a_rung_of_autos_ladder_becomes_a_profile_file_the_runner_reads(tmp_path):
    path = holdout_table.rung_profile("cpu", "1,20,2", tmp_path)
    profile = params.load_profile(path)
    assert profile["data_augmentation"]["epochs"] == 20 and profile["fine_tuning"]["epochs"] == 2
    assert profile["data_augmentation"]["augmentation_pool"] == profile["fine_tuning"]["augmentation_pool"] == 1
    cpu = params.load_profile("cpu")
    assert profile["feature_extraction"] == cpu["feature_extraction"]
    assert profile["common"] == {**cpu["common"], "image_size": 150, "test_time_augmentation": False}
    larger = params.load_profile(holdout_table.rung_profile("cpu", "1,20,2,180,tta", tmp_path))
    assert larger["common"]["image_size"] == 180 and larger["common"]["test_time_augmentation"] is True
    with pytest.raises(SystemExit, match="--rung: Rung '1,20'"):
        holdout_table.rung_profile("cpu", "1,20", tmp_path)


def test_the_fine_tuning_replay_averages_and_interpolates_weights_element_by_element():
    snapshots = [[np.full((2, 2), value), np.full(3, 10 * value)] for value in (0.0, 1.0, 2.0, 6.0)]
    mean = fine_tuning_levers.averaged(snapshots[1:])
    assert np.allclose(mean[0], 3.0) and np.allclose(mean[1], 30.0) and mean[0].shape == (2, 2)
    halfway = fine_tuning_levers.interpolated(snapshots[0], snapshots[-1], 0.5)
    assert np.allclose(halfway[0], 3.0) and np.allclose(halfway[1], 30.0)


def test_the_fine_tuning_replay_ends_each_way_and_chooses_its_best_epoch_as_stage_3_does():
    def scores(accuracy: float, loss: float) -> dict:
        return {"validation": {"accuracy": accuracy, "loss": loss}, "test": {"accuracy": 0.9, "loss": 0.3}}

    rows = [scores(0.99, 0.01), scores(0.97, 0.2), scores(0.98, 0.3), scores(0.98, 0.1), scores(0.96, 0.1)]
    assert fine_tuning_levers.best_epoch(rows) == 3  # Never stage 2's row 0; the tie goes to the lower loss.
    snapshots = [[np.array([float(epoch)])] for epoch in range(5)]
    ways = fine_tuning_levers.endings(snapshots, rows)
    assert (ways["stage 2"], ways["best epoch"], ways["last epoch"]) == (0, 3, 4)
    assert [way for way in ways if way.startswith("SWA")] == ["SWA from 1", "SWA from 2", "SWA from 3"]
    assert np.allclose(ways["SWA from 2"][0], 3.0) and np.allclose(ways["WiSE 0.5"][0], 2.0)


def test_the_fine_tuning_table_reports_each_way_on_the_report_half():
    def way(report: float, selection: float) -> dict:
        return {"test": {"accuracy": report}, "validation": {"accuracy": selection}}

    results = {seed: {"stage 2": way(0.97, 0.98), "best epoch": way(0.96 + step, 0.99)}
               for seed, step in ((42, 0.0), (7, 0.01))}
    lines = fine_tuning_levers.table(results, [42, 7])
    assert lines[0].startswith("| way of ending stage 3 | report half, seeds 42 / 7 |") and len(lines) == 4
    assert lines[2] == "| stage 2 | 0.970 / 0.970 | 0.9700 (spread 0.000) | 0.9800 |"
    assert lines[3] == "| best epoch | 0.960 / 0.970 | 0.9650 (spread 0.010) | 0.9900 |"


def test_the_heatmaps_are_copied_at_their_size_in_a_palette_and_fewer_bytes(tmp_path):
    from PIL import Image

    noisy = np.random.default_rng(0).integers(0, 256, (120, 300, 4), dtype=np.uint8)  # RGBA, as matplotlib saves.
    source, target = tmp_path / "figure.png", tmp_path / "heatmaps.png"
    Image.fromarray(noisy, "RGBA").save(source)
    screenshots.copy_in_palette(source, target)
    with Image.open(target) as copied:
        assert copied.size == (300, 120) and copied.mode == "P"
    assert target.stat().st_size < source.stat().st_size and not list(tmp_path.glob(".*partial"))
