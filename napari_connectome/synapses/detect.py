"""Synapses from a synapse network's output: post sites, their pre sites, and the neurons at both ends.

The network (Synful's design, Buhmann et al. 2021) predicts per voxel the
probability of lying in a post-synaptic mask (channel 0) and the vector from
the voxel to its synapse's pre site (channels 1–3, in units of
:data:`VECTOR_UNIT_NM`). A post site is one connected piece of the
thresholded mask — split where the segmentation changes, so two partners of
one polyadic synapse whose masks touch across a membrane stay two sites — at
its probability-weighted centre; its pre site is the probability-weighted
mean of ``voxel + vector`` over the piece, which averages out the vectors'
noise where Synful reads a single voxel. A site's score is its summed
probability times the voxel volume, in µm³ (a size and a confidence in one
number, as Synful's ``score`` is).

Neurons are read from a segmentation at the pre and post points; a site with
background at either end has no connection and is reported, not kept.

The pre point lies only some 35 nm inside its neuron (under the T-bar), and
a predicted vector misses by about as much, so half the predicted pre points
land in the cleft or back in the post neuron. With ``pre_reach_nm`` the pre
neuron is instead the first neuron other than the post neuron met on the ray
from the post point through the predicted pre point, no further than
``pre_reach_nm`` beyond it; the pre point moves onto that ray up to
``PRE_DEPTH_NM`` into that neuron (so the row's points read as its neurons,
as the live connectome reads them). A ray that meets no other neuron leaves
the prediction as it was (a self-connection or background: not kept). The
reach is chosen with the threshold on held-out data.

The network fires at T-bars as well as at PSDs, and a site found at a T-bar
reads as the true connection reversed. With ``orient_radius_nm`` each row is
turned round when its pre end is the brighter one
(:mod:`~napari_connectome.synapses.orient`), before de-duplication, so a
reversed row and the right one beside it become one connection. Two
sites of the same pre→post pair closer than ``dedup_nm`` are one connection
(the higher score stays: FAFB's 250 nm de-duplication), and connections whose
pre points lie within ``dedup_nm`` on the same pre neuron share a synapse id
(one T-bar, several partners).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from napari_connectome.errors import InputError
from napari_connectome.synapses.table import SynapseTable
from napari_connectome.volume.model import voxel_centre, voxel_index

#: Length of one unit of the predicted vectors, in nm.
VECTOR_UNIT_NM = 100.0
#: How far into the pre neuron a cast pre point is placed (the synthetic T-bars' depth), nm.
PRE_DEPTH_NM = 30.0
#: Sampling step along a pre ray, nm.
RAY_STEP_NM = 5.0


@dataclass(frozen=True)
class Detections:
    """Detected connections and what was left out.

    Attributes
    ----------
    table
        One row per pre→post connection (:class:`~napari_connectome.synapses.table.SynapseTable`):
        rows sharing a T-bar share their synapse id; the score is the site's.
    on_background
        Sites dropped because the segmentation is background at their pre or post point.
    outside
        Sites dropped because their pre point falls outside the volume.
    self_connections
        Sites dropped because pre and post lie in the same neuron.
    duplicates
        Sites merged into a better one of the same pair.
    reversed
        Rows turned round because their pre end was the brighter (:mod:`~napari_connectome.synapses.orient`),
        counted before de-duplication.
    """

    table: SynapseTable
    on_background: int = 0
    outside: int = 0
    self_connections: int = 0
    duplicates: int = 0
    reversed: int = 0

    def __len__(self) -> int:
        return len(self.table)


def _check_prediction(prediction: np.ndarray, source: str) -> np.ndarray:
    pred = np.asarray(prediction)
    if pred.ndim != 4 or pred.shape[0] != 4:
        raise InputError(source, f"a synapse prediction has 4 channels (mask, vector z, y, x) over (z, y, x), "
                                 f"got shape {tuple(pred.shape)}")
    if not np.issubdtype(pred.dtype, np.floating):
        raise InputError(source, f"a synapse prediction is floating point, got {pred.dtype}")
    return pred


def find_sites(prediction: np.ndarray, *, voxel_size, offset=(0.0, 0.0, 0.0), segmentation: np.ndarray | None = None,
               threshold: float = 0.5, min_volume_nm3: float = 1e5,
               source: str = "synapse prediction") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Post sites, their pre sites (world nm) and scores of one prediction, before neurons are read.

    Parameters
    ----------
    prediction
        ``(4, z, y, x)`` float: mask probability, then the vector to the pre
        site in units of :data:`VECTOR_UNIT_NM`.
    voxel_size, offset
        Of the prediction's grid, in nm.
    segmentation
        Labels on the same grid: mask pieces are split where it changes (None: not split).
    threshold
        Mask probability that counts as inside.
    min_volume_nm3
        Pieces smaller than this are noise, not sites.

    Returns
    -------
    post, pre, score
        ``(n, 3)``, ``(n, 3)`` nm and ``(n,)`` µm³, in the order of the pieces' first voxel.
    """
    import cc3d

    pred = _check_prediction(prediction, source)
    if not 0.0 < threshold < 1.0:
        raise InputError(source, f"the mask threshold must lie in (0, 1), got {threshold}")
    vs = np.asarray(voxel_size, dtype=np.float64)
    prob = pred[0]
    inside = prob >= threshold
    if segmentation is not None:
        seg = np.asarray(segmentation)
        if seg.shape != prob.shape:
            raise InputError(source, f"the segmentation has shape {seg.shape}, the prediction {prob.shape}")
        # Different labels are different pieces (cc3d keeps values apart); +1 so label 0 is a piece too.
        pieces = cc3d.connected_components(np.where(inside, seg.astype(np.uint64) + 1, 0), connectivity=26)
    else:
        pieces = cc3d.connected_components(inside, connectivity=26)
    empty = np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, dtype=np.float32)
    n = int(pieces.max())
    if n == 0:
        return empty
    where = np.flatnonzero(pieces.ravel())
    ids = pieces.ravel()[where].astype(np.int64)
    w = prob.ravel()[where].astype(np.float64)
    centres = voxel_centre(np.stack(np.unravel_index(where, prob.shape), axis=1), voxel_size=vs, offset=offset)
    vectors = np.stack([pred[c].ravel()[where] for c in (1, 2, 3)], axis=1).astype(np.float64) * VECTOR_UNIT_NM
    mass = np.bincount(ids, weights=w, minlength=n + 1)
    count = np.bincount(ids, minlength=n + 1)
    post = np.stack([np.bincount(ids, weights=w * centres[:, a], minlength=n + 1) for a in range(3)], axis=1)
    pre = np.stack([np.bincount(ids, weights=w * (centres[:, a] + vectors[:, a]), minlength=n + 1)
                    for a in range(3)], axis=1)
    keep = np.flatnonzero(count * float(np.prod(vs)) >= min_volume_nm3)
    keep = keep[keep > 0]
    if keep.size == 0:
        return empty
    post = post[keep] / mass[keep, None]
    pre = pre[keep] / mass[keep, None]
    score = (mass[keep] * float(np.prod(vs)) / 1e9).astype(np.float32)
    return post, pre, score


