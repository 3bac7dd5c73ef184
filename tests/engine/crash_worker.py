"""Child process of the crash test: edits a project in a loop until it is killed.

Usage: ``python crash_worker.py PROJECT SEED``

Prints ``ready N`` once the project is open (N = operations replayed), then,
after every edit whose log commit has returned, ``OPERATION_ID DIGEST``
(DIGEST: a hash of the mapping right after that edit), flushed at once. The
parent kills it with SIGKILL at a random moment and checks that every
reported operation is in the log and replays to the reported mapping.
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np


def mapping_digest(mapping) -> str:
    ids, segs = mapping
    h = hashlib.blake2b(digest_size=12)
    h.update(np.ascontiguousarray(ids, dtype="<u8").tobytes())
    h.update(np.ascontiguousarray(segs, dtype="<u8").tobytes())
    return h.hexdigest()


def main(project: str, seed: int) -> None:
    from napari_connectome.errors import InputError
    from napari_connectome.proofread import Proofreader

    pr = Proofreader.open(project, user="crash-worker")
    vs = np.asarray(pr.supervoxel_volume().voxel_size)
    print(f"ready {len(pr.history())}", flush=True)
    rng = np.random.default_rng(seed)
    while True:
        volume = pr.supervoxel_volume().levels[0].array[:, :, :]
        fg = np.argwhere(volume > 0)
        p, q = (tuple(float(x) for x in fg[i] * vs) for i in rng.choice(len(fg), 2, replace=False))
        kind = rng.choice(["merge", "merge", "split", "inside", "undo", "redo"])
        try:
            if kind == "merge":
                result = pr.merge(p, q)
            elif kind == "split":
                result = pr.split(sources_nm=[p], sinks_nm=[q], inside=False)
            elif kind == "inside":
                sv = pr.supervoxel_at(p)
                own = np.argwhere(volume == sv)
                r = tuple(float(x) for x in own[rng.integers(len(own))] * vs)
                result = pr.split(sources_nm=[p], sinks_nm=[r], inside=True)
            elif kind == "undo":
                result = pr.undo()
            else:
                result = pr.redo()
        except InputError:
            continue
        sys.stdout.write(f"{result.operation_id} {mapping_digest(pr.mapping())}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
