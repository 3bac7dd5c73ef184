"""Ranking candidate errors and proving it: the active-learning ranker and the simulated proofreader.

::

    strategy = build_strategy({"name": "active", "epsilon": 0.1})
    order = strategy.order(candidates)          # ask candidates[order[0]] first
    strategy.observe(candidates[order[0]], answer)
    result = simulate(project, "gt.h5/stack", strategy="active", decisions=100)
"""

from napari_connectome.rank.ranker import Ranker
from napari_connectome.rank.simulate import (
    decisions_to_reach,
    plot_curves,
    run_simulation_cli,
    simulate,
    write_curves_csv,
)
from napari_connectome.rank.strategies import (
    DEFAULT_PRIOR,
    STRATEGIES,
    ActiveStrategy,
    RandomStrategy,
    SizeStrategy,
    StaticStrategy,
    Strategy,
    build_strategy,
    candidate_key,
)
from napari_connectome.rank.timing import DEFAULT_SECONDS, TimeModel

__all__ = [
    "DEFAULT_PRIOR",
    "DEFAULT_SECONDS",
    "STRATEGIES",
    "ActiveStrategy",
    "RandomStrategy",
    "Ranker",
    "SizeStrategy",
    "StaticStrategy",
    "Strategy",
    "TimeModel",
    "build_strategy",
    "candidate_key",
    "decisions_to_reach",
    "plot_curves",
    "run_simulation_cli",
    "simulate",
    "write_curves_csv",
]
