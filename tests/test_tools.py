"""The measurement tools behind the README's tables: the honest measure's split and table."""
from __future__ import annotations

import pytest
from conftest import make_dataset

from lib.core import params
from tools import holdout_table


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
    assert profile["feature_extraction"] == cpu["feature_extraction"] and profile["common"] == cpu["common"]
    with pytest.raises(SystemExit, match="--rung '1,20'"):
        holdout_table.rung_profile("cpu", "1,20", tmp_path)
