"""A persistent worker: runs reader jobs in-process, one JSON line in, one JSON line out.

Started by :class:`benchmarks.reliability.core.PersistentWorker` as
``python benchmarks/reliability/worker.py``; not meant to be run by hand.
Every job runs with file descriptors 1 and 2 redirected to temporary files,
so the answer carries everything the job printed (C libraries included), as
a fresh ``napari-connectome`` process would show it.

Jobs
----
``{"kind": "cli", "argv": [...]}``
    ``napari_connectome.cli.main(argv)``; ``rc`` is its return value (or the
    ``SystemExit`` code); an exception that escapes ``main`` is printed as a
    traceback with ``rc`` 1, as the interpreter would.
``{"kind": "read", "uri": ..., "expected": NPY, "cap_bytes": N}``
    ``open_volume`` and read every level fully (levels above ``cap_bytes``
    are read in a box of the expected level-0 shape plus one chunk), then
    compare level 0 with the expected voxels. A ``ConnectomeError`` prints
    ``driver: error: MESSAGE`` with ``rc`` 2.
``{"kind": "project-read", "dir": ...}``
    ``open_project`` and read every input fully; compares each input's shape
    with the one the manifest records.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
import warnings


def _read_volume(job: dict) -> dict:
    import numpy as np

    from napari_connectome.volume import open_volume

    notes: list[str] = []
    volume = open_volume(job["uri"], on_error="raise", notify=lambda e: notes.append(str(e)))
    expected = np.load(job["expected"]) if job.get("expected") else None
    cap = int(job.get("cap_bytes", 64 * 2**20))
    out: dict = {"levels": [], "notes": notes}
    level0 = None
    for k, level in enumerate(volume.levels):
        shape = tuple(int(s) for s in level.shape)
        nbytes = int(np.prod(shape, dtype=np.float64)) * np.dtype(level.dtype).itemsize
        box = shape
        if nbytes > cap:
            ref = expected.shape if expected is not None and len(expected.shape) == len(shape) else (64,) * len(shape)
            box = tuple(min(s, int(r) + 16) for s, r in zip(shape, ref, strict=False))
        data = np.asarray(level.array[tuple(slice(0, b) for b in box)])
        if tuple(data.shape) != tuple(box):
            raise AssertionError(f"level {k}: asked for {box}, got an array of shape {data.shape}")
        out["levels"].append({"shape": list(shape), "dtype": str(level.dtype), "read": list(box),
                              "full": box == shape})
        if k == 0:
            level0 = data
    out["notes"] = [*notes, *volume.notes]
    out["shape"] = list(volume.shape)
    out["dtype"] = str(volume.dtype)
    if expected is not None and level0 is not None:
        out.update(_compare(level0, expected))
    return out


def _compare(got, want) -> dict:
    """How ``got`` (read) relates to ``want`` (the voxels before the damage)."""
    import numpy as np

    if got.ndim != want.ndim:
        return {"comparable": False, "why": f"read {got.ndim}D, expected {want.ndim}D"}
    overlap = tuple(slice(0, min(a, b)) for a, b in zip(got.shape, want.shape, strict=True))
    g, w = got[overlap], want[overlap]
    try:
        differ = g != w.astype(g.dtype, copy=False) if g.dtype != w.dtype else g != w
        values_equal = bool(np.array_equal(g.astype(np.float64), w.astype(np.float64)))
    except (TypeError, ValueError):
        return {"comparable": False, "why": f"dtype {got.dtype} vs {want.dtype}"}
    n_diff = int(np.count_nonzero(differ)) if not values_equal else 0
    zero_where_differ = bool(n_diff and not np.any(g[differ] != 0))
    beyond = got.size - g.size
    return {
        "comparable": True,
        "equal": values_equal and got.shape == want.shape,
        "overlap_equal": values_equal,
        "n_diff": n_diff,
        "diff_are_zero": zero_where_differ,
        "beyond_voxels": int(beyond),
        "beyond_zero": _beyond_all_zero(got, want.shape),
        "got_shape": list(got.shape),
    }


def _beyond_all_zero(got, shape) -> bool:
    import numpy as np

    mask = np.ones(got.shape, bool)
    mask[tuple(slice(0, min(a, b)) for a, b in zip(got.shape, shape, strict=True))] = False
    return bool(mask.any() and not np.any(got[mask] != 0))


def _read_project(job: dict) -> dict:
    import numpy as np

    from napari_connectome.project import open_project

    project = open_project(job["dir"])
    out: dict = {"inputs": {}}
    for role, record in project.inputs.items():
        volume = project.open_input(role)
        data = np.asarray(volume.levels[0].read())
        out["inputs"][role] = {
            "recorded_shape": list(record.get("shape", [])) if isinstance(record, dict) else None,
            "shape": list(data.shape),
        }
    return out


def _run(job: dict) -> tuple[int, dict | None]:
    from napari_connectome.errors import ConnectomeError

    kind = job["kind"]
    if kind == "cli":
        from napari_connectome.cli import main

        try:
            rc = main(list(job["argv"]))
        except SystemExit as exc:
            code = exc.code
            if isinstance(code, str):
                print(code, file=sys.stderr)
                return 1, None
            return int(code or 0), None
        return int(rc or 0), None
    try:
        if kind == "read":
            return 0, _read_volume(job)
        if kind == "project-read":
            return 0, _read_project(job)
    except ConnectomeError as exc:
        print(f"driver: error: {exc}", file=sys.stderr)
        return 2, None
    raise ValueError(f"unknown job kind {kind!r}")


def main() -> None:
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    for line in _lines():
        job = json.loads(line)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            sys.stdout.flush()
            sys.stderr.flush()
            saved = os.dup(1), os.dup(2)
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            result = None
            try:
                with warnings.catch_warnings():
                    # What a fresh interpreter shows: every warning, except the kinds Python
                    # hides by default (a persistent process would otherwise show each once).
                    warnings.simplefilter("always")
                    for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                        warnings.filterwarnings("ignore", category=hidden)
                    try:
                        rc, result = _run(job)
                    except BaseException:  # what the interpreter would print
                        traceback.print_exc()
                        rc = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
            out.seek(0)
            err.seek(0)
            answer = {
                "rc": rc,
                "stdout": out.read()[-20000:].decode(errors="replace"),
                "stderr": err.read()[-20000:].decode(errors="replace"),
                "result": result,
            }
        proto.write(json.dumps(answer, default=str) + "\n")
        proto.flush()


_STDIN = None


def _lines():
    """Job lines from the original stdin (kept on its own descriptor before fd 0 went to /dev/null)."""
    while True:
        line = _STDIN.readline()
        if not line:
            return
        if line.strip():
            yield line


if __name__ == "__main__":
    _STDIN = os.fdopen(os.dup(0), "r", encoding="utf-8")
    main()
