"""What the proofreader sees, in a real napari window: key → next task drawn, stalls, z-steps.

``bench_tasks.py`` stops when the next task's *data* is ready; this one goes
on until napari has painted it. It runs napari in-process in a real window
(a desktop, or Xvfb plus a window manager on a server) and measures:

1. **key → next task drawn**: a real Qt key event (``QTest.keyClick`` on the
   canvas, which napari's keymap hands to the Micro-tasks panel) answers the
   task on screen; the clock stops at the end of the first paint of the
   canvas (vispy's ``draw`` event) that begins after the panel put the next
   task's data into its layers. p50 / p95 / max over ``--tasks`` tasks
   (answers N and S, so the queue order, and the prefetched view, stay
   valid; a *yes* would also time the edit, which ``bench_edits.py`` does).
2. **longest event-loop stall while a task is shown**: during each task's
   "think" time (``--think-s``: the proofreader looks; the prefetcher and
   the ranker work in the background) a 10 ms ``QTimer`` records how late
   each tick fires; the longest lateness over all tasks is the stall.
3. **z-step → frame drawn**, browsing a ~520³ OME-Zarr (``napari-connectome
   synthetic``, cached under ``--cache``) in 2D, with the suite's reader and
   with napari's own reading of the same zarr arrays (its builtin reader,
   as a multiscale image; napari-ome-zarr is not installed here), in the
   same run; the ratio is printed.

The task project is ``bench_tasks.py``'s synthetic one (256³ at 8 nm, 24-voxel
supervoxel grid, agglomerated at 0.5, skeletonized), built once into
``--cache`` and copied for each run (answers write to its logs).

Run (the window needs a display; on a server ``xvfb-run -a -s '-screen 0
1600x1000x24'`` is enough, the keys go through Qt; Xvfb + herbstluftwm to
watch it or screenshot it)::

    xvfb-run -a -s '-screen 0 1600x1000x24' .venv/bin/python benchmarks/bench_gui.py
    Xvfb :57 -screen 0 1600x1000x24 & DISPLAY=:57 herbstluftwm &
    DISPLAY=:57 .venv/bin/python benchmarks/bench_gui.py            # 20 tasks, ~3 min after the first build
    DISPLAY=:57 .venv/bin/python benchmarks/bench_gui.py --tasks 10 --no-zarr

Figures on the build machine (2 cores shared with other work, Mesa llvmpipe
software GL, Xvfb 1600×1000 + herbstluftwm, window 1500×950), 2026-12-04,
``DISPLAY=:57 nice -n 15 python benchmarks/bench_gui.py --cache /tmp/wtc-bench
--tasks 20`` (think 1.5 s), the two rows back to back at load average ~2:

====================================  ==========================  ==========================
                                      before (3D view, 64³ crop)  after (2D view, 64×256×256)
====================================  ==========================  ==========================
view size (voxels; nm at 8 nm)        65³ (520 nm across)         65 × 256 × 256 (2048 nm
                                                                  across; cut at the faces)
key → next task drawn p50 / p95 / max 184 / 409 / 677 ms          137 / 213 / 224 ms
longest stall while a task is shown   3742 ms                     78 ms
one canvas paint p50 / max            62 / 312 ms                 16 / 58 ms
====================================  ==========================  ==========================

"Before" is this script run against commit 8031d56 (``git archive`` into a
folder put first on PYTHONPATH): the task view as it was (three EM planes, translucent label
fills and a 3-D Shapes skeleton layer, rendered in 3D); "after" is the 2D
section view (outlines, skeletons projected as 2-D vectors). The machine is
shared, so figures move with its load: in earlier runs under heavier load
(12 tasks) before gave p50 358 / p95 1118 ms, stall 90 ms, and after gave
p50 163–295 / p95 285–525 ms, stalls 122–221 ms (the longest ones just after
a paint, in Qt's painting and the OS scheduler, not in Python: a watchdog
sampling the GUI thread's stack during them found no Python frame of ours).

z-step → frame drawn (520³ uint8 synthetic OME-Zarr, 2D, same run as "after"):
the suite's reader p50 118 / p95 129 ms, napari's builtin reader of the same
zarr p50 25 / p95 31 ms: the suite's reader is 4.8× slower per z-step (6.4×
in an earlier, more loaded run: 287 vs 45 ms). The cause: napari 0.9 slices a
multiscale level with the whole range of the hidden axes and picks the plane
afterwards, so our eager arrays read all 520 planes per step. The reader now
hands napari dask arrays of our chunks (``_layers._sliced_lazily``); same
command, 40 steps, ``bench_zarr`` alone: suite p50 22 / p95 42 ms, napari's
reader p50 25 / p95 27 ms, ratio 0.91.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

PLUGIN = "napari-connectome"
WINDOW = (1500, 950)


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values, dtype=float) * 1000.0, q)) if len(values) else float("nan")


# ------------------------------------------------------------------ data
def task_project(cache: Path, size: int) -> Path:
    """The skeletonized synthetic task project in ``cache`` (built once)."""
    root = cache / f"tasks-{size}"
    done = root / "READY"
    if not done.is_file():
        from bench_tasks import build_project

        from napari_connectome.proofread import Proofreader
        from napari_connectome.skeleton import SkeletonStore

        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        t0 = time.perf_counter()
        project, _, _ = build_project(root, size, 24, 1)
        with Proofreader.open(project) as pr:
            SkeletonStore.open(pr)
        done.write_text("ok\n")
        print(f"built the {size}³ task project in {time.perf_counter() - t0:.0f} s", flush=True)
    return root


def copy_project(src: Path) -> tuple[Path, Path]:
    """A throw-away copy of the cached project (its volumes are shared by absolute path)."""
    work = Path(tempfile.mkdtemp(prefix="bench-gui-"))
    shutil.copytree(src / "project", work / "project")
    return work, work / "project"


def zarr_volume(cache: Path, size: int) -> Path:
    """A ``size``³ synthetic OME-Zarr written by ``napari-connectome synthetic`` (cached)."""
    root = cache / f"synthetic-{size}"
    raw = root / "raw.ome.zarr"
    if not (root / "READY").is_file():
        import subprocess

        shutil.rmtree(root, ignore_errors=True)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "napari_connectome", "synthetic", str(root), "--shape",
                        str(size), str(size), str(size), "--quiet"], check=True)
        (root / "READY").write_text("ok\n")
        print(f"wrote the {size}³ OME-Zarr in {time.perf_counter() - t0:.0f} s", flush=True)
    return raw


# ------------------------------------------------------------------ the window
class Paints:
    """Times of the canvas's paints (vispy ``draw`` events: end of each paint)."""

    def __init__(self, viewer) -> None:
        self.scene_canvas = viewer.window._qt_viewer.canvas._scene_canvas
        self.times: list[float] = []
        self.durations: list[float] = []
        self._began = 0.0
        self.scene_canvas.events.draw.connect(self._on_begin, position="first")
        self.scene_canvas.events.draw.connect(self._on_draw, position="last")

    def _on_begin(self, _event) -> None:
        self._began = time.perf_counter()

    def _on_draw(self, _event) -> None:
        self.times.append(time.perf_counter())
        self.durations.append(self.times[-1] - self._began)

    def first_after(self, t: float) -> float | None:
        later = [x for x in self.times if x > t]
        return later[0] if later else None

    def close(self) -> None:
        self.scene_canvas.events.draw.disconnect(self._on_draw)
        self.scene_canvas.events.draw.disconnect(self._on_begin)


