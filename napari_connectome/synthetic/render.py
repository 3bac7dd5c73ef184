"""Rasterise one block of the synthetic volume: raw EM-like intensities and labels.

Per voxel the block keeps, over the capsule segments that reach it,

* ``best``: the smallest signed distance ``d - r`` to a tube surface (nm,
  negative inside), and ``label``: the neuron it belongs to;
* ``second``: the smallest signed distance to a tube of *another* neuron.

Both are capped at the membrane thickness, so a segment further away than
that changes nothing, and segments are applied in their global order, so the
result at a voxel never depends on the block it was computed in. From them:
the voxel is inside a neuron when ``best < 0``; its distance to the nearest
boundary is ``min(-best, (second - best) / 2)`` inside (the bisector between
touching neurons) and ``best`` outside; a dark membrane is drawn where that
distance is below half the membrane thickness.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

from napari_connectome.errors import InputError
from napari_connectome.synthetic._scratch import SCRATCH
from napari_connectome.synthetic.hashing import gaussianish, hash_grid, hash_ids, value_noise
from napari_connectome.synthetic.neurons import Segments, neuron_segments, reach_nm
from napari_connectome.synthetic.spec import SyntheticSpec
from napari_connectome.synthetic.synapses import paint_synapses, synthetic_synapses

# Salts: independent random streams of one seed.
_SALT_NOISE = 1
_SALT_TEXTURE = 2
_SALT_ORGANELLE = 3
_SALT_TONE = 4
_TEXTURE_SPACING_NM = 48.0
_ORGANELLE_SPACING_NM = 110.0
# Value-noise level above which cytoplasm turns into a dark organelle blob.
_ORGANELLE_THRESHOLD = 0.45
_ORGANELLE_RAMP = 4.0
# Tiles small enough for their work buffers to stay in cache.
_TILE = (64, 64, 64)


def normalize_box(spec: SyntheticSpec, box) -> tuple[tuple[int, int], ...]:
    """``box`` (three slices or ``(start, stop)`` pairs) as checked ``(start, stop)`` pairs."""
    if len(box) != 3:
        raise InputError("synthetic block", f"a block needs three (z, y, x) ranges, got {box!r}")
    out = []
    for b, n in zip(box, spec.shape, strict=True):
        if isinstance(b, slice):
            if b.step not in (None, 1):
                raise InputError("synthetic block", f"block ranges take no step, got {b}")
            start, stop = b.start if b.start is not None else 0, b.stop if b.stop is not None else n
        else:
            start, stop = b
        start, stop = int(start), int(stop)
        if not 0 <= start <= stop <= n:
            raise InputError(
                "synthetic block",
                f"range {start}:{stop} lies outside the volume (shape {spec.shape})",
            )
        out.append((start, stop))
    return tuple(out)


def world_coordinates(spec: SyntheticSpec, box) -> list[np.ndarray]:
    """World nm of the voxel centres along each axis of ``box`` (float64)."""
    return [
        o + v * np.arange(a, b, dtype=np.float64)
        for (a, b), o, v in zip(box, spec.offset, spec.voxel_size, strict=True)
    ]


def tiles(box, tile=_TILE) -> list[tuple[tuple[int, int], ...]]:
    """Split ``box`` (``(start, stop)`` pairs) into tiles of at most ``tile`` voxels per axis."""
    ranges = [
        [(s, min(s + t, b)) for s in range(a, b, t)] if b > a else [(a, b)]
        for (a, b), t in zip(box, tile, strict=True)
    ]
    return [tuple(r) for r in itertools.product(*ranges)]


def tube_fields(spec: SyntheticSpec, box, segments: Segments | None = None):
    """``best``, ``second`` (float32, nm) and ``label`` (uint32, 0 outside) over one tile.

    See the module doc. The arrays are per-thread scratch buffers: valid until
    the same thread computes the next tile; copy them to keep them.
    """
    box = normalize_box(spec, box)
    segments = neuron_segments(spec) if segments is None else segments
    shape = tuple(b - a for a, b in box)
    cap = np.float32(reach_nm(spec))
    best = SCRATCH.take("best", shape)
    second = SCRATCH.take("second", shape)
    label = SCRATCH.take("label", shape, np.uint32)
    best.fill(cap)
    second.fill(cap)
    label.fill(0)
    if not all(shape):
        return best, second, label
    lo = np.array([a for a, _ in box])
    hi = np.array([b for _, b in box])
    world = world_coordinates(spec, box)
    cand = segments.candidates(lo, hi)
    if not cand.size:
        return best, second, label
    # Neuron by neuron (ascending id, which also settles ties): first the
    # neuron's own distance field (min over its segments, order-free), then one
    # fold into best / second / label. Folding whole neurons means a neuron
    # never competes with itself, so no per-voxel "same neuron" mask is needed.
    nids = segments.neuron[cand]
    order = np.argsort(nids, kind="stable")
    cand, nids = cand[order], nids[order]
    bounds = np.flatnonzero(np.diff(nids.astype(np.int64), prepend=-1, append=-1))
    for first, last in zip(bounds[:-1], bounds[1:], strict=True):
        segs = cand[first:last]
        s_lo = np.maximum(segments.lo[segs], lo) - lo
        s_hi = np.minimum(segments.hi[segs], hi) - lo
        u_lo, u_hi = s_lo.min(axis=0), s_hi.max(axis=0)
        u_sl = tuple(slice(int(a), int(b)) for a, b in zip(u_lo, u_hi, strict=True))
        own = SCRATCH.take("own", tuple(int(v) for v in u_hi - u_lo))
        own.fill(cap)
        for j, a, b in zip(segs, s_lo, s_hi, strict=True):
            w_sl = tuple(slice(int(p), int(q)) for p, q in zip(a, b, strict=True))
            o_sl = tuple(slice(int(p - o), int(q - o)) for p, q, o in zip(a, b, u_lo, strict=True))
            val = _signed_distance(segments, j, [w[s] for w, s in zip(world, w_sl, strict=True)])
            np.minimum(own[o_sl], val, out=own[o_sl])
        _fold(best[u_sl], second[u_sl], label[u_sl], own, nids[first])
    # The nearest tube owns a voxel only if the voxel is inside it.
    inside = SCRATCH.take("better", shape, np.bool_)
    np.less(best, np.float32(0), out=inside)
    label *= inside
    return best, second, label


def _signed_distance(seg: Segments, j: int, world) -> np.ndarray:
    """``d - r(t)`` from the voxels of a sub-box to capsule ``j`` (float32 scratch, nm)."""
    a, b = seg.a[j], seg.b[j]
    w0, w1, w2 = (np.float32(v) for v in (b - a))
    length2 = w0 * w0 + w1 * w1 + w2 * w2
    dz, dy, dx = ((c - p).astype(np.float32) for c, p in zip(world, a, strict=True))
    shape = (len(dz), len(dy), len(dx))
    dot = SCRATCH.take("dot", shape)
    pa2 = SCRATCH.take("pa2", shape)
    t = SCRATCH.take("t", shape)
    d2 = SCRATCH.take("d2", shape)
    # Separable sums: the (y, x) plane is small, one full-size pass each.
    np.add((dz * w0)[:, None, None], ((dy * w1)[:, None] + (dx * w2)[None, :])[None], out=dot)
    np.add((dz * dz)[:, None, None], ((dy * dy)[:, None] + (dx * dx)[None, :])[None], out=pa2)
    if length2 > 0:
        np.multiply(dot, np.float32(1) / length2, out=t)
        np.clip(t, np.float32(0), np.float32(1), out=t)
    else:
        t.fill(0)
    # |p - a - t w|² = |p - a|² + t (t |w|² - 2 (p - a)·w)
    np.multiply(t, length2, out=d2)
    d2 -= dot
    d2 -= dot
    d2 *= t
    d2 += pa2
    np.maximum(d2, np.float32(0), out=d2)
    np.sqrt(d2, out=d2)
    ra = np.float32(seg.ra[j])
    t *= np.float32(seg.rb[j]) - ra
    t += ra
    d2 -= t
    return d2


def _fold(best, second, label, own, nid) -> None:
    """Fold one neuron's distance field into best / second / label, in place."""
    shape = own.shape
    better = SCRATCH.take("better", shape, np.bool_)
    runner = SCRATCH.take("runner", shape)
    step = SCRATCH.take("step", shape, np.uint32)
    np.less(own, best, out=better)
    # Whichever of the old best (another neuron's) and this neuron loses is
    # the new runner-up candidate.
    np.maximum(best, own, out=runner)
    np.minimum(second, runner, out=second)
    np.minimum(best, own, out=best)
    # label = nid where better: modular arithmetic, several times faster than
    # a masked copy on random masks.
    np.subtract(np.uint32(nid), label, out=step)
    step *= better
    label += step


