"""`make data`: find or download the data set, check its layout, and print the image count per split.

    python -m lib.run.check_data   (DATA_DIR=... or the default download folder)
"""
from __future__ import annotations

import sys

from lib import SuiteError
from lib.study import listing, photos


def main() -> int:
    """`make data`: find or download the dataset, check its layout, print the image count per split."""
    try:
        root = photos.resolve_data_dir()
        print(root)
        for split in listing.available_splits(root):
            split_listing = listing.list_split(root, split)
            print(f"  {split}: {len(split_listing.files)} images ({int(split_listing.labels.sum())} dogs), "
                  f"{len(split_listing.skipped)} other files skipped")
    except SuiteError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
