"""Counter-based randomness: values that depend only on (seed, position).

A sequential random generator would make a voxel's value depend on which
voxels were drawn before it, i.e. on the block tiling. Everything per-voxel in
the synthetic volumes is instead a pure function of the seed and the absolute
voxel or lattice coordinates, built from the splitmix64 finaliser (Steele et
al. 2014) and, on full blocks, the cheaper murmur3 32-bit finaliser.

Only exactly rounded operations (+, -, *, /, sqrt, integer ops) touch
per-voxel values: transcendental functions may differ in the last bit between
numpy's vectorised and scalar loops, which would break bit-identity.
"""

from __future__ import annotations

import numpy as np

from napari_connectome.synthetic._scratch import SCRATCH

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
# Odd multipliers that spread the three coordinates over the 64-bit key.
_KZ = np.uint64(0xD6E8FEB86659FD93)
_KY = np.uint64(0xA0761D6478BD642F)
_KX = np.uint64(0xE7037ED1A0B428DB)
_S30, _S27, _S31, _S32 = (np.uint64(s) for s in (30, 27, 31, 32))
_F1 = np.uint32(0x85EBCA6B)
_F2 = np.uint32(0xC2B2AE35)
_S16, _S13 = np.uint32(16), np.uint32(13)


def mix64(key) -> np.ndarray:
    """The splitmix64 finaliser of ``key + golden`` (uint64, element-wise)."""
    with np.errstate(over="ignore"):
        z = np.asarray(key, dtype=np.uint64) + _GOLDEN
        z = (z ^ (z >> _S30)) * _M1
        z = (z ^ (z >> _S27)) * _M2
        return z ^ (z >> _S31)


def seed_key(seed: int, salt: int = 0) -> np.uint64:
    """A well-mixed 64-bit key for ``seed`` and a stream ``salt``."""
    s = np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF)
    return np.uint64(mix64(mix64(s) ^ np.uint64(int(salt) & 0xFFFFFFFFFFFFFFFF)))


def hash_ids(seed: int, salt: int, ids) -> np.ndarray:
    """A uint32 hash of each integer in ``ids`` (per-object random values)."""
    k = seed_key(seed, salt)
    with np.errstate(over="ignore"):
        h = mix64(np.asarray(ids, dtype=np.int64).astype(np.uint64) * _KX ^ k)
    return ((h >> _S32) ^ (h & np.uint64(0xFFFFFFFF))).astype(np.uint32)


def _fold32(h: np.ndarray) -> np.ndarray:
    return ((h >> _S32) ^ (h & np.uint64(0xFFFFFFFF))).astype(np.uint32)


def hash_grid(seed: int, salt: int, z, y, x, *, out: np.ndarray | None = None) -> np.ndarray:
    """uint32 hash of every ``(z, y, x)`` of the grid spanned by three 1-D index arrays.

    The result at ``(i, j, k)`` depends only on ``(seed, salt, z[i], y[j],
    x[k])``, so any two grids that share a point agree there. ``out``: an
    optional uint32 array of the grid's shape to write into.
    """
    k = seed_key(seed, salt)
    z = np.asarray(z, dtype=np.int64).astype(np.uint64)
    y = np.asarray(y, dtype=np.int64).astype(np.uint64)
    x = np.asarray(x, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        hz = mix64(z * _KZ ^ k)
        # The (z, y) plane is small next to the block: mix it fully in 64 bits.
        hzy = _fold32(mix64(hz[:, None] ^ (y * _KY)[None, :]))
        hx = _fold32(mix64(x * _KX ^ k))
        h = np.empty((len(z), len(y), len(x)), dtype=np.uint32) if out is None else out
        np.bitwise_xor(hzy[:, :, None], hx[None, None, :], out=h)
        tmp = SCRATCH.take("hash_shift", h.shape, np.uint32)
        # murmur3 fmix32 on the full block: 5 cheap uint32 passes.
        for shift, mult in ((_S16, _F1), (_S13, _F2), (_S16, None)):
            np.right_shift(h, shift, out=tmp)
            h ^= tmp
            if mult is not None:
                h *= mult
    return h


def gaussianish(h: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Approximately standard-normal float32 noise from uint32 hashes.

    The sum of the four bytes (Irwin–Hall with four terms) is close enough to a
    Gaussian for EM-like noise and needs only integer passes. ``out``: an
    optional float32 array of ``h``'s shape to write into.
    """
    m = np.uint32(0x00FF00FF)
    pairs = SCRATCH.take("gauss_pairs", h.shape, np.uint32)
    tmp = SCRATCH.take("gauss_tmp", h.shape, np.uint32)
    np.bitwise_and(h, m, out=pairs)
    np.right_shift(h, np.uint32(8), out=tmp)
    tmp &= m
    pairs += tmp
    np.right_shift(pairs, np.uint32(16), out=tmp)
    pairs &= np.uint32(0xFFFF)
    pairs += tmp
    out = np.empty(h.shape, dtype=np.float32) if out is None else out
    np.copyto(out, pairs, casting="unsafe")
    # Four uniform bytes: mean 4 * 127.5, variance 4 * (256**2 - 1) / 12.
    out -= np.float32(510.0)
    out *= np.float32(1.0 / 147.7996)
    return out


def value_noise(
    seed: int,
    salt: int,
    spacing_nm: float,
    world_z,
    world_y,
    world_x,
    *,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Smooth noise in [-1, 1] at the world positions of a grid (float32).

    Random values on a lattice of ``spacing_nm`` nm, interpolated with
    smoothstep weights one axis at a time (x, then y, then z), so the work on
    the full block is a few passes whatever the lattice. ``out``: an optional
    float32 array of the grid's shape to write into.
    """
    axes = []
    for w in (world_z, world_y, world_x):
        u = np.asarray(w, dtype=np.float64) / float(spacing_nm)
        cell = np.floor(u).astype(np.int64)
        f = u - cell
        f = (f * f * (3.0 - 2.0 * f)).astype(np.float32)
        axes.append((cell, f))
    (cz, fz), (cy, fy), (cx, fx) = axes
    lz = np.arange(cz.min(), cz.max() + 2)
    ly = np.arange(cy.min(), cy.max() + 2)
    lx = np.arange(cx.min(), cx.max() + 2)
    lattice = hash_grid(seed, salt, lz, ly, lx).astype(np.float32)
    lattice *= np.float32(2.0 / 4294967295.0)
    lattice -= np.float32(1.0)
    ix = cx - lx[0]
    gx = lattice[:, :, ix] * (np.float32(1) - fx) + lattice[:, :, ix + 1] * fx
    iy = cy - ly[0]
    gy = gx[:, iy, :] * (np.float32(1) - fy)[:, None] + gx[:, iy + 1, :] * fy[:, None]
    if out is None:
        out = np.empty((len(cz), len(cy), len(cx)), dtype=np.float32)
    tmp = SCRATCH.take("value_noise", out.shape)
    iz = cz - lz[0]
    # Consecutive voxels share a lattice cell: one slab per cell, no gather.
    starts = np.flatnonzero(np.diff(iz, prepend=-1))
    stops = np.append(starts[1:], len(iz))
    for a, b in zip(starts, stops, strict=True):
        c = iz[a]
        wz = fz[a:b, None, None]
        np.multiply(gy[c][None], np.float32(1) - wz, out=out[a:b])
        np.multiply(gy[c + 1][None], wz, out=tmp[a:b])
        out[a:b] += tmp[a:b]
    return out
