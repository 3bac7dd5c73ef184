"""The engine stays light and GUI-free; the import contracts hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import missing

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "vispy", "magicgui", "torch")


def test_engine_import_loads_no_qt_napari_or_torch():
    code = (
        "import sys, napari_connectome, napari_connectome.cli, napari_connectome.project, "
        "napari_connectome.samples, napari_connectome_models, napari_connectome_resources\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"engine import pulled in: {out.stdout.strip()}"


def test_engine_import_defers_heavy_io_libraries():
    # tensorstore, h5py and friends load when a volume is opened, not at import.
    code = (
        "import sys, napari_connectome\n"
        "heavy = ('tensorstore', 'h5py', 'tifffile', 'zarr', 'imageio', 'dask', 'sklearn', 'skimage')\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_import_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        missing("import-linter is not installed")
    out = subprocess.run([exe], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "BROKEN" not in out.stdout
