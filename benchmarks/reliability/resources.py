"""Resource abuse: metadata that claims far more than any machine holds.

A volume whose metadata claims 10^18 voxels (its chunks all missing), one
whose chunks claim 10^18 voxels each, an HDF5 dataset of 10^18 voxels that
was never written, and a project built on such volumes. Every command must
answer within the time limit (45 s; 20 s in the quick sample) and the memory limit (3 GiB resident):
a refusal with one line (a memory or disk guard), or a quick correct answer
(``info`` describes the claim; ``check`` reports the missing chunks). A run
killed by either watch counts as ``hang``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from benchmarks.reliability.core import (
    Case,
    Run,
    cli,
    cli_has,
    crash_case,
    judge,
    make_case,
    missing_case,
    run_process,
)

CATEGORY = "resource abuse"
HUGE = 10**6  # per axis: 10^18 voxels


def _zarr_claim(path: Path, *, shape, chunks, dtype="|u1") -> Path:
    """A zarr v2 array of ``shape`` with no chunk written."""
    path.mkdir(parents=True)
    (path / ".zarray").write_text(json.dumps({
        "zarr_format": 2, "shape": list(shape), "chunks": list(chunks), "dtype": dtype, "compressor": None,
        "fill_value": 0, "order": "C", "filters": None,
    }))
    (path / ".zattrs").write_text(json.dumps({"resolution": [8, 8, 8]}))
    return path


def _h5_claim(path: Path) -> str:
    import h5py

    with h5py.File(path, "w") as f:
        f.create_dataset("huge", shape=(HUGE, HUGE, HUGE), dtype="uint8", chunks=(64, 64, 64))
    return f"{path}/huge"


def specs(work: Path) -> list[tuple[str, Callable[[Path], list[str]], tuple, str]]:
    """(name, argv maker, cli path, expectation: ``refuse`` or ``any``)."""

    def huge(d):
        return _zarr_claim(d / "huge.zarr", shape=(HUGE,) * 3, chunks=(64, 64, 64))

    def fat_chunks(d):
        return _zarr_claim(d / "fat.zarr", shape=(100, 100, 100), chunks=(HUGE,) * 3)

    def huge_project(d):
        sv = _zarr_claim(d / "sv.zarr", shape=(HUGE,) * 3, chunks=(64, 64, 64), dtype="<u4")
        raw = huge(d)
        run = run_process(cli("project", "create", d / "P", "--raw", raw, "--supervoxels", sv), timeout=60)
        return d / "P", run

    def agglomerate_huge(d):
        p, run = huge_project(d)
        if run.rc != 0:
            return None  # refused at creation: that is a fine answer too (judged below)
        return cli("agglomerate", p, "--quiet")

    return [
        ("info of a volume claiming 10^18 voxels", lambda d: cli("info", huge(d)), ("info",), "any"),
        ("check of a volume claiming 10^18 voxels", lambda d: cli("check", huge(d), "--quiet"), ("check",), "refuse"),
        ("convert of a volume claiming 10^18 voxels", lambda d: cli("convert", huge(d), d / "out.ome.zarr", "--quiet"),
         ("convert",), "refuse"),
        ("convert of a volume whose chunks claim 10^18 voxels",
         lambda d: cli("convert", fat_chunks(d), d / "out.ome.zarr", "--quiet"), ("convert",), "any"),
        ("info of a volume whose chunks claim 10^18 voxels", lambda d: cli("info", fat_chunks(d)), ("info",), "any"),
        ("convert of an unwritten HDF5 dataset of 10^18 voxels",
         lambda d: cli("convert", _h5_claim(d / "huge.h5"), d / "out.ome.zarr", "--quiet"), ("convert",), "refuse"),
        ("project create on volumes claiming 10^18 voxels",
         lambda d: cli("project", "create", d / "P2", "--raw", huge(d), "--supervoxels",
                       _zarr_claim(d / "sv2.zarr", shape=(HUGE,) * 3, chunks=(64, 64, 64), dtype="<u4")),
         ("project", "create"), "any"),
        ("agglomerate a project on volumes claiming 10^18 voxels", agglomerate_huge, ("agglomerate",), "refuse"),
    ]


def resource_cases(work: Path, *, quick: bool = False) -> list[Callable[[], Case]]:
    out = []
    chosen = specs(work)
    if quick:
        chosen = [s for s in chosen if s[0] in ("convert of a volume claiming 10^18 voxels",
                                                "check of a volume claiming 10^18 voxels")]
    for k, (name, argv_of, path, expect) in enumerate(chosen):
        def one(name=name, argv_of=argv_of, path=path, expect=expect, k=k) -> Case:
            if not cli_has(path):
                return missing_case(CATEGORY, name, "napari-connectome " + " ".join(path))
            d = work / f"resource-{k:02d}"
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            try:
                argv = argv_of(d)
                if argv is None:
                    return Case(category=CATEGORY, name=name, command="", classification="clean",
                                reason="refused already when the project was created")
                run = run_process(argv, timeout=20 if quick else 45)

                def success(run: Run) -> list[tuple[str, str]]:
                    if expect == "refuse":
                        return [("silent wrong", "exit 0: it claims to have done work of 10^18 voxels")]
                    return []

                verdict = judge(run, expect="any", on_success=success, allow_findings=name.startswith("check"))
                if run.peak_rss:
                    verdict.notes.append(f"peak resident memory {run.peak_rss / 2**20:.0f} MiB")
                return make_case(CATEGORY, name, run, verdict, peak_rss_mib=round(run.peak_rss / 2**20))
            except Exception as exc:  # noqa: BLE001
                return crash_case(CATEGORY, name, exc)
            finally:
                shutil.rmtree(d, ignore_errors=True)
        out.append(one)
    return out
