"""Affinities from raw EM with a valid-convolution U-Net, whole or block by block.

The volume is mirrored outwards by the network's context (what a model saw in
training at the edges of its data), the output grid is tiled into blocks
whose corners are multiples of the network's step, and each block gets its
full context from the padded volume. Because the network uses valid
convolutions and no normalisation across voxels, every block equals the
corresponding part of a whole-volume pass (up to float rounding).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _normalise(raw: np.ndarray) -> np.ndarray:
    raw = np.asarray(raw)
    if np.issubdtype(raw.dtype, np.integer):
        return (raw / np.iinfo(raw.dtype).max).astype(np.float32)
    return raw.astype(np.float32)


def predict_affinities(
    raw: np.ndarray,
    model,
    *,
    block_shape=None,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Affinities of ``raw`` (``(C, z, y, x)`` float32, one channel per model offset).

    Parameters
    ----------
    raw
        ``(z, y, x)`` EM; integers are divided by their dtype's maximum.
    model
        A :class:`napari_connectome_models.nets.unet.UNet3D` (or anything with a
        ``config`` giving ``context``, ``step``, ``output_shape`` and a forward
        pass returning affinities).
    block_shape
        Output block (z, y, x), rounded up to the next valid output of the
        model; blocks start on multiples of the model's step (neighbours
        overlap where a valid output is not a multiple of it). None = the
        whole volume in one pass.
    threads
        torch threads for this call (None: leave torch's setting).
    progress
        Called with (blocks done, blocks total).
    """
    import torch

    cfg = model.config
    ctx, step = np.array(cfg.context), np.array(cfg.step)
    shape = np.array(raw.shape)
    want = shape if block_shape is None else np.maximum(np.asarray(block_shape), 1)
    block = np.array(cfg.output_shape(cfg.valid_input_shape(want)))
    # blocks start on multiples of the step (pooling grids line up); a valid
    # output is not always a multiple of the step, so neighbours may overlap
    stride = np.maximum(block // step * step, step) if block_shape is not None else block
    if np.any(block < stride):
        raise ValueError(f"block {tuple(block)} is smaller than the model's step {tuple(step)}")
    n_blocks = np.maximum(-(-(shape - block) // stride), 0) + 1
    total = (n_blocks - 1) * stride + block
    padded = np.pad(_normalise(raw), [(c, t - s + c) for c, s, t in zip(ctx, shape, total, strict=True)],
                    mode="reflect")
    out = np.zeros((cfg.out_channels, *total), dtype=np.float32)
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        was_training = model.training
        model.eval()
        grid = list(np.ndindex(*n_blocks))
        with torch.no_grad():
            for k, idx in enumerate(grid):
                b = np.array(idx) * stride
                sl = tuple(slice(int(s), int(s + n + 2 * c)) for s, n, c in zip(b, block, ctx, strict=True))
                x = torch.from_numpy(np.ascontiguousarray(padded[sl]))[None, None]
                y = model(x)[0].numpy()
                out[(slice(None), *(slice(int(s), int(s + n)) for s, n in zip(b, block, strict=True)))] = y
                if progress is not None:
                    progress(k + 1, len(grid))
        model.train(was_training)
    finally:
        torch.set_num_threads(old)
    return np.ascontiguousarray(out[(slice(None), *(slice(0, int(s)) for s in shape))])


def predict_affinities_flipped(raw: np.ndarray, model, **kwargs) -> np.ndarray:
    """Test-time augmentation: the mean of the affinities of all 8 axis flips of ``raw``.

    A flipped pass predicts, at voxel ``j``, the link between ``j`` and
    ``j - offset`` *of the flipped volume*; flipped back, that is the link to
    ``j + offset`` along every flipped axis, so it is moved by the offset to
    sit on the voxel where the unflipped convention stores it. Links whose
    partner lies outside the volume are averaged over the passes that have
    them. Only single-axis offsets are supported (ours: ``-e_d``, ``-3 e_d``, ...).

    Parameters
    ----------
    raw, model, kwargs
        As for :func:`predict_affinities`.
    """
    import itertools

    offsets = [tuple(int(v) for v in o) for o in model.config.offsets]
    if any(sum(v != 0 for v in o) != 1 for o in offsets):
        raise ValueError(f"flip averaging needs single-axis offsets, got {offsets}")
    shape = raw.shape
    total = np.zeros((len(offsets), *shape), dtype=np.float64)
    count = np.zeros((len(offsets), *shape), dtype=np.float32)
    for flips in itertools.product((False, True), repeat=3):
        axes = tuple(a for a in range(3) if flips[a])
        y = predict_affinities(np.ascontiguousarray(np.flip(raw, axes)), model, **kwargs)
        y = np.flip(y, tuple(a + 1 for a in axes))
        for c, o in enumerate(offsets):
            axis = next(a for a in range(3) if o[a])
            if not flips[axis]:
                total[c] += y[c]
                count[c] += 1
                continue
            # y[c] at k is the link (k, k - o) of the original volume: the link (j, j + o) sits at k = j + o
            n, d = shape[axis], o[axis]
            here = [slice(None)] * 3
            there = [slice(None)] * 3
            if d < 0:
                here[axis], there[axis] = slice(-d, n), slice(0, n + d)
            else:
                here[axis], there[axis] = slice(0, n - d), slice(d, n)
            total[c][tuple(here)] += y[c][tuple(there)]
            count[c][tuple(here)] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)
