"""Child of the synapse-store crash test: appends batches of known rows forever, printing each committed batch."""

from __future__ import annotations

import sys

import numpy as np

from napari_connectome.synapses.store import SynapseStore
from napari_connectome.synapses.table import SynapseTable


def batch_rows(seed: int, k: int) -> SynapseTable:
    """The rows of the worker's ``k``-th batch: known to the test from (seed, k) alone."""
    rng = np.random.default_rng([seed, k])
    n = int(rng.integers(1, 200))
    return SynapseTable(synapse_id=np.arange(n) + 1, pre=rng.random((n, 3)) * 1e4, post=rng.random((n, 3)) * 1e4,
                        pre_id=rng.integers(1, 2**64 - 1, n, dtype=np.uint64),
                        post_id=rng.integers(1, 50, n).astype(np.uint64), score=rng.random(n))


if __name__ == "__main__":
    path, seed = sys.argv[1], int(sys.argv[2])
    store = SynapseStore(path)
    start = len(store.batches())
    print(f"ready {start}", flush=True)
    k = 0
    while True:
        number = store.append(batch_rows(seed, k), origin="imported", details={"seed": seed, "k": k})
        print(number, k, flush=True)
        k += 1
