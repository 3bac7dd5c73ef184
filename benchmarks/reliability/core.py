"""Running commands under watch, and classifying what they did.

Every case of the campaign ends in exactly one class (the most severe that
applies, in this order):

``data lost``
    a protected file's content is gone (bytes changed when they should not
    have, committed edit operations missing afterwards, a pyramid destroyed).
``silent wrong``
    the command said it succeeded (exit 0) but its result is wrong in a way a
    check could detect (0 edits reported for a project that has edits, fewer
    rows exported than the log holds, a missing chunk read as zeros without
    a note, a partial output left where a complete one belongs, ...).
``traceback``
    a Python traceback on stderr, or an uncaught exception in a driver.
``internal``
    exit 1 with ``napari-connectome: internal error: ...``.
``hang``
    it ran past its time limit, or past its memory limit (a blow-up).
``other``
    anything else that is not the promise: a clean refusal of a request that
    should have worked (a read-only project refusing a read), an exit-2
    message that is not exactly one line naming a file or parameter, an exit
    code other than 0, 1 and 2 (a crash by signal).
``missing``
    the command (or option) the case needs does not exist in this version.
``clean``
    exit 0 with the right result, or exit 2 with exactly one line on stderr
    that names a file or parameter (``napari-connectome: error: FILE: problem``).
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

CLASSES = ("clean", "internal", "traceback", "hang", "silent wrong", "data lost", "other", "missing")
SEVERITY = {
    "clean": 0, "missing": 1, "other": 2, "hang": 3, "internal": 4, "traceback": 5,
    "silent wrong": 6, "data lost": 7,
}
#: Seconds a command may run before it counts as a hang.
DEFAULT_TIMEOUT = 60.0
#: Resident memory (bytes, whole process group) past which a run counts as a blow-up.
DEFAULT_MEMORY_LIMIT = 3 * 2**30
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PROG = "napari-connectome"

_PROGRESS = re.compile(r"\d+%\||\|\s*\d+/\d+\s*\[|(?:it/s|s/it)\]|^\s*\d+/\d+ \[")
_ERROR_LINE = re.compile(r"^(?:napari-connectome(?: [\w-]+)*|driver): error: (.*)$")


# ====================================================================== commands
def python() -> str:
    """The interpreter the campaign runs under (the project's venv)."""
    return sys.executable


def cli(*args: str) -> list[str]:
    """``napari-connectome ARGS`` as an argv: the console script beside the interpreter, else ``-m``."""
    script = Path(sys.executable).with_name(PROG)
    if script.is_file():
        return [str(script), *map(str, args)]
    return [sys.executable, "-m", "napari_connectome", *map(str, args)]


def driver(*args: str) -> list[str]:
    """The python drivers (:mod:`benchmarks.reliability.drivers`) as an argv."""
    return [sys.executable, str(HERE / "drivers.py"), *map(str, args)]


def child_env(extra: dict | None = None) -> dict:
    """The environment of every child: the caller's, plus the repo on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.pop("NAPARI_CONNECTOME_DEBUG", None)
    if extra:
        env.update(extra)
    return env


_PARSER = None


def cli_has(path: Sequence[str], option: str | None = None) -> bool:
    """True if this version's CLI has the (sub)command ``path`` (and ``option`` on it)."""
    import argparse

    global _PARSER
    try:
        if _PARSER is None:
            from napari_connectome.cli import build_parser

            _PARSER = build_parser()
        parser = _PARSER
        for word in path:
            subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
            if not subs or word not in subs[0].choices:
                return False
            parser = subs[0].choices[word]
        if option is None:
            return True
        return any(option in a.option_strings for a in parser._actions)
    except Exception:  # a CLI that does not even import: every case will show it
        return True


# ====================================================================== running
@dataclass
class Run:
    """What one process did."""

    argv: list[str]
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    memory_exceeded: bool = False
    killed: bool = False
    peak_rss: int = 0

    @property
    def command(self) -> str:
        return " ".join(_short(a) for a in self.argv)


def _short(arg: str) -> str:
    text = str(arg)
    if text == sys.executable:
        return "python"
    if text.endswith(f"/{PROG}") and Path(text).parent == Path(sys.executable).parent:
        return PROG
    if text.startswith(str(HERE) + "/"):
        return text[len(str(REPO)) + 1:]
    return text


def _group_rss(pgid: int) -> int:
    """Resident bytes of every process in a process group (Linux /proc; 0 elsewhere)."""
    total = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    page = os.sysconf("SC_PAGE_SIZE")
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            fields = stat[stat.rfind(")") + 2:].split()
            if int(fields[2]) != pgid:
                continue
            total += int(fields[21]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


def kill_group(pid: int) -> None:
    """SIGKILL a process group (the child and everything it started)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_process(argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT, cwd=None, env=None,
                memory_limit: int = DEFAULT_MEMORY_LIMIT, kill_after: float | None = None,
                on_start: Callable[[subprocess.Popen], None] | None = None) -> Run:
    """Run ``argv`` in its own process group, with a time and memory watch.

    Parameters
    ----------
    argv
        The command.
    timeout
        Seconds before it is killed and counted as a hang.
    cwd, env
        As :class:`subprocess.Popen` (``env`` defaults to :func:`child_env`).
    memory_limit
        Resident bytes of the group before it is killed as a blow-up.
    kill_after
        If given, SIGKILL the group after this many seconds (the kill tests);
        ``Run.killed`` tells whether it was still running then.
    on_start
        Called with the :class:`~subprocess.Popen` right after the start.

    Returns
    -------
    Run
    """
    argv = [str(a) for a in argv]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd,
                                env=env if env is not None else child_env(), start_new_session=True)
        if on_start is not None:
            on_start(proc)
        peak = 0
        timed_out = memory_exceeded = killed = False
        poll = 0.02
        while True:
            try:
                rc = proc.wait(timeout=poll)
                break
            except subprocess.TimeoutExpired:
                pass
            poll = min(poll * 1.5, 0.25)
            elapsed = time.monotonic() - t0
            if kill_after is not None and elapsed >= kill_after:
                killed = True
                kill_group(proc.pid)
                rc = proc.wait()
                break
            rss = _group_rss(proc.pid)
            peak = max(peak, rss)
            if rss > memory_limit:
                memory_exceeded = True
                kill_group(proc.pid)
                rc = proc.wait()
                break
            if elapsed > timeout:
                timed_out = True
                kill_group(proc.pid)
                rc = proc.wait()
                break
            if kill_after is not None:
                poll = min(poll, max(0.005, kill_after - elapsed))
        seconds = time.monotonic() - t0
        kill_group(proc.pid)  # whatever it left running in its group
        out.seek(0)
        err.seek(0)
        return Run(argv=argv, rc=rc, stdout=out.read().decode(errors="replace"),
                   stderr=err.read().decode(errors="replace"), seconds=seconds, timed_out=timed_out,
                   memory_exceeded=memory_exceeded, killed=killed, peak_rss=peak)


class PersistentWorker:
    """A long-lived python process that runs jobs in-process (:mod:`benchmarks.reliability.worker`).

    Used where one fresh interpreter per case would cost more than the case
    (reader fuzzing: thousands of small ``info``/``check``/read runs). Every
    job runs with file descriptors 1 and 2 redirected, so what C libraries
    print is captured too. A job that runs past its time or memory limit
    kills the worker (a new one starts with the next job).
    """

    def __init__(self, *, env: dict | None = None, memory_limit: int = DEFAULT_MEMORY_LIMIT) -> None:
        self.env = env if env is not None else child_env()
        self.memory_limit = memory_limit
        self.proc: subprocess.Popen | None = None
        self._err = None

    def _start(self) -> None:
        self._err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "worker.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._err, env=self.env, start_new_session=True,
        )

    def close(self) -> None:
        if self.proc is not None:
            kill_group(self.proc.pid)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            self.proc = None
        if self._err is not None:
            self._err.close()
            self._err = None

    def call(self, job: dict, *, timeout: float) -> Run:
        """Run one job; the answer has the shape of a :class:`Run` (``rc``, ``stdout``, ``stderr``)."""
        if self.proc is None or self.proc.poll() is not None:
            self.close()
            self._start()
        proc = self.proc
        argv = ["<in-process>", job.get("kind", "?"), *map(str, job.get("argv", [job.get("uri", "")]))]
        t0 = time.monotonic()
        try:
            proc.stdin.write((json.dumps(job) + "\n").encode())
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return self._crashed(argv, t0)
        fd = proc.stdout.fileno()
        buf = b""
        peak = 0
        while True:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    return self._crashed(argv, t0)
                buf += chunk
                if buf.endswith(b"\n"):
                    break
                continue
            elapsed = time.monotonic() - t0
            rss = _group_rss(proc.pid)
            peak = max(peak, rss)
            if rss > self.memory_limit or elapsed > timeout:
                self.close()
                return Run(argv=argv, rc=None, stdout="", stderr="", seconds=elapsed,
                           timed_out=elapsed > timeout, memory_exceeded=rss > self.memory_limit, peak_rss=peak)
        answer = json.loads(buf.decode())
        run = Run(argv=argv, rc=answer["rc"], stdout=answer["stdout"], stderr=answer["stderr"],
                  seconds=time.monotonic() - t0, peak_rss=peak)
        run.result = answer.get("result")  # type: ignore[attr-defined]
        return run

    def _crashed(self, argv, t0) -> Run:
        rc = self.proc.wait() if self.proc is not None else None
        err = b""
        if self._err is not None:
            self._err.seek(0)
            err = self._err.read()[-4000:]
        self.close()
        return Run(argv=argv, rc=rc if rc is not None else -9, stdout="",
                   stderr=f"worker died (exit {rc})\n" + err.decode(errors="replace"),
                   seconds=time.monotonic() - t0)


# ====================================================================== judging
def stderr_lines(text: str) -> list[str]:
    """The lines of stderr a person reads: progress bars and blank lines removed."""
    out = []
    for piece in re.split(r"[\r\n]+", text):
        piece = piece.rstrip()
        if not piece.strip() or _PROGRESS.search(piece):
            continue
        out.append(piece)
    return out


def tail(text: str, n: int = 6) -> list[str]:
    """The last ``n`` readable lines of a stream (for the JSON report)."""
    return [line[:400] for line in stderr_lines(text)[-n:]]


@dataclass
class Verdict:
    """The problems found in one case; its class is the most severe."""

    problems: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, cls: str, reason: str) -> None:
        assert cls in SEVERITY, cls
        self.problems.append((cls, reason))

    def extend(self, problems) -> None:
        for cls, reason in problems or ():
            self.add(cls, reason)

    @property
    def classification(self) -> str:
        if not self.problems:
            return "clean"
        return max(self.problems, key=lambda p: SEVERITY[p[0]])[0]

    @property
    def reason(self) -> str:
        if not self.problems:
            return "; ".join(self.notes)
        worst = SEVERITY[self.classification]
        main = [r for c, r in self.problems if SEVERITY[c] == worst]
        rest = [f"[{c}] {r}" for c, r in self.problems if SEVERITY[c] != worst and c != "clean"]
        return "; ".join(main + rest)


def failure_class(run: Run) -> tuple[str, str] | None:
    """The class of a run that did not end normally (hang, traceback, internal, crash), or None."""
    if run.memory_exceeded:
        return "hang", f"memory blow-up: resident memory passed {DEFAULT_MEMORY_LIMIT / 2**30:.0f} GiB (killed)"
    if run.timed_out:
        return "hang", f"no answer after {run.seconds:.0f} s (killed)"
    if "Traceback (most recent call last)" in run.stderr:
        last = [line for line in stderr_lines(run.stderr) if line and not line.startswith(" ")]
        return "traceback", f"traceback: {last[-1][:240] if last else '?'}"
    lines = stderr_lines(run.stderr)
    if run.rc == 1 and any("internal error" in line for line in lines):
        line = next(line for line in lines if "internal error" in line)
        return "internal", line[:300]
    if run.rc is not None and run.rc < 0:
        try:
            name = signal.Signals(-run.rc).name
        except ValueError:
            name = f"signal {-run.rc}"
        return "other", f"crashed: killed by {name}" + (f" ({lines[-1][:200]})" if lines else "")
    if run.rc not in (0, 2):
        return "other", f"exit {run.rc}" + (f": {lines[-1][:240]}" if lines else "")
    return None


_FINDING = re.compile(r"^(?:error|warning): \S.*?: \S")


def findings(run: Run) -> list[str]:
    """The finding lines (``error: FILE: problem``, ``warning: FILE: problem``) ``check`` printed on stdout."""
    return [line for line in run.stdout.splitlines() if _FINDING.match(line)]


def refusal_problem(run: Run, *, names: Sequence[str] = (), allow_findings: bool = False) -> tuple[str, str] | None:
    """None if an exit-2 run printed exactly one ``error:`` line naming a file or parameter.

    With ``allow_findings`` (``napari-connectome check``), exit 2 may instead
    come with its findings on stdout, one ``error:``/``warning: FILE: problem``
    line each, and nothing but progress on stderr.
    """
    lines = stderr_lines(run.stderr)
    if allow_findings and not lines and findings(run):
        return None
    errors = [line for line in lines if _ERROR_LINE.match(line)]
    usage = [line for line in lines if line.startswith("usage:") or (line.startswith(" ") and not errors)]
    extra = [line for line in lines if line not in errors and line not in usage and not line.startswith(" ")]
    if len(errors) != 1:
        return "other", f"exit 2 with {len(errors)} error lines: {' | '.join(lines[-3:])[:300]}"
    if extra:
        return "other", f"exit 2 with {len(extra)} more stderr line(s) besides the error: {extra[0][:200]}"
    message = _ERROR_LINE.match(errors[0]).group(1)
    if names and not any(n and str(n) in message for n in names) and ": " not in message:
        return "other", f"the error line names no file or parameter: {message[:200]}"
    if ": " not in message:
        return "other", f"the error line names no file or parameter: {message[:200]}"
    return None


def error_message(run: Run) -> str:
    """The message of the ``error:`` line (empty if none)."""
    for line in stderr_lines(run.stderr):
        m = _ERROR_LINE.match(line)
        if m:
            return m.group(1)
    return ""


def judge(run: Run, *, expect: str = "any", names: Sequence[str] = (),
          on_success: Callable[[Run], list[tuple[str, str]]] | None = None,
          after: Callable[[Run], list[tuple[str, str]]] | None = None,
          refused_ok: Callable[[Run], bool] | None = None, allow_findings: bool = False) -> Verdict:
    """Classify one run.

    Parameters
    ----------
    run
        What the command did.
    expect
        ``"ok"``: it must succeed (a clean refusal counts as ``other``);
        ``"refuse"``: it must refuse with exit 2 unless ``on_success`` finds
        nothing wrong with its result; ``"any"``: either.
    names
        Words one of which the error line should contain (the file at fault).
    on_success
        Checks of an exit-0 result; returns problems (``silent wrong`` ...).
    after
        Checks run whatever the outcome (``data lost`` ...).
    refused_ok
        For ``expect="ok"``: says whether this particular refusal is
        acceptable after all (e.g. "locked by another program").
    allow_findings
        ``check``: exit 2 may carry its findings on stdout (see :func:`refusal_problem`).
    """
    verdict = Verdict()
    failed = failure_class(run)
    if failed is not None:
        verdict.add(*failed)
    elif run.rc == 0:
        problems = on_success(run) if on_success is not None else []
        verdict.extend(problems)
        if not problems and expect == "refuse":
            verdict.notes.append("exit 0 with a correct result where a refusal was expected")
    elif run.rc == 2:
        problem = refusal_problem(run, names=names, allow_findings=allow_findings)
        if problem is not None:
            verdict.add(*problem)
        elif expect == "ok" and not (refused_ok is not None and refused_ok(run)):
            said = error_message(run) or " | ".join(findings(run)[:2])
            verdict.add("other", f"refused a request that should work: {said[:240]}")
    if after is not None:
        verdict.extend(after(run))
    return verdict


@dataclass
class Case:
    """One tried case, as written to the JSON report."""

    category: str
    name: str
    command: str
    classification: str
    reason: str
    rc: int | None = None
    stderr: list[str] = field(default_factory=list)
    seconds: float = 0.0
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def make_case(category: str, name: str, run: Run | None, verdict: Verdict, **details) -> Case:
    """A :class:`Case` from a run and its verdict."""
    return Case(
        category=category, name=name, command=run.command if run is not None else "",
        classification=verdict.classification, reason=verdict.reason,
        rc=run.rc if run is not None else None, stderr=tail(run.stderr) if run is not None else [],
        seconds=round(run.seconds, 3) if run is not None else 0.0, details=details,
    )


def missing_case(category: str, name: str, what: str, command: str = "") -> Case:
    """A case that could not run because this version lacks a command or option."""
    return Case(category=category, name=name, command=command, classification="missing",
                reason=f"command missing: {what}")


def crash_case(category: str, name: str, exc: BaseException) -> Case:
    """A case whose setup or check itself failed (a campaign bug or an engine failure in setup)."""
    import traceback

    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return Case(category=category, name=name, command="", classification="traceback",
                reason=f"the case itself failed: {text[:300]}",
                stderr=traceback.format_exc().splitlines()[-6:])
