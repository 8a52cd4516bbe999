"""The dataset: layout checks with clear errors, odd files skipped or converted, decoding cached."""
from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import make_dataset, write_image

from lib import SuiteError
from lib.study import batches, listing, photo_download, photos, synthetic


def test_class_order_is_cats_then_dogs_whatever_the_disk_order(tmp_path):
    root = make_dataset(tmp_path / "d", per_class=2)
    os.rename(root / "train" / "cats", root / "train" / "Cats")  # Case and order on disk do not matter.
    split_listing = listing.list_split(root, "train")
    assert list(split_listing.labels) == [0, 0, 1, 1]
    assert all("Cats" in str(path) for path in split_listing.files[:2])


@pytest.mark.parametrize("breakage, message", [
    (lambda root: os.rename(root / "validation", root / "valid"), "Split folder .*validation is missing"),
    (lambda root: os.rename(root / "train" / "dogs", root / "train" / "doggos"), r"holds class folders \['doggos'\]"),
    (lambda root: (root / "train" / "birds").mkdir(), r"holds class folders \['birds'\]"),
    (lambda root: [p.unlink() for p in (root / "train" / "cats").iterdir()], "has no images"),
])
def test_layout_problems_name_the_folder(tmp_path, breakage, message):
    root = make_dataset(tmp_path / "d", per_class=2)
    breakage(root)
    with pytest.raises(SuiteError, match=message):
        photos.load_image_sets(root, 32)


def test_missing_class_folder(tmp_path):
    root = make_dataset(tmp_path / "d", per_class=2)
    for path in (root / "train" / "dogs").iterdir():
        path.unlink()
    (root / "train" / "dogs").rmdir()
    with pytest.raises(SuiteError, match=r"Class folder .*train/dogs is missing"):
        listing.list_split(root, "train")


def test_missing_root_names_the_environment_variable(tmp_path):
    with pytest.raises(SuiteError, match="DATA_DIR"):
        photos.resolve_data_dir(str(tmp_path / "nowhere"))


def test_data_dir_environment_variable_wins(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "d", per_class=1)
    monkeypatch.setenv("DATA_DIR", str(root))
    assert photos.resolve_data_dir("/not/used") == root


def test_odd_files_are_skipped_or_converted(tmp_path):
    root = make_dataset(tmp_path / "my photos é", per_class=2)  # Spaces and non-ASCII in the path.
    cats = root / "train" / "cats"
    (cats / ".DS_Store").write_bytes(b"\x00\x01")
    (cats / "Thumbs.db").write_bytes(b"\x00")
    (cats / "notes.txt").write_text("not a photo")
    (cats / "empty.jpg").write_bytes(b"")
    (cats / "truncated.jpg").write_bytes((cats / "cat.0.jpg").read_bytes()[:200])
    (cats / "fake.jpg").write_text("this is text, not a jpeg")
    write_image(cats / "UPPER.JPG")
    write_image(cats / "gray.png", mode="L")
    write_image(cats / "alpha.png", mode="RGBA")
    write_image(cats / "cmyk.jpg", mode="CMYK")
    write_image(cats / "palette.gif", mode="P")
    write_image(cats / "bitmap.bmp")
    write_image(cats / "tiny.jpg", size=(3, 2))
    write_image(cats / "large.jpg", size=(2500, 1800))
    image_set = photos.load_split(root, "train", 32)
    reasons = {os.path.basename(path): reason for path, reason in image_set.skipped}
    assert set(reasons) == {".DS_Store", "Thumbs.db", "notes.txt", "empty.jpg", "truncated.jpg", "fake.jpg"}
    assert "could not be decoded" in reasons["fake.jpg"] and reasons["empty.jpg"] == "empty file"
    assert len(image_set) == 2 + 8 + 2  # 2 cats + 8 converted extra cats + 2 dogs
    assert image_set.images.shape == (12, 32, 32, 3) and image_set.images.dtype == np.uint8
    assert int(image_set.labels.sum()) == 2


