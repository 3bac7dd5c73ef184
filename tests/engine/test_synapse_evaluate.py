"""evaluate_synapses: a hand-computed example, agreement with brute force, gt_labels, the CLI."""

from __future__ import annotations

import itertools
import json

import h5py
import numpy as np
import pytest

from napari_connectome.cli import main
from napari_connectome.errors import InputError
from napari_connectome.synapses import (
    SynapseTable,
    evaluate_synapses,
    labels_at,
    post_sites,
    volume_labeller,
    write_cremi,
    write_csv,
)
from napari_connectome.synapses.evaluate import match, partner_candidates, site_candidates
from napari_connectome.volume import from_array


def table(rows) -> SynapseTable:
    """Rows ``(pre zyx, post zyx, pre_id, post_id)``; synapse ids 0, 1, ..."""
    rows = list(rows)
    return SynapseTable(
        synapse_id=np.arange(len(rows)),
        pre=[r[0] for r in rows],
        post=[r[1] for r in rows],
        pre_id=[r[2] for r in rows],
        post_id=[r[3] for r in rows],
        score=np.ones(len(rows)),
    )


# Three true connections, far apart from each other.
GT = table([
    ((0, 0, 0), (0, 0, 100), 1, 2),          # T0
    ((0, 1000, 0), (0, 1000, 100), 3, 4),    # T1
    ((0, 5000, 0), (0, 5000, 100), 5, 6),    # T2
])
# Four predictions.
PRED = table([
    ((0, 0, 0), (0, 0, 150), 1, 2),          # P0: 50 nm from T0's post, right neurons
    ((0, 0, 0), (0, 0, -20), 1, 2),          # P1: 120 nm from T0's post too: competes with P0 for T0
    ((0, 1000, 0), (0, 1000, 150), 3, 9),    # P2: 50 nm from T1's post, but post neuron 9, not 4
    ((0, 5000, 0), (0, 5000, 600), 5, 6),    # P3: 500 nm from T2's post: beyond both thresholds
])


def test_hand_computed_example():
    s = evaluate_synapses(PRED, GT, site_distance_nm=200, partner_distance_nm=400)
    # Sites: 4 predicted, 3 true. T0 takes one of P0/P1 (the closer, P0), T1 takes P2;
    # P1 and P3 are false positives, T2 is missed.
    assert (s.sites.tp, s.sites.fp, s.sites.fn) == (2, 2, 1)
    assert s.sites.precision == pytest.approx(2 / 4)
    assert s.sites.recall == pytest.approx(2 / 3)
    assert s.sites.f_score == pytest.approx(2 * (1 / 2) * (2 / 3) / (1 / 2 + 2 / 3))  # 4/7
    matched = {tuple(post_sites(PRED)[i]): tuple(post_sites(GT)[j]) for i, j in s.sites.pairs}
    assert matched == {(0, 0, 150): (0, 0, 100), (0, 1000, 150): (0, 1000, 100)}
    # Partners: only P0-T0 (or P1-T0: one of them) joins the right neurons close enough;
    # P2 is at the right place with the wrong neuron, P3 too far.
    assert (s.partners.tp, s.partners.fp, s.partners.fn) == (1, 3, 2)
    assert s.partners.precision == pytest.approx(1 / 4)
    assert s.partners.recall == pytest.approx(1 / 3)
    assert s.partners.f_score == pytest.approx(2 / 7)
    assert s.partners.pairs.tolist() == [[0, 0]]  # the cheaper of P0 and P1
    d = s.to_dict()
    assert d["sites"] == {"tp": 2, "fp": 2, "fn": 1, "precision": 0.5, "recall": pytest.approx(2 / 3),
                          "f_score": pytest.approx(4 / 7)}
    assert json.loads(json.dumps(d))["partners"]["tp"] == 1
    # A wider site threshold brings P3 in: 3 of 4, all of T.
    wide = evaluate_synapses(PRED, GT, site_distance_nm=500, partner_distance_nm=500)
    assert (wide.sites.tp, wide.sites.fp, wide.sites.fn) == (3, 1, 0)
    assert (wide.partners.tp, wide.partners.fp, wide.partners.fn) == (2, 2, 1)


