"""Build the bundled gala-fib sample from ../shared/data/gala-fib (run once, by hand).

The sample is the gala-fib *test* crop: EM, ground truth, watershed supervoxels
and gala's boundary probability, in one HDF5 file with CREMI-style
``resolution`` attributes (10 nm isotropic, the FIB-SEM voxel size of the study;
the source files store none). The boundary map is kept as float32.

Usage: python scripts/make_gala_sample.py [SHARED_DATA_DIR]
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "resources" / "napari_connectome_resources" / "samples" / "gala-fib-test.h5"
PARTS = {
    "raw": ("test-image.h5", np.uint8),
    "groundtruth": ("test-gt.lzf.h5", np.uint32),
    "supervoxels": ("test-ws.lzf.h5", np.uint32),
    "boundaries": ("test-p1.lzf.h5", np.float32),
}


def main() -> None:
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data"
    src = data / "gala-fib"
    with h5py.File(OUT, "w") as out:
        out.attrs["source"] = "janelia-flyem/gala tests/example-data (test crop)"
        out.attrs["licence"] = "see LICENSE-gala.txt (Copyright 2012 HHMI, BSD-like)"
        for name, (fname, dtype) in PARTS.items():
            with h5py.File(src / fname, "r") as f:
                arr = f["stack"][...]
            if arr.min() < 0:
                raise SystemExit(f"{fname}: negative values cannot become {dtype}")
            ds = out.create_dataset(
                name,
                data=arr.astype(dtype),
                chunks=(25, 50, 100),
                compression="gzip",
                compression_opts=9,
                shuffle=True,
            )
            ds.attrs["resolution"] = [10.0, 10.0, 10.0]
            ds.attrs["offset"] = [0.0, 0.0, 0.0]
            ds.attrs["source_file"] = fname
            ds.attrs["source_sha256"] = hashlib.sha256((src / fname).read_bytes()).hexdigest()
    print(OUT, OUT.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
