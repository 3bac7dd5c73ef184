"""A fast, fixed sample of the reliability campaign (``benchmarks/reliability``): every case must be clean.

The full campaign (``python -m benchmarks.reliability.campaign``: over a
thousand mutated volumes, every kind of project damage × every command, 20
kills per writing command, two writers, full and read-only disks) takes
about 13 minutes on 2 CPUs and is not run here. This runs its ``--quick`` sample —
a handful of cases per category, the same code, deterministic — in well
under a minute, and asserts that each case is ``clean``: exit 0 with the
right result, or exit 2 with one line naming the file. The full-disk and
read-only cases need root (mounts); elsewhere they are reported as not run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # benchmarks/ is not installed: import it from the checkout
    sys.path.insert(0, str(REPO))

from benchmarks.reliability.campaign import ROWS, run_campaign  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return run_campaign(quick=True, work=tmp_path_factory.mktemp("reliability"), seed=0, jobs=2)


def _describe(cases) -> str:
    return "\n".join(
        f"  {c.classification}: {c.name} — {c.reason}\n    $ {c.command}\n    " + " | ".join(c.stderr[-2:])
        for c in cases
    )


@pytest.mark.parametrize("category", [key for key, _ in ROWS])
def test_every_sampled_case_is_clean(sample, category):
    cases = [c for c in sample.counted if c.category == category]
    needs_root = [c for c in cases if c.classification == "missing" and "needs root" in c.reason]
    if cases and len(needs_root) == len(cases):
        pytest.skip(f"{category}: needs root to mount ({needs_root[0].reason})")
    bad = [c for c in cases if c.classification != "clean"]
    assert not bad, f"{len(bad)} of {len(cases)} {category} cases are not clean:\n{_describe(bad)}"


def test_the_sample_tried_every_category(sample):
    tried = {c.category for c in sample.counted}
    assert tried >= {key for key, _ in ROWS}, f"no case of {sorted({k for k, _ in ROWS} - tried)}"
