"""A tiny synthetic project to proofread: bodies cut into supervoxels, a boundary map, ground truth.

For tests, demos and the widget: everything follows from ``seed``, builds in
well under a second, and the ground truth says which supervoxels belong
together. Bodies are Voronoi cells of a few seeds; each body is cut into
supervoxels by the Voronoi cells of more seeds; the boundary map is high on
the faces between bodies and low inside them, with a little noise, so an
agglomeration at 0.5 recovers the bodies.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_connectome.arrays import distinct
from napari_connectome.errors import InputError


def demo_volumes(*, shape=(6, 24, 24), n_bodies: int = 4, n_supervoxels: int = 40, seed: int = 0,
                 background: bool = True) -> dict[str, np.ndarray]:
    """The arrays of the demo project.

    Returns
    -------
    dict
        ``raw`` uint8, ``supervoxels`` uint32 (0 = background in one corner
        when ``background``), ``boundaries`` float32 in [0, 1] (1 = membrane),
        ``groundtruth`` uint32 body ids.
    """
    from scipy.spatial import cKDTree

    shape = tuple(int(s) for s in shape)
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    # Anisotropy-free distances in voxels keep cells blob-like in every axis.
    body_seeds = rng.uniform(0, 1, (n_bodies, 3)) * np.array(shape)
    bodies = cKDTree(body_seeds).query(grid)[1].reshape(shape).astype(np.uint32) + 1
    sv_seeds = rng.uniform(0, 1, (n_supervoxels, 3)) * np.array(shape)
    cells = cKDTree(sv_seeds).query(grid)[1].reshape(shape).astype(np.int64)
    pair = bodies.astype(np.int64) * (n_supervoxels + 1) + cells
    _, sv = np.unique(pair, return_inverse=True)
    sv = sv.reshape(shape).astype(np.uint32) + 1
    boundary = np.full(shape, 0.1, dtype=np.float32)
    for ax in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax] = slice(0, -1)
        hi[ax] = slice(1, None)
        diff = bodies[tuple(lo)] != bodies[tuple(hi)]
        boundary[tuple(lo)][diff] = 0.9
        boundary[tuple(hi)][diff] = 0.9
    boundary += rng.normal(0, 0.03, shape).astype(np.float32)
    np.clip(boundary, 0.0, 1.0, out=boundary)
    if background:
        sv[:, :2, :2] = 0
    gt = bodies.copy()
    gt[sv == 0] = 0
    raw = np.clip(255 * (1.0 - boundary) - 20 + rng.normal(0, 5, shape), 0, 255).astype(np.uint8)
    # Renumber supervoxels densely so ids are 1..N in scan order of first appearance.
    ids = distinct(sv)
    ids = ids[ids != 0]
    lut = np.zeros(int(sv.max()) + 1, np.uint32)
    lut[ids] = np.arange(1, ids.size + 1, dtype=np.uint32)
    return {"raw": raw, "supervoxels": lut[sv], "boundaries": boundary, "groundtruth": gt}


def make_demo_project(root: str | os.PathLike, *, shape=(6, 24, 24), n_bodies: int = 4,
                      n_supervoxels: int = 40, seed: int = 0, voxel_size=(20.0, 10.0, 10.0),
                      threshold: float | None = 0.5, volumes: dict | None = None):
    """Write the demo volumes to ``root/data.h5`` and create a project over them.

    Parameters
    ----------
    root
        A new folder for the project.
    threshold
        Agglomerate at this threshold (None: no agglomeration; every
        supervoxel is its own segment).
    volumes
        Arrays to use instead of :func:`demo_volumes` (same keys).

    Returns
    -------
    Project
        With its graph built (and its merge tree when ``threshold`` is given).
    """
    import h5py

    from napari_connectome.graph import agglomerate_project, build_project_graph
    from napari_connectome.project import create_project

    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise InputError(root, "is not empty; the demo project needs a new folder")
    root.mkdir(parents=True, exist_ok=True)
    vols = volumes or demo_volumes(shape=shape, n_bodies=n_bodies, n_supervoxels=n_supervoxels, seed=seed)
    data = root / "data.h5"
    with h5py.File(data, "w") as f:
        for name, arr in vols.items():
            ds = f.create_dataset(name, data=arr, chunks=True)
            ds.attrs["resolution"] = [float(v) for v in voxel_size]
    project = create_project(
        root / "project", raw=f"{data}/raw", supervoxels=f"{data}/supervoxels",
        boundaries=f"{data}/boundaries", groundtruth=f"{data}/groundtruth", voxel_size=voxel_size,
        name="demo",
    )
    build_project_graph(project)
    if threshold is not None:
        agglomerate_project(project, threshold=threshold)
    return project
