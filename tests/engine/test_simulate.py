"""The simulated proofreader: curves, determinism, the edit log, outputs and bad input.

Runs on the small demo project (four bodies, ~40 supervoxels) with the real
candidate finder and ground-truth labeller.
"""

from __future__ import annotations

import io
import json

import h5py
import numpy as np
import pytest

from napari_connectome.candidates import find_candidates, label_candidates
from napari_connectome.errors import InputError
from napari_connectome.proofread import Proofreader
from napari_connectome.proofread.demo import demo_volumes, make_demo_project
from napari_connectome.rank import (
    Ranker,
    decisions_to_reach,
    plot_curves,
    run_simulation_cli,
    simulate,
    write_curves_csv,
)

VS = (20.0, 10.0, 10.0)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    project = make_demo_project(root / "demo", seed=3, threshold=0.5)
    return project, f"{root / 'demo' / 'data.h5'}/groundtruth"


@pytest.fixture(scope="module")
def prior(tmp_path_factory) -> Ranker:
    """A ranker trained on another demo volume's candidates (seed 5), labelled by its ground truth."""
    root = tmp_path_factory.mktemp("prior")
    project = make_demo_project(root / "p", seed=5, threshold=0.5, n_supervoxels=60)
    gt = demo_volumes(seed=5, n_supervoxels=60)["groundtruth"]
    with Proofreader.open(project, read_only=True) as pr:
        cands = find_candidates(pr)
        labels = label_candidates(cands, pr, gt)
    assert labels.any() and not labels.all()
    return Ranker().fit_candidates(cands, labels)


def total(point: dict) -> float:
    return point["vi_split"] + point["vi_merge"]


def test_curve_starts_at_decision_zero_and_accepted_edits_are_logged(demo, tmp_path):
    project, gt = demo
    r = simulate(project, gt, strategy="random", decisions=20, seed=0, workdir=tmp_path / "run")
    curve = r["curve"]
    assert [p["decision"] for p in curve] == list(range(len(curve)))
    assert curve[0]["minutes"] == 0.0
    steps = np.diff([p["minutes"] for p in curve]) * 60
    expected = [10.0 if d["kind"] == "false_split" else 15.0 for d in r["decisions"]]
    assert np.allclose(steps, expected)
    accepted = [d for d in r["decisions"] if d["answer"]]
    assert accepted, "a random order over the demo's candidates must hit some real errors in 20 picks"
    assert total(curve[-1]) < total(curve[0])
    # A rejection changes nothing.
    for d, before, after in zip(r["decisions"], curve[:-1], curve[1:], strict=True):
        if not d["answer"]:
            assert total(after) == pytest.approx(total(before))
    # Accepted edits went through the Proofreader into the sandbox's edit log ...
    with Proofreader.open(tmp_path / "run", read_only=True) as pr:
        ops = [h for h in pr.history() if h["type"] in ("merge", "split")]
        assert len(ops) == sum(d["operation_id"] is not None for d in accepted) > 0
        assert {h["suggested_by"] for h in ops} == {"simulate:random"}
    # ... and never into the project's own.
    assert not project.component_path("edit_log").exists()


def test_vi_matches_a_full_recount(demo, tmp_path):
    from napari_connectome.metrics import variation_of_information

    project, gt = demo
    r = simulate(project, gt, strategy="size", decisions=15, workdir=tmp_path / "run")
    with Proofreader.open(tmp_path / "run", read_only=True) as pr:
        seg = np.asarray(pr.labels_volume().levels[0].array[...])
    gt_arr = demo_volumes(seed=3)["groundtruth"]
    split, merge = variation_of_information(seg, gt_arr)
    assert r["curve"][-1]["vi_split"] == pytest.approx(split, abs=1e-9)
    assert r["curve"][-1]["vi_merge"] == pytest.approx(merge, abs=1e-9)


@pytest.mark.parametrize("strategy", ["random", "active"])
def test_same_seed_same_curve(demo, prior, strategy):
    project, gt = demo
    a = simulate(project, gt, strategy=strategy, decisions=15, seed=2, model=prior)
    b = simulate(project, gt, strategy=strategy, decisions=15, seed=2, model=prior)
    assert a["curve"] == b["curve"]
    assert a["decisions"] == b["decisions"]
    if strategy == "random":
        c = simulate(project, gt, strategy=strategy, decisions=15, seed=3)
        assert [d["candidate"] for d in c["decisions"]] != [d["candidate"] for d in a["decisions"]]


def test_active_learns_from_every_answer(demo, prior):
    from napari_connectome.rank import build_strategy

    project, gt = demo
    strat = build_strategy({"name": "active", "epsilon": 0.0}, model=prior)
    r = simulate(project, gt, strategy=strat, decisions=10)
    assert strat.ranker.n_answers == len(r["decisions"]) == 10
    static = simulate(project, gt, strategy="static", decisions=10, model=prior)
    assert r["config"]["name"] == "active" and static["config"]["name"] == "static"


