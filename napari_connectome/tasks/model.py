"""What a micro-task is: one candidate error turned into one yes/no question, and what an answer did."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from napari_connectome.candidates.model import Candidate
from napari_connectome.errors import InputError
from napari_connectome.rank.strategies import candidate_key

#: The answers a proofreader gives (keys Y, N, S, F); U (undo) is a separate call.
ANSWERS = ("yes", "no", "skip", "flag")
QUESTIONS = {"merge": "Same neuron?", "split": "Cut here?"}


def task_id(candidate: Candidate) -> str:
    """``"t-"`` + 12 hex digits of the candidate's key: the same proposed edit has the same id after re-finding."""
    digest = hashlib.blake2b(repr(candidate_key(candidate)).encode(), digest_size=6).hexdigest()
    return f"t-{digest}"


@dataclass(frozen=True)
class Task:
    """One question to a proofreader.

    Attributes
    ----------
    id
        Stable across re-finding candidates (:func:`task_id`).
    candidate
        The candidate error it asks about (its proposed edit is what *yes* applies).
    kind
        ``"merge"`` (the candidate is a false split: *yes* merges) or ``"split"``.
    question
        ``"Same neuron?"`` or ``"Cut here?"``.
    segments
        The segments involved, as they were when the task was made.
    location_nm
        The decision point (z, y, x) in nm.
    """

    id: str
    candidate: Candidate
    kind: str
    question: str
    segments: tuple[int, ...]
    location_nm: tuple[float, float, float]

    @classmethod
    def from_candidate(cls, candidate: Candidate) -> Task:
        kind = "merge" if candidate.kind == "false_split" else "split"
        return cls(
            id=task_id(candidate), candidate=candidate, kind=kind, question=QUESTIONS[kind],
            segments=tuple(int(s) for s in candidate.segments),
            location_nm=tuple(float(x) for x in candidate.location_nm),
        )

    @property
    def key(self) -> tuple:
        """What the task proposes (:func:`~napari_connectome.rank.candidate_key`)."""
        return candidate_key(self.candidate)


@dataclass(frozen=True)
class AnswerResult:
    """What one answer (or undo) did.

    Attributes
    ----------
    task
        The task answered (for an undo: the task whose answer was taken back).
    answer
        ``yes``, ``no``, ``skip``, ``flag``, ``undo``, or ``stale`` (the task's
        segments were edited away before the answer could apply).
    edit_id
        Edit-log operation id the answer produced (the merge/split of a *yes*,
        the undo operation of an undo), or None.
    effort_row
        Row id in the effort log.
    next
        The task now current (None when none is left).
    note
        Why nothing was applied, when that happened ("" otherwise).
    """

    task: Task
    answer: str
    edit_id: int | None
    effort_row: int
    next: Task | None
    note: str = ""


def check_answer(answer) -> str:
    """The answer normalised to lower case; InputError for anything but yes/no/skip/flag."""
    text = str(answer).strip().lower()
    if text not in ANSWERS:
        raise InputError("answer", f"{answer!r} is not an answer (choose from {', '.join(ANSWERS)}; undo is undo())")
    return text
