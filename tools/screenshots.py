"""The README's pictures, taken from a run: `docs/summary.png`, `docs/report.png` and `docs/heatmaps.png`.

    .venv/bin/python tools/screenshots.py <run> [--browser chromium]

The summary page (`outputs/<run>/index.html`) and stage 2's report are drawn by a headless Chromium at a fixed
window size; the heatmaps are stage 3's own figure, copied in 256 colours (a quarter of the bytes). Name in the
README the run they come from: a run its results table shows.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lib.core import paths, stages  # noqa: E402

DOCS = ROOT / "docs"
WINDOW = "1500,1050"


def screenshot(browser: str, page: Path, target: Path, window: str = WINDOW) -> None:
    """Draw `page` in a headless browser into `target` (written whole: a temporary file, then renamed)."""
    if not page.is_file():
        raise SystemExit(f"No page {page}: run the study first (make run-all RUN=...).")
    with tempfile.TemporaryDirectory() as profile:
        drawn = Path(profile) / "shot.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={window}", f"--screenshot={drawn}",
                        page.as_uri()], check=True, capture_output=True, timeout=120)
        shutil.move(drawn, target)
    print(f"wrote {target.relative_to(ROOT)} from {page}")


def copy_in_palette(source: Path, target: Path, colours: int = 256) -> None:
    """Copy the PNG `source` to `target` at the same size in a palette of `colours` (written whole: a temporary
    file, then renamed): the figure's photos and heat maps keep their look in a quarter of the bytes."""
    from PIL import Image

    with Image.open(source) as image:
        paletted = image.convert("RGB").quantize(colours)
    partial = target.with_name(f".{target.name}.partial")
    paletted.save(partial, format="PNG", optimize=True)
    partial.replace(target)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="the run folder's name in outputs/")
    parser.add_argument("--browser", default="chromium")
    arguments = parser.parse_args(argv)
    run = paths.run_dir(arguments.run)
    second, third = stages.STAGES[1], stages.STAGES[2]
    screenshot(arguments.browser, run / "index.html", DOCS / "summary.png")
    screenshot(arguments.browser, run / second.stem / f"{second.stem}.html", DOCS / "report.png", "900,620")
    copy_in_palette(run / third.stem / "heatmaps.png", DOCS / "heatmaps.png")
    print(f"wrote docs/heatmaps.png from {run / third.stem / 'heatmaps.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
