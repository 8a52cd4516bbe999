"""The photos a run reports on without having chosen anything on them (`report_split`)."""
from __future__ import annotations

import random

import numpy as np
import pytest
from conftest import make_dataset

from lib import SuiteError
from lib.core import params, report_split
from lib.study import evaluation, photos


def test_auto_uses_the_test_folder_when_there_is_one_and_else_holds_back_half_of_validation():
    assert report_split.resolve("auto", has_test=True) == "test"
    assert report_split.resolve("auto", has_test=False) == "held_out"
    assert report_split.resolve("held_out", has_test=True) == "held_out"
    assert report_split.resolve("none", has_test=True) == "none"
    with pytest.raises(SuiteError, match="no test/ folder.*report_split=auto"):
        report_split.resolve("test", has_test=False)
    with pytest.raises(SuiteError, match="out of range.*'held_out'"):
        params.check_value("report_split", "half")


def test_the_held_out_half_is_half_of_each_class_and_the_same_in_any_order():
    files = [f"validation/cats/cat.{i}.jpg" for i in range(7)] + [f"validation/dogs/dog.{i}.jpg" for i in range(6)]
    labels = np.array([0] * 7 + [1] * 6)
    held = report_split.held_out_mask(files, labels)
    assert held[labels == 0].sum() == 3 and held[labels == 1].sum() == 3  # The smaller half of an odd class.
    chosen = {name for name, flag in zip(files, held) if flag}
    order = list(range(len(files)))
    random.Random(5).shuffle(order)
    shuffled = report_split.held_out_mask([files[i] for i in order], labels[order])
    assert {files[i] for i, flag in zip(order, shuffled) if flag} == chosen
    assert chosen != {name for name, flag in zip(files, np.arange(13) % 2 == 1) if flag}  # Not every second name.


def test_the_forecast_counts_the_photos_each_split_will_score():
    assert report_split.counts({"train": 2000, "validation": 1000}, "auto") == {
        "train": 2000, "validation": 500, "test": 500}
    assert report_split.counts({"train": 2000, "validation": 1000, "test": 2000}, "auto")["test"] == 2000
    assert "test" not in report_split.counts({"train": 20, "validation": 10, "test": 10}, "none")


def test_photos_without_a_test_folder_are_scored_on_a_held_out_half_of_validation(tmp_path):
    root = make_dataset(tmp_path / "d", per_class=4)
    sets = photos.load_image_sets(root, 32)
    assert list(sets) == ["train", "validation", "test"] and [len(s) for s in sets.values()] == [8, 4, 4]
    validation, held_out = sets["validation"], sets["test"]
    assert not set(validation.files) & set(held_out.files)
    assert sorted(validation.files + held_out.files) == sorted(photos.load_split(root, "validation", 32).files)
    assert list(held_out.labels).count(1) == 2 and held_out.name == "held-out" and validation.name == "validation"
    assert held_out.fingerprint != validation.fingerprint
    assert evaluation.photo_name(held_out.files[0], held_out.folder) in {f"cats/cat.{i}.jpg" for i in range(4)} | {
        f"dogs/dog.{i}.jpg" for i in range(4)}
    assert photos.load_image_sets(root, 32, report_split="none").keys() == {"train", "validation"}
    with pytest.raises(SuiteError, match="report_split"):
        photos.load_image_sets(root, 32, report_split="test")


def test_a_test_folder_is_used_as_it_is_unless_held_out_is_asked_for(tmp_path):
    root = make_dataset(tmp_path / "d", per_class=3, splits=("train", "validation", "test"))
    sets = photos.load_image_sets(root, 32)
    assert [len(s) for s in sets.values()] == [6, 6, 6] and sets["test"].name == "test"
    held = photos.load_image_sets(root, 32, report_split="held_out")
    assert [len(held[split]) for split in ("validation", "test")] == [4, 2]
    assert all("/validation/" in path for path in held["test"].files)


def test_each_split_says_which_photos_it_holds_and_whether_they_chose_anything():
    words = report_split.split_photos("held_out", {"validation": 500, "test": 500})
    assert words["test"].startswith("500 held-out photos") and "no choice made on them" in words["test"]
    assert "chose the best epoch" in words["validation"]
    assert report_split.split_photos("test", {"validation": 1000, "test": 2000})["test"] == (
        "2000 test photos (no choice made on them)")
    assert report_split.name_of({"report_split": "held_out"}) == "held-out" and report_split.name_of({}) == "test"
    assert report_split.photos_of({}, "test") == "test photos (no choice made on them)"  # An older stage's metrics.
