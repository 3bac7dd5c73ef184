"""``napari-connectome train``: a fine-tune from a project box, resume, export, Ctrl-C, one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from conftest import need_torch

from napari_connectome.cli import main
from napari_connectome.proofread.demo import make_demo_project

need_torch()

BOX = ["--box", "0", "0", "0", "120", "240", "240"]
TINY = ["--patch", "4", "4", "4", "--threads", "1", "--checkpoint-every", "2"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-train")
    project = make_demo_project(root / "demo", seed=3)
    data = root / "demo" / "data.h5"
    with h5py.File(data, "a") as f:
        f.create_dataset("floats", data=f["groundtruth"][...].astype(np.float32))
        f.create_dataset("short", data=f["groundtruth"][:4])
        f["short"].attrs["resolution"] = [20.0, 10.0, 10.0]
    return project.root, data


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "napari_connectome", *map(str, args)], capture_output=True,
                          text=True, timeout=600, **kwargs)


def test_fine_tune_a_project_box_resume_and_export(demo, tmp_path, capsys):
    project, _ = demo
    run, out = tmp_path / "run", tmp_path / "fib-proofread.pt"
    args = ["train", str(run), "--project", str(project), *BOX, "--from", "affinities-fib-10nm", *TINY,
            "--quiet", "--export", str(out)]
    assert main([*args, "--iterations", "2", "--evaluate"]) == 0
    text = capsys.readouterr().out
    assert "before: loss" in text and "after:  loss" in text
    assert f"{run}: iteration 2/2, checkpoint checkpoint-0000002.pt" in text and str(out) in text
    assert out.is_file() and (tmp_path / "fib-proofread.json").is_file()
    # the same command with more iterations continues the run (and exports again over its own file)
    assert main([*args, "--iterations", "3"]) == 0
    assert "iteration 3/3" in capsys.readouterr().out
    assert sorted(p.name for p in run.glob("checkpoint-*.pt")) == [
        "checkpoint-0000002.pt", "checkpoint-0000003.pt"]
    # another seed in the same folder: refused in one line, nothing written
    assert main([*args, "--iterations", "3", "--seed", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds another run's config (it differs in seed)" in err[0]


@pytest.mark.parametrize("args, needle", [
    (["--labels", "{data}/floats"], "float32 data cannot be labels: segment ids must be integers"),
    (["--labels", "{data}/short"], "labels have shape (4, 24, 24) but the raw"),
    (["--labels", "{data}/groundtruth", "--box", "0", "0", "0", "120", "240", "250"], "reaches outside the volume"),
    (["--labels", "{data}/groundtruth", "--box", "0", "0", "0", "120", "15", "15", "--zero", "unknown"],
     "has no labelled voxels inside the box"),
    (["--labels", "{data}/groundtruth", "--iterations", "0"], "--iterations: must be a whole number ≥ 1, got 0"),
    (["--labels", "{data}/groundtruth", "--from", "nope"], "nope: is neither a registered model"),
    (["--project", "{project}", "--sparse", *BOX], "--sparse: applies to --labels"),
    (["--project", "{project}"], "training from a project needs a box"),
    (["--labels", "{data}/groundtruth", "--export", "{dir}/precious.pt"],
     "precious.pt: already exists and is not an export of this run"),
    (["--labels", "{data}/groundtruth", "--export", "{dir}/weights.h5"], "weights files end in .pt"),
])
def test_bad_input_is_one_line_exit_2(demo, tmp_path, args, needle):
    project, data = demo
    (data.parent / "precious.pt").write_bytes(b"a colleague's weights")
    args = [a.format(project=project, data=data, dir=data.parent) for a in args]
    out = run_cli("train", tmp_path / "run", "--raw", f"{data}/raw", *args, *TINY, "--quiet")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-connectome: error:"), out.stderr
    assert needle in lines[0]
    assert not (tmp_path / "run").exists()
    assert (data.parent / "precious.pt").read_bytes() == b"a colleague's weights"


def test_ctrl_c_stops_with_a_checkpoint_that_the_same_command_continues(demo, tmp_path):
    project, data = demo
    run = tmp_path / "run"
    args = ["train", run, "--raw", f"{data}/raw", "--labels", f"{data}/groundtruth", *TINY, "--iterations", "500"]
    proc = subprocess.Popen([sys.executable, "-m", "napari_connectome", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 300
        while not (run / "checkpoint-0000002.pt").exists() and time.monotonic() < end and proc.poll() is None:
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert "cancelled at iteration" in last and "the same command continues the run" in last
    stopped = int(last.split("cancelled at iteration ")[1].split("/")[0])
    assert (run / f"checkpoint-{stopped:07d}.pt").is_file()
    again = run_cli(*[a if a != "500" else str(stopped + 1) for a in args])
    assert again.returncode == 0, again.stderr
    assert f"resumed from checkpoint-{stopped:07d}.pt at iteration {stopped}" in again.stderr
    assert f"iteration {stopped + 1}/{stopped + 1}" in again.stdout
