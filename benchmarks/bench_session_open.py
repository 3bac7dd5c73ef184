"""How long a task session takes to show its first task: the first session on a project, then later ones.

On a copy of ``--project`` (so the project itself is left as it is) with the
kept candidate list and contact scan deleted, :meth:`TaskSession.open`
(``active``, no prefetch, learning in the foreground) and its first
:meth:`~TaskSession.next_task`, ``--sessions`` times in a row: the first
session searches, scans where contacts lie and keeps both in the project;
the later ones read them back.

Figures (the 250³ cube of ``bench_decisions.py``, 14,828 candidates, 2-core
VM): first session 2.9 s, later sessions 0.45–0.50 s (4.0 s when only the
scan was kept).

Run::

    python benchmarks/bench_session_open.py --project /tmp/bench-decisions/proj [--sessions 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--project", type=Path, required=True, help="a project with a graph (e.g. bench_decisions.py's)")
    ap.add_argument("--sessions", type=int, default=3)
    args = ap.parse_args(argv)
    if args.sessions < 1:
        ap.error("--sessions must be at least 1")
    import sklearn.ensemble  # noqa: F401  (imported once here, not inside the first session's time)

    from napari_connectome.candidates import contacts, kept
    from napari_connectome.project import open_project
    from napari_connectome.tasks.session import TaskSession

    with tempfile.TemporaryDirectory(prefix="bench-session-open-") as tmp:
        copy = Path(tmp) / "project"
        shutil.copytree(args.project, copy)
        project = open_project(copy)
        for name in (contacts.GEOMETRY_FILE, kept.CANDIDATES_FILE):
            (project.component_path("graph") / name).unlink(missing_ok=True)
        for i in range(args.sessions):
            t0 = time.perf_counter()
            session = TaskSession.open(project, user="bench", strategy="active", prefetch=False,
                                       learn_in_background=False)
            try:
                task = session.next_task()
                dt = time.perf_counter() - t0
            finally:
                session.close()
            what = "first session" if i == 0 else "later session"
            print(f"{what}: first task after {dt:.2f} s ({'a task' if task is not None else 'no task'}, "
                  f"{len(session._candidates):,} candidates)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
