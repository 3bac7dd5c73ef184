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

from napari_connectome.train.augment import AugmentConfig
from napari_connectome.train.data import TrainingVolume, sample_patch
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

    def to_dict(self) -> dict:
        """JSON-safe dict."""
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["augment"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.augment.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["input_shape"] = tuple(d["input_shape"])
        aug = dict(d.get("augment", {}))
        if "isotropic_axes" in aug:
            aug["isotropic_axes"] = tuple(aug["isotropic_axes"])
        d["augment"] = aug
        return cls(**d)


def _checkpoints(folder: Path) -> list[Path]:
    return sorted(folder.glob("checkpoint-*.pt"))


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest iteration in ``folder`` (None when there is none)."""
    found = _checkpoints(Path(folder))
    return found[-1] if found else None


def batch(volume: TrainingVolume, config: TrainConfig, iteration: int, output_shape, offsets):
    """The (raw, target, weight) arrays of one iteration: ``(B, 1, *in)``, ``(B, C, *out)`` x 2."""
    rng = np.random.default_rng([config.seed, iteration])
    aug = AugmentConfig(**config.augment)
    raws, targets, weights = [], [], []
    for _ in range(config.batch_size):
        p = sample_patch(volume, rng, input_shape=config.input_shape, output_shape=output_shape,
                         offsets=offsets, augment=aug, zero=config.zero)
        raws.append(p.raw[None])
        targets.append(p.target)
        weights.append(balance_weights(p.target, p.mask))
    return np.stack(raws), np.stack(targets), np.stack(weights)


def train(
    volume: TrainingVolume,
    config: TrainConfig,
    folder: str | os.PathLike,
    *,
    validate: Callable[[object, int], dict] | None = None,
    log: Callable[[str], None] = print,
    stop_after: int | None = None,
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

    Returns
    -------
    Path of the last checkpoint written.
    """
    import torch
    import torch.nn.functional as F
    from napari_connectome_models.nets.unet import UNet3D, UNetConfig

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = folder / "config.json"
    if cfg_path.exists():
        # the number of iterations may change (a run can be extended): nothing else may
        saved = {k: v for k, v in json.loads(cfg_path.read_text()).items() if k != "iterations"}
        if saved != {k: v for k, v in config.to_dict().items() if k != "iterations"}:
            raise ValueError(f"{folder} holds a run with another config; use a new folder")
    cfg_path.write_text(json.dumps(config.to_dict(), indent=1))
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    net_cfg = UNetConfig.from_dict(config.net)
    model = UNet3D(net_cfg)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    output_shape = net_cfg.output_shape(config.input_shape)
    start = 0
    last = latest_checkpoint(folder)
    if last is not None:
        state = torch.load(last, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["iteration"])
        log(f"resumed from {last.name} at iteration {start}")
    model.train()
    end = config.iterations if stop_after is None else min(config.iterations, start + stop_after)
    t0, losses, written = time.perf_counter(), [], last
    logfile = folder / "log.jsonl"
    for it in range(start, end):
        raw, target, weight = batch(volume, config, it, output_shape, net_cfg.offsets)
        logits = model.forward_logits(torch.from_numpy(raw))
        w = torch.from_numpy(weight)
        loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(target), weight=w,
                                                  reduction="sum") / w.sum().clamp_min(1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        done = it + 1
        if done % config.checkpoint_every == 0 or done == end:
            written = _save(folder, model, opt, done)
            record = {"iteration": done, "loss": float(np.mean(losses)),
                      "seconds": time.perf_counter() - t0, "time": time.time()}
            if validate is not None:
                model.eval()
                with torch.no_grad():
                    record.update(validate(model, done))
                model.train()
            with open(logfile, "a") as f:
                f.write(json.dumps(record) + "\n")
            rate = (done - start) / max(time.perf_counter() - t0, 1e-9)
            extra = " ".join(f"{k} {v:.4f}" for k, v in record.items() if k.startswith("val"))
            log(f"iteration {done}/{config.iterations} loss {record['loss']:.4f} {rate:.2f} it/s {extra}")
            losses = []
    return written


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
