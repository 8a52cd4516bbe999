"""`make predict`'s parts that need no model: which photos it reads and labels, and which it shows."""
from __future__ import annotations

import pytest
from conftest import write_image

from lib import SuiteError
from lib.run import predict


def test_photos_are_labelled_by_their_cats_and_dogs_folders_and_odd_files_listed(tmp_path):
    write_image(tmp_path / "new" / "cats" / "a.jpg")
    write_image(tmp_path / "new" / "dogs" / "b.png", fmt="PNG")
    write_image(tmp_path / "new" / "c.jpg")
    (tmp_path / "new" / "notes.txt").write_text("not a photo")
    photos, skipped = predict.list_photos(str(tmp_path / "new"))
    assert [(path.name, label) for path, label in photos] == [("c.jpg", None), ("a.jpg", "cat"), ("b.png", "dog")]
    assert [item["path"].rsplit("/", 1)[-1] for item in skipped] == ["notes.txt"]
    assert predict.list_photos(str(tmp_path / "new" / "c.jpg"))[0][0][1] is None
    with pytest.raises(SuiteError, match="no such file or folder"):
        predict.list_photos(str(tmp_path / "missing"))


def test_the_gallery_shows_the_surest_and_the_least_sure_of_many():
    rows = [{"p_dog": index / 199} for index in range(200)]
    shown = predict.gallery_rows(rows)
    assert len(shown) == predict.GALLERY_SIZE
    assert abs(shown[0]["p_dog"] - 0.5) == 0.5 and abs(shown[-1]["p_dog"] - 0.5) < 0.01
    assert predict.gallery_rows(rows[:5]) == sorted(rows[:5], key=lambda row: -abs(row["p_dog"] - 0.5))
