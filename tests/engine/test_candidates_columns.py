"""The false-split candidates built from columns equal what the dataclass and a lexsort give."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_connectome.candidates import rows as candidate_rows
from napari_connectome.candidates.find import (
    SPLIT_FEATURES,
    _split_candidates,
    _split_features,
    _strongest_rows,
)
from napari_connectome.candidates.model import Candidate, proposes_merges


@pytest.mark.parametrize("seed", range(30))
def test_strongest_rows_equal_the_lexsort(seed):
    rng = np.random.default_rng(seed)
    n_groups = int(rng.integers(1, 40))
    sizes = rng.integers(1, 9, n_groups)
    grp = np.repeat(np.arange(n_groups), sizes)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    # Few distinct values: ties in the boundary and in the area are common; NaN boundaries too,
    # whole runs of them included.
    mean = rng.choice([0.1, 0.2, 0.3, np.nan], grp.size, p=[0.3, 0.3, 0.2, 0.2])
    if n_groups > 1:
        mean[grp == 0] = np.nan
    area = rng.choice([1.0, 2.0, 3.0], grp.size)
    first = np.lexsort((-area, mean, grp))
    head = np.flatnonzero(np.r_[True, grp[first][1:] != grp[first][:-1]])
    assert _strongest_rows(grp, starts, mean, area).tolist() == first[head].tolist()


def test_split_candidates_equal_the_dataclass():
    values = [tuple(float(i + k) for i in range(len(SPLIT_FEATURES))) for k in range(3)]
    rows = [np.arange(k + 1) for k in range(3)]
    made = _split_candidates([1, 2, 3], [4, 5, 6], [10, 20, 30], [40, 50, 60], [7.0, 8.0, 9.0], values, rows)
    for k, c in enumerate(made):
        plain = Candidate(id=f"fs-{k + 1}-{k + 4}", kind="false_split", location_nm=(np.nan,) * 3,
                          segments=(k + 1, k + 4), supervoxels=(10 * (k + 1), 10 * (k + 4)), source="graph-contact",
                          features=dict(zip(SPLIT_FEATURES, values[k], strict=True)), impact=7.0 + k)
        assert c.features == plain.features and list(c.features) == list(SPLIT_FEATURES)
        assert (c.id, c.kind, c.segments, c.supervoxels, c.sinks, c.source, c.impact, c.impact_unit) == (
            plain.id, plain.kind, plain.segments, plain.supervoxels, plain.sinks, plain.source, plain.impact,
            plain.impact_unit)
        assert c._rows is rows[k]
    # Their serials were taken with them, once each, and are what the row caches read.
    numbers = candidate_rows.assign_serials(made)
    assert len(set(numbers.tolist())) == 3
    assert candidate_rows.assign_serials(made).tolist() == numbers.tolist()


def test_split_features_is_keyed_by_the_names():
    assert list(_split_features(*range(len(SPLIT_FEATURES))).items()) == list(zip(SPLIT_FEATURES,
                                                                                   range(len(SPLIT_FEATURES)),
                                                                                   strict=True))


def test_serials_taken_from_threads_are_never_given_twice():
    got: list[list[int]] = []

    def take():
        got.append(candidate_rows.take_serials(5000))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    loose = [candidate_rows.assign_serials([Candidate(id="x", kind="false_split", location_nm=(0.0,) * 3,
                                                      segments=(1, 2), supervoxels=(1, 2))])[0]]
    everything = [n for block in got for n in block] + [int(x) for x in loose]
    assert len(everything) == len(set(everything)) == 20001


def test_proposes_merges_is_each_candidates_own_answer():
    kinds = ["false_split", "false_merge", "false_split", "false_split", "false_merge"]
    cands = [Candidate(id=f"c{i}", kind=k, location_nm=(0.0, 0.0, 0.0), segments=(i, i + 1), supervoxels=(i,))
             for i, k in enumerate(kinds)]
    got = proposes_merges(cands)
    assert got.dtype == bool and got.tolist() == [c.proposes_merge for c in cands] == [True, False, True, True, False]
    assert proposes_merges([]).shape == (0,)
