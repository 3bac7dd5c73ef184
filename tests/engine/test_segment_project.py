"""``segment DIR``: block-wise inference and supervoxels into the project — seams, resume, workers, bad input."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import need_torch

torch = need_torch()

from napari_connectome_models.nets.unet import ISOTROPIC, UNet3D, UNetConfig, save_network  # noqa: E402

from napari_connectome.cli import main  # noqa: E402
from napari_connectome.errors import CancelledError, InputError  # noqa: E402
from napari_connectome.inference.blockwise import predict_to_zarr  # noqa: E402
from napari_connectome.inference.device import choose_device  # noqa: E402
from napari_connectome.inference.predict import predict_affinities  # noqa: E402
from napari_connectome.project import create_project, open_project  # noqa: E402
from napari_connectome.pyramid import write_ome_zarr  # noqa: E402
from napari_connectome.segment.blockwise import supervoxels_to_zarr  # noqa: E402
from napari_connectome.segment.heights import height_supervoxels  # noqa: E402
from napari_connectome.segment.pipeline import PostProcess  # noqa: E402
from napari_connectome.segment.project_run import segment_project  # noqa: E402
from napari_connectome.segment.supervoxels import boundary_from_affinities  # noqa: E402
from napari_connectome.synthetic import SyntheticSpec, synthetic_volumes  # noqa: E402
from napari_connectome.volume import from_array, open_volume  # noqa: E402

OFFSETS = ((-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, 0, -3))
SHAPE = (40, 72, 72)
PP = PostProcess("ascent", threshold=0.5, sigma=1.0, cap=8)


def tiny_model(seed: int = 0) -> UNet3D:
    torch.manual_seed(seed)
    return UNet3D(UNetConfig(downsample=ISOTROPIC, base_features=2, feature_factor=2, offsets=OFFSETS))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A synthetic volume at 10 nm, its OME-Zarr, and a tiny model saved as a weights file."""
    root = tmp_path_factory.mktemp("segment")
    spec = SyntheticSpec(shape=SHAPE, voxel_size=(10.0, 10.0, 10.0), seed=5)
    raw, gt = synthetic_volumes(spec)
    raw = np.asarray(raw.levels[0].read()) if hasattr(raw, "levels") else np.asarray(raw)
    write_ome_zarr(root / "raw.ome.zarr", raw, voxel_size=(10, 10, 10), kind="image", chunks=32)
    weights = save_network(tiny_model(), root / "tiny.pt", voxel_size_nm=[10, 10, 10],
                           heldout={"postprocess": PP.to_dict(), "threshold": 0.5},
                           segment={"postprocess": PP.to_dict(), "threshold": 0.5})
    return {"root": root, "raw": raw, "weights": weights}


def new_project(data, where: Path) -> Path:
    create_project(where, raw=data["root"] / "raw.ome.zarr")
    return where


def _without_sources(value):
    if isinstance(value, dict):
        return {k: _without_sources(v) for k, v in value.items() if k not in ("source", "metadata_sha256")}
    if isinstance(value, list):
        return [_without_sources(v) for v in value]
    return value


