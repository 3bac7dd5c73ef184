"""The training loop: seeded, resumable, with progress output.

Every iteration draws its patch from ``numpy.random.default_rng([seed,
iteration])``: the data of iteration ``i`` does not depend on what ran
before, so a run killed and resumed from a checkpoint continues exactly as an
uninterrupted one (same patches, same parameters, bit for bit on the same
machine and thread count). A checkpoint holds the network, the optimiser and
the iteration; it is written to a temporary file and renamed, so a kill never
leaves half a checkpoint.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from napari_connectome.errors import CancelledError, InputError
from napari_connectome.progress import Progress
from napari_connectome.train.augment import AugmentConfig
from napari_connectome.train.data import TrainingVolume, sample_patch
from napari_connectome.train.lsd import LSD_CHANNELS
from napari_connectome.train.targets import balance_weights


@dataclass(frozen=True)
class TrainConfig:
    """A training run, fully (everything that changes the result is here).

    Attributes
    ----------
    net
        :class:`napari_connectome_models.nets.unet.UNetConfig` as a dict.
    input_shape
        Network input patch (z, y, x); must be valid for the network.
    iterations
        Iterations to reach (a resumed run continues up to this number).
    seed
        Seeds the initial weights and every iteration's patch.
    lr
        Adam learning rate.
    batch_size
        Patches per iteration.
    zero
        Meaning of label 0 (see :func:`~napari_connectome.train.targets.affinities_from_labels`).
    augment
        :class:`~napari_connectome.train.augment.AugmentConfig` as a dict.
    checkpoint_every
        Iterations between checkpoints.
    threads
        torch intra-op threads (results are reproducible for a fixed value).
    init
        Weights to start from (fine-tuning): ``{"model": NAME, "sha256": …}``
        for a registered network, ``{"weights": PATH, "sha256": …}`` for a
        file written by :func:`~napari_connectome_models.nets.unet.save_network`
        or a training checkpoint; None starts from random weights. The
        sha256 is checked before the weights are used.
    data
        What the training data are (sources, box, sparse or dense, the edit
        log's state): a rerun on other data is another run.
    lsd_weight
        Weight of the local-shape-descriptor loss (MSE over the voxels whose
        labels are known) added to the affinity loss; used only when the
        network has LSD channels (``net["lsd_channels"]``).
    lsd_sigma_nm
        Gaussian sigma of the LSD targets, in nm (Sheridan et al.: about 80 nm).
    voxel_size
        Voxel size of the training volume in nm (z, y, x); needed for LSDs
        (None: the run has no LSD channels).
    """

    net: dict
    input_shape: tuple[int, int, int]
    iterations: int = 5000
    seed: int = 0
    lr: float = 5e-4
    batch_size: int = 1
    zero: str = "boundary"
    augment: dict = field(default_factory=lambda: asdict(AugmentConfig()))
    checkpoint_every: int = 250
    threads: int = 2
    init: dict | None = None
    data: dict = field(default_factory=dict)
    lsd_weight: float = 1.0
    lsd_sigma_nm: float = 80.0
    voxel_size: tuple[float, float, float] | None = None

    def to_dict(self) -> dict:
        """JSON-safe dict."""
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["augment"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.augment.items()}
        # through JSON once: tuples nested in init or data become lists, as they come back from config.json
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["input_shape"] = tuple(d["input_shape"])
        if d.get("voxel_size") is not None:
            d["voxel_size"] = tuple(float(v) for v in d["voxel_size"])
        aug = dict(d.get("augment", {}))
        if "isotropic_axes" in aug:
            aug["isotropic_axes"] = tuple(aug["isotropic_axes"])
        d["augment"] = aug
        return cls(**d)

    def differences(self, other: TrainConfig) -> list[str]:
        """Fields that differ from ``other``, ``iterations`` aside (a run may be extended)."""
        a, b = self.to_dict(), other.to_dict()
        return sorted(k for k in a if k != "iterations" and a[k] != b.get(k))


def _checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.glob("checkpoint-*.pt"))


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest iteration in ``folder`` (None when there is none)."""
    found = _checkpoints(Path(folder))
    return found[-1] if found else None


def _patches(volume: TrainingVolume, config: TrainConfig, iteration: int, output_shape, offsets, lsd: bool):
    rng = np.random.default_rng([config.seed, iteration])
    aug = AugmentConfig(**config.augment)
    extra = {"lsd_sigma_nm": config.lsd_sigma_nm, "voxel_size": config.voxel_size} if lsd else {}
    return [sample_patch(volume, rng, input_shape=config.input_shape, output_shape=output_shape,
                         offsets=offsets, augment=aug, zero=config.zero, **extra)
            for _ in range(config.batch_size)]


def batch(volume: TrainingVolume, config: TrainConfig, iteration: int, output_shape, offsets):
    """The (raw, target, weight) arrays of one iteration: ``(B, 1, *in)``, ``(B, C, *out)`` x 2."""
    patches = _patches(volume, config, iteration, output_shape, offsets, lsd=False)
    return (np.stack([p.raw[None] for p in patches]), np.stack([p.target for p in patches]),
            np.stack([balance_weights(p.target, p.mask) for p in patches]))


def batch_with_lsds(volume: TrainingVolume, config: TrainConfig, iteration: int, output_shape, offsets):
    """:func:`batch` (the same patches) plus LSD targets ``(B, 10, *out)`` and their mask ``(B, 1, *out)``."""
    if config.voxel_size is None:
        raise InputError("voxel_size", "a network with LSD channels needs the training volume's voxel size (nm)")
    patches = _patches(volume, config, iteration, output_shape, offsets, lsd=True)
    return (np.stack([p.raw[None] for p in patches]), np.stack([p.target for p in patches]),
            np.stack([balance_weights(p.target, p.mask) for p in patches]),
            np.stack([p.lsd for p in patches]), np.stack([p.lsd_mask for p in patches]))


def train(
    volume: TrainingVolume,
    config: TrainConfig,
    folder: str | os.PathLike,
    *,
    validate: Callable[[object, int], dict] | None = None,
    log: Callable[[str], None] = print,
    stop_after: int | None = None,
    progress: Progress | None = None,
    on_iteration: Callable[[int, float], None] | None = None,
) -> Path:
    """Train (or resume) a U-Net; checkpoints and ``log.jsonl`` go to ``folder``.

    Parameters
    ----------
    volume
        Training data (its ``known`` mask excludes any held-out part).
    config
        The run; a folder that already holds checkpoints must have been made
        with the same config, except for ``iterations`` (a run may be
        extended; anything else that differs is refused).
    folder
        Output folder: ``config.json``, ``checkpoint-NNNNNNN.pt``, ``log.jsonl``.
    validate
        Called with (model, iteration) at every checkpoint; its dict is logged.
    log
        Progress lines.
    stop_after
        Stop (with a checkpoint) after this many iterations of *this call*;
        used to test kill-and-resume.
    progress
        Told about every iteration (total: ``config.iterations``, a resumed
        run starts where it stopped). A :class:`~napari_connectome.errors.CancelledError`
        raised from it stops the run after a checkpoint of the iterations
        done, so the same call later continues where it stopped.
    on_iteration
        Called with (iteration done, its loss) after every step, before
        ``progress`` (a panel shows the loss as it goes).

    Returns
    -------
    Path of the last checkpoint written.

    Raises
    ------
    InputError
        ``folder`` holds a run with another config, or the initial weights
        do not fit the network.
    CancelledError
        Cancelled through ``progress`` (a checkpoint was written first).
    """
    import torch
    from napari_connectome_models.nets.unet import UNet3D, UNetConfig

    folder = open_run(folder, config, read_config)
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    net_cfg = UNetConfig.from_dict(config.net)
    model = UNet3D(net_cfg)
    if net_cfg.lsd_channels and net_cfg.lsd_channels != LSD_CHANNELS:
        raise InputError("lsd_channels", f"LSD targets have {LSD_CHANNELS} channels, the network "
                                         f"{net_cfg.lsd_channels}")
    if net_cfg.lsd_channels and config.voxel_size is None:
        raise InputError("voxel_size", "a network with LSD channels needs the training volume's voxel size (nm)")
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    output_shape = net_cfg.output_shape(config.input_shape)
    start, last = resume_or_init(folder, model, opt, config.init, log)
    if start >= config.iterations:
        log(f"{folder} is already at iteration {start} (asked for {config.iterations}): nothing to do")
    model.train()
    end = config.iterations if stop_after is None else min(config.iterations, start + stop_after)
    t0, losses, written = time.perf_counter(), [], last
    parts: list[tuple[float, float]] = []
    logfile = folder / "log.jsonl"
    if progress is not None:
        progress.start(config.iterations, "training")
        if start:
            progress.advance(start)
    for it in range(start, end):
        if net_cfg.lsd_channels:
            raw, target, weight, lsd, lsd_mask = batch_with_lsds(volume, config, it, output_shape,
                                                                 net_cfg.offsets)
            logits, lsd_pred = model.forward_train(torch.from_numpy(raw))
            aff_part = affinity_loss(logits, torch.from_numpy(target), torch.from_numpy(weight))
            lsd_part = lsd_loss(lsd_pred, torch.from_numpy(lsd), torch.from_numpy(lsd_mask))
            loss = aff_part + config.lsd_weight * lsd_part
            # the two terms are logged apart: the affinity term compares with a run without LSDs
            parts.append((aff_part.item(), lsd_part.item()))
        else:
            # the loop as it was before LSDs (same calls, same numbers)
            raw, target, weight = batch(volume, config, it, output_shape, net_cfg.offsets)
            logits = model.forward_logits(torch.from_numpy(raw))
            loss = affinity_loss(logits, torch.from_numpy(target), torch.from_numpy(weight))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        done = it + 1
        if on_iteration is not None:
            on_iteration(done, losses[-1])
        try:
            if progress is not None:
                progress.advance(1)
        except CancelledError:
            # the step is complete: a checkpoint here resumes exactly like an uninterrupted run
            _save(folder, model, opt, done)
            _log_record(logfile, done, losses, t0)
            log(f"cancelled at iteration {done}/{config.iterations}; the same call continues from here")
            raise
        if done % config.checkpoint_every == 0 or done == end:
            extra = {}
            if parts:
                extra = {"loss_affinity": float(np.mean([a for a, _ in parts])),
                         "loss_lsd": float(np.mean([b for _, b in parts]))}
            written = checkpoint_and_log(folder, model, opt, done, iterations=config.iterations, start=start, t0=t0,
                                         losses=losses, extra=extra, validate=validate, log=log,
                                         shown=lambda k, _v: k.startswith("val"))
            losses, parts = [], []
    return written


def affinity_loss(logits, target, weight):
    """Weighted binary cross-entropy of affinity logits, normalised by the total weight.

    A pair of weight 0 (masked: unknown, unpainted, outside the volume)
    contributes nothing to the loss or to its gradient.
    """
    import torch.nn.functional as F

    return F.binary_cross_entropy_with_logits(logits, target, weight=weight,
                                              reduction="sum") / weight.sum().clamp_min(1.0)


def lsd_loss(pred, target, mask):
    """Mean squared error of predicted LSDs over the voxels where ``mask`` (``(B, 1, *out)``) is 1.

    Every LSD channel of a masked-in voxel counts once; masked-out voxels add
    nothing to the loss or its gradient.
    """
    sq = (pred - target) ** 2 * mask
    return sq.sum() / (mask.sum() * pred.shape[1]).clamp_min(1.0)


def open_run(folder: str | os.PathLike, config, previous: Callable[[Path], object]) -> Path:
    """Make ``folder`` the run of ``config``: refused when it holds another run's config, else written.

    ``previous(folder)`` reads the config already there (:func:`read_config` or
    the synapse loop's); only ``iterations`` may differ (a run may be extended).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = folder / "config.json"
    if cfg_path.exists():
        differ = previous(folder).differences(config)
        if differ:
            raise InputError(folder, f"holds another run's config (it differs in {', '.join(differ)}); "
                                     "use a new folder, or the options of that run to continue it")
    cfg_path.write_text(json.dumps(config.to_dict(), indent=1))
    return folder


def resume_or_init(folder: Path, model, opt, init: dict | None, log: Callable[[str], None]) -> tuple[int, Path | None]:
    """``(first iteration, last checkpoint)``: the newest checkpoint's state, else ``init``'s weights, else as built."""
    import torch

    last = latest_checkpoint(folder)
    if last is not None:
        state = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        log(f"resumed from {last.name} at iteration {int(state['iteration'])}")
        return int(state["iteration"]), last
    if init is not None:
        model.load_state_dict(initial_state(init, model.config))
        log(f"starting from {describe_init(init)}")
    return 0, None


def checkpoint_and_log(folder: Path, model, opt, done: int, *, iterations: int, start: int, t0: float,
                       losses: list[float], extra: dict, validate, log: Callable[[str], None],
                       shown: Callable[[str, object], bool]) -> Path:
    """Write the checkpoint of iteration ``done``, validate, append the log line and say it; returns the checkpoint."""
    import torch

    written = _save(folder, model, opt, done)
    if validate is not None:
        model.eval()
        with torch.no_grad():
            extra = {**extra, **validate(model, done)}
        model.train()
    record = _log_record(folder / "log.jsonl", done, losses, t0, extra)
    rate = (done - start) / max(time.perf_counter() - t0, 1e-9)
    text = " ".join(f"{k} {v:.4f}" for k, v in record.items() if shown(k, v))
    log(f"iteration {done}/{iterations} loss {record['loss']:.4f} {rate:.2f} it/s {text}")
    return written


def _log_record(logfile: Path, done: int, losses: list[float], t0: float, extra: dict | None = None) -> dict:
    """Append one line to ``log.jsonl``: the mean loss since the last line, timings, ``extra``."""
    record = {"iteration": done, "loss": float(np.mean(losses)) if losses else None,
              "seconds": time.perf_counter() - t0, "time": time.time(), **(extra or {})}
    with open(logfile, "a") as f:
        f.write(json.dumps(record) + "\n")
    return record


def read_config(folder: str | os.PathLike) -> TrainConfig:
    """The :class:`TrainConfig` of the run in ``folder`` (its ``config.json``)."""
    path = Path(folder) / "config.json"
    try:
        return TrainConfig.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(path, f"is not a training run's config ({exc})") from None


def describe_init(init: dict) -> str:
    """``model NAME`` or ``weights PATH``, for messages."""
    return f"model {init['model']}" if "model" in init else f"weights {init['weights']}"


def load_init(init: dict) -> tuple[dict, dict]:
    """``(network config dict, state dict)`` of the weights ``init`` names, after their sha256 check.

    Parameters
    ----------
    init
        :attr:`TrainConfig.init`: ``{"model": NAME, "sha256": …}`` or ``{"weights": PATH, "sha256": …}``.

    Raises
    ------
    InputError
        Unknown model, unreadable file, or a file that changed (another sha256).
    """
    import hashlib

    import torch

    if "model" in init:
        from napari_connectome_models.registry import (
            ModelRegistryError,
            load_registry,
            weights_path,
        )

        entries = load_registry()
        if init["model"] not in entries:
            raise InputError(init["model"], f"no such model in the registry (have: {', '.join(sorted(entries))})")
        try:
            path = weights_path(entries[init["model"]])
        except ModelRegistryError as exc:
            raise InputError(init["model"], str(exc)) from None
        where = init["model"]
    else:
        path = Path(init["weights"])
        where = str(path)
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise InputError(path, f"cannot read the initial weights ({exc.strerror or exc})") from None
    if digest != init["sha256"]:
        raise InputError(where, f"sha256 {digest[:12]}… is not the {init['sha256'][:12]}… this run started from; "
                                "the weights changed since")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike: the file is not what we need
        raise InputError(where, f"is not a torch weights file ({type(exc).__name__})") from None
    return weights_of(blob, where)


def initial_state(init: dict, net) -> dict:
    """The state dict ``init`` names (see :func:`load_init`); it must fit the network ``net``.

    Parameters
    ----------
    init
        :attr:`TrainConfig.init`.
    net
        The :class:`~napari_connectome_models.nets.unet.UNetConfig` being trained.
    """
    config, state = load_init(init)
    if config != net.to_dict():
        raise InputError(describe_init(init), "its network differs from the run's (another architecture or offsets)")
    return state


def weights_of(blob, where: str) -> tuple[dict, dict]:
    """``(network config dict, state dict)`` of a loaded weights file or training checkpoint."""
    if isinstance(blob, dict) and "state_dict" in blob and "config" in blob:  # save_network
        return blob["config"], blob["state_dict"]
    if isinstance(blob, dict) and "model" in blob and "net" in blob:  # a training checkpoint
        return blob["net"], blob["model"]
    raise InputError(where, "is neither a network's weights file nor a training checkpoint")


def _save(folder: Path, model, opt, iteration: int) -> Path:
    import torch

    path = folder / f"checkpoint-{iteration:07d}.pt"
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "iteration": iteration,
                "net": model.config.to_dict()}, tmp)
    os.replace(tmp, path)
    return path


def network_from_checkpoint(path: str | os.PathLike):
    """The U-Net stored in a training checkpoint, in eval mode."""
    import torch
    from napari_connectome_models.nets.unet import UNet3D, UNetConfig

    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = UNet3D(UNetConfig.from_dict(state["net"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model
