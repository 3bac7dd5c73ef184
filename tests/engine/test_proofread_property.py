"""Property: any sequence of merges, splits, undos and redos replays from the log to the same state,
and undoing everything gives back the base segmentation."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest

# tests/engine is on sys.path (pytest prepends a test file's folder)
from edit_sequences import KW, OPS, partition, run_op
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_connectome.errors import InputError
from napari_connectome.project import open_project
from napari_connectome.proofread import Proofreader
from napari_connectome.proofread.demo import demo_volumes, make_demo_project


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("property")
    project = make_demo_project(root / "base", **KW)
    sv = demo_volumes(**KW)["supervoxels"]
    rng = np.random.default_rng(0)
    fg = np.argwhere(sv > 0)
    picks = fg[rng.choice(len(fg), 48, replace=False)]
    return {"root": root, "project": project, "sv": sv, "points": [tuple(p) for p in picks],
            "counter": itertools.count(), "n_sv": int(len(np.unique(sv[sv > 0])))}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, min_size=1, max_size=18))
def test_replay_and_undo_everything(base, ops):
    root = base["root"] / f"run{next(base['counter'])}"
    shutil.copytree(base["project"].root, root)
    project = open_project(root)
    pr = Proofreader.open(project)
    base_mapping = pr.mapping()
    base_volume = pr.supervoxel_volume().levels[0].array[:, :, :]
    applied = 0
    for op in ops:
        try:
            run_op(pr, op, base["points"])
            applied += 1
        except InputError as exc:  # refused edits (same segment, seeds on one voxel, …) are fine
            assert "\n" not in str(exc)
        pr.state.check()
    assert len(pr.history()) <= applied
    live = pr.mapping()
    live_volume = pr.supervoxel_volume().levels[0].array[:, :, :]
    history = pr.history()
    pr.close()
    replayed = Proofreader.open(project)
    for a, b in zip(replayed.mapping(), live, strict=True):
        np.testing.assert_array_equal(a, b)  # the same ids too, not just the same partition
    np.testing.assert_array_equal(replayed.supervoxel_volume().levels[0].array[:, :, :], live_volume)
    assert replayed.history() == history
    while True:
        try:
            replayed.undo()
        except InputError as exc:
            assert str(exc) == "undo: nothing to undo"
            break
    assert partition(replayed.mapping()) == partition(base_mapping)
    np.testing.assert_array_equal(replayed.supervoxel_volume().levels[0].array[:, :, :], base_volume)
    labels = replayed.labels_volume().levels[0].array[:, :, :]
    ids, segs = replayed.mapping()
    lut = dict(zip(ids.tolist(), segs.tolist(), strict=True))
    np.testing.assert_array_equal(labels, np.vectorize(lambda s: lut.get(int(s), 0))(base_volume))
    final = replayed.mapping()
    replayed.close()
    for a, b in zip(Proofreader.open(project).mapping(), final, strict=True):
        np.testing.assert_array_equal(a, b)
