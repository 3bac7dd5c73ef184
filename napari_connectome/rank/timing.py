"""How long a proofreader takes to answer one yes/no task, by task type.

The defaults are an **assumption**, not a measurement: 10 s to accept or
reject a proposed merge (look at two pieces at their contact), 15 s for a
proposed split (inspect one segment along the cut). They are of the order
reported for focused proofreading of binary merge decisions (Plaza et al.
2012, "Focused proofreading": a few seconds to tens of seconds per body-pair
decision), and are meant to be replaced by the times measured in the
project's effort log once proofreaders have used the task queue.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from napari_connectome.errors import InputError

#: Seconds per decision by candidate kind (assumed; see the module docstring).
DEFAULT_SECONDS = {"false_split": 10.0, "false_merge": 15.0}


@dataclass(frozen=True)
class TimeModel:
    """Predicted seconds per yes/no decision, by candidate kind.

    Attributes
    ----------
    seconds
        ``{"false_split": s, "false_merge": s}``: a proposed merge, a proposed split.
    source
        Where the figures come from (shown with every simulated curve).
    """

    seconds: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SECONDS))
    source: str = "assumed defaults (10 s merge, 15 s split decision); replace with effort-log times"

    def __post_init__(self) -> None:
        for kind in DEFAULT_SECONDS:
            if kind not in self.seconds:
                raise InputError("time model", f"no seconds for task type {kind!r}")
        for kind, s in self.seconds.items():
            try:
                ok = float(s) > 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise InputError("time model", f"seconds for {kind!r} must be a positive number, got {s!r}")

    def seconds_for(self, kind: str) -> float:
        """Seconds to decide one candidate of ``kind``."""
        try:
            return float(self.seconds[kind])
        except KeyError:
            raise InputError("time model", f"no seconds for task type {kind!r}") from None

    @classmethod
    def from_config(cls, config: dict | None) -> TimeModel:
        """From ``{"seconds": {...}, "source": "..."}`` (missing kinds keep the defaults)."""
        if config is None:
            return cls()
        if not isinstance(config, dict):
            raise InputError("time model", f"expected a mapping, got {config!r}")
        seconds = dict(DEFAULT_SECONDS)
        seconds.update(config.get("seconds", {}))
        return cls(seconds=seconds, source=str(config.get("source", "user configuration")))

    def to_config(self) -> dict:
        return {"seconds": dict(self.seconds), "source": self.source}