def process_until(done, timeout: float) -> bool:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        QApplication.processEvents()
        if done():
            return True
        time.sleep(0.001)
    return False


def max_stall(seconds: float, period_ms: int = 10) -> tuple[float, float]:
    """Run the event loop for ``seconds`` with a ``period_ms`` QTimer: the longest lateness and when it ended (s)."""
    from qtpy.QtCore import QEventLoop, QTimer

    late: list[tuple[float, float]] = []
    last = [time.perf_counter()]
    start = last[0]

    def tick() -> None:
        now = time.perf_counter()
        late.append((now - last[0] - period_ms / 1000.0, now - start))
        last[0] = now

    timer = QTimer()
    timer.setInterval(period_ms)
    timer.timeout.connect(tick)
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    last[0] = time.perf_counter()
    timer.start()
    loop.exec_() if hasattr(loop, "exec_") else loop.exec()
    timer.stop()
    return max(late) if late else (0.0, 0.0)


def open_viewer():
    import napari

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*WINDOW)
    viewer.window._qt_window.raise_()
    return viewer


def bench_tasks(project_root: Path, tasks: int, think_s: float, *, prefetch: bool = True) -> dict:
    from napari_connectome_plugins._microtask_widget import WIDGET_NAME, MicroTaskWidget
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    viewer = open_viewer()
    try:
        viewer.open(str(project_root), plugin=PLUGIN)
        panel = MicroTaskWidget(viewer, prefetch=prefetch)
        viewer.window.add_dock_widget(panel, name=WIDGET_NAME, area="right")
        panel.bind_to_viewer_project()
        if not panel.wait(600) or panel.session is None:
            raise SystemExit("the task session did not open")
        paints = Paints(viewer)
        shown: list[float] = []
        original_show = panel.task_layers.show

        def timed_show(view, **kw):  # when the next task's data is in the layers
            original_show(view, **kw)
            shown.append(time.perf_counter())

        panel.task_layers.show = timed_show
        native = viewer.window._qt_viewer.canvas.native
        process_until(lambda: False, 2.0)  # the first task is drawn; the window settles
        key_to_drawn, stalls, show_ms = [], [], []
        keys = [Qt.Key_N, Qt.Key_S]
        for i in range(tasks):
            stalls.append(max_stall(think_s))  # the proofreader looks at the task
            if panel.current_task is None:
                break
            before = len(shown)
            t0 = time.perf_counter()
            QTest.keyClick(native, keys[i % 2])
            ok = process_until(lambda b=before: len(shown) > b and paints.first_after(shown[-1]) is not None, 60)
            if not ok:
                print(f"task {i}: no paint within 60 s", flush=True)
                continue
            key_to_drawn.append(paints.first_after(shown[-1]) - t0)
            show_ms.append(panel.last_show_ms or float("nan"))
        stalls.append(max_stall(think_s))
        paints.close()
        n_paints = len(paints.times)
        paint_s = list(paints.durations)
        kinds = getattr(panel.task_layers, "view", None)
        panel.close_panel()
        return {"key_to_drawn": key_to_drawn, "stalls": stalls, "show_ms": show_ms, "paints": n_paints,
                "paint_s": paint_s,
                "crop": None if kinds is None else tuple(np.shape(kinds.em))}
    finally:
        viewer.close()