def tree_bytes(folder: Path) -> dict[str, str]:
    """Digest of every file under ``folder``: chunks and array metadata byte for byte; group
    attributes without the inputs' paths (two projects sit in two folders); no ledgers (times)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or ".blocks-done" in p.name or p.name.endswith(".lock"):
            continue
        data = p.read_bytes()
        if p.name == ".zattrs":
            data = json.dumps(_without_sources(json.loads(data)), sort_keys=True).encode()
        out[str(p.relative_to(folder))] = hashlib.sha256(data).hexdigest()
    return out


# ------------------------------------------------------------------ seams
def test_blockwise_affinities_equal_the_whole_volume_pass(data, tmp_path):
    model = tiny_model()
    vol = from_array(data["raw"], voxel_size=(10, 10, 10))
    report = predict_to_zarr(vol.levels[0], model, tmp_path / "a.zarr", device=choose_device("cpu"),
                             signature={}, block=(16, 24, 32), dtype="float32")
    assert report.blocks == 3 * 3 * 3 and report.ran == report.blocks
    blockwise = open_volume(tmp_path / "a.zarr").levels[0].read()
    whole = predict_affinities(data["raw"], model)
    assert blockwise.shape == whole.shape
    assert float(np.abs(blockwise - whole).max()) <= 1e-3


def _noisy_affinities(seed: int, shape, voxel_size) -> tuple[np.ndarray, np.ndarray]:
    from scipy.ndimage import gaussian_filter

    from napari_connectome.train.targets import affinities_from_labels

    _, gt = synthetic_volumes(SyntheticSpec(shape=shape, voxel_size=voxel_size, seed=seed))
    gt = np.asarray(gt.levels[0].read()) if hasattr(gt, "levels") else np.asarray(gt)
    rng = np.random.default_rng(seed)
    target = affinities_from_labels(gt, OFFSETS[:3])[0].astype(np.float32)
    affs = np.clip(np.stack([gaussian_filter(c, 1.0) for c in target]) + rng.normal(0, 0.08, target.shape), 0, 1)
    return np.rint(affs * 255).astype(np.uint8), gt


@pytest.mark.parametrize(("voxel_size", "block"), [((10.0, 10.0, 10.0), 32), ((40.0, 8.0, 8.0), 16)])
def test_blockwise_supervoxels_are_the_whole_volume_supervoxels(tmp_path, voxel_size, block):
    """Block-wise supervoxels are byte-identical to one whole-volume pass (not merely close)."""
    affs8, gt = _noisy_affinities(7, (48, 96, 96), voxel_size)
    vol = from_array(affs8, voxel_size=(1, *voxel_size), axes="czyx")
    report = supervoxels_to_zarr(vol.levels[0], OFFSETS[:3], tmp_path / "sv.zarr", tmp_path / "b.zarr",
                                 tmp_path / "work", signature={}, postprocess=PP, block=block)
    sv = report.supervoxels.read((slice(None),) * 3)
    boundary = boundary_from_affinities(affs8.astype(np.float32) / 255, OFFSETS[:3])
    assert np.array_equal(report.boundaries.read((slice(None),) * 3), np.rint(boundary * 255).astype(np.uint8))
    whole = height_supervoxels(boundary, PP.height_params(voxel_size))
    assert np.array_equal(sv, whole)
    assert sv.min() == 1 and sv.max() == report.n_supervoxels == len(np.unique(sv))
    assert report.n_crossing > 0  # basins cut by faces were joined
    # a region is labelled as if it were the whole volume
    region = ((block, 0, block), (3 * block, 2 * block, 96))
    report = supervoxels_to_zarr(vol.levels[0], OFFSETS[:3], tmp_path / "svr.zarr", tmp_path / "br.zarr",
                                 tmp_path / "workr", signature={}, postprocess=PP, block=block, region=region)
    sv = report.supervoxels.read((slice(None),) * 3)
    box = tuple(slice(a, min(b, n)) for a, b, n in zip(*region, sv.shape, strict=True))
    crop = height_supervoxels(np.rint(boundary * 255).astype(np.uint8)[box], PP.height_params(voxel_size))
    assert np.array_equal(sv[box], crop)
    outside = np.ones(sv.shape, bool)
    outside[box] = False
    assert not sv[outside].any()


def test_ascent_supervoxels_agglomerate_as_well_as_the_flood(tmp_path):
    """The exact-in-blocks ascent loses nothing against lsd's distance-transform flood (same affinities)."""
    from napari_connectome.segment.pipeline import merge_tree, sweep_thresholds
    from napari_connectome.segment.supervoxels import watershed_supervoxels

    affs8, gt = _noisy_affinities(7, (48, 96, 96), (10.0, 10.0, 10.0))
    boundary = boundary_from_affinities(affs8.astype(np.float32) / 255, OFFSETS[:3])
    ascent = height_supervoxels(boundary, PP.height_params())
    flood = watershed_supervoxels(boundary, threshold=0.5, sigma=1.0, min_distance=2)
    thresholds = np.linspace(0.1, 0.9, 17)
    best = {}
    for name, sv in (("ascent", ascent), ("flood", flood)):
        curve = sweep_thresholds(merge_tree(sv, boundary), sv, gt, thresholds)
        best[name] = float((curve[:, 0] + curve[:, 1]).min())
    assert best["ascent"] <= best["flood"] + 0.05, best


