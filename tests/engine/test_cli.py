"""The command line: info, project create, convert, synthetic; errors are one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from napari_connectome.cli import main
from napari_connectome.samples import gala_fib_path


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "napari_connectome", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_info_json_on_the_bundled_sample():
    out = run_cli("info", f"{gala_fib_path()}/raw", "--json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["shape"] == [50, 100, 200]
    assert info["voxel_size_nm"] == [10.0, 10.0, 10.0]
    assert info["dtype"] == "uint8"
    assert info["kind"] == "image"
    assert len(info["levels"][0]["chunks"]) == 3


def test_info_shared_data_at_the_given_scale(shared_data, capsys):
    path = shared_data / "gala-fib" / "test-gt.lzf.h5"
    assert main(["info", str(path), "--json", "--voxel-size", "10", "10", "10"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["voxel_size_nm"] == [10.0, 10.0, 10.0] and info["kind"] == "labels"
    assert main(["info", str(path)]) == 0
    assert "assumed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, needle",
    [
        (["info", "/no/such/volume.zarr"], "no such file"),
        (["info", "{sample}/raw", "--voxel-size", "0", "10", "10"], "voxel size"),
        (["info", "{sample}/boundaries", "--kind", "labels"], "cannot be labels"),
        (["project", "create", "{tmp}/p", "--raw", "/no/such.h5"], "no such file"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, needle, tmp_path):
    args = [a.format(sample=gala_fib_path(), tmp=tmp_path) for a in args]
    out = run_cli(*args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-connectome: error:"), out.stderr
    assert needle in lines[0]
    assert "Traceback" not in out.stderr


def test_project_create_and_info(tmp_path, capsys):
    sample = gala_fib_path()
    code = main(
        ["project", "create", str(tmp_path / "p"), "--raw", f"{sample}/raw",
         "--supervoxels", f"{sample}/supervoxels", "--boundaries", f"{sample}/boundaries"]
    )
    assert code == 0
    assert "created project" in capsys.readouterr().out
    assert main(["project", "info", str(tmp_path / "p"), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert set(manifest["inputs"]) == {"raw", "supervoxels", "boundaries"}
    # A second create never touches the first.
    assert main(["project", "create", str(tmp_path / "p"), "--raw", f"{sample}/raw"]) == 2


def test_convert_writes_a_pyramid_that_opens(tmp_path):
    from napari_connectome.volume import open_volume

    dst = tmp_path / "sv.ome.zarr"
    out = run_cli("convert", f"{gala_fib_path()}/supervoxels", dst, "--chunks", "32", "--quiet")
    assert out.returncode == 0, out.stderr
    volume = open_volume(dst)
    assert volume.kind == "labels" and len(volume.levels) >= 2
    src = open_volume(f"{gala_fib_path()}/supervoxels").levels[0].read()
    np.testing.assert_array_equal(volume.levels[0].read(), src)
    assert set(np.unique(volume.levels[-1].read())) <= set(np.unique(src))
    again = run_cli("convert", f"{gala_fib_path()}/supervoxels", dst, "--quiet")
    assert again.returncode == 2 and "exists" in again.stderr


def test_synthetic_command_writes_raw_and_groundtruth(tmp_path):
    from napari_connectome.volume import open_volume

    out = run_cli("synthetic", tmp_path / "syn", "--shape", "32", "64", "64", "--seed", "3", "--quiet")
    assert out.returncode == 0, out.stderr
    raw = open_volume(tmp_path / "syn" / "raw.ome.zarr")
    gt = open_volume(tmp_path / "syn" / "groundtruth.ome.zarr")
    assert raw.kind == "image" and gt.kind == "labels"
    assert raw.shape == gt.shape == (32, 64, 64)
    assert len(np.unique(gt.levels[0].read())) > 2


def test_agglomerate_evaluate_and_log_export(tmp_path, capsys):
    sample = gala_fib_path()
    root = tmp_path / "p"
    assert main(["project", "create", str(root), "--raw", f"{sample}/raw",
                 "--supervoxels", f"{sample}/supervoxels", "--boundaries", f"{sample}/boundaries"]) == 0
    assert main(["agglomerate", str(root), "--threshold", "0.5", "--quiet"]) == 0
    assert "214 supervoxels" in capsys.readouterr().out
    # The project's mapping merges supervoxels: less split than the raw supervoxels, same GT.
    assert main(["evaluate", str(root), f"{sample}/groundtruth", "--json"]) == 0
    project_scores = json.loads(capsys.readouterr().out)
    assert main(["evaluate", f"{sample}/supervoxels", f"{sample}/groundtruth", "--json"]) == 0
    ws_scores = json.loads(capsys.readouterr().out)
    assert abs(ws_scores["vi_split"] - 1.648) < 5e-4 and abs(ws_scores["vi_merge"] - 0.185) < 5e-4
    assert abs(ws_scores["arand"] - 0.366) < 5e-4
    assert project_scores["vi_split"] < ws_scores["vi_split"] - 0.2
    # An edit through the engine shows up in the exported CAVE-style change log.
    from napari_connectome.project import open_project
    from napari_connectome.proofread import Proofreader

    pr = Proofreader.open(open_project(root), user="ana")
    try:
        sv, seg = pr.mapping()
        other = int(np.flatnonzero(seg != seg[0])[0])
        pr.merge_supervoxels(int(sv[0]), int(sv[other]))
    finally:
        pr.close()
    assert main(["log", "export", str(root), str(tmp_path / "log.json")]) == 0
    rows = json.loads((tmp_path / "log.json").read_text())
    rows = rows["operations"] if isinstance(rows, dict) else rows
    assert len(rows) == 1
    assert {"operation_id", "timestamp", "user_id", "is_merge", "before_root_ids", "after_root_ids"} <= set(rows[0])
    assert rows[0]["user_id"] == "ana" and rows[0]["is_merge"] in (True, 1, "True", "true")
    assert main(["agglomerate", str(root), "--threshold", "3"]) == 2


def test_simulate_prints_the_curve_json_and_refuses_mismatched_gt(tmp_path, capsys, shared_data):
    sample = gala_fib_path()
    root = tmp_path / "p"
    assert main(["project", "create", str(root), "--raw", f"{sample}/raw",
                 "--supervoxels", f"{sample}/supervoxels", "--boundaries", f"{sample}/boundaries"]) == 0
    assert main(["agglomerate", str(root), "--threshold", "0.7", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["simulate", str(root), "--gt", f"{sample}/groundtruth", "--strategy", "size",
                 "--decisions", "3", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["strategy"] == "size"
    assert [p["decision"] for p in result["curve"]] == [0, 1, 2, 3]
    assert {"vi_split", "vi_merge", "minutes"} <= set(result["curve"][0])
    # The snemi labels are 32 × 160 × 160, not the project's 50 × 100 × 200.
    other = shared_data / "gala-snemi-mini" / "train-labels.tif"
    assert main(["simulate", str(root), "--gt", str(other), "--decisions", "2"]) == 2
    assert "shape" in capsys.readouterr().err
