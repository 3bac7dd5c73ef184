"""Micro-tasks: candidate errors asked one by one as yes/no questions, answers applied and timed.

::

    session = TaskSession.open(project, user="ana", gt="project")
    task = session.next_task()        # Task: id, kind, question, segments, location_nm
    view = session.view()             # TaskView: EM + labels crop, skeletons, colours (prepared ahead)
    session.answer("yes")             # applies the edit (edit log row carries task.id), shows the next task;
                                      # the ranker learns in the background (session.learning, session.wait())
    session.undo()                    # takes the last answer and its edit back
    session.progress(), session.vi()  # done / queued / flagged; live VI with a ground truth
"""

from napari_connectome.tasks.model import ANSWERS, QUESTIONS, AnswerResult, Task, task_id
from napari_connectome.tasks.prefetch import Prefetcher
from napari_connectome.tasks.session import TaskSession
from napari_connectome.tasks.view import (
    DEFAULT_CROP_VOXELS,
    PALETTE,
    TaskView,
    crop_box,
    prepare_view,
    segment_colors,
    view_still_valid,
)

__all__ = [
    "ANSWERS",
    "DEFAULT_CROP_VOXELS",
    "PALETTE",
    "QUESTIONS",
    "AnswerResult",
    "Prefetcher",
    "Task",
    "TaskSession",
    "TaskView",
    "crop_box",
    "prepare_view",
    "segment_colors",
    "task_id",
    "view_still_valid",
]