def test_segment_runs_skips_and_records(data, tmp_path):
    proj = new_project(data, tmp_path / "p")
    said = []
    report = segment_project(open_project(proj), model=str(data["weights"]), device="cpu", block=16,
                             supervoxel_block=32, notify=said.append)
    assert report.stages == {"affinities": "ran", "supervoxels": "ran", "graph": "ran"}
    project = open_project(proj)
    assert {"supervoxels", "boundaries"} <= set(project.inputs)
    prov = project.manifest["provenance"]
    assert prov["affinities"]["model"]["sha256"] == hashlib.sha256(Path(data["weights"]).read_bytes()).hexdigest()
    assert prov["affinities"]["device"]["kind"] == "cpu" and "CPU" in prov["affinities"]["device"]["reason"]
    assert prov["affinities"]["tiling"]["block_voxels"] == [16, 16, 16]
    before = tree_bytes(proj / "segmentation")
    again = segment_project(open_project(proj), model=str(data["weights"]), device="cpu", block=16,
                            supervoxel_block=32, notify=said.append)
    assert again.stages == {"affinities": "skipped", "supervoxels": "skipped", "graph": "skipped"}
    assert tree_bytes(proj / "segmentation") == before
    # another agglomeration threshold redoes nothing upstream
    third = segment_project(open_project(proj), model=str(data["weights"]), stages=["graph"], threshold=0.3)
    assert third.stages["graph"] == "skipped" and third.figures["threshold"] == 0.3


def test_a_region_segments_only_its_blocks(data, tmp_path):
    from napari_connectome.volume.roi import parse_box

    proj = new_project(data, tmp_path / "p")
    # voxels 0..20 in z, 0..30 in y and x (faces at -5 nm): grown to blocks of 16 and 32
    region = parse_box([-5, -5, -5, 195, 295, 295])
    report = segment_project(open_project(proj), model=str(data["weights"]), device="cpu", block=16,
                             supervoxel_block=32, region_nm=region)
    assert report.stages["supervoxels"] == "ran"
    sv = open_volume(proj / "segmentation" / "supervoxels.ome.zarr").levels[0].read()
    affs = open_volume(proj / "segmentation" / "affinities.ome.zarr").levels[0].read()
    assert sv[:32, :32, :32].min() > 0 and sv[:, 32:, :].max() == 0 and sv[:, :, 32:].max() == 0
    assert affs[:, :32, :32, :32].max() > 0 and affs[:, :, 32:, :].max() == 0
    with pytest.raises(InputError, match="does not overlap"):
        segment_project(open_project(proj), model=str(data["weights"]), region_nm=parse_box([1e6, 0, 0, 2e6, 1, 1]))


def test_changed_parameters_move_the_old_output_aside(data, tmp_path):
    proj = new_project(data, tmp_path / "p")
    segment_project(open_project(proj), model=str(data["weights"]), device="cpu", block=16, stages=["affinities"])
    said = []
    report = segment_project(open_project(proj), model=str(data["weights"]), device="cpu", block=24,
                             stages=["affinities"], notify=said.append)
    assert report.stages["affinities"] == "ran"
    asides = list((proj / "segmentation").glob("affinities.ome.zarr.aside-*"))
    assert len(asides) == 1 and any("moved aside" in s for s in said)


def test_cancel_then_resume_gives_the_uninterrupted_bytes(data, tmp_path):
    reference = new_project(data, tmp_path / "ref")
    segment_project(open_project(reference), model=str(data["weights"]), device="cpu", block=16,
                    supervoxel_block=32)

    class StopAfter:
        def __init__(self, n):
            self.n = n

        def start(self, total, description):
            pass

        def advance(self, steps=1):
            self.n -= steps
            if self.n <= 0:
                raise CancelledError("stop")

        def close(self):
            pass

    proj = new_project(data, tmp_path / "p")
    with pytest.raises(CancelledError):
        segment_project(open_project(proj), model=str(data["weights"]), device="cpu", block=16,
                        supervoxel_block=32, progress=StopAfter(7))
    assert "supervoxels" not in open_project(proj).inputs
    resumed = segment_project(open_project(proj), model=str(data["weights"]), device="cpu", block=16,
                              supervoxel_block=32)
    assert resumed.stages["affinities"] == "resumed"
    assert tree_bytes(proj / "segmentation") == tree_bytes(reference / "segmentation")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_writers_temporary_files_are_removed_on_resume(data, tmp_path):
    """SIGKILL inside an atomic write leaves ``.NAME.<pid>-<random>.partial`` (found by the SIGKILL test in CI)."""
    kw = {"model": str(data["weights"]), "device": "cpu", "block": 16, "supervoxel_block": 32}
    proj = new_project(data, tmp_path / "p")
    segment_project(open_project(proj), **kw)
    seg = proj / "segmentation"
    want = tree_bytes(seg)
    dead = _dead_pid()
    planted = [seg / f".region_graph.npz.{dead}-0123abcd.tmp"] + [
        seg / group / f".zattrs.{dead}-bdfbb25d.partial"
        for group in ("affinities.ome.zarr", "supervoxels.ome.zarr", "boundaries.ome.zarr")]
    live = seg / "boundaries.ome.zarr" / f".zgroup.{os.getpid()}-00000000.partial"  # a writer still running
    for p in [*planted, live]:
        p.write_text("{")
    again = segment_project(open_project(proj), **kw)
    assert again.stages == {"affinities": "skipped", "supervoxels": "skipped", "graph": "skipped"}
    assert not any(p.exists() for p in planted)
    assert live.exists()
    live.unlink()
    assert tree_bytes(seg) == want


