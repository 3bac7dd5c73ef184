"""A training run as the CLI and the Train panel start it: plan, train (or resume), measure, export.

1. :func:`plan` — the network (a shipped model by registry name, a weights
   file or checkpoint to fine-tune, or a new one shaped for the voxel size),
   its patch, and how much raw context the data need;
2. :func:`~napari_connectome.train.sources` reads the data with that context;
3. :func:`make_config` — the :class:`~napari_connectome.train.loop.TrainConfig`
   that names everything that changes the result (data identity included);
4. :func:`run_training` — validates, trains or resumes in a run folder with
   progress and cancel, and appends a provenance record per session;
5. :func:`evaluate` — the masked, class-balanced loss and affinity accuracy
   over the labelled region (no augmentation), for before/after figures;
6. :func:`export_weights` — the weights in the registry's format, with what
   made them inside and in a JSON sidecar.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from napari_connectome.errors import CancelledError, InputError
from napari_connectome.progress import Progress
from napari_connectome.train.augment import AugmentConfig
from napari_connectome.train.data import TrainingVolume
from napari_connectome.train.loop import (
    TrainConfig,
    latest_checkpoint,
    load_init,
    network_from_checkpoint,
    read_config,
    train,
)
from napari_connectome.train.sources import TrainingData
from napari_connectome.train.targets import _pair_slices, balance_weights

#: Smallest output window (z, y, x) of a training patch when none is given.
DEFAULT_PATCH = (16, 16, 16)
#: Output window (z, y, x) of the tiles :func:`evaluate` predicts.
EVALUATE_TILE = (32, 32, 32)
#: Iterations between checkpoints when none is given (a cancel writes one too).
DEFAULT_CHECKPOINT_EVERY = 100
#: Most iterations one run may ask for (a typo guard: 10 million is months on a CPU).
MAX_ITERATIONS = 10_000_000
#: Name of the per-session provenance records in a run folder.
PROVENANCE = "provenance.jsonl"
#: Voxel sizes within this fraction of each other count as equal (isotropic axes).
ISOTROPY_TOLERANCE = 0.05
#: How exported weights say their raw was normalised (as the shipped models).
NORMALISATION = "raw / dtype max (uint8: / 255); float raw as is, in [0, 1]"


def isotropic_axes(voxel_size) -> tuple[int, ...]:
    """Axes whose voxel size equals x's (within 5 %): those augmentation may exchange.

    ``(0, 1, 2)`` isotropic, ``(1, 2)`` for an anisotropic z, ``()`` when y
    and x differ too (flips stay allowed).
    """
    vx = float(voxel_size[2])
    same = tuple(a for a in range(3) if abs(float(voxel_size[a]) - vx) <= ISOTROPY_TOLERANCE * vx)
    return same if len(same) >= 2 else ()


@dataclass(frozen=True)
class Plan:
    """The network side of a run, known before the data are read.

    Attributes
    ----------
    init
        The weights to start from (:attr:`TrainConfig.init`), or None.
    net
        The network's :class:`~napari_connectome_models.nets.unet.UNetConfig` as a dict.
    input_shape
        Training patch (z, y, x), valid for the network.
    augment
        :class:`~napari_connectome.train.augment.AugmentConfig` as a dict.
    """

    init: dict | None
    net: dict
    input_shape: tuple[int, int, int]
    augment: dict

    @property
    def context(self) -> int:
        """Voxels of raw to read around a labelled box: a whole patch plus the elastic margin.

        Windows may start up to a quarter of a window outside the box, and
        axes may be exchanged, so the largest patch edge bounds every read.
        """
        return int(max(self.input_shape)) + AugmentConfig(**self.augment).margin


def base_identity(base: str | os.PathLike | None) -> dict | None:
    """What ``base`` names: a registered affinity model, or a weights file / checkpoint (None: no base).

    Raises
    ------
    InputError
        Neither a registry name nor a readable file.
    """
    if base is None or str(base) == "":
        return None
    from napari_connectome_models.registry import load_registry

    entries = load_registry()
    if str(base) in entries:
        entry = entries[str(base)]
        if entry.task != "affinities":
            raise InputError(str(base), f"is a {entry.task} model; only affinity networks can be fine-tuned")
        return {"model": entry.name, "sha256": entry.sha256}
    path = Path(base)
    if not path.is_file():
        have = ", ".join(sorted(e.name for e in entries.values() if e.task == "affinities"))
        raise InputError(str(base), f"is neither a registered model (have: {have}) nor a weights file")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"weights": str(path.resolve()), "sha256": digest}


def plan(*, base: str | os.PathLike | None = None, voxel_size=(1.0, 1.0, 1.0), patch=None,
         augment: bool = True) -> Plan:
    """The network, patch and augmentations of a run.

    Parameters
    ----------
    base
        A registry name (``"affinities-fib-10nm"``), a weights file or a
        training checkpoint to fine-tune; None trains a new U-Net (isotropic
        pooling, or ``(1, 3, 3)`` first when z is coarser than x).
    voxel_size
        nm per voxel (z, y, x) of the data: sets which axes may be exchanged.
    patch
        Smallest output window (z, y, x); default :data:`DEFAULT_PATCH`.
    augment
        False: no augmentation (tests, quick looks).
    """
    from napari_connectome_models.nets.unet import ANISOTROPIC, ISOTROPIC, UNetConfig

    init = base_identity(base)
    axes = isotropic_axes(voxel_size)
    if init is not None:
        net = UNetConfig.from_dict(load_init(init)[0])
    else:
        net = UNetConfig(downsample=ISOTROPIC if 0 in axes else ANISOTROPIC)
    want = tuple(DEFAULT_PATCH if patch is None else patch)
    if len(want) != 3 or any(int(n) < 1 for n in want):
        raise InputError("--patch", f"needs three positive sizes Z Y X, got {want}")
    input_shape = net.valid_input_shape(want)
    if augment:
        aug = AugmentConfig(isotropic_axes=axes)
    else:
        aug = AugmentConfig(isotropic_axes=(), flip=False, elastic_p=0.0, scale=0.0, shift=0.0, gamma=1.0,
                            missing_p=0.0, misalign_p=0.0)
    d = asdict(aug)
    d["isotropic_axes"] = list(d["isotropic_axes"])
    return Plan(init=init, net=net.to_dict(), input_shape=tuple(int(n) for n in input_shape), augment=d)


def make_config(run_plan: Plan, data: TrainingData, *, iterations: int, seed: int = 0, lr: float | None = None,
                batch_size: int = 1, checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
                threads: int | None = None) -> TrainConfig:
    """The :class:`~napari_connectome.train.loop.TrainConfig` of a run on ``data``.

    Parameters
    ----------
    run_plan
        From :func:`plan`.
    data
        The training data (their identity becomes part of the config).
    iterations
        Iterations to reach (a rerun with more extends the run).
    seed
        Seeds the initial weights (of a new network) and every patch.
    lr
        Adam learning rate; default 1e-4 when fine-tuning (small steps keep
        what the base learned), 5e-4 for a new network.
    batch_size, checkpoint_every
        Patches per iteration; iterations between checkpoints.
    threads
        torch threads (results are reproducible for a fixed count); default
        up to 4, never more than the machine has.

    Raises
    ------
    InputError
        Nonsense numbers (iterations < 1, a negative seed, ...).
    """
    _positive_int("--iterations", iterations, most=MAX_ITERATIONS)
    _positive_int("--batch-size", batch_size)
    _positive_int("--checkpoint-every", checkpoint_every)
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise InputError("--seed", f"must be a whole number ≥ 0, got {seed!r}")
    if lr is None:
        lr = 1e-4 if run_plan.init is not None else 5e-4
    if not (isinstance(lr, (int, float)) and 0 < lr < 1):
        raise InputError("--lr", f"must lie between 0 and 1, got {lr!r}")
    if threads is None:
        threads = max(1, min(4, os.cpu_count() or 1))
    _positive_int("--threads", threads)
    return TrainConfig(net=run_plan.net, input_shape=run_plan.input_shape, iterations=int(iterations),
                       seed=int(seed), lr=float(lr), batch_size=int(batch_size), zero=data.zero,
                       augment=run_plan.augment, checkpoint_every=int(checkpoint_every), threads=int(threads),
                       init=run_plan.init, data=data.identity)


def _positive_int(name: str, value, *, most: int | None = None) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise InputError(name, f"must be a whole number ≥ 1, got {value!r}")
    if most is not None and value > most:
        raise InputError(name, f"{value} is more than {most:,}; is that a typo?")


def _has_pairs(data: TrainingData, offsets, zero: str) -> bool:
    """True when at least one affinity target is defined (one voxel pair with a known label)."""
    (z0, y0, x0), (z1, y1, x1) = data.region
    lab = data.labels[z0:z1, y0:y1, x0:x1]
    known = data.known[z0:z1, y0:y1, x0:x1]
    for off in offsets:
        here, there = _pair_slices(lab.shape, off)
        ok = known[here] & known[there]
        a, b = lab[here], lab[there]
        ok &= ((a != 0) | (b != 0)) if zero == "boundary" else ((a != 0) & (b != 0))
        if ok.any():
            return True
    return False


def check_run_folder(folder: str | os.PathLike) -> Path:
    """``folder`` may hold this run: it is new, empty, or a run folder (with its ``config.json``).

    Raises
    ------
    InputError
        A file, or a folder with other things in it (never written into).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, "is a file, not a run folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / "config.json").is_file():
        raise InputError(folder, "is not empty and holds no training run; give a new or empty folder")
    return folder