def detect_synapses(prediction: np.ndarray, segmentation: np.ndarray, *, voxel_size, offset=(0.0, 0.0, 0.0),
                    threshold: float = 0.5, min_volume_nm3: float = 1e5, dedup_nm: float = 250.0,
                    pre_reach_nm: float | None = None, raw: np.ndarray | None = None,
                    orient_radius_nm: float | None = None, source: str = "synapse prediction") -> Detections:
    """Connections (pre neuron → post neuron) from a synapse prediction and a segmentation on the same grid.

    Parameters
    ----------
    prediction, voxel_size, offset, threshold, min_volume_nm3
        As :func:`find_sites`.
    segmentation
        Neuron ids on the prediction's grid (0: background); for a project,
        its current segmentation, so an edit moves the synapses with it.
    dedup_nm
        Sites of the same pre→post pair closer than this are one connection;
        pre points of one pre neuron closer than this are one synapse.
    pre_reach_nm
        Read the pre neuron along the post→pre ray, this far beyond the
        predicted pre point (see the module notes); None: at the predicted point.
    raw, orient_radius_nm
        The grey levels on the same grid, and the radius within which each end's darkest voxel is
        compared (:func:`~napari_connectome.synapses.orient.reversed_rows`): rows whose pre end is the
        brighter are turned round. None: rows stay as the vectors give them.
    """
    from napari_connectome.synapses.orient import array_reader, reversed_rows

    seg = np.asarray(segmentation)
    post, pre, score = find_sites(prediction, voxel_size=voxel_size, offset=offset, segmentation=seg,
                                  threshold=threshold, min_volume_nm3=min_volume_nm3, source=source)
    shape = np.asarray(seg.shape)

    def neurons(points: np.ndarray) -> np.ndarray:
        idx = voxel_index(points, voxel_size=voxel_size, offset=offset)
        return seg[tuple(np.clip(idx, 0, shape - 1).T)].astype(np.uint64)

    def inside(points: np.ndarray) -> np.ndarray:
        idx = voxel_index(points, voxel_size=voxel_size, offset=offset)
        return np.all((idx >= 0) & (idx < shape), axis=1)

    orient = None
    if orient_radius_nm is not None:
        if raw is None:
            raise InputError(source, "turning rows round by their darker end needs the raw volume")
        reader = array_reader(raw, seg)

        def orient(pre_pts, post_pts, pre_ids, post_ids):
            return reversed_rows(pre_pts, post_pts, pre_ids, post_ids, read=reader, shape=seg.shape,
                                 voxel_size=voxel_size, offset=offset, radius_nm=float(orient_radius_nm))

    return connect_sites(post, pre, score, neurons=neurons, inside=inside, dedup_nm=dedup_nm,
                         pre_reach_nm=pre_reach_nm, orient=orient, source=source)