@pytest.mark.parametrize("lost", [("supervoxels", "boundaries"), ("supervoxels",), ("affinities",)])
def test_a_run_killed_before_the_project_recorded_its_finished_stage_is_recorded_on_resume(data, tmp_path, lost):
    """A kill after a stage's volumes were finished but before the manifest said so (found by the SIGKILL test)."""
    kw = {"model": str(data["weights"]), "device": "cpu", "block": 16, "supervoxel_block": 32}
    proj = new_project(data, tmp_path / "p")
    segment_project(open_project(proj), **kw)
    want = tree_bytes(proj / "segmentation")
    project = open_project(proj)
    for role in lost:
        if role != "affinities":
            del project.manifest["inputs"][role]
    project.manifest["provenance"].pop("supervoxels" if "supervoxels" in lost else "affinities")
    project.save()
    report = segment_project(open_project(proj), **kw)
    stage = "supervoxels" if "supervoxels" in lost else "affinities"
    assert report.stages[stage] != "skipped" and report.stages["graph"] == "skipped"
    project = open_project(proj)
    assert {"supervoxels", "boundaries"} <= set(project.inputs) and stage in project.manifest["provenance"]
    assert tree_bytes(proj / "segmentation") == want
    again = segment_project(open_project(proj), **kw)
    assert again.stages == {"affinities": "skipped", "supervoxels": "skipped", "graph": "skipped"}


def test_one_and_two_dask_workers_write_the_same_bytes(data, tmp_path):
    outs = []
    for workers in (1, 2):
        proj = new_project(data, tmp_path / f"w{workers}")
        segment_project(open_project(proj), model=str(data["weights"]), device="cpu", block=16, threads=1,
                        supervoxel_block=32, stages=["affinities", "supervoxels"],
                        scheduler="processes", workers=workers)
        outs.append(tree_bytes(proj / "segmentation"))
    assert outs[0] == outs[1] and len(outs[0]) > 10


# ------------------------------------------------------------------ kills
def _interrupted_in(proj: Path) -> str:
    """Which stage a killed run left unfinished (read from the outputs on disk)."""
    from napari_connectome.pyramid.resumable import output_state

    seg = proj / "segmentation"
    if not (seg / "affinities.ome.zarr").exists():
        return "before the first block"
    if not output_state(seg / "affinities.ome.zarr")[1]:
        return "affinities"
    if (seg / ".work-supervoxels").exists() or not (seg / "supervoxels.ome.zarr").exists():
        return "supervoxels"
    return "graph or later"


def test_ten_sigkills_resume_to_the_same_bytes(data, tmp_path):
    """SIGKILL at random moments; every resumed run ends with the uninterrupted run's bytes."""
    args = ["--model", str(data["weights"]), "--device", "cpu", "--block", "8", "--quiet", "--threads", "1",
            "--supervoxel-block", "32"]
    reference = new_project(data, tmp_path / "ref")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    t0 = time.monotonic()
    assert subprocess.run([sys.executable, "-m", "napari_connectome", "segment", str(reference), *args],
                          env=env, capture_output=True).returncode == 0
    took = time.monotonic() - t0  # imports, then the stages: the kills spread over the whole run
    want = tree_bytes(reference / "segmentation")
    rng = random.Random(11)
    where = []
    for k in range(10):
        proj = new_project(data, tmp_path / f"k{k}")
        cmd = [sys.executable, "-m", "napari_connectome", "segment", str(proj), *args]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.35 * took, 0.95 * took))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        where.append(_interrupted_in(proj))
        assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
        assert tree_bytes(proj / "segmentation") == want, f"kill {k} in {where[-1]}"
    # the kills landed inside the work, not only before or after it
    assert sum(w in ("affinities", "supervoxels") for w in where) >= 5, where