def run_training(data: TrainingData, config: TrainConfig, folder: str | os.PathLike, *,
                 progress: Progress | None = None, log: Callable[[str], None] | None = None,
                 on_iteration: Callable[[int, float], None] | None = None) -> Path:
    """Train or resume the run in ``folder``; returns the last checkpoint.

    Rerunning with the same data and config continues where the last call
    stopped (finished, cancelled or killed); a folder holding another run
    is refused before anything is written. Every call appends a provenance
    record (software, inputs, the base model, timings, outcome) to
    ``folder/provenance.jsonl``.

    Parameters
    ----------
    data
        From :mod:`~napari_connectome.train.sources`, read with the plan's context.
    config
        From :func:`make_config`.
    folder
        The run folder.
    progress
        Told about every iteration; raising
        :class:`~napari_connectome.errors.CancelledError` from it stops the
        run after a checkpoint (resumable).
    log
        Lines about checkpoints and losses (default: none).
    on_iteration
        Called with (iteration, loss) after every step.

    Raises
    ------
    InputError
        A bad folder, another run's config, labels that define no target.
    CancelledError
        Cancelled (a checkpoint of the iterations done was written).
    """
    from napari_connectome.atomic import atomic_write
    from napari_connectome.provenance import Recorder

    folder = check_run_folder(folder)
    if (folder / "config.json").is_file():
        differ = read_config(folder).differences(config)
        if differ:  # before any work: the same refusal train() makes, without reading weights first
            raise InputError(folder, f"holds another run's config (it differs in {', '.join(differ)}); "
                                     "use a new folder, or the options of that run to continue it")
    offsets = config.net["offsets"]
    if not _has_pairs(data, offsets, config.zero):
        where = data.identity.get("labels")
        raise InputError(where if isinstance(where, str) else "labels",
                         "define no affinity: no two labelled voxels lie at any of the network's offsets "
                         "(paint strokes a few voxels wide, or two labels side by side)")
    volume = TrainingVolume.from_arrays(data.raw, data.labels, pad=context_of(config), region=data.region,
                                        known=data.known)
    recorder = Recorder("train", parameters=config.to_dict(), inputs={"data": data.identity},
                        extra_software=("torch",))
    recorder.set("model", config.init)
    lines = log or (lambda s: None)
    outcome = "failed"
    try:
        with recorder.timed("train"):
            last = train(volume, config, folder, log=lines, progress=progress, on_iteration=on_iteration)
        outcome = "finished"
        return last
    except CancelledError:
        outcome = "cancelled"
        raise
    except KeyboardInterrupt:
        outcome = "interrupted"
        raise
    finally:
        if (folder / "config.json").is_file():  # train() got as far as owning the folder
            found = latest_checkpoint(folder)
            recorder.set("outcome", outcome)
            recorder.set("iteration", checkpoint_iteration(found) if found else 0)
            record = json.dumps(recorder.finish()) + "\n"
            path = folder / PROVENANCE
            old = path.read_text() if path.is_file() else ""
            with atomic_write(path) as tmp:
                Path(tmp).write_text(old + record)


