"""Reproduce the README's pool-size table: online augmentation against pools of K variants.

    DATA_DIR=... VGG16_WEIGHTS=... .venv/bin/python tools/pool_table.py [--seeds 42 7] [--pools 0 1 2 4 8]

Splits the validation photos of `DATA_DIR` in two (first half of each class, by name, for validation and the
best-epoch choice; the second half as an independent test split; training photos unchanged; symlinks under
`outputs/pool-table/data`), then runs all three stages with `params/pool-table.yaml` once per seed and pool
size (`augmentation_pool=0` is online augmentation), each with a cold cache of its own so that every row pays
its full cost, and prints the table: validation / test accuracy and wall seconds of stages 2 and 3.
About two hours on a 2-core AVX-512 CPU for the default seeds and pools.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib.core import marks, paths, records, stages  # noqa: E402
from lib.pages import compare  # noqa: E402

STEMS = tuple(stage.stem for stage in stages.STAGES if stage.trains_on == "photos")  # Those a pool changes.


def split(source: Path, target: Path) -> Path:
    """`target` with `train` linked from `source` and `source`'s validation photos halved into validation/test."""
    target.mkdir(parents=True, exist_ok=True)
    if not (target / "train").exists():
        (target / "train").symlink_to(source / "train")
    for label in ("cats", "dogs"):
        photos = sorted((source / "validation" / label).iterdir())
        half = len(photos) // 2
        for part, chosen in (("validation", photos[:half]), ("test", photos[half:])):
            folder = target / part / label
            folder.mkdir(parents=True, exist_ok=True)
            for photo in chosen:
                if not (folder / photo.name).exists():
                    (folder / photo.name).symlink_to(photo)
    return target


def run(data: Path, pool: int, seed: int, work: Path) -> dict:
    """One run of all stages; per stage: validation and test accuracy, and seconds."""
    name = f"pool-table-k{pool}-s{seed}"
    env = dict(os.environ, DATA_DIR=str(data), CACHE_DIR=str(work / f"cache-{name}"))
    command = [sys.executable, "-m", "lib.runner", "all", "--profile", str(ROOT / "params" / "pool-table.yaml"),
               "--run", name, "--no-forecast", "--set", f"augmentation_pool={pool}", "--set", f"seed={seed}"]
    with open(work / f"{name}.log", "w") as log:
        subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    recorded = records.read_manifest(name)["stages"]
    rows = {}
    for stem in STEMS:
        result = compare.stage_results(name, stages.get(stem), recorded[stem])
        rows[stem] = (result["val_accuracy"], result["test_accuracy"], result["seconds"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7])
    parser.add_argument("--pools", type=int, nargs="+", default=[0, 1, 2, 4, 8])
    args = parser.parse_args()
    work = marks.make_folder(paths.outputs_root() / "pool-table", "pool table runs")
    if not os.environ.get("DATA_DIR"):
        parser.error("set DATA_DIR to the photos (train/, validation/) and VGG16_WEIGHTS to the weights file")
    data = split(Path(os.environ["DATA_DIR"]).resolve(), work / "data")
    results = {(pool, seed): run(data, pool, seed, work) for pool in args.pools for seed in args.seeds}
    print("| pool | stage 2 val | stage 2 test | stage 2 s | stage 3 val | stage 3 test | stage 3 s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for pool in args.pools:
        cells = []
        for stem in STEMS:
            for column, form in ((0, "{:.3f}"), (1, "{:.3f}"), (2, "{:.0f}")):
                cells.append(" / ".join(form.format(results[pool, seed][stem][column]) for seed in args.seeds))
        print(f"| {'online' if pool == 0 else pool} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
