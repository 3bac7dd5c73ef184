"""What a micro-task is: one candidate error turned into one yes/no question, and what an answer did."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from napari_connectome.candidates.model import Candidate
from napari_connectome.errors import InputError
from napari_connectome.rank.strategies import candidate_key
from napari_connectome.synapses.review import QUESTIONS as SYNAPSE_QUESTIONS
from napari_connectome.synapses.review import SynapseCandidate

#: The answers a proofreader gives (keys Y, N, S, F); U (undo) is a separate call.
ANSWERS = ("yes", "no", "skip", "flag")
QUESTIONS = {"merge": "Same neuron?", "split": "Cut here?", **SYNAPSE_QUESTIONS}
#: Task kinds about a synapse row (the others are about the segmentation).
SYNAPSE_KINDS = tuple(SYNAPSE_QUESTIONS)


def task_key(candidate: Candidate | SynapseCandidate) -> tuple:
    """What a task asks about: a candidate's proposed edit, or a synapse store row."""
    if isinstance(candidate, SynapseCandidate):
        return ("synapse", int(candidate.row))
    return candidate_key(candidate)


def task_id(candidate: Candidate | SynapseCandidate) -> str:
    """``"t-"`` + 12 hex digits of the task's key: the same proposed edit has the same id after re-finding."""
    digest = hashlib.blake2b(repr(task_key(candidate)).encode(), digest_size=6).hexdigest()
    return f"t-{digest}"


@dataclass(frozen=True)
class Task:
    """One question to a proofreader.

    Attributes
    ----------
    id
        Stable across re-finding candidates (:func:`task_id`).
    candidate
        The candidate error it asks about (its proposed edit is what *yes*
        applies), or for a synapse task the
        :class:`~napari_connectome.synapses.review.SynapseCandidate` (*yes*
        keeps the row, *no* takes it out).
    kind
        ``"merge"`` (the candidate is a false split: *yes* merges), ``"split"``,
        ``"synapse"`` or ``"partner"``.
    question
        ``"Same neuron?"``, ``"Cut here?"``, ``"Synapse here?"`` or ``"Is this the partner?"``.
    segments
        The segments involved, as they were when the task was made (a synapse: post, then pre neuron).
    location_nm
        The decision point (z, y, x) in nm (a synapse: its post point).
    """

    id: str
    candidate: Candidate | SynapseCandidate
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

    @classmethod
    def from_synapse(cls, candidate: SynapseCandidate) -> Task:
        return cls(id=task_id(candidate), candidate=candidate, kind=candidate.kind, question=candidate.question,
                   segments=candidate.segments, location_nm=candidate.location_nm)

    @property
    def key(self) -> tuple:
        """What the task proposes (:func:`task_key`)."""
        return task_key(self.candidate)

    @property
    def is_synapse(self) -> bool:
        """A question about a synapse row (no segmentation edit follows from it)."""
        return self.kind in SYNAPSE_KINDS


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
