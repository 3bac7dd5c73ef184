"""Effort: how long proofreading takes, measured as active time with idle excluded.

::

    log = EffortLog.open(project, user="ana")            # <project>/effort.sqlite
    clock = ActivityClock(); clock.start(); clock.touch(); active_s, idle_s = clock.stop()
    log.record(task_id="t-…", task_type="merge", answer="yes", shown_at=…, answered_at=…,
               active_s=active_s, idle_s=idle_s, edit_id=12)
    recorder = EffortRecorder(log, proofreader)          # times edits made outside tasks
    report = effort_report(project, volume="project")    # minutes/mm³, per neuron, p50/p95, projection
"""

from napari_connectome.effort.clock import DEFAULT_IDLE_S, ActivityClock, Clock
from napari_connectome.effort.log import EffortLog
from napari_connectome.effort.recorder import EffortRecorder
from napari_connectome.effort.report import effort_report, write_report_csv

__all__ = [
    "DEFAULT_IDLE_S",
    "ActivityClock",
    "Clock",
    "EffortLog",
    "EffortRecorder",
    "effort_report",
    "write_report_csv",
]
