"""The effort report: figures checked against a small hand-built history, and its CLI."""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest

from napari_connectome.cli import main
from napari_connectome.effort import EffortLog, effort_report, write_report_csv
from napari_connectome.effort.report import report_text
from napari_connectome.errors import InputError
from napari_connectome.proofread import Proofreader
from napari_connectome.proofread.demo import demo_volumes, make_demo_project

VOXEL_NM3 = 20.0 * 10.0 * 10.0


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A demo project (every supervoxel its own segment) with five edits and six effort rows.

    Edits: 1 merge sv 1+2 (manual) → A; 2 merge 3+4 (manual); 3 undo of 2 → C, D;
    4 merge 5+6 (task t-1) → E; 5 split E between 5 | 6 (task t-3) → F, G.
    """
    project = make_demo_project(tmp_path_factory.mktemp("report") / "demo", threshold=None)
    pr = Proofreader.open(project, user="ana")
    a = pr.merge_supervoxels(1, 2)
    b = pr.merge_supervoxels(3, 4)
    undo = pr.undo(b.operation_id)
    e = pr.merge_supervoxels(5, 6, task_id="t-1")
    split = pr.split(pr.preview_split_supervoxels([5], [6]), task_id="t-3")
    pr.close()
    seg = {"A": a.after_segments[0], "E": e.after_segments[0]}
    seg["C"], seg["D"] = undo.after_segments
    seg["F"], seg["G"] = split.after_segments
    with EffortLog.open(project, user="ana", session="s1") as log:
        log.record(task_id=None, task_type="manual", answer="merge", shown_at=0, answered_at=30,
                   active_s=30, idle_s=0, edit_id=a.operation_id, segments=[seg["A"]])
        log.record(task_id="t-1", task_type="merge", answer="yes", shown_at=30, answered_at=150,
                   active_s=20, idle_s=100, edit_id=e.operation_id, segments=[5, 6])
        log.record(task_id="t-2", task_type="merge", answer="no", shown_at=150, answered_at=160,
                   active_s=10, idle_s=0, segments=[7, 8])
    with EffortLog.open(project, user="bo", session="s2") as log:
        log.record(task_id="t-3", task_type="split", answer="yes", shown_at=200, answered_at=240,
                   active_s=40, idle_s=0, edit_id=split.operation_id, segments=[seg["E"]])
        log.record(task_id="t-4", task_type="merge", answer="skip", shown_at=240, answered_at=246,
                   active_s=6, idle_s=0, segments=[9, 10])
        log.record(task_id=None, task_type="manual", answer="undo", shown_at=246, answered_at=250,
                   active_s=4, idle_s=0, edit_id=undo.operation_id, segments=[seg["C"], seg["D"]])
    return project, seg


def test_report_figures_match_the_hand_computed_ones(history):
    project, seg = history
    r = effort_report(project)
    assert r["minutes_active"] == pytest.approx(110 / 60)
    assert r["minutes_idle"] == pytest.approx(100 / 60)
    assert r["tasks"] == {"total": 4, "yes": 2, "no": 1, "skip": 1, "flag": 0, "undo": 0, "stale": 0}
    assert r["manual"] == {"total": 2, "merge": 1, "split": 0, "split_supervoxel": 0, "undo": 1, "redo": 0}
    assert r["edits"] == {"merge": 2, "split": 1, "undo": 1, "redo": 0}   # merge 2 was undone
    # Neurons now: A, F, G (edits; tasks followed through the lineage), 7, 8, 9, 10, C, D.
    neurons = sorted([seg["A"], seg["F"], seg["G"], 7, 8, 9, 10, seg["C"], seg["D"]])
    assert [n["segment"] for n in r["per_neuron"]] == neurons and r["neurons"] == 9
    by = {n["segment"]: n for n in r["per_neuron"]}
    expect_minutes = {seg["A"]: 30 / 60, seg["F"]: (20 / 2 + 40 / 2) / 60, seg["G"]: (20 / 2 + 40 / 2) / 60,
                      7: 5 / 60, 8: 5 / 60, 9: 3 / 60, 10: 3 / 60, seg["C"]: 2 / 60, seg["D"]: 2 / 60}
    for s, minutes in expect_minutes.items():
        assert by[s]["minutes"] == pytest.approx(minutes), s
    assert (by[seg["A"]]["merges"], by[seg["A"]]["splits"]) == (1.0, 0.0)
    assert (by[seg["F"]]["merges"], by[seg["F"]]["splits"]) == (0.5, 0.5)
    assert (by[seg["F"]]["tasks"], by[7]["tasks"], by[seg["A"]]["tasks"]) == (2, 1, 0)
    assert r["minutes_unattributed"] == 0.0
    assert r["minutes_per_neuron"] == pytest.approx(110 / 60 / 9)
    epn = r["edits_per_neuron"]
    assert epn["mean"] == pytest.approx(3 / 9)
    assert epn["p50"] == 0.0 and epn["p95"] == pytest.approx(1.0)
    assert epn["top5_share"] == pytest.approx(1 / 3)          # ceil(0.45) = 1 neuron of 3 edits
    assert epn["merge"]["mean"] == pytest.approx(2 / 9) and epn["split"]["mean"] == pytest.approx(1 / 9)
    assert (r["t_merge_s"], r["t_split_s"], r["t_decision_s"]) == (20.0, 40.0, 8.0)
    # Project volume: 6 × 24 × 24 voxels of 20 × 10 × 10 nm.
    mm3 = 6 * 24 * 24 * VOXEL_NM3 * 1e-18
    assert r["volume"] == "project" and r["volume_mm3"] == pytest.approx(mm3)
    assert "project region" in r["volume_basis"] and "6 × 24 × 24" in r["volume_basis"]
    assert r["minutes_per_mm3"] == pytest.approx(110 / 60 / mm3)
    p = r["cost_projection"]
    assert p["volume_mm3"] == 1.0
    assert p["merge_edits"] == pytest.approx(2 / mm3) and p["split_edits"] == pytest.approx(1 / mm3)
    assert p["decisions"] == pytest.approx(2 / mm3)
    assert p["hours"] == pytest.approx((2 * 20 + 1 * 40 + 2 * 8) / mm3 / 3600)
    assert "scaled linearly" in p["basis"]
    assert effort_report(project, target_mm3=2.5)["cost_projection"]["hours"] == pytest.approx(2.5 * p["hours"])
    assert r["sessions"] == 2 and r["users"] == ["ana", "bo"]
    assert r["recovered_from"] is None
    with Proofreader.open(project, read_only=True) as pr:   # the GUI passes its own
        assert effort_report(project, proofreader=pr) == r


def test_segments_volume_is_the_union_of_reviewed_boxes(history):
    project, seg = history
    r = effort_report(project, volume="segments")
    sv = demo_volumes()["supervoxels"]
    members = [[1, 2], [5], [6], [7], [8], [9], [10], [3], [4]]   # A, F, G, 7..10, C, D now
    mask = np.zeros(sv.shape, bool)
    for ids in members:
        where = np.argwhere(np.isin(sv, ids))
        lo, hi = where.min(0), where.max(0) + 1
        mask[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    voxels = int(mask.sum())
    assert voxels < mask.size       # the union is smaller than the project here
    assert r["volume"] == "segments"
    assert r["volume_mm3"] == pytest.approx(voxels * VOXEL_NM3 * 1e-18)
    assert f"{voxels} voxels" in r["volume_basis"] and "9 reviewed segments" in r["volume_basis"]
    assert r["minutes_per_mm3"] == pytest.approx(110 / 60 / r["volume_mm3"])


def test_report_is_reproducible_and_json_clean(history):
    project, _ = history
    first = effort_report(project, volume="segments")
    assert effort_report(project, volume="segments") == first
    text = json.dumps(first, allow_nan=False)
    assert json.loads(text) == first


def test_report_refuses_bad_options(history):
    project, _ = history
    with pytest.raises(InputError, match="--volume"):
        effort_report(project, volume="brain")
    for bad in (0, -1, math.nan, math.inf):
        with pytest.raises(InputError, match="mm³"):
            effort_report(project, target_mm3=bad)


def test_report_of_a_log_without_edits_has_no_nan(tmp_path):
    project = make_demo_project(tmp_path / "demo", threshold=None)
    with EffortLog.open(project, session="s") as log:
        log.record(task_id="t", task_type="split", answer="flag", shown_at=0, answered_at=9,
                   active_s=9, idle_s=0, segments=[3])
    r = effort_report(project)
    json.dumps(r, allow_nan=False)
    assert r["edits"]["merge"] == 0 and r["t_merge_s"] is None and r["edits_per_neuron"]["top5_share"] is None
    assert r["cost_projection"]["hours"] == pytest.approx(9 / (6 * 24 * 24 * VOXEL_NM3 * 1e-18) / 3600)
    assert r["neurons"] == 1 and r["tasks"]["flag"] == 1


def test_vi_curve_follows_the_rows_that_carry_vi(tmp_path):
    project = make_demo_project(tmp_path / "demo", threshold=None)
    row = dict(task_type="merge", idle_s=0, segments=[3])
    with EffortLog.open(project, session="s") as log:
        log.record(task_id="a", answer="no", shown_at=0, answered_at=30, active_s=30, **row)   # no VI
        log.record(task_id="b", answer="yes", shown_at=30, answered_at=60, active_s=30, vi_split=0.5,
                   vi_merge=1.25, **row)
        log.record(task_id="c", answer="skip", shown_at=60, answered_at=75, active_s=15, vi_split=0.5,
                   vi_merge=1.25, **row)
        log.record(task_id=None, task_type="manual", answer="split", shown_at=75, answered_at=135,
                   active_s=45, idle_s=15, segments=[4], vi_split=0.75, vi_merge=0.25)
    r = effort_report(project)
    assert r["vi_curve"] == [
        {"minutes_active": 1.0, "vi_split": 0.5, "vi_merge": 1.25, "vi": 1.75, "event": "task"},
        {"minutes_active": 1.25, "vi_split": 0.5, "vi_merge": 1.25, "vi": 1.75, "event": "task"},
        {"minutes_active": 2.0, "vi_split": 0.75, "vi_merge": 0.25, "vi": 1.0, "event": "manual"},
    ]
    assert (r["vi_start"], r["vi_end"], r["vi_from_start"]) == (1.75, 1.0, False)
    assert r["vi_rows"] == {"tasks": 2, "manual": 1, "starts": 0}
    json.dumps(r, allow_nan=False)
    (line,) = [x for x in report_text(r).splitlines() if x.startswith("VI")]
    assert line.split() == ["VI", "1.750", "→", "1.000", "bits", "(-0.750", "bits:", "better;", "split", "0.500", "→",
                            "0.750,", "merge", "1.250", "→", "0.250)", "over", "2", "answers", "and", "1", "manual",
                            "edits,", "from", "after", "the", "first", "answer", "(the", "state", "before", "it",
                            "was", "not", "recorded)"]


def test_vi_curve_starts_before_the_first_answer_so_a_worse_session_reads_worse(tmp_path):
    project = make_demo_project(tmp_path / "demo", threshold=None)
    row = dict(task_type="merge", idle_s=0, segments=[3])
    with EffortLog.open(project, session="s1", vi_start={"vi_split": 0.25, "vi_merge": 0.75}) as log:
        # Every answer made it worse, each by the same amount: without the start the curve would look flat.
        log.record(task_id="a", answer="yes", shown_at=0, answered_at=60, active_s=60, vi_split=0.5,
                   vi_merge=1.0, **row)
        log.record(task_id="b", answer="yes", shown_at=60, answered_at=120, active_s=60, vi_split=0.5,
                   vi_merge=1.0, **row)
    with EffortLog.open(project, session="s2", vi_start={"vi_split": 0.5, "vi_merge": 1.0}) as log:
        log.record(task_id="c", answer="yes", shown_at=200, answered_at=230, active_s=30, vi_split=1.0,
                   vi_merge=1.0, **row)
    r = effort_report(project)
    assert [(p["event"], p["minutes_active"], p["vi"]) for p in r["vi_curve"]] == [
        ("start", 0.0, 1.0), ("task", 1.0, 1.5), ("task", 2.0, 1.5), ("start", 2.0, 1.5), ("task", 2.5, 2.0)]
    assert (r["vi_start"], r["vi_end"], r["vi_from_start"]) == (1.0, 2.0, True)
    assert r["vi_rows"] == {"tasks": 3, "manual": 0, "starts": 2}
    (line,) = [x for x in report_text(r).splitlines() if x.startswith("VI")]
    assert "1.000 → 2.000 bits (+1.000 bits: worse;" in line and line.endswith("from before the first answer")


def test_waiting_for_the_suite_is_reported_apart(tmp_path):
    project = make_demo_project(tmp_path / "demo", threshold=None)
    with EffortLog.open(project, session="s") as log:
        log.record(task_id="a", task_type="merge", answer="no", shown_at=0, answered_at=100, active_s=30,
                   idle_s=64, waiting_s=6, segments=[3])
        log.record(task_id="b", task_type="merge", answer="no", shown_at=100, answered_at=160, active_s=30,
                   idle_s=0, waiting_s=30, segments=[4])
    r = effort_report(project)
    assert (r["minutes_active"], r["minutes_idle"], r["minutes_waiting"]) == (1.0, pytest.approx(64 / 60), 0.6)
    assert "(excluded: idle 1.07 min, waiting for the suite 0.60 min)" in report_text(r)


def test_projection_from_a_small_sample_says_it_is_not_reliable(history, monkeypatch):
    from napari_connectome.effort import report as report_module

    project, _ = history
    p = effort_report(project)["cost_projection"]
    assert not p["reliable"] and p["hours"] is not None   # the figure stays, with the warning beside it
    assert p["measured_mm3"] == pytest.approx(6 * 24 * 24 * VOXEL_NM3 * 1e-18) and p["neurons"] == 9
    assert "only 6.91e-12 mm³ was measured (less than 0.001 mm³" in p["warning"]
    assert "only 9 neurons were reviewed (fewer than 10)" in p["warning"]
    assert f"×{1 / p['measured_mm3']:.3g}" in p["warning"]
    text = report_text(effort_report(project))
    assert "  WARNING    not a reliable projection: only 6.91e-12 mm³" in text
    # A sample past both thresholds: no warning.
    monkeypatch.setattr(report_module, "MIN_PROJECTION_MM3", 1e-12)
    monkeypatch.setattr(report_module, "MIN_PROJECTION_NEURONS", 9)
    p = effort_report(project)["cost_projection"]
    assert p["reliable"] and p["warning"] is None
    assert "WARNING" not in report_text(effort_report(project))


def test_every_figure_of_the_text_carries_its_unit(history):
    project, _ = history
    text = report_text(effort_report(project))
    assert re.search(r"^min / mm³ +[0-9.e+]+ min/mm³$", text, re.M)
    assert re.search(r"min / neuron [0-9.]+ min$", text, re.M)
    assert re.search(r"^edits/neuron mean [0-9.]+ edits, p50 [0-9.]+ edits, p95 [0-9.]+ edits;", text, re.M)


def test_without_vi_the_curve_is_empty_and_the_text_says_why(history):
    project, _ = history
    r = effort_report(project)
    assert (r["vi_curve"], r["vi_start"], r["vi_end"]) == ([], None, None)
    assert r["vi_rows"] == {"tasks": 0, "manual": 0, "starts": 0}
    assert "no ground truth: VI not recorded" in report_text(r)


# ------------------------------------------------------------------ CLI
def test_cli_json_csv_and_human_table(history, tmp_path, capsys):
    project, seg = history
    out_csv = tmp_path / "neurons.csv"
    assert main(["effort", "report", str(project.root), "--json", "--csv", str(out_csv)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(effort_report(project)))
    with open(out_csv, newline="") as f:
        table = list(csv.DictReader(f))
    assert [int(r["segment"]) for r in table] == [n["segment"] for n in printed["per_neuron"]]
    assert float(table[0]["minutes"]) == pytest.approx(printed["per_neuron"][0]["minutes"])
    assert write_report_csv(printed, tmp_path / "again.csv").read_text() == out_csv.read_text()
    assert main(["effort", "report", str(project.root), "--volume", "segments"]) == 0
    text = capsys.readouterr().out
    assert "union of the bounding boxes" in text and "min / mm³" in text and str(seg["F"]) in text


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    project = make_demo_project(tmp_path / "demo", threshold=None)
    assert main(["effort", "report", str(project.root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no effort log yet" in err[0] and err[0].startswith("napari-connectome: error:")
    path = project.component_path("effort_log")
    path.write_bytes(b"\x00garbage" * 512)
    assert main(["effort", "report", str(project.root), "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "corrupt" in err[0]
    assert path.read_bytes() == b"\x00garbage" * 512          # reporting never moves it