@functools.lru_cache(maxsize=16)
def neuron_tones(spec: SyntheticSpec, n_neurons: int) -> np.ndarray:
    """Cytoplasm grey level of each neuron id (index 0: extracellular space)."""
    u = hash_ids(spec.seed, _SALT_TONE, np.arange(n_neurons + 1)).astype(np.float64) / 4294967295.0
    tones = spec.cytoplasm_level + spec.cytoplasm_spread * (u - 0.5)
    tones[0] = spec.extracellular_level
    tones = tones.astype(np.float32)
    tones.flags.writeable = False
    return tones


def generate_block(spec: SyntheticSpec, box) -> tuple[np.ndarray, np.ndarray]:
    """Raw EM-like intensities and ground-truth labels of one block.

    Parameters
    ----------
    spec
        The synthetic volume.
    box
        The block, as three slices or ``(start, stop)`` pairs of voxel
        indices ``(z, y, x)`` inside ``spec.shape``.

    Returns
    -------
    raw : ndarray of uint8
        Bright cytoplasm with a per-neuron tone, smooth texture and dark
        organelle-like blobs; dark membranes; darker extracellular space;
        noise.
    gt : ndarray of uint32
        Neuron ids, 0 for the extracellular space.

    Notes
    -----
    The output at a voxel is a pure function of the spec and the voxel's
    absolute index: any tiling of the volume into blocks, in any order, gives
    bit-identical volumes. Internally the block is rendered in tiles of at
    most 64³ voxels (the same property makes that invisible).
    """
    box = normalize_box(spec, box)
    segments = neuron_segments(spec)
    synapses = synthetic_synapses(spec) if spec.synapse_density > 0 else None
    shape = tuple(b - a for a, b in box)
    raw = np.empty(shape, dtype=np.uint8)
    gt = np.empty(shape, dtype=np.uint32)
    for tile in tiles(box):
        out = tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(tile, box, strict=True))
        best, second, label = tube_fields(spec, tile, segments)
        gt[out] = label
        raw[out] = render_raw(spec, tile, best, second, label, segments.n_neurons, synapses=synapses)
    return raw, gt