def test_decisions_run_with_fewer_collections(demo):
    """The loop runs inside collector.fewer_collections (each edit makes and drops thousands of objects)."""
    import gc

    from napari_connectome.collector import YOUNG_THRESHOLD

    project, gt = demo
    seen = []

    class Progress:
        def start(self, total, description=""):
            seen.append(gc.get_threshold()[0])

        def advance(self, n=1):
            seen.append(gc.get_threshold()[0])

        def close(self):
            pass

    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        simulate(project, gt, strategy="size", decisions=3, progress=Progress())
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*before)
    assert len(seen) == 4 and all(t >= YOUNG_THRESHOLD for t in seen)


def test_ground_truth_is_asked_only_about_picked_candidates(demo):
    """Labels are read for the candidate picked, once per proposal, and agree with labelling every candidate."""
    from napari_connectome.candidates.labels import label_candidates

    project, gt = demo
    gt_arr = demo_volumes(seed=3)["groundtruth"]
    asked: list = []

    def label(cands, pr, gt_volume):
        asked.append([c.id for c in cands])
        one = label_candidates(list(cands), pr, gt_arr)
        # the answer labelling every candidate of the state at once gives (what the loop did before)
        every = find_candidates(pr, locate=False)
        by_id = dict(zip((c.id for c in every), label_candidates(every, pr, gt_arr).tolist(), strict=True))
        assert by_id[cands[0].id] == bool(one[0])
        return one

    r = simulate(project, gt, strategy="size", decisions=12, label=label)
    assert all(len(ids) == 1 for ids in asked)
    picked = [d["candidate"] for d in r["decisions"]]
    assert [ids[0] for ids in asked] == picked[: len(asked)]
    assert len(asked) == len(picked)  # the size strategy never picks the same proposal twice
    default = simulate(project, gt, strategy="size", decisions=12)
    assert [d["answer"] for d in default["decisions"]] == [d["answer"] for d in r["decisions"]]
    assert default["curve"] == r["curve"]


def test_runs_out_of_candidates_cleanly(demo):
    project, gt = demo
    r = simulate(project, gt, strategy="size", decisions=10_000)
    assert r["stopped"] == "exhausted"
    assert len(r["curve"]) - 1 == len(r["decisions"]) < 10_000
    assert total(r["curve"][-1]) < total(r["curve"][0])


def test_outputs_csv_png_json(demo, prior, tmp_path):
    project, gt = demo
    results = [simulate(project, gt, strategy=s, decisions=8, model=prior) for s in ("random", "size", "active")]
    csv_path = write_curves_csv(results, tmp_path / "curves.csv")
    rows = csv_path.read_text().splitlines()
    assert rows[0] == "strategy,seed,decision,vi_split,vi_merge,vi,minutes"
    assert len(rows) == 1 + sum(len(r["curve"]) for r in results)
    png = plot_curves(results, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    out = io.StringIO()
    run_simulation_cli(project.root, gt=gt, strategy="size", decisions=5, as_json=True, out=out,
                       plot=str(tmp_path / "cli.png"), csv_path=str(tmp_path / "cli.csv"))
    payload = json.loads(out.getvalue())
    assert payload["strategy"] == "size"
    assert payload["curve"][0]["decision"] == 0
    assert set(payload["curve"][0]) == {"decision", "vi_split", "vi_merge", "minutes"}
    assert (tmp_path / "cli.png").is_file() and (tmp_path / "cli.csv").is_file()


def test_decisions_to_reach():
    curve = [{"decision": i, "vi_split": v, "vi_merge": 0.0, "minutes": 0.0} for i, v in enumerate([1.0, 0.9, 0.5, 0.3, 0.2])]
    assert decisions_to_reach(curve, 0.8) == 3  # gain 0.8 → need ≥ 0.64 → 0.3 at decision 3
    assert decisions_to_reach(curve, 0.8, best_vi=0.0) == 4
    assert decisions_to_reach(curve, 0.8, best_vi=-1.0) is None
    assert decisions_to_reach(curve[:1], 0.8) is None


def one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_bad_input(demo, tmp_path):
    project, gt = demo
    gt_arr = demo_volumes(seed=3)["groundtruth"]
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f.create_dataset("small", data=gt_arr[:, :10])
        f.create_dataset("coarse", data=gt_arr).attrs["resolution"] = [40.0, 10.0, 10.0]
    with pytest.raises(InputError) as exc:
        simulate(project, f"{tmp_path / 'bad.h5'}/small", strategy="size", decisions=3)
    assert "shape" in one_line(exc) and "bad.h5" in str(exc.value)
    with pytest.raises(InputError) as exc:
        simulate(project, f"{tmp_path / 'bad.h5'}/coarse", strategy="size", decisions=3)
    assert "voxel size" in one_line(exc)
    with pytest.raises(InputError) as exc:
        simulate(project, gt, strategy="size", decisions=3, find=lambda pr, **kw: [], label=label_candidates)
    assert "no candidates" in one_line(exc)
    with pytest.raises(InputError) as exc:
        simulate(project, gt, strategy="size", decisions=-1)
    assert "--decisions" in one_line(exc)
    with pytest.raises(InputError) as exc:
        simulate(project, gt, strategy="clairvoyant", decisions=3)
    assert "unknown strategy" in one_line(exc)
    assert not project.component_path("edit_log").exists()