def test_more_matches_beat_the_closest_match():
    # A is nearest T0 but also near T1; B only near T0. Greedy nearest-first
    # gives A-T0 and leaves B; the maximum matching is A-T1, B-T0.
    true = np.array([[0, 0, 0], [0, 0, 300.0]])
    pred = np.array([[0, 0, 140.0], [0, 0, -150.0]])
    i, j, d = site_candidates(pred, true, distance_nm=200)
    assert match(i, j, d, 2, 2).tolist() == [[0, 1], [1, 0]]


def test_thresholds_are_inclusive():
    pred = table([((0, 0, 0), (0, 0, 300), 1, 2)])
    gt = table([((0, 0, 0), (0, 0, 100), 1, 2)])
    assert evaluate_synapses(pred, gt, site_distance_nm=200, partner_distance_nm=200).partners.tp == 1
    assert evaluate_synapses(pred, gt, site_distance_nm=199.999, partner_distance_nm=199.999).sites.tp == 0


# ---------------------------------------------------------------- brute force
def brute_force_max(admissible: np.ndarray) -> int:
    """The most admissible pairs of any one-to-one assignment, by enumerating all of them."""
    n_pred, n_true = admissible.shape
    if n_pred <= n_true:
        return max(sum(admissible[i, p[i]] for i in range(n_pred))
                   for p in itertools.permutations(range(n_true), n_pred))
    return max(sum(admissible[p[j], j] for j in range(n_true))
               for p in itertools.permutations(range(n_pred), n_true))


def dist(a, b):
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2))


def random_table(rng, n, *, extent):
    pre = rng.uniform(0, extent, (n, 3))
    post = pre + rng.uniform(-extent / 4, extent / 4, (n, 3))
    return table(zip(pre, post, rng.integers(1, 3, n), rng.integers(1, 3, n), strict=True))


def test_site_matching_agrees_with_brute_force():
    for seed in range(150):
        rng = np.random.default_rng(seed)
        n_pred, n_true = rng.integers(1, 8, 2)
        pred = rng.uniform(0, 600, (n_pred, 3))
        true = rng.uniform(0, 600, (n_true, 3))
        admissible = dist(pred, true) <= 200
        i, j, d = site_candidates(pred, true, distance_nm=200)
        pairs = match(i, j, d, n_pred, n_true)
        assert len(pairs) == brute_force_max(admissible), seed
        assert all(admissible[a, b] for a, b in pairs)
        assert len(set(pairs[:, 0])) == len(set(pairs[:, 1])) == len(pairs)
        # The same through the public function (points are distinct, so sites are the points).
        s = evaluate_synapses(table((p, p, 1, 1) for p in pred), table((t, t, 1, 1) for t in true))
        assert s.sites.tp == len(pairs) and s.sites.fp == n_pred - len(pairs) and s.sites.fn == n_true - len(pairs)


def test_partner_matching_agrees_with_brute_force():
    hits = 0
    for seed in range(150):
        rng = np.random.default_rng(1000 + seed)
        n_pred, n_true = rng.integers(1, 8, 2)
        pred = random_table(rng, n_pred, extent=1000)
        gt = random_table(rng, n_true, extent=1000)
        admissible = ((dist(pred.pre, gt.pre) <= 400) & (dist(pred.post, gt.post) <= 400)
                      & (pred.pre_id[:, None] == gt.pre_id[None, :]) & (pred.post_id[:, None] == gt.post_id[None, :]))
        best = brute_force_max(admissible)
        s = evaluate_synapses(pred, gt, partner_distance_nm=400)
        assert s.partners.tp == best, seed
        assert all(admissible[a, b] for a, b in s.partners.pairs)
        assert (s.partners.fp, s.partners.fn) == (n_pred - best, n_true - best)
        hits += best
    assert hits > 50  # the sets were dense enough to test something


def test_ten_thousand_sites():
    rng = np.random.default_rng(0)
    gt = random_table(rng, 10_000, extent=50_000)
    moved = SynapseTable(gt.synapse_id, gt.pre + rng.normal(0, 30, (10_000, 3)),
                         gt.post + rng.normal(0, 30, (10_000, 3)), gt.pre_id, gt.post_id, gt.score)
    s = evaluate_synapses(moved, gt)
    assert s.sites.tp >= 9_900 and s.partners.tp >= 9_900