def test_decoded_images_are_cached_outside_a_read_only_dataset(tmp_path):
    root = make_dataset(tmp_path / "d", per_class=2)
    for folder, _, files in os.walk(root):
        for name in files:
            os.chmod(os.path.join(folder, name), 0o444)
        os.chmod(folder, 0o555)
    try:
        first = photos.load_split(root, "train", 32)
        cached = list((tmp_path / "outputs" / "cache" / "images").glob("train-32px-*.npz"))
        assert len(cached) == 1
        second = photos.load_split(root, "train", 32)
        np.testing.assert_array_equal(first.images, second.images)
        assert first.fingerprint == second.fingerprint
    finally:
        for folder, _, _ in os.walk(root):
            os.chmod(folder, 0o755)


def test_changed_photo_changes_the_fingerprint(tmp_path):
    root = make_dataset(tmp_path / "d", per_class=2)
    before = photos.load_split(root, "train", 32).fingerprint
    write_image(root / "train" / "cats" / "cat.0.jpg", colour=(0, 0, 0))
    assert photos.load_split(root, "train", 32).fingerprint != before


def test_max_images_per_class_and_optional_test_split(tmp_path):
    root = make_dataset(tmp_path / "d", per_class=3, splits=("train", "validation", "test"))
    sets = photos.load_image_sets(root, 32, max_images_per_class=2)
    assert list(sets) == ["train", "validation", "test"]
    assert [len(s) for s in sets.values()] == [4, 4, 4]


def test_seeded_shuffle_is_reproducible():
    images = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1).repeat(3, axis=-1)
    labels = np.arange(10) % 2
    order = [[int(x[0, 0, 0, 0]) for x, _ in batches.make_batch_stream(images, labels, 10, shuffle=True, seed=3)]
             for _ in range(2)]
    assert order[0] == order[1] and order[0] != list(range(10))


def test_synthetic_dataset_is_generated_once(tmp_path):
    root = synthetic.make_synthetic_dataset(tmp_path / "synthetic", counts={"train": 4, "validation": 2})
    assert sorted(p.name for p in (root / "train" / "dogs").iterdir()) == ["dog.0.jpg", "dog.1.jpg"]
    stamp = (root / "train" / "dogs" / "dog.0.jpg").stat().st_mtime_ns
    synthetic.make_synthetic_dataset(root)
    assert (root / "train" / "dogs" / "dog.0.jpg").stat().st_mtime_ns == stamp


def test_offline_download_says_what_it_tried(tmp_path, monkeypatch):
    import urllib.error

    from lib.core import download

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(download, "fetch", offline)
    with pytest.raises(SuiteError) as raised:
        photo_download.download_photos(tmp_path / "cats_and_dogs_filtered")
    message = str(raised.value)
    assert all(url in message for url in photo_download.DATASET_URLS) and "DATA_DIR" in message
    assert not (tmp_path / "cats_and_dogs_filtered").exists()


def test_download_unpacks_checks_counts_and_renames_into_place(tmp_path):
    import zipfile

    source = make_dataset(tmp_path / "build" / "cats_and_dogs_filtered", per_class=2)
    archive = tmp_path / "cats_and_dogs_filtered.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in sorted(source.rglob("*.jpg")):
            bundle.write(path, path.relative_to(source.parent))
    target = tmp_path / "data" / "cats_and_dogs_filtered"
    urls = ("http://127.0.0.1:9/unreachable.zip", archive.as_uri())  # The first address fails, the second works.
    with pytest.raises(SuiteError, match="has 4 train images, expected 2000"):
        photo_download.download_photos(target, urls)
    assert not target.exists() and not list(target.parent.glob(".unpack-*"))
    photo_download.download_photos(target, urls, expected_counts={"train": 4, "validation": 4})
    assert [len(listing.list_split(target, split).files) for split in ("train", "validation")] == [4, 4]


def test_make_data_prints_the_counts_per_split_or_one_error(tmp_path, monkeypatch, capsys):
    from lib.run import check_data

    root = make_dataset(tmp_path / "data", per_class=2)
    (root / "train" / "cats" / "notes.txt").write_text("not a photo")
    monkeypatch.setenv("DATA_DIR", str(root))
    assert check_data.main() == 0
    printed = capsys.readouterr().out
    assert "  train: 4 images (2 dogs), 1 other files skipped\n  validation: 4 images (2 dogs)" in printed
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "missing"))
    assert check_data.main() == 2
    assert capsys.readouterr().err.startswith(f"ERROR: Dataset folder {tmp_path / 'missing'} does not exist.")