def cast_pre(post: np.ndarray, pre: np.ndarray, *, neurons: Callable[[np.ndarray], np.ndarray],
             inside: Callable[[np.ndarray], np.ndarray], reach_nm: float, depth_nm: float = PRE_DEPTH_NM,
             step_nm: float = RAY_STEP_NM) -> np.ndarray:
    """Pre points moved onto the first other neuron along each post → pre ray (see the module notes).

    Parameters
    ----------
    post, pre
        ``(n, 3)`` nm: post points and predicted pre points.
    neurons, inside
        As :func:`connect_sites`.
    reach_nm
        How far beyond the predicted pre point the ray goes.
    depth_nm
        How far into the neuron met the new pre point goes (less where the neuron ends first).
    step_nm
        Sampling step along the ray.

    Returns
    -------
    ``(n, 3)`` nm: the new pre points; a row whose ray meets no other neuron keeps its predicted one.
    """
    post = np.asarray(post, dtype=np.float64).reshape(-1, 3)
    pre = np.asarray(pre, dtype=np.float64).reshape(-1, 3)
    out = pre.copy()
    if not len(post):
        return out
    if reach_nm < 0 or depth_nm < 0 or step_nm <= 0:
        raise InputError("pre ray", f"reach ({reach_nm} nm) and depth ({depth_nm} nm) must be ≥ 0, the step "
                                    f"({step_nm} nm) > 0")
    vec = pre - post
    length = np.linalg.norm(vec, axis=1)
    unit = vec / np.maximum(length, 1e-9)[:, None]
    ts = np.arange(0.0, float(length.max()) + reach_nm + depth_nm + step_nm, step_nm)
    points = post[:, None, :] + ts[None, :, None] * unit[:, None, :]
    flat = points.reshape(-1, 3)
    labels = np.zeros(len(flat), dtype=np.uint64)
    ok = inside(flat)
    if ok.any():
        labels[ok] = neurons(flat[ok])
    labels = labels.reshape(len(post), len(ts))
    for k in range(len(post)):
        own = labels[k, 0]
        other = np.flatnonzero((ts <= length[k] + reach_nm) & (labels[k] != 0) & (labels[k] != own)
                               & (length[k] > 0))
        if other.size == 0:
            continue
        first = int(other[0])
        deeper = first
        while (deeper + 1 < len(ts) and ts[deeper + 1] <= ts[first] + depth_nm
               and labels[k, deeper + 1] == labels[k, first]):
            deeper += 1
        out[k] = points[k, deeper]
    return out