# ----------------------------------------------------------------- gt_labels
def test_gt_labels_give_the_neurons_of_predictions():
    # The prediction's own ids come from another segmentation (7, 8): they never
    # equal the truth's; read in the true labels they do.
    gt = table([((0, 0, 10), (0, 0, 90), 1, 2), ((0, 0, 210), (0, 0, 290), 3, 4)])
    pred = table([((0, 0, 20), (0, 0, 80), 7, 8), ((0, 0, 220), (0, 0, 280), 7, 8)])

    def truth(points):
        return np.searchsorted([50, 150, 250], points[:, 2]) + 1  # x < 50: 1, < 150: 2, < 250: 3, else 4

    assert evaluate_synapses(pred, gt, partner_distance_nm=50).partners.tp == 0
    s = evaluate_synapses(pred, gt, partner_distance_nm=50, gt_labels=truth)
    assert (s.partners.tp, s.partners.fp, s.partners.fn) == (2, 0, 0)


def test_labels_at_reads_a_volume_in_nm():
    data = np.arange(4 * 5 * 6, dtype=np.uint32).reshape(4, 5, 6)
    volume = from_array(data, voxel_size=(40, 8, 4), offset=(100, 200, 300), kind="labels")
    points = np.array([[100, 200, 300], [100 + 3 * 40, 200 + 4 * 8, 300 + 5 * 4], [140 + 19, 216 - 3, 300 + 1.9]])
    assert labels_at(volume, points).tolist() == [data[0, 0, 0], data[3, 4, 5], data[1, 2, 0]]
    assert volume_labeller(volume)(points[:1]).dtype == np.uint64
    with pytest.raises(InputError, match="1 of 2 points lie outside"):
        labels_at(volume, np.array([[100, 200, 300], [100, 200, 300 - 3]]))


def test_input_problems():
    with pytest.raises(InputError) as exc:
        evaluate_synapses(SynapseTable.empty(), GT, pred_source="pred.csv")
    assert str(exc.value) == "pred.csv: holds no synapses: nothing to evaluate"
    bad = table([((0, 0, 0), (0, 0, 1), 0, 2), ((0, 0, 0), (0, 0, 1), 1, 2), ((0, 0, 0), (0, 0, 1), 3, 0)])
    with pytest.raises(InputError) as exc:
        evaluate_synapses(PRED, bad, gt_source="gt.csv")
    assert str(exc.value).startswith("gt.csv: 2 of 3 rows have neuron id 0")
    with pytest.raises(InputError, match="site_distance_nm"):
        evaluate_synapses(PRED, GT, site_distance_nm=0)
    # Candidates are symmetric in what the pair must share: a swapped pair is not a match.
    i, _, _ = partner_candidates(PRED, GT, np.stack([PRED.post_id, PRED.pre_id], axis=1), distance_nm=400)
    assert len(i) == 0