def render_raw(spec: SyntheticSpec, box, best, second, label, n_neurons: int, *, synapses=None) -> np.ndarray:
    """The uint8 raw intensities of one tile from its tube fields (``best`` is overwritten).

    ``synapses`` (:class:`~napari_connectome.synthetic.synapses.SyntheticSynapses`)
    are painted over the membranes, before the noise.
    """
    box = normalize_box(spec, box)
    shape = best.shape
    if best.size == 0:
        return np.zeros(shape, dtype=np.uint8)
    world = world_coordinates(spec, box)
    inside = SCRATCH.take("inside", shape)
    np.less(best, np.float32(0), out=inside)
    # Distance to the nearest boundary: min(-best, (second - best) / 2) inside
    # (tube surface, or the bisector between two touching neurons). Outside,
    # best >= 0 makes the same expression -best, whose magnitude is the
    # distance to the surface: one formula, no mask.
    weight = SCRATCH.take("weight", shape)
    np.subtract(second, best, out=weight)
    weight *= np.float32(0.5)
    np.negative(best, out=best)
    np.minimum(weight, best, out=weight)
    np.abs(weight, out=weight)
    # Membrane weight: 1 on the boundary, 0 beyond half the thickness.
    weight *= np.float32(-2.0 / spec.membrane_thickness_nm)
    weight += np.float32(1)
    np.maximum(weight, np.float32(0), out=weight)

    value = SCRATCH.take("value", shape)
    np.take(neuron_tones(spec, n_neurons), label, out=value, mode="clip")
    texture = value_noise(
        spec.seed, _SALT_TEXTURE, _TEXTURE_SPACING_NM, *world, out=SCRATCH.take("noise", shape)
    )
    texture *= np.float32(spec.texture_amplitude)
    # The extracellular space gets half the texture: it is smoother in EM.
    half = SCRATCH.take("half", shape)
    np.multiply(inside, np.float32(0.5), out=half)
    half += np.float32(0.5)
    texture *= half
    value += texture
    if spec.organelle_darkness > 0:
        blob = value_noise(
            spec.seed,
            _SALT_ORGANELLE,
            _ORGANELLE_SPACING_NM,
            *world,
            out=SCRATCH.take("noise", shape),
        )
        blob -= np.float32(_ORGANELLE_THRESHOLD)
        blob *= np.float32(_ORGANELLE_RAMP)
        np.clip(blob, np.float32(0), np.float32(1), out=blob)
        blob *= inside
        blob *= np.float32(-spec.organelle_darkness)
        blob += np.float32(1)
        value *= blob
    # Blend towards the membrane level: value + (membrane - value) * weight.
    mem = SCRATCH.take("noise", shape)
    np.subtract(np.float32(spec.membrane_level), value, out=mem)
    mem *= weight
    value += mem
    if synapses is not None:
        paint_synapses(spec, box, value, label, synapses)
    if spec.noise_sd > 0:
        hashes = hash_grid(
            spec.seed,
            _SALT_NOISE,
            *(np.arange(a, b) for a, b in box),
            out=SCRATCH.take("hash", shape, np.uint32),
        )
        noise = gaussianish(hashes, out=SCRATCH.take("noise", shape))
        noise *= np.float32(spec.noise_sd)
        value += noise
    value += np.float32(0.5)
    np.clip(value, np.float32(0), np.float32(255), out=value)
    return value.astype(np.uint8)