def connect_sites(post: np.ndarray, pre: np.ndarray, score: np.ndarray, *,
                  neurons: Callable[[np.ndarray], np.ndarray], inside: Callable[[np.ndarray], np.ndarray],
                  dedup_nm: float = 250.0, pre_reach_nm: float | None = None,
                  orient: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
                  source: str = "synapse prediction") -> Detections:
    """Connections from sites: neurons at both ends, then de-duplication and T-bar grouping.

    Parameters
    ----------
    post, pre, score
        From :func:`find_sites` (any number of blocks' worth).
    neurons
        ``(n, 3)`` nm points (inside the volume) → neuron ids (0: background).
    inside
        ``(n, 3)`` nm points → whether they lie in the volume.
    dedup_nm, pre_reach_nm
        As :func:`detect_synapses`.
    orient
        ``(pre, post, pre_id, post_id) → (n,) bool``: the rows to turn round (pre and post swapped)
        before de-duplication, so a reversed row and the right one it repeats become one
        (:func:`~napari_connectome.synapses.orient.reversed_rows`); None: none.
    """
    if dedup_nm < 0:
        raise InputError(source, f"the de-duplication distance must be ≥ 0 nm, got {dedup_nm}")
    post, pre = np.asarray(post, dtype=np.float64).reshape(-1, 3), np.asarray(pre, dtype=np.float64).reshape(-1, 3)
    if pre_reach_nm is not None:
        pre = cast_pre(post, pre, neurons=neurons, inside=inside, reach_nm=float(pre_reach_nm))
    score = np.asarray(score, dtype=np.float32).reshape(-1)
    within = inside(pre) & inside(post)
    post_id = np.zeros(len(post), dtype=np.uint64)
    pre_id = np.zeros(len(pre), dtype=np.uint64)
    if within.any():
        post_id[within] = neurons(post[within])
        pre_id[within] = neurons(pre[within])
    background = within & ((pre_id == 0) | (post_id == 0))
    self_conn = within & ~background & (pre_id == post_id)
    keep = within & ~background & ~self_conn
    post, pre, score, pre_id, post_id = post[keep], pre[keep], score[keep], pre_id[keep], post_id[keep]
    turned = 0
    if orient is not None and len(post):
        flip = np.asarray(orient(pre, post, pre_id, post_id), dtype=bool)
        turned = int(flip.sum())
        pre, post = np.where(flip[:, None], post, pre), np.where(flip[:, None], pre, post)
        pre_id, post_id = np.where(flip, post_id, pre_id), np.where(flip, pre_id, post_id)
    # Best first (ties by position, so the order of blocks does not matter), so a duplicate yields to the better.
    order = np.lexsort((post[:, 2], post[:, 1], post[:, 0], -score))
    post, pre, score, pre_id, post_id = post[order], pre[order], score[order], pre_id[order], post_id[order]
    kept: list[int] = []
    by_pair: dict[tuple[int, int], list[int]] = {}
    for k in range(len(score)):
        same = by_pair.setdefault((int(pre_id[k]), int(post_id[k])), [])
        if not any(np.linalg.norm(post[j] - post[k]) < dedup_nm for j in same):
            same.append(k)
            kept.append(k)
    sel = np.asarray(kept, dtype=np.int64)
    post, pre, score, pre_id, post_id = post[sel], pre[sel], score[sel], pre_id[sel], post_id[sel]
    synapse_id = _group_pre_sites(pre, pre_id, dedup_nm)
    table = SynapseTable(synapse_id=synapse_id, pre=pre, post=post, pre_id=pre_id, post_id=post_id, score=score)
    return Detections(table, on_background=int(background.sum()), outside=int((~within).sum()),
                      self_connections=int(self_conn.sum()), duplicates=int(len(order) - len(sel)),
                      reversed=turned)


