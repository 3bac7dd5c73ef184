"""Synthetic volumes as lazy multiscale volumes: nothing is generated until read."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from napari_connectome.synthetic.render import generate_block
from napari_connectome.synthetic.spec import SyntheticSpec
from napari_connectome.volume.lazy import ChunkedArray
from napari_connectome.volume.model import Level, MultiscaleVolume


class _BlockGenerator:
    """Generates raw and labels of a chunk together, so reading both costs one pass.

    Keeps the last few chunks: a viewer reading the raw layer then the labels
    layer asks for the same chunk twice in a row.
    """

    def __init__(self, spec: SyntheticSpec, chunks: tuple[int, int, int], keep: int = 16) -> None:
        self.spec = spec
        self.chunks = chunks
        self.keep = keep
        self._recent: OrderedDict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, index: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            hit = self._recent.get(index)
            if hit is not None:
                self._recent.move_to_end(index)
                return hit
        box = tuple(
            (i * c, min((i + 1) * c, n))
            for i, c, n in zip(index, self.chunks, self.spec.shape, strict=True)
        )
        pair = generate_block(self.spec, box)
        with self._lock:
            self._recent[index] = pair
            while len(self._recent) > self.keep:
                self._recent.popitem(last=False)
        return pair


def _chunk_shape(chunks, shape) -> tuple[int, int, int]:
    if isinstance(chunks, (int, np.integer)):
        chunks = (int(chunks),) * 3
    chunks = tuple(int(c) for c in chunks)
    if len(chunks) != 3 or any(c <= 0 for c in chunks):
        from napari_connectome.errors import InputError

        raise InputError(
            "synthetic volume", f"chunks must be positive (z, y, x) sizes, got {chunks}"
        )
    return tuple(min(c, s) for c, s in zip(chunks, shape, strict=True))


def synthetic_volumes(
    spec: SyntheticSpec, *, chunks=64, name: str = "synthetic"
) -> tuple[MultiscaleVolume, MultiscaleVolume]:
    """The raw image and the ground-truth labels of ``spec`` as lazy volumes.

    Parameters
    ----------
    spec
        The synthetic volume.
    chunks
        Chunk shape (an int for all axes, or ``(z, y, x)``): the unit in
        which voxels are generated and cached.
    name
        Base name; the volumes are called ``{name}_raw`` and ``{name}_gt``.

    Returns
    -------
    raw, gt : MultiscaleVolume
        One level each, ``kind`` ``"image"`` (uint8) and ``"labels"``
        (uint32), with the spec's voxel size and offset. Reading a region
        generates only the chunks it touches.
    """
    chunk_shape = _chunk_shape(chunks, spec.shape)
    generator = _BlockGenerator(spec, chunk_shape)
    source = f"synthetic:seed={spec.seed}"
    axes = ("z", "y", "x")
    raw = ChunkedArray(
        lambda index: generator(index)[0],
        shape=spec.shape,
        dtype=np.uint8,
        chunks=chunk_shape,
        source=f"{source}/raw",
    )
    gt = ChunkedArray(
        lambda index: generator(index)[1],
        shape=spec.shape,
        dtype=np.uint32,
        chunks=chunk_shape,
        source=f"{source}/gt",
    )
    volumes = []
    for array, kind, suffix in ((raw, "image", "raw"), (gt, "labels", "gt")):
        level = Level(array, spec.voxel_size, spec.offset, axes)
        volumes.append(
            MultiscaleVolume(
                levels=[level],
                kind=kind,
                source=array.source,
                format="synthetic",
                name=f"{name}_{suffix}",
            )
        )
    return volumes[0], volumes[1]
