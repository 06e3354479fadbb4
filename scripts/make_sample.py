"""Rebuild kdlab/sample_data/ from the full data sets: the first 2,000 train and 1,000 test images.

    python scripts/make_sample.py ../shared/datasets
"""

import gzip
import sys
from pathlib import Path

from kdlab.data import SPLITS, read_folder
from kdlab.idx import encode_idx

N = {"train": 2000, "test": 1000}


def main(root: str) -> None:
    out_root = Path(__file__).resolve().parent.parent / "kdlab" / "sample_data"
    for name in ("mnist", "fashion-mnist"):
        arrays = dict(zip(SPLITS, read_folder(Path(root) / name)))
        out = out_root / name
        out.mkdir(parents=True, exist_ok=True)
        for key, (stem, _) in SPLITS.items():
            part = key.split("_")[0]
            # mtime=0 keeps the gzip bytes reproducible.
            data = gzip.compress(encode_idx(arrays[key][: N[part]]), compresslevel=9, mtime=0)
            (out / f"{stem}.gz").write_bytes(data)
            print(out / f"{stem}.gz", len(data), "bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets")