# ------------------------------------------------------------------ bad input
def test_a_model_at_another_voxel_size_is_refused(data, tmp_path):
    create_project(tmp_path / "p", raw=data["root"] / "raw.ome.zarr", voxel_size=(40, 8, 8))
    with pytest.raises(InputError, match="trained at"):
        segment_project(open_project(tmp_path / "p"), model=str(data["weights"]), device="cpu")


def test_2d_data_is_refused(data, tmp_path):
    write_ome_zarr(tmp_path / "flat.ome.zarr", data["raw"][0], voxel_size=(10, 10), kind="image")
    create_project(tmp_path / "p", raw=tmp_path / "flat.ome.zarr")
    with pytest.raises(InputError, match="2D"):
        segment_project(open_project(tmp_path / "p"), model=str(data["weights"]), device="cpu")


def test_weights_with_a_wrong_sha256_are_refused(data, tmp_path, monkeypatch):
    import dataclasses

    from napari_connectome_models import registry

    real = registry.load_registry

    def tampered(path=None):
        entries = real(path)
        e = entries["affinities-fib-10nm"]
        entries[e.name] = dataclasses.replace(e, sha256="0" * 64)
        return entries

    monkeypatch.setattr(registry, "load_registry", tampered)
    proj = new_project(data, tmp_path / "p")
    with pytest.raises(InputError, match="sha256"):
        segment_project(open_project(proj), device="cpu")
    assert not (proj / "segmentation").exists()


def test_an_unwritable_output_is_one_line_and_nothing_is_lost(data, tmp_path, capsys):
    proj = new_project(data, tmp_path / "p")
    (proj / "segmentation").write_text("a file where the outputs go")
    code = main(["segment", str(proj), "--model", str(data["weights"]), "--device", "cpu", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is not a folder" in err[0]
    assert (proj / "segmentation").read_text() == "a file where the outputs go"


def test_supervoxels_from_elsewhere_are_not_replaced(data, tmp_path):
    seg = np.ones(SHAPE, np.uint32)
    write_ome_zarr(tmp_path / "sv.ome.zarr", seg, voxel_size=(10, 10, 10), kind="labels")
    create_project(tmp_path / "p", raw=data["root"] / "raw.ome.zarr", supervoxels=tmp_path / "sv.ome.zarr")
    with pytest.raises(InputError, match="already has supervoxels"):
        segment_project(open_project(tmp_path / "p"), model=str(data["weights"]), device="cpu")


def test_nonsense_options_are_refused(data, tmp_path):
    proj = new_project(data, tmp_path / "p")
    with pytest.raises(InputError, match="--stage"):
        segment_project(open_project(proj), model=str(data["weights"]), stages=["everything"])
    with pytest.raises(InputError, match="--device"):
        segment_project(open_project(proj), model=str(data["weights"]), device="tpu")
    with pytest.raises(InputError, match="fp16"):
        segment_project(open_project(proj), model=str(data["weights"]), device="cpu", precision="fp16")
    assert main(["segment", str(proj), "--workers", "0"]) == 2


def test_supervoxels_with_edits_are_kept_but_an_empty_log_is_no_edit(data, tmp_path):
    from napari_connectome.proofread import Proofreader

    proj = new_project(data, tmp_path / "p")
    kw = {"model": str(data["weights"]), "device": "cpu", "block": 16, "supervoxel_block": 32}
    segment_project(open_project(proj), **kw)
    Proofreader.open(open_project(proj)).close()  # a panel opened: the log exists, with no edit
    assert segment_project(open_project(proj), **{**kw, "supervoxel_block": 16}).stages["supervoxels"] == "ran"
    pr = Proofreader.open(open_project(proj))
    try:
        a, b = (int(v) for v in pr.rag.edges[0])  # two supervoxels that touch
        pr.merge_supervoxels(a, b)
    finally:
        pr.close()
    # the same command again after proofreading: up to date, nothing to refuse
    again = segment_project(open_project(proj), **{**kw, "supervoxel_block": 16})
    assert again.stages == {"affinities": "skipped", "supervoxels": "skipped", "graph": "skipped"}
    before = tree_bytes(proj / "segmentation")
    with pytest.raises(InputError, match="proofreading edits"):
        segment_project(open_project(proj), **{**kw, "supervoxel_block": 32})
    with pytest.raises(InputError, match="proofreading edits"):
        segment_project(open_project(proj), **{**kw, "block": 24})
    assert tree_bytes(proj / "segmentation") == before  # nothing moved aside or rewritten
