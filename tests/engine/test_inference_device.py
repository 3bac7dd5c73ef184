"""Device choice says why; a requested device that cannot run is refused; blocks fit memory and back off."""

from __future__ import annotations

import pytest

from napari_connectome.errors import InputError
from napari_connectome.inference.device import block_edge_for_memory, choose_device, with_backoff


def test_auto_on_a_machine_without_a_gpu_says_why():
    import torch

    if torch.cuda.is_available():  # the device tool's GPU machine: the other branch
        device = choose_device("auto")
        assert device.kind == "cuda" and "GPU" in device.reason and device.free_bytes > 0
        return
    device = choose_device("auto")
    assert device.name in ("cpu", "mps")
    assert "no GPU" in device.reason or "MPS" in device.reason
    if getattr(torch.version, "cuda", None) is None:
        assert "CPU-only build" in device.reason  # the commonest trap, named


def test_requesting_cuda_without_one_is_refused_with_the_reason(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="cuda cannot be used: ") as err:
        choose_device("cuda")
    assert "\n" not in str(err.value)


def test_a_hidden_gpu_is_named(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "CUDA_VISIBLE_DEVICES" in choose_device("auto").reason


def test_a_found_gpu_reports_its_free_memory(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=0: (40 * 2**30, 80 * 2**30))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Test GPU")
    device = choose_device("auto")
    assert device.name == "cuda:0" and device.free_bytes == 40 * 2**30
    assert "Test GPU" in device.reason and "40" in device.reason
    with pytest.raises(InputError, match="only 1 GPU"):
        choose_device("cuda:3")


def test_unknown_device_names_are_refused():
    with pytest.raises(InputError, match="not one of"):
        choose_device("tpu")


def test_the_block_fits_the_budget_and_the_grid():
    edge = block_edge_for_memory(2**30, bytes_per_voxel=100.0, context=(40, 40, 40), multiple=(4, 4, 4))
    need = 100.0
    for o in edge:
        need *= o + 40
    assert need <= 0.5 * 2**30 and all(o % 4 == 0 for o in edge)
    with pytest.raises(InputError, match="too little"):
        block_edge_for_memory(10, bytes_per_voxel=100.0, context=(40, 40, 40))


def test_out_of_memory_halves_the_block_until_it_runs():
    tried = []

    def run(block):
        tried.append(block)
        if block[0] > 32:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "ok"

    result, block = with_backoff(run, (128, 128, 128), multiple=(8, 8, 8))
    assert result == "ok" and block == (32, 32, 32) and tried[0] == (128, 128, 128)
    with pytest.raises(InputError, match="out of memory even with blocks"):
        with_backoff(lambda b: (_ for _ in ()).throw(MemoryError()), (32, 32, 32), smallest=16)
    with pytest.raises(ValueError):  # other errors are not memory: never retried
        with_backoff(lambda b: (_ for _ in ()).throw(ValueError("bad")), (64, 64, 64))