# ------------------------------------------------------------------------ CLI
def write_labels_h5(path):
    """A CREMI-style label volume of 8 nm voxels at offset 0: neurons 1..4 in x slabs of 250 nm."""
    x_nm = np.arange(1000 // 8) * 8
    data = np.broadcast_to((1 + x_nm // 250).astype(np.uint64), (10, 800 // 8, len(x_nm)))
    with h5py.File(path, "w") as f:
        d = f.create_dataset("volumes/labels/neuron_ids", data=data)
        d.attrs["resolution"] = (8.0, 8.0, 8.0)
    return f"{path}/volumes/labels/neuron_ids"


def check_error(capsys, args, needle):
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("napari-connectome: error: "), err
    assert needle in err[0], err[0]


def test_cli_reports_scores(tmp_path, capsys):
    write_csv(PRED, tmp_path / "pred.csv")
    write_csv(GT, tmp_path / "gt.csv")
    assert main(["evaluate-synapses", str(tmp_path / "pred.csv"), str(tmp_path / "gt.csv")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["sites P 0.500 R 0.667 F 0.571 (TP 2 FP 2 FN 1, ≤ 200 nm); "
                   "partners P 0.250 R 0.333 F 0.286 (TP 1 FP 3 FN 2, ≤ 400 nm)"]
    write_cremi(PRED, tmp_path / "pred.h5")  # CREMI holds no neuron ids: every partner is missed
    assert main(["evaluate-synapses", str(tmp_path / "pred.h5"), str(tmp_path / "gt.csv"), "--json",
                 "--site-distance-nm", "500", "--partner-distance-nm", "500"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["sites"]["tp"] == 3 and d["partners"]["tp"] == 0 and d["site_distance_nm"] == 500.0


def test_cli_with_groundtruth_labels(tmp_path, capsys):
    labels = write_labels_h5(tmp_path / "labels.h5")
    # Each row joins the slab of its pre to the slab of its post; the prediction's own ids are wrong.
    gt = table([((0, 100, 100), (0, 100, 300), 1, 2), ((0, 500, 600), (0, 500, 800), 3, 4)])
    pred = table([((0, 110, 110), (0, 100, 320), 0, 0), ((0, 500, 600), (0, 500, 780), 9, 9)])
    write_csv(gt, tmp_path / "gt.csv")
    write_csv(pred, tmp_path / "pred.csv")
    write_cremi(gt, tmp_path / "gt.h5")
    for gt_path in ("gt.csv", "gt.h5"):  # the CREMI truth gets its neurons from the labels too
        assert main(["evaluate-synapses", str(tmp_path / "pred.csv"), str(tmp_path / gt_path),
                     "--groundtruth-labels", labels, "--json"]) == 0
        d = json.loads(capsys.readouterr().out)
        assert (d["partners"]["tp"], d["partners"]["fp"], d["partners"]["fn"]) == (2, 0, 0), gt_path
    outside = table([((0, 100, 100), (0, 100, 300), 1, 2), ((0, 100, 100), (0, 100, 5000), 1, 2)])
    write_csv(outside, tmp_path / "outside.csv")
    check_error(capsys, ["evaluate-synapses", tmp_path / "outside.csv", tmp_path / "gt.csv",
                         "--groundtruth-labels", labels], f"{tmp_path / 'outside.csv'}: 1 of 4 synapse points lie outside")


def test_cli_errors_are_one_line(tmp_path, capsys):
    write_csv(GT, tmp_path / "gt.csv")
    write_csv(PRED, tmp_path / "pred.csv")
    write_csv(SynapseTable.empty(), tmp_path / "empty.csv")
    bad = table([((0, 0, 0), (0, 0, 1), 0, 2), ((0, 0, 0), (0, 0, 1), 1, 2)])
    write_csv(bad, tmp_path / "background.csv")
    with h5py.File(tmp_path / "nogroups.h5", "w") as f:
        f.create_dataset("raw", data=np.zeros(3))
    write_cremi(GT, tmp_path / "gt.h5")
    cases = [
        ([tmp_path / "missing.csv", tmp_path / "gt.csv"], f"{tmp_path / 'missing.csv'}: no such file"),
        ([tmp_path / "nogroups.h5", tmp_path / "gt.csv"], f"{tmp_path / 'nogroups.h5'}: has no group 'annotations'"),
        ([tmp_path / "empty.csv", tmp_path / "gt.csv"],
         f"{tmp_path / 'empty.csv'}: holds no synapses: nothing to evaluate"),
        ([tmp_path / "pred.csv", tmp_path / "background.csv"],
         f"{tmp_path / 'background.csv'}: 1 of 2 rows have neuron id 0"),
        ([tmp_path / "pred.csv", tmp_path / "gt.h5"], "stores no neuron ids: give --groundtruth-labels"),
        ([tmp_path / "pred.txt", tmp_path / "gt.csv"], "is neither a synapse CSV"),
        ([tmp_path / "pred.csv", tmp_path / "gt.csv", "--groundtruth-labels", tmp_path / "nolabels.h5/x"],
         "nolabels.h5"),
    ]
    for args, needle in cases:
        check_error(capsys, ["evaluate-synapses", *args], needle)
