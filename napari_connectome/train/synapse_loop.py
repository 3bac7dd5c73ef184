"""Training the synapse network (Synful-style mask + vector): data, patches, loss, seeded resumable loop.

The loop follows :mod:`napari_connectome.train.loop` and reuses its pieces
(checkpoint writing, the JSON-lines log, the class-balanced BCE and the masked
MSE): iteration ``i`` draws its patches from ``numpy.random.default_rng([seed,
i])`` alone, so a run killed and resumed from a checkpoint continues exactly
as an uninterrupted one; checkpoints are written atomically.

Synapses are rare (a post-synaptic mask covers about 1 % of a volume), so a
fixed fraction of the patches (:attr:`SynapseTrainConfig.near_fraction`,
every other one by default) is centred near a post point, the rest uniformly.

Class balancing alone gives the few negative voxels that matter, those on the
presynaptic side of a contact (the T-bar looks like a PSD), the same small
weight as the empty space far away, and a network trained that way puts
post-synaptic masks into the presynaptic neuron. With
:attr:`SynapseTrainConfig.hard_negative_weight` the negatives near a
synapse (within ``hard_radius_nm`` of a post point, outside the mask) weigh
that fraction of a positive voxel.

A volume whose synapses are only partly annotated (a proofreader's points)
carries a ``known`` region, balls around the annotated posts: the mask loss
counts only there, so the unannotated rest teaches nothing.

Geometry augmentation is restricted to flips and axis permutations (among
``AugmentConfig.isotropic_axes``): they move the vector targets exactly (a
flip negates that component, a permutation permutes the components; see
:func:`~napari_connectome.train.synapse_targets.transform_vectors`).
Elastic deformation and misaligned sections would bend the space the vectors
live in, so they are refused. Intensity augmentation is
:func:`~napari_connectome.train.augment.intensity`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from napari_connectome.errors import InputError
from napari_connectome.train.augment import (
    AugmentConfig,
    draw_geometry,
    flip_transpose,
    intensity,
    source_shape,
)
from napari_connectome.train.data import normalise_raw
from napari_connectome.train.loop import (
    affinity_loss,
    checkpoint_and_log,
    lsd_loss,
    open_run,
    resume_or_init,
)
from napari_connectome.train.synapse_targets import (
    VECTOR_UNIT_NM,
    synapse_targets,
    transform_vectors,
)
from napari_connectome.train.targets import balance_weights


def synapse_augment(*, isotropic_axes=(0, 1, 2)) -> AugmentConfig:
    """The augmentation a synapse run may use: flips, permutations, intensity; no elastic, no misalignment."""
    return AugmentConfig(isotropic_axes=tuple(isotropic_axes), elastic_p=0.0, misalign_p=0.0)


@dataclass
class SynapseVolume:
    """One training volume: raw (padded) and its synapse targets (unpadded).

    Attributes
    ----------
    raw
        float32 in [0, 1], mirrored by ``pad`` voxels on every side.
    mask
        ``(z, y, x)`` uint8 post-synaptic mask (see
        :func:`~napari_connectome.train.synapse_targets.synapse_targets`).
    vectors
        ``(3, z, y, x)`` float32 vectors to the pre points (units of 100 nm).
    posts
        ``(n, 3)`` post points in (fractional) voxel coordinates of the volume:
        where the near-synapse patches are centred.
    pad
        Padding of ``raw`` on each side.
    hard
        ``(z, y, x)`` uint8: negatives near a synapse (None: none marked).
    known
        ``(z, y, x)`` uint8: where the targets are known (None: everywhere).
    """

    raw: np.ndarray
    mask: np.ndarray
    vectors: np.ndarray
    posts: np.ndarray
    pad: int
    hard: np.ndarray | None = None
    known: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """Unpadded shape (z, y, x)."""
        return tuple(int(n) for n in self.mask.shape)

    @classmethod
    def from_arrays(cls, raw: np.ndarray, labels: np.ndarray, rows, *, voxel_size, offset=(0.0, 0.0, 0.0),
                    pad: int, mask_radius_nm: float = 80.0, hard_radius_nm: float = 150.0,
                    known_radius_nm: float | None = None) -> SynapseVolume:
        """Targets from the synapse table ``rows`` and ``labels``; raw normalised and mirrored by ``pad``.

        Parameters
        ----------
        raw, labels
            Same shape ``(z, y, x)``.
        rows
            Synapse table (see :func:`~napari_connectome.train.synapse_targets.synapse_targets`).
        voxel_size, offset
            nm; the world position of voxel ``(0, 0, 0)``'s centre is ``offset``.
        pad
            At least the network's context.
        mask_radius_nm
            Radius of the post-synaptic mask.
        hard_radius_nm
            Negatives within this distance of a post point are marked hard.
        known_radius_nm
            None: ``rows`` are all the synapses of the volume. Otherwise they
            are annotations, and the targets are known within this distance of
            their post points only.
        """
        if raw.shape != labels.shape:
            raise ValueError(f"raw {raw.shape} and labels {labels.shape} differ in shape")
        mask, vectors = synapse_targets(rows, labels, voxel_size=voxel_size, offset=offset,
                                        mask_radius_nm=mask_radius_nm)
        post = np.asarray(rows["post"] if isinstance(rows, dict) else rows.post, dtype=np.float64).reshape(-1, 3)
        posts = (post - np.asarray(offset, float)) / np.asarray(voxel_size, float)
        hard = ((near_points(post, labels.shape, voxel_size=voxel_size, offset=offset, radius_nm=hard_radius_nm))
                & (mask == 0)).astype(np.uint8)
        known = None
        if known_radius_nm is not None:
            known = near_points(post, labels.shape, voxel_size=voxel_size, offset=offset,
                                radius_nm=known_radius_nm).astype(np.uint8)
        return cls(raw=np.pad(normalise_raw(raw), pad, mode="reflect"), mask=mask, vectors=vectors,
                   posts=posts, pad=int(pad), hard=hard, known=known)


def near_points(points: np.ndarray, shape, *, voxel_size, offset=(0.0, 0.0, 0.0), radius_nm: float) -> np.ndarray:
    """``(z, y, x)`` bool: voxels whose centre lies within ``radius_nm`` of one of ``points`` (world nm)."""
    from scipy.ndimage import distance_transform_edt

    vs = np.asarray(voxel_size, dtype=np.float64)
    seeds = np.ones(tuple(int(n) for n in shape), dtype=bool)
    idx = np.round((np.asarray(points, dtype=np.float64).reshape(-1, 3) - np.asarray(offset, float)) / vs)
    idx = idx.astype(np.int64)
    idx = idx[np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)]
    if idx.size == 0:
        return np.zeros(seeds.shape, dtype=bool)
    seeds[tuple(idx.T)] = False
    return distance_transform_edt(seeds, sampling=vs) <= radius_nm


@dataclass(frozen=True)
class SynapseTrainConfig:
    """A synapse training run, fully (everything that changes the result is here).

    Attributes
    ----------
    net
        :class:`~napari_connectome_models.nets.synapse.SynapseNetConfig` as a dict.
    input_shape
        Network input patch (z, y, x); must be valid for the network.
    iterations
        Iterations to reach (a resumed run continues up to this number).
    seed
        Seeds the initial weights and every iteration's patches.
    lr
        Adam learning rate.
    batch_size
        Patches per iteration.
    near_fraction
        Fraction of the patches centred near a post point (exactly: patch
        ``j`` of the run is near when ``floor((j + 1) f) > floor(j f)``).
    vector_weight
        Weight of the vector loss (masked MSE in units of 100 nm) added to the
        mask loss (class-balanced BCE).
    hard_negative_weight
        Weight of a negative voxel near a synapse as a fraction of a positive
        voxel's (0: class balancing alone).
    augment
        :class:`~napari_connectome.train.augment.AugmentConfig` as a dict
        (elastic and misalignment must be off).
    checkpoint_every
        Iterations between checkpoints.
    threads
        torch intra-op threads (results are reproducible for a fixed value).
    data
        What the training data are (generator, seeds, spec): a rerun on other data is another run.
    init
        Weights to start from (fine-tuning): ``{"model": NAME, "sha256": …}`` or
        ``{"weights": PATH, "sha256": …}`` (a synapse network's file or checkpoint), checked as
        :func:`~napari_connectome.train.loop.load_init` checks them; None starts from random weights.
    """

    net: dict
    input_shape: tuple[int, int, int]
    iterations: int = 2000
    seed: int = 0
    lr: float = 5e-4
    batch_size: int = 1
    near_fraction: float = 0.5
    vector_weight: float = 1.0
    hard_negative_weight: float = 0.0
    augment: dict = field(default_factory=lambda: asdict(synapse_augment()))
    checkpoint_every: int = 100
    threads: int = 1
    data: dict = field(default_factory=dict)
    init: dict | None = None

    def __post_init__(self) -> None:
        aug = AugmentConfig(**self.augment)
        if aug.elastic_p > 0 or aug.misalign_p > 0:
            raise InputError("augment", "elastic deformation and misalignment would bend the vector targets; "
                                        "set elastic_p and misalign_p to 0")
        if not 0.0 <= self.near_fraction <= 1.0:
            raise InputError("near_fraction", f"must be in [0, 1], got {self.near_fraction}")
        if not 0.0 <= self.hard_negative_weight <= 1.0:
            raise InputError("hard_negative_weight", f"must be in [0, 1], got {self.hard_negative_weight}")

    def to_dict(self) -> dict:
        """JSON-safe dict."""
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: dict) -> SynapseTrainConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["input_shape"] = tuple(d["input_shape"])
        aug = dict(d.get("augment", {}))
        if "isotropic_axes" in aug:
            aug["isotropic_axes"] = tuple(aug["isotropic_axes"])
        d["augment"] = aug
        return cls(**d)

    def differences(self, other: SynapseTrainConfig) -> list[str]:
        """Fields that differ from ``other``, ``iterations`` aside (a run may be extended)."""
        a, b = self.to_dict(), other.to_dict()
        return sorted(k for k in a if k != "iterations" and a[k] != b.get(k))


def is_near(j: int, fraction: float) -> bool:
    """Whether patch ``j`` of a run is centred near a post point (exactly ``fraction`` of them in the long run)."""
    return int(np.floor((j + 1) * fraction)) > int(np.floor(j * fraction))


def sample_synapse_patch(volumes: list[SynapseVolume], rng: np.random.Generator, *, input_shape, output_shape,
                         augment: AugmentConfig | None, near: bool):
    """One augmented patch: ``(raw, mask, vectors (3, z, y, x), hard, known)``, all but vectors ``(z, y, x)``.

    The output window lies inside one volume (its targets are known
    everywhere); raw is read around it from the mirrored padding. With
    ``near`` (and any post point at all), the window is centred on a random
    post point, moved by up to a quarter window per axis (clipped to the
    volume); otherwise it is uniform over the volume's positions.
    """
    input_shape = tuple(int(n) for n in input_shape)
    output_shape = tuple(int(n) for n in output_shape)
    ctx = [(i - o) // 2 for i, o in zip(input_shape, output_shape, strict=True)]
    cfg, perm, flips = draw_geometry(rng, augment)
    src_in, src_out, src_ctx = (source_shape(s, perm) for s in (input_shape, output_shape, ctx))
    counts = np.array([len(v.posts) for v in volumes])
    if near and counts.sum() > 0:
        k = int(rng.integers(0, counts.sum()))
        which = int(np.searchsorted(np.cumsum(counts), k, side="right"))
        vol = volumes[which]
        centre = vol.posts[k - int(counts[:which].sum())]
        jitter = [int(rng.integers(-(n // 4), n // 4 + 1)) for n in src_out]
        begin = [int(np.round(c)) + j - n // 2 for c, j, n in zip(centre, jitter, src_out, strict=True)]
    else:
        vol = volumes[int(rng.integers(0, len(volumes)))]
        begin = [int(rng.integers(0, max(s - n, 0) + 1)) for s, n in zip(vol.shape, src_out, strict=True)]
    if any(n > s for n, s in zip(src_out, vol.shape, strict=True)) or vol.pad < max(src_ctx):
        raise ValueError(f"output {src_out} must fit the volume {vol.shape} and its padding {vol.pad} the "
                         f"context {src_ctx}")
    begin = [min(max(b, 0), s - n) for b, s, n in zip(begin, vol.shape, src_out, strict=True)]
    out_sl = tuple(slice(b, b + n) for b, n in zip(begin, src_out, strict=True))
    in_sl = tuple(slice(b - c + vol.pad, b - c + vol.pad + n) for b, c, n in zip(begin, src_ctx, src_in,
                                                                                  strict=True))
    mask = vol.mask[out_sl]
    hard = np.zeros_like(mask) if vol.hard is None else vol.hard[out_sl]
    known = np.ones_like(mask) if vol.known is None else vol.known[out_sl]
    raw, mask, vectors, hard, known = flip_transpose(
        [vol.raw[in_sl], mask, vol.vectors[(slice(None), *out_sl)], hard, known], perm, flips)
    vectors = transform_vectors(vectors, perm, flips)
    if augment:
        raw = intensity(raw, rng, cfg)
    return (np.ascontiguousarray(raw, dtype=np.float32), mask, np.ascontiguousarray(vectors, dtype=np.float32),
            hard, known)


def synapse_batch(volumes: list[SynapseVolume], config: SynapseTrainConfig, iteration: int, output_shape):
    """Arrays of one iteration: raw ``(B, 1, *in)``, mask, mask weight ``(B, 1, *out)``, vectors ``(B, 3, *out)``."""
    rng = np.random.default_rng([config.seed, iteration])
    aug = AugmentConfig(**config.augment)
    raws, masks, weights, vecs = [], [], [], []
    for b in range(config.batch_size):
        near = is_near(iteration * config.batch_size + b, config.near_fraction)
        raw, mask, vectors, hard, known = sample_synapse_patch(volumes, rng, input_shape=config.input_shape,
                                                               output_shape=output_shape, augment=aug, near=near)
        target = mask[None].astype(np.float32)
        weight = balance_weights(target, known[None].astype(np.float32))
        if config.hard_negative_weight > 0 and hard.any():
            positive = float(weight.max())  # a positive voxel's weight (≥ a negative's once any positive exists)
            weight = np.where(hard[None] > 0, np.maximum(weight, config.hard_negative_weight * positive) * known[None],
                              weight).astype(np.float32)
        raws.append(raw[None])
        masks.append(target)
        weights.append(weight)
        vecs.append(vectors)
    return np.stack(raws), np.stack(masks), np.stack(weights), np.stack(vecs)


def synapse_loss(mask_logits, vectors, target_mask, weight, target_vectors, *, vector_weight: float = 1.0):
    """``(total, mask part, vector part)``: balanced BCE on the mask plus masked MSE on the vectors.

    The vector part counts only the voxels of the target mask (elsewhere a
    vector has no meaning); a patch without mask voxels adds no vector loss.
    """
    mask_part = affinity_loss(mask_logits, target_mask, weight)
    vector_part = lsd_loss(vectors, target_vectors, target_mask)
    return mask_part + vector_weight * vector_part, mask_part, vector_part


def train_synapses(
    volumes: list[SynapseVolume],
    config: SynapseTrainConfig,
    folder: str | os.PathLike,
    *,
    validate: Callable[[object, int], dict] | None = None,
    log: Callable[[str], None] = print,
    stop_after: int | None = None,
) -> Path | None:
    """Train (or resume) a synapse U-Net; checkpoints and ``log.jsonl`` go to ``folder``.

    Parameters
    ----------
    volumes
        Training volumes (held-out data must not be among them).
    config
        The run; a folder that already holds a run must hold this one (only
        ``iterations`` may differ).
    folder
        Output folder: ``config.json``, ``checkpoint-NNNNNNN.pt``, ``log.jsonl``.
    validate
        Called with (model in eval mode, iteration) at every checkpoint; its dict is logged.
    log
        Progress lines.
    stop_after
        Stop (with a checkpoint) after this many iterations of this call.

    Returns
    -------
    The last checkpoint written (None when none was).
    """
    import torch
    from napari_connectome_models.nets.synapse import SynapseNetConfig, SynapseUNet

    folder = open_run(folder, config, read_synapse_config)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = SynapseUNet(SynapseNetConfig.from_dict(config.net))
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    output_shape = model.config.output_shape(config.input_shape)
    start, written = resume_or_init(folder, model, opt, config.init, log)
    model.train()
    end = config.iterations if stop_after is None else min(config.iterations, start + stop_after)
    t0, losses, parts = time.perf_counter(), [], []
    for it in range(start, end):
        raw, mask, weight, vectors = synapse_batch(volumes, config, it, output_shape)
        logits, pred = model.forward_train(torch.from_numpy(raw))
        loss, mask_part, vector_part = synapse_loss(
            logits, pred, torch.from_numpy(mask), torch.from_numpy(weight), torch.from_numpy(vectors),
            vector_weight=config.vector_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        parts.append((mask_part.item(), vector_part.item()))
        done = it + 1
        if done % config.checkpoint_every == 0 or done == end:
            extra = {"loss_mask": float(np.mean([a for a, _ in parts])),
                     "loss_vector": float(np.mean([b for _, b in parts]))}
            written = checkpoint_and_log(folder, model, opt, done, iterations=config.iterations, start=start, t0=t0,
                                         losses=losses, extra=extra, validate=validate, log=log,
                                         shown=lambda k, v: k.startswith(("val", "loss_")) and isinstance(v, float))
            losses, parts = [], []
    return written


def read_synapse_config(folder: str | os.PathLike) -> SynapseTrainConfig:
    """The :class:`SynapseTrainConfig` of the run in ``folder`` (its ``config.json``)."""
    path = Path(folder) / "config.json"
    try:
        return SynapseTrainConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(path, f"is not a synapse training run's config ({exc})") from None


def synapse_network_from_checkpoint(path: str | os.PathLike):
    """The synapse U-Net stored in a training checkpoint, in eval mode."""
    import torch
    from napari_connectome_models.nets.synapse import SynapseNetConfig, SynapseUNet

    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = SynapseUNet(SynapseNetConfig.from_dict(state["net"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model


def synapse_scores(prediction: np.ndarray, mask: np.ndarray, vectors: np.ndarray, *,
                   threshold: float = 0.5) -> dict:
    """Voxel-level mask F1 and the vector error of a ``(4, z, y, x)`` prediction against the targets.

    Parameters
    ----------
    prediction
        The network's output: mask probability, vector (units of 100 nm).
    mask, vectors
        Targets from :func:`~napari_connectome.train.synapse_targets.synapse_targets`.
    threshold
        Mask probability at or above which a voxel is predicted in the mask.

    Returns
    -------
    dict
        ``precision``, ``recall``, ``f1`` of the mask voxels; ``vector_error_nm``
        (median, over the true mask voxels, of the distance in nm between the
        predicted pre point ``voxel + vector`` and the true one) and
        ``vector_error_nm_p90``; ``mask_voxels`` (true mask voxels).
    """
    truth = np.asarray(mask) > 0
    pred = np.asarray(prediction[0]) >= threshold
    tp = int(np.count_nonzero(pred & truth))
    n_pred, n_true = int(np.count_nonzero(pred)), int(np.count_nonzero(truth))
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    if n_true:
        # voxel + predicted vector vs voxel + true vector: the voxel cancels
        err = np.linalg.norm(np.asarray(prediction[1:4])[:, truth] - np.asarray(vectors)[:, truth], axis=0)
        err_nm = err * VECTOR_UNIT_NM
        median, p90 = float(np.median(err_nm)), float(np.percentile(err_nm, 90))
    else:
        median = p90 = float("nan")
    return {"precision": precision, "recall": recall, "f1": f1, "vector_error_nm": median,
            "vector_error_nm_p90": p90, "mask_voxels": n_true}
