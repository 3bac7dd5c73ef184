"""Synthetic synapses: where neurites touch, a presynaptic site and its partners, drawn once per spec.

A synapse is placed at a *contact*: two capsule segments of different neurons
whose tube surfaces come within a few nm of each other (or overlap a little,
where the labels then meet at the bisector). At a chosen contact the
presynaptic neuron gets a dark, T-bar-like density just inside its membrane
with a cloud of vesicles behind it; each partner (the touching neuron, plus up
to three more neurons whose tubes reach the same spot: fly synapses are
polyadic) gets a flattened dark postsynaptic density (PSD) just inside its own
membrane. The ground truth is one row per pre→post connection: the pre point
(under the T-bar), the post point (under the PSD), and the neurons the
*labels* give at those points, so the table always agrees with the label
volume.

Like the neurons, the synapses are global state drawn once from the seed (a
list of points and of dark ellipsoids); any block then paints the ellipsoids
that reach it, so raw blocks stay bit-identical whatever the tiling. With
``synapse_density == 0`` (the default) nothing is drawn and volumes are those
of the spec without synapses.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from napari_connectome.arrays import distinct
from napari_connectome.synthetic.neurons import Segments, neuron_segments
from napari_connectome.synthetic.spec import SyntheticSpec
from napari_connectome.volume.model import voxel_index

# Geometry of a synapse, in nm. The depths put the points well inside their
# neurite (the thinnest neurite has a 60 nm radius by default).
_CONTACT_GAP = (-60.0, 30.0)  # surface gap of a contact: small overlap to a narrow cleft
_PRE_DEPTH = 35.0  # pre point: under the T-bar
_POST_DEPTH = 30.0  # post point: under the PSD
_PARTNER_REACH = 160.0  # other neurons whose contact lies this close are partners too
_MIN_SPACING = 500.0  # between two presynaptic sites, so that sites are distinct at the usual 200–400 nm
_TBAR = (28.0, 45.0)  # half-thickness along the contact normal, radius across
_PSD = (14.0, 70.0)
_VESICLE_CLOUD = 120.0  # radius of the region behind the T-bar that holds the vesicles
_VESICLES = (8, 16)  # count per synapse, inclusive range
_MAX_PARTNERS = 4


@dataclass(frozen=True)
class SyntheticSynapses:
    """The synapses of a synthetic volume: the ground-truth table and what is painted.

    Attributes
    ----------
    synapse_id, pre, post, pre_id, post_id
        One row per pre→post connection: the synapse (rows of a polyadic
        synapse share it and their pre point), the pre and post points in
        world nm ``(z, y, x)``, and the label at each point.
    blob_center, blob_normal, blob_radii, blob_neuron, blob_level
        Dark ellipsoids to paint: centre (nm), unit axis, ``(half-thickness
        along the axis, radius across)`` in nm, the neuron whose voxels they
        darken (others are left alone), the grey level they darken towards.
    blob_lo, blob_hi
        Voxel box of each ellipsoid, clipped to the volume.
    """

    synapse_id: np.ndarray
    pre: np.ndarray
    post: np.ndarray
    pre_id: np.ndarray
    post_id: np.ndarray
    blob_center: np.ndarray
    blob_normal: np.ndarray
    blob_radii: np.ndarray
    blob_neuron: np.ndarray
    blob_level: np.ndarray
    blob_lo: np.ndarray
    blob_hi: np.ndarray

    def __len__(self) -> int:
        return int(self.synapse_id.size)

    @property
    def n_synapses(self) -> int:
        """Presynaptic sites (a polyadic synapse counts once)."""
        return int(distinct(self.synapse_id).size)

    def rows(self) -> dict[str, np.ndarray]:
        """The table as columns: ``synapse_id, pre, post, pre_id, post_id, score`` (score 1)."""
        return {"synapse_id": self.synapse_id, "pre": self.pre, "post": self.post, "pre_id": self.pre_id,
                "post_id": self.post_id, "score": np.ones(len(self), dtype=np.float32)}

    def blobs_in(self, lo, hi) -> np.ndarray:
        """Indices of the ellipsoids whose voxel box meets ``[lo, hi)``."""
        meet = np.all(self.blob_lo < np.asarray(hi), axis=1) & np.all(self.blob_hi > np.asarray(lo), axis=1)
        return np.flatnonzero(meet)


def closest_points(p1, q1, p2, q2) -> tuple[np.ndarray, np.ndarray]:
    """Parameters ``s, t`` in [0, 1] of the closest points of segments ``p1q1`` and ``p2q2`` (row-wise).

    Ericson, *Real-Time Collision Detection* (2005), §5.1.9, vectorised.
    """
    d1, d2, r = q1 - p1, q2 - p2, p1 - p2
    a = np.maximum(np.einsum("ij,ij->i", d1, d1), 1e-12)
    e = np.maximum(np.einsum("ij,ij->i", d2, d2), 1e-12)
    f = np.einsum("ij,ij->i", d2, r)
    c = np.einsum("ij,ij->i", d1, r)
    b = np.einsum("ij,ij->i", d1, d2)
    denom = a * e - b * b
    s = np.where(denom > 1e-9 * a * e, np.clip((b * f - c * e) / np.where(denom > 0, denom, 1), 0, 1), 0.0)
    t = (b * s + f) / e
    low, high = t < 0, t > 1
    s = np.where(low, np.clip(-c / a, 0, 1), np.where(high, np.clip((b - c) / a, 0, 1), s))
    t = np.clip(t, 0, 1)
    return s, t


def _contacts(seg: Segments) -> dict[str, np.ndarray]:
    """Every touching pair of segments of different neurons, both ways round (``i`` the would-be pre side)."""
    from scipy.spatial import cKDTree

    if len(seg) < 2:
        return {k: np.zeros((0, 3) if k in ("c_i", "c_j", "n") else 0) for k in
                ("i", "j", "c_i", "c_j", "n", "r_i", "r_j")}
    mid = (seg.a + seg.b) / 2.0
    half = np.linalg.norm(seg.b - seg.a, axis=1) / 2.0
    rmax = np.maximum(seg.ra, seg.rb)
    reach = 2.0 * float(half.max()) + 2.0 * float(rmax.max()) + _CONTACT_GAP[1]
    pairs = cKDTree(mid).query_pairs(reach, output_type="ndarray")
    pairs = pairs[seg.neuron[pairs[:, 0]] != seg.neuron[pairs[:, 1]]]
    i, j = pairs[:, 0], pairs[:, 1]
    s, t = closest_points(seg.a[i], seg.b[i], seg.a[j], seg.b[j])
    ci = seg.a[i] + s[:, None] * (seg.b[i] - seg.a[i])
    cj = seg.a[j] + t[:, None] * (seg.b[j] - seg.a[j])
    ri = seg.ra[i] + s * (seg.rb[i] - seg.ra[i])
    rj = seg.ra[j] + t * (seg.rb[j] - seg.ra[j])
    d = np.linalg.norm(cj - ci, axis=1)
    gap = d - ri - rj
    keep = (gap >= _CONTACT_GAP[0]) & (gap <= _CONTACT_GAP[1]) & (d > 1.0)
    i, j, ci, cj, ri, rj, d = (x[keep] for x in (i, j, ci, cj, ri, rj, d))
    n = (cj - ci) / d[:, None]
    both = {"i": np.concatenate([i, j]), "j": np.concatenate([j, i]), "c_i": np.concatenate([ci, cj]),
            "c_j": np.concatenate([cj, ci]), "n": np.concatenate([n, -n]), "r_i": np.concatenate([ri, rj]),
            "r_j": np.concatenate([rj, ri])}
    # A canonical order, so the draw below does not depend on how the tree listed the pairs.
    order = np.lexsort((both["j"], both["i"]))
    return {k: v[order] for k, v in both.items()}


def _labels_at(spec: SyntheticSpec, seg: Segments, points: np.ndarray) -> np.ndarray:
    """The ground-truth label of the voxel holding each point (0 outside the volume)."""
    from napari_connectome.synthetic.render import tube_fields

    idx = voxel_index(points, voxel_size=spec.voxel_size, offset=spec.offset)
    out = np.zeros(len(points), dtype=np.uint64)
    inside = np.all((idx >= 0) & (idx < np.asarray(spec.shape)), axis=1)
    for k in np.flatnonzero(inside):
        box = tuple((int(v), int(v) + 1) for v in idx[k])
        out[k] = int(tube_fields(spec, box, seg)[2][0, 0, 0])
    return out


def _inside(spec: SyntheticSpec, points: np.ndarray, margin_nm: float = 0.0) -> np.ndarray:
    vs, off = np.asarray(spec.voxel_size), np.asarray(spec.offset)
    lo = off - vs / 2.0 + margin_nm
    hi = off - vs / 2.0 + np.asarray(spec.extent_nm) - margin_nm
    return np.all((points >= lo) & (points < hi), axis=1)


@functools.lru_cache(maxsize=8)
def synthetic_synapses(spec: SyntheticSpec) -> SyntheticSynapses:
    """Draw the synapses of ``spec`` (cached per spec; empty when ``spec.synapse_density`` is 0).

    About ``synapse_density`` presynaptic sites per µm³ are drawn among the
    contacts (fewer where contacts run out), at least 500 nm apart; each has
    1–4 partners. A partner whose post point is not labelled as its neuron
    (another tube overlaps there) is dropped, and so is a synapse whose pre
    point is not labelled as the presynaptic neuron or that lost every partner.
    """
    seg = neuron_segments(spec)
    want = int(round(spec.synapse_density * float(np.prod(spec.extent_nm)) / 1e9))
    rng = np.random.default_rng([spec.seed & 0xFFFFFFFF, spec.seed >> 32 & 0xFFFFFFFF, 0x73796E])
    cols: dict[str, list] = {k: [] for k in ("synapse_id", "pre", "post", "pre_id", "post_id")}
    blobs: dict[str, list] = {k: [] for k in ("center", "normal", "radii", "neuron", "level")}
    if want > 0:
        con = _contacts(seg)
        surface = con["c_i"] + con["n"] * con["r_i"][:, None]  # the pre neurite's surface, facing the partner
        pre_pts = surface - con["n"] * _PRE_DEPTH
        margin = max(_VESICLE_CLOUD, _PSD[1])
        usable = np.flatnonzero(_inside(spec, surface, margin) & (con["r_i"] > _PRE_DEPTH + 10.0))
        order = rng.permutation(usable)
        taken: dict[tuple[int, ...], list[np.ndarray]] = {}
        pre_neuron = seg.neuron[con["i"]]
        drawn = 0
        for k in order.tolist():
            if drawn >= want:
                break
            cell = tuple(np.floor(surface[k] / _MIN_SPACING).astype(int).tolist())
            near = [p for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                    for p in taken.get((cell[0] + dz, cell[1] + dy, cell[2] + dx), [])]
            if any(np.linalg.norm(p - surface[k]) < _MIN_SPACING for p in near):
                continue
            synapse = _one_synapse(spec, seg, con, k, surface, pre_pts, pre_neuron, rng)
            if synapse is None:
                continue
            drawn += 1
            sid = drawn
            pre_label, posts, post_labels, features = synapse
            for post, label in zip(posts, post_labels, strict=True):
                cols["synapse_id"].append(sid)
                cols["pre"].append(pre_pts[k])
                cols["post"].append(post)
                cols["pre_id"].append(pre_label)
                cols["post_id"].append(label)
            for key, values in features.items():
                blobs[key].extend(values)
            taken.setdefault(cell, []).append(surface[k])
    return _finish(spec, cols, blobs)


def _one_synapse(spec, seg, con, k, surface, pre_pts, pre_neuron, rng):
    """(pre label, post points, post labels, blobs) of the synapse at contact ``k``, or None."""
    a = int(pre_neuron[k])
    # Partners: this contact's neuron, then the nearest other neurons touched by the same pre neuron close by.
    same_pre = np.flatnonzero(pre_neuron == a)
    dist = np.linalg.norm(surface[same_pre] - surface[k], axis=1)
    close = same_pre[dist <= _PARTNER_REACH]
    close = close[np.argsort(np.linalg.norm(surface[close] - surface[k], axis=1), kind="stable")]
    wanted = int(rng.integers(1, _MAX_PARTNERS + 1))
    chosen, seen = [], set()
    for c in [k, *close.tolist()]:
        partner = int(seg.neuron[con["j"][c]])
        if partner in seen:
            continue
        seen.add(partner)
        chosen.append(c)
        if len(chosen) == wanted:
            break
    chosen = np.asarray(chosen)
    n = con["n"][chosen]
    partner_surface = con["c_j"][chosen] - n * con["r_j"][chosen][:, None]
    posts = partner_surface + n * _POST_DEPTH
    labels = _labels_at(spec, seg, np.concatenate([pre_pts[k][None], posts]))
    partners = np.asarray([int(seg.neuron[con["j"][c]]) for c in chosen], dtype=np.uint64)
    if labels[0] != a:
        return None
    good = (labels[1:] == partners) & _inside(spec, posts)
    if not good.any():
        return None
    posts, n, partner_surface, partners = posts[good], n[good], partner_surface[good], partners[good]
    normal = con["n"][k]
    dark = spec.membrane_level
    features: dict[str, list] = {"center": [surface[k] - normal * (_TBAR[0] * 0.8)], "normal": [normal],
                                 "radii": [_TBAR], "neuron": [a], "level": [dark]}
    cloud = surface[k] - normal * (_TBAR[0] + _VESICLE_CLOUD * 0.55)
    vr = spec.vesicle_radius_nm
    for _ in range(int(rng.integers(_VESICLES[0], _VESICLES[1] + 1))):
        offset = rng.normal(size=3)
        offset *= _VESICLE_CLOUD * 0.5 * rng.random() ** (1 / 3) / max(float(np.linalg.norm(offset)), 1e-9)
        features["center"].append(cloud + offset)
        features["normal"].append(normal)
        features["radii"].append((vr, vr))
        features["neuron"].append(a)
        features["level"].append(dark + 0.35 * (spec.cytoplasm_level - dark))
    for ps, nn, partner in zip(partner_surface, n, partners, strict=True):
        features["center"].append(ps + nn * (_PSD[0] * 0.9))
        features["normal"].append(nn)
        features["radii"].append(_PSD)
        features["neuron"].append(int(partner))
        features["level"].append(dark)
    return a, posts, partners, features


def _finish(spec: SyntheticSpec, cols, blobs) -> SyntheticSynapses:
    def arr(values, dtype, width: int = 0) -> np.ndarray:
        out = np.asarray(values, dtype=dtype)
        return out.reshape(-1, width) if width else out.reshape(-1)

    center = arr(blobs["center"], np.float64, 3)
    radii = arr(blobs["radii"], np.float64, 2)
    vs, off, shape = np.asarray(spec.voxel_size), np.asarray(spec.offset), np.asarray(spec.shape)
    reach = radii.max(axis=1, initial=0.0)[:, None]
    lo = np.clip(np.floor((center - reach - off) / vs).astype(np.int64) - 1, 0, shape)
    hi = np.clip(np.ceil((center + reach - off) / vs).astype(np.int64) + 2, 0, shape)
    return SyntheticSynapses(
        synapse_id=arr(cols["synapse_id"], np.int64), pre=arr(cols["pre"], np.float64, 3),
        post=arr(cols["post"], np.float64, 3), pre_id=arr(cols["pre_id"], np.uint64),
        post_id=arr(cols["post_id"], np.uint64), blob_center=center, blob_normal=arr(blobs["normal"], np.float64, 3),
        blob_radii=radii, blob_neuron=arr(blobs["neuron"], np.uint32), blob_level=arr(blobs["level"], np.float32),
        blob_lo=lo, blob_hi=hi)


def paint_synapses(spec: SyntheticSpec, box, value: np.ndarray, label: np.ndarray,
                   synapses: SyntheticSynapses) -> None:
    """Darken ``value`` (float32 grey levels of the tile ``box``) with the synapses' ellipsoids, in place.

    An ellipsoid pulls the voxels of its own neuron towards its level with a
    weight that is 1 inside and falls to 0 over the outer third of its radii:
    only exactly rounded operations, so tiles agree bit for bit.
    """
    from napari_connectome.synthetic.render import normalize_box, world_coordinates

    box = normalize_box(spec, box)
    lo = np.array([a for a, _ in box])
    hi = np.array([b for _, b in box])
    world = world_coordinates(spec, box)
    for k in synapses.blobs_in(lo, hi).tolist():
        b_lo = np.maximum(synapses.blob_lo[k], lo) - lo
        b_hi = np.minimum(synapses.blob_hi[k], hi) - lo
        sl = tuple(slice(int(p), int(q)) for p, q in zip(b_lo, b_hi, strict=True))
        mine = label[sl] == synapses.blob_neuron[k]
        if not mine.any():
            continue
        c, nrm = synapses.blob_center[k], synapses.blob_normal[k]
        along_r, across_r = (np.float32(v) for v in synapses.blob_radii[k])
        dz, dy, dx = ((w[s] - p).astype(np.float32) for w, s, p in zip(world, sl, c, strict=True))
        n0, n1, n2 = (np.float32(v) for v in nrm)
        along = (dz * n0)[:, None, None] + ((dy * n1)[:, None] + (dx * n2)[None, :])[None]
        r2 = (dz * dz)[:, None, None] + ((dy * dy)[:, None] + (dx * dx)[None, :])[None]
        across2 = np.maximum(r2 - along * along, np.float32(0))
        q = np.sqrt((along / along_r) ** 2 + across2 / (across_r * across_r))
        weight = np.clip((np.float32(1.0) - q) * np.float32(3.0), np.float32(0), np.float32(1))
        weight *= mine
        part = value[sl]
        part += (np.float32(synapses.blob_level[k]) - part) * weight

