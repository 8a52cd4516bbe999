"""Reproduce the README's scale table: stage 1 on synthetic sets of growing size, memory and time.

    .venv/bin/python tools/scale.py [--photos 2000 8000 32000] [--stores disk memory]

For each size N, `data_dir=synthetic:N` generates (once) N synthetic photos (half training, a quarter each
validation and test; 64x64 JPEGs), and stage 1 runs with the smoke profile's settings (32x32 images, random
conv-base weights, 2 epochs: the conv base's cost per photo is small, so the photo count is what grows) once
per image store, each with a cold cache of its own (the photos themselves are generated once, under
`outputs/scale/`). Printed per run: photos, image store, the peak memory
(RSS) of the stage's kernel, the memory its features take, and the seconds of the whole stage, its extraction
and its training. With `disk`, memory should grow with the features only.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib.core import marks, paths, storage  # noqa: E402
from lib.study import synthetic  # noqa: E402

STEM = "01_feature_extraction"
FEATURE_BYTES = 512 * 4  # One photo's 1x1x512 float32 block5 features at 32x32.


def run(photos: int, store: str, work: Path) -> dict:
    """Stage 1 on `photos` synthetic photos with `image_store=<store>`, cold cache; its metrics and seconds."""
    name = f"scale-{photos}-{store}"
    cache = work / f"cache-{name}"
    shutil.rmtree(cache, ignore_errors=True)
    # What `data_dir=synthetic:<photos>` generates, generated once here so that every run decodes cold.
    folder, counts = synthetic.synthetic_of_size(f"synthetic:{photos}")
    photos_dir = synthetic.make_synthetic_dataset(work / folder.name, counts)
    env = {key: value for key, value in os.environ.items() if key != "DATA_DIR"}
    env["CACHE_DIR"] = str(cache)
    command = [sys.executable, "-m", "lib.runner", STEM, "--profile", "smoke", "--run", name, "--no-forecast",
               "--force", "--set", f"data_dir={photos_dir}", "--set", f"image_store={store}"]
    with open(work / f"{name}.log", "w") as log:
        subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
    shutil.rmtree(cache, ignore_errors=True)
    stage = paths.stage_dir(name, STEM)
    seconds = storage.read_json(stage / "stage.json")["seconds"]
    return {**storage.read_json(stage / "metrics.json"), "stage_seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, nargs="+", default=[2000, 8000, 32000])
    parser.add_argument("--stores", nargs="+", default=["disk", "memory"])
    arguments = parser.parse_args()
    work = marks.make_folder(paths.outputs_root() / "scale", "scale measurements")
    print("| photos | image store | peak RSS (MB) | features kept (MB) | stage (s) | extraction (s) | training (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for photos in arguments.photos:
        for store in arguments.stores:
            metrics = run(photos, store, work)
            print(f"| {photos} | {store} | {metrics['peak_memory_mb']:.0f} | {photos * FEATURE_BYTES / 1e6:.0f} | "
                  f"{metrics['stage_seconds']:.0f} | {metrics['extraction_seconds']:.0f} | "
                  f"{metrics['training_seconds']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