def _group_pre_sites(pre: np.ndarray, pre_id: np.ndarray, dedup_nm: float) -> np.ndarray:
    """Synapse ids ``1..`` : rows whose pre points of the same neuron chain within ``dedup_nm`` share one."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(pre)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    pairs = cKDTree(pre).query_pairs(dedup_nm, output_type="ndarray") if dedup_nm > 0 else np.zeros((0, 2), int)
    pairs = pairs[pre_id[pairs[:, 0]] == pre_id[pairs[:, 1]]]
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, group = connected_components(graph, directed=False)
    # Number groups in row order, so ids do not depend on scipy's labelling.
    _, first = np.unique(group, return_index=True)
    rank = np.empty(group.max() + 1, dtype=np.int64)
    rank[group[np.sort(first)]] = np.arange(1, first.size + 1)
    return rank[group]


class _SitesOfBlock:
    """One block's sites: found on the block grown by the halo, kept where their post point lies in the block.

    A class, not a closure, so that Dask processes can pickle it.
    """

    def __init__(self, prediction, segmentation, shape, halo, voxel_size, offset, threshold, min_volume_nm3,
                 source) -> None:
        self.prediction, self.segmentation, self.shape, self.halo = prediction, segmentation, shape, halo
        self.voxel_size, self.offset = tuple(voxel_size), tuple(offset)
        self.threshold, self.min_volume_nm3, self.source = threshold, min_volume_nm3, source

    def __call__(self, block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        write = block.write_roi.index_slices()
        lo = [max(int(w.start) - h, 0) for w, h in zip(write, self.halo, strict=True)]
        hi = [min(int(w.stop) + h, n) for w, h, n in zip(write, self.halo, self.shape, strict=True)]
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        pred = np.asarray(self.prediction[(slice(None), *box)], dtype=np.float32)
        seg = None if self.segmentation is None else np.asarray(self.segmentation[box])
        origin = voxel_centre(np.asarray(lo), voxel_size=self.voxel_size, offset=self.offset)
        post, pre, score = find_sites(pred, voxel_size=self.voxel_size, offset=origin, segmentation=seg,
                                      threshold=self.threshold, min_volume_nm3=self.min_volume_nm3,
                                      source=self.source)
        idx = voxel_index(post, voxel_size=self.voxel_size, offset=self.offset)
        mine = np.all((idx >= [int(w.start) for w in write]) & (idx < [int(w.stop) for w in write]), axis=1)
        return post[mine], pre[mine], score[mine]


def find_sites_blockwise(prediction, *, voxel_size, offset=(0.0, 0.0, 0.0), segmentation=None,
                         block_voxels=(64, 64, 64), halo_nm: float = 400.0, threshold: float = 0.5,
                         min_volume_nm3: float = 1e5, scheduler="threads", workers: int | None = None,
                         progress=None, cancel=None,
                         source: str = "synapse prediction") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`find_sites` over a volume larger than memory, block by block; the same sites in any blocking.

    Each block is read with ``halo_nm`` around it and keeps the sites whose
    post point falls inside it, so every mask piece smaller than the halo is
    found whole, exactly once, with the centre a whole-volume pass gives it
    (the mask pieces are balls of about the network's mask radius, 80 nm;
    the default halo is five times that). Sites are returned sorted by post
    point, so the result does not depend on the block order or workers.

    Parameters
    ----------
    prediction
        ``(4, z, y, x)`` array-like (zarr, a lazy level's array).
    segmentation
        ``(z, y, x)`` array-like on the same grid, or None.
    block_voxels
        Write block edge per axis.
    Other parameters as :func:`find_sites` and :func:`~napari_connectome.blockwise.run_blockwise`.
    """
    from napari_connectome.blockwise import BlockGrid, run_blockwise

    if len(prediction.shape) != 4 or prediction.shape[0] != 4:
        raise InputError(source, f"a synapse prediction has 4 channels (mask, vector z, y, x) over (z, y, x), "
                                 f"got shape {tuple(prediction.shape)}")
    shape = tuple(int(n) for n in prediction.shape[1:])
    if segmentation is not None and tuple(segmentation.shape) != shape:
        raise InputError(source, f"the segmentation has shape {tuple(segmentation.shape)}, the prediction {shape}")
    if halo_nm < 0:
        raise InputError(source, f"the halo must be ≥ 0 nm, got {halo_nm}")
    halo = tuple(int(np.ceil(halo_nm / v)) for v in voxel_size)
    grid = BlockGrid.of_shape(shape, block_voxels=tuple(int(b) for b in block_voxels))
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    work = _SitesOfBlock(prediction, segmentation, shape, halo, voxel_size, offset, threshold, min_volume_nm3,
                         source)
    run_blockwise(work, grid, scheduler=scheduler, workers=workers, progress=progress, cancel=cancel,
                  collect=lambda _b, result: found.append(result), description="synapse sites")
    if not found:
        return np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0, dtype=np.float32)
    post = np.concatenate([f[0] for f in found])
    pre = np.concatenate([f[1] for f in found])
    score = np.concatenate([f[2] for f in found])
    order = np.lexsort((post[:, 2], post[:, 1], post[:, 0]))
    return post[order], pre[order], score[order]
