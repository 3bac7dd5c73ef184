"""Training is seeded and resumable: kill-and-resume continues exactly like an uninterrupted run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import need_torch

from napari_connectome.errors import InputError

torch = need_torch()

from napari_connectome_models.nets.unet import UNetConfig  # noqa: E402

from napari_connectome.train import (  # noqa: E402
    TrainConfig,
    TrainingVolume,
    latest_checkpoint,
    network_from_checkpoint,
    train,
)

OFFSETS = ((-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, 0, -3))


def volume() -> TrainingVolume:
    rng = np.random.default_rng(0)
    lab = np.kron(rng.integers(1, 9, size=(4, 4, 4)), np.ones((6, 6, 6), dtype=int)).astype(np.int32)
    raw = (lab * 20 + rng.integers(0, 30, size=lab.shape)).astype(np.uint8)
    return TrainingVolume.from_arrays(raw, lab, pad=40)


def config(iterations=4) -> TrainConfig:
    net = UNetConfig(base_features=2, offsets=OFFSETS)
    return TrainConfig(net=net.to_dict(), input_shape=net.valid_input_shape((4, 4, 4)), iterations=iterations,
                       seed=3, lr=1e-3, checkpoint_every=2, threads=1)


def params(path):
    return [p.detach().clone() for p in network_from_checkpoint(path).parameters()]


def test_resume_equals_uninterrupted(tmp_path):
    vol = volume()
    full = train(vol, config(), tmp_path / "a", log=lambda s: None)
    # the same run, killed after 2 iterations (a fresh process would read the checkpoint the same way)
    half = train(vol, config(), tmp_path / "b", log=lambda s: None, stop_after=2)
    assert half.name == "checkpoint-0000002.pt"
    seen = []
    rest = train(vol, config(), tmp_path / "b", log=seen.append)
    assert any("resumed" in s for s in seen)
    assert rest.name == full.name == "checkpoint-0000004.pt"
    for p, q in zip(params(full), params(rest), strict=True):
        assert torch.equal(p, q)
    a = [json.loads(line)["loss"] for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    b = [json.loads(line)["loss"] for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert a == b


def test_another_seed_differs_and_config_mismatch_is_refused(tmp_path):
    vol = volume()
    train(vol, config(2), tmp_path / "a", log=lambda s: None)
    other = TrainConfig(**{**config(2).__dict__, "lr": 1e-2})
    with pytest.raises(InputError, match="another run.s config .it differs in lr"):
        train(vol, other, tmp_path / "a", log=lambda s: None)
    assert latest_checkpoint(tmp_path / "a").name == "checkpoint-0000002.pt"
    train(vol, TrainConfig(**{**config(2).__dict__, "seed": 4}), tmp_path / "c", log=lambda s: None)
    a = params(tmp_path / "a" / "checkpoint-0000002.pt")
    c = params(tmp_path / "c" / "checkpoint-0000002.pt")
    assert not all(torch.equal(p, q) for p, q in zip(a, c, strict=True))
    # extending a run is allowed: it resumes at 2 and goes on to 3
    last = train(vol, config(3), tmp_path / "a", log=lambda s: None)
    assert last.name == "checkpoint-0000003.pt"