def _zsteps(viewer, steps: int) -> list[float]:
    paints = Paints(viewer)
    viewer.dims.ndisplay = 2
    nz = int(viewer.dims.range[0].stop // viewer.dims.range[0].step)
    process_until(lambda: False, 2.0)
    times = []
    z0 = nz // 2
    for i in range(steps):
        t0 = time.perf_counter()
        step = list(viewer.dims.current_step)
        step[0] = z0 + (i % 20) - 10
        viewer.dims.current_step = tuple(step)
        if process_until(lambda t=t0: paints.first_after(t) is not None, 30):
            times.append(paints.first_after(t0) - t0)
    paints.close()
    return times


def bench_zarr(raw: Path, steps: int) -> dict:
    out = {}
    from napari_connectome_plugins._reader import read_layers  # noqa: F401 (the plugin reads it below)

    viewer = open_viewer()
    try:
        viewer.open(str(raw), plugin=PLUGIN)
        out["suite"] = _zsteps(viewer, steps)
        viewer.layers.clear()
        import zarr

        group = zarr.open_group(str(raw), mode="r")
        paths = [d["path"] for d in (group.attrs.get("ome", group.attrs).get("multiscales"))[0]["datasets"]]
        try:
            viewer.open(str(raw), plugin="napari")
            out["napari_how"] = "napari builtin reader (viewer.open(plugin='napari'))"
        except Exception as exc:  # the builtin reader does not claim OME-Zarr v3 groups
            arrays = [group[p] for p in paths]
            viewer.add_image(arrays, multiscale=len(arrays) > 1, name="raw")
            out["napari_how"] = f"napari add_image of the zarr arrays ({type(exc).__name__} from the builtin reader)"
        out["napari"] = _zsteps(viewer, steps)
    finally:
        viewer.close()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="edge of the task project's volume (voxels)")
    ap.add_argument("--tasks", type=int, default=20)
    ap.add_argument("--think-s", type=float, default=1.5, help="seconds each task is looked at (stall window)")
    ap.add_argument("--zarr-size", type=int, default=520)
    ap.add_argument("--zsteps", type=int, default=40)
    ap.add_argument("--no-prefetch", action="store_true",
                    help="prepare each view on the GUI thread (tells the prefetcher's share of the stalls)")
    ap.add_argument("--no-zarr", action="store_true", help="skip the z-step comparison")
    ap.add_argument("--no-tasks", action="store_true", help="skip the task figures")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "napari-connectome-bench-gui")
    args = ap.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    from qtpy.QtWidgets import QApplication

    if not args.no_tasks:
        src = task_project(args.cache, args.size)
        work, root = copy_project(src)
        try:
            r = bench_tasks(root, args.tasks, args.think_s, prefetch=not args.no_prefetch)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        k = r["key_to_drawn"]
        print(f"task view crop {r['crop']} voxels; {len(k)} tasks (N/S), think {args.think_s:g} s", flush=True)
        print(f"key → next task drawn: p50 {pct(k, 50):.0f} ms, p95 {pct(k, 95):.0f} ms, max {pct(k, 100):.0f} ms "
              f"(panel's own show p50 {np.nanmedian(r['show_ms']):.0f} ms)", flush=True)
        worst, at = max(r["stalls"])
        print(f"longest event-loop stall while a task is shown: {worst * 1000:.0f} ms, ending {at:.2f} s after "
              f"the task was drawn (per task p50 {pct([x for x, _ in r['stalls']], 50):.0f} ms)", flush=True)
        print(f"  canvas paints: {r['paints']} for {len(k)} tasks; one paint p50 {pct(r['paint_s'], 50):.0f} ms, "
              f"max {pct(r['paint_s'], 100):.0f} ms", flush=True)
        after = r["stalls"][1:]  # the first window is before any key
        for key, name in ((0, "N (the ranker learns)"), (1, "S (nothing to learn)")):
            mine = [x for i, (x, _) in enumerate(after) if i % 2 == key]
            print(f"  stalls after {name}: max {pct(mine, 100):.0f} ms, p50 {pct(mine, 50):.0f} ms", flush=True)
    if not args.no_zarr:
        raw = zarr_volume(args.cache, args.zarr_size)
        z = bench_zarr(raw, args.zsteps)
        s, n = pct(z["suite"], 50), pct(z["napari"], 50)
        print(f"z-step → frame drawn, {args.zarr_size}³ OME-Zarr, 2D: suite's reader p50 {s:.0f} ms, "
              f"p95 {pct(z['suite'], 95):.0f} ms; {z['napari_how']}: p50 {n:.0f} ms, "
              f"p95 {pct(z['napari'], 95):.0f} ms; suite / napari = {s / n:.2f}", flush=True)
    QApplication.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