def context_of(config: TrainConfig) -> int:
    """Voxels of raw a run's data need around the labelled box (see :attr:`Plan.context`)."""
    return int(max(config.input_shape)) + AugmentConfig(**config.augment).margin


def checkpoint_iteration(checkpoint: str | os.PathLike) -> int:
    """The iteration a checkpoint (``checkpoint-NNNNNNN.pt``) was written at."""
    return int(Path(checkpoint).stem.split("-")[1])


def base_network(config: TrainConfig):
    """The network a run starts from (its base weights), or None for a new network.

    For "before" figures: a new network's random weights say nothing.
    """
    if config.init is None:
        return None
    from napari_connectome_models.nets.unet import UNet3D, UNetConfig

    from napari_connectome.train.loop import initial_state

    net = UNetConfig.from_dict(config.net)
    model = UNet3D(net)
    model.load_state_dict(initial_state(config.init, net))
    model.eval()
    return model


def evaluate(model, data: TrainingData, *, zero: str | None = None) -> dict:
    """Class-balanced loss and affinity accuracy of ``model`` over the labelled region (no augmentation).

    The region is tiled with output windows (the raw around them is real
    context where ``data`` has it); targets are the labels' affinities where
    both voxels are known, weighted as in training.

    Parameters
    ----------
    model
        A :class:`~napari_connectome_models.nets.unet.UNet3D` (e.g. from
        :func:`~napari_connectome.train.loop.network_from_checkpoint`).
    data
        The training data (or held-out data read the same way).
    zero
        Meaning of label 0 (default: the data's).

    Returns
    -------
    dict
        ``loss`` (weighted BCE, as the training loss), ``accuracy`` (share of
        defined pairs on the right side of 0.5) and ``pairs`` (defined pairs).
    """
    import torch

    from napari_connectome.train.targets import affinities_from_labels

    cfg = model.config
    ctx = cfg.context
    # valid convolutions: the tiling changes the speed, never the values (bigger tiles share more context)
    out = cfg.output_shape(cfg.valid_input_shape(EVALUATE_TILE))
    inp = tuple(o + 2 * c for o, c in zip(out, ctx, strict=True))
    (r0, r1) = data.region
    size = [b - a for a, b in zip(r0, r1, strict=True)]
    tiles = [-(-n // o) for n, o in zip(size, out, strict=True)]
    pad = max(c + o for c, o in zip(ctx, out, strict=True))
    volume = TrainingVolume.from_arrays(data.raw, data.labels, pad=pad, region=data.region, known=data.known)
    pred = np.zeros((cfg.out_channels, *[t * o for t, o in zip(tiles, out, strict=True)]), dtype=np.float32)
    model.eval()
    with torch.no_grad():
        for idx in np.ndindex(*tiles):
            start = [r + i * o for r, i, o in zip(r0, idx, out, strict=True)]
            sl = tuple(slice(s - c + pad, s - c + pad + n) for s, c, n in zip(start, ctx, inp, strict=True))
            x = torch.from_numpy(np.ascontiguousarray(volume.raw[sl]))[None, None]
            y = model(x)[0].numpy()
            dst = (slice(None), *(slice(i * o, (i + 1) * o) for i, o in zip(idx, out, strict=True)))
            pred[dst] = y
    pred = pred[(slice(None), *(slice(0, n) for n in size))]
    crop = tuple(slice(a, b) for a, b in zip(r0, r1, strict=True))
    target, mask = affinities_from_labels(data.labels[crop], cfg.offsets, known=data.known[crop],
                                          zero=zero or data.zero)
    weight = balance_weights(target, mask)
    p = np.clip(pred, 1e-7, 1 - 1e-7)
    bce = -(target * np.log(p) + (1 - target) * np.log(1 - p))
    defined = mask > 0
    pairs = int(defined.sum())
    return {"loss": float((bce * weight).sum() / max(weight.sum(), 1e-12)),
            "accuracy": float(((pred > 0.5) == (target > 0.5))[defined].mean()) if pairs else float("nan"),
            "pairs": pairs}


def _previous_export_of(out: Path, folder: Path) -> bool:
    """True when ``out`` is weights this run folder exported earlier (safe to replace)."""
    from napari_connectome_models.nets.unet import network_metadata

    try:
        return network_metadata(out).get("run") == str(folder.resolve())
    except Exception:  # not a torch file, not ours: never replaced
        return False


def check_export(folder: str | os.PathLike, out: str | os.PathLike) -> None:
    """Refuse an export path before any work: not ``.pt``, or an existing file this run did not write.

    The CLI checks ``--export`` before training, so hours of training never end
    in a refusal to write.

    Raises
    ------
    InputError
        Naming the file.
    """
    folder, out = Path(folder), Path(out)
    if out.suffix != ".pt":
        raise InputError(out, "weights files end in .pt")
    if out.is_dir():
        raise InputError(out, "is a folder; give the weights file's name (OUT.pt)")
    for path in (out, out.with_suffix(".json")):
        if path.exists() and not _previous_export_of(out, folder):
            raise InputError(path, "already exists and is not an export of this run; choose another name")


def export_weights(folder: str | os.PathLike, out: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None,
                   name: str | None = None) -> Path:
    """Write a run's weights in the registry's format, with what made them.

    The file is :func:`~napari_connectome_models.nets.unet.save_network`'s
    (``load_network`` reads it); its metadata hold the run's config, the
    base model, the data's identity, the iteration, the last logged loss and
    the run's provenance records. ``OUT.json`` beside it holds the same plus
    the file's sha256 and a registry entry to paste into ``registry.json``.

    Parameters
    ----------
    folder
        The run folder.
    out
        The weights file to write (replaced only when it is an earlier
        export of this same run).
    checkpoint
        A checkpoint of the run (default: its latest).
    name
        The registry name in the sidecar's entry (default: ``out``'s stem).

    Returns
    -------
    Path
        ``out``.
    """
    from napari_connectome_models.nets.unet import n_parameters, save_network

    from napari_connectome.atomic import atomic_write, write_json_atomic
    from napari_connectome.provenance import suite_version

    folder, out = Path(folder), Path(out)
    ckpt = Path(checkpoint) if checkpoint is not None else latest_checkpoint(folder)
    if ckpt is None or not ckpt.is_file():
        raise InputError(folder, "holds no checkpoint yet; train first")
    config = read_config(folder)
    check_export(folder, out)
    sidecar = out.with_suffix(".json")
    model = network_from_checkpoint(ckpt)
    losses = []
    if (folder / "log.jsonl").is_file():
        losses = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines() if line.strip()]
    records = []
    if (folder / PROVENANCE).is_file():
        records = [json.loads(line) for line in (folder / PROVENANCE).read_text().splitlines() if line.strip()]
    iteration = checkpoint_iteration(ckpt)
    at = [r for r in losses if r.get("iteration") == iteration and r.get("loss") is not None]
    metadata = {
        "trained_by": f"napari-connectome {suite_version()} train", "run": str(folder.resolve()),
        "checkpoint": ckpt.name, "iteration": iteration, "config": config.to_dict(), "init": config.init,
        "data": config.data, "loss": at[-1]["loss"] if at else None, "normalisation": NORMALISATION,
        "parameters": int(n_parameters(model)), "provenance": records,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as tmp:
        save_network(model, tmp, **metadata)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    cfg = model.config
    fov = tuple(int(n) for n in config.input_shape)
    voxel = config.data.get("voxel_size_nm")
    entry = {"name": name or out.stem, "task": "affinities", "file": f"weights/{out.name}", "sha256": digest,
             "voxel_size_nm": voxel, "fov_voxels": list(fov), "output_shape": list(cfg.output_shape(fov)),
             "context_voxels": list(cfg.context), "offsets": [list(o) for o in cfg.offsets],
             "card": f"cards/{name or out.stem}.md"}
    write_json_atomic(sidecar, {"weights": out.name, "sha256": digest, "registry_entry": entry, **metadata})
    return out
