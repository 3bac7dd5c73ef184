"""A single-level OME-Zarr that a block-wise run writes over one or several runs.

:func:`~napari_connectome.pyramid.write.write_ome_zarr` builds a pyramid in a
staging folder and moves it into place when complete: right for copying,
wrong for an hour of inference, where a crash must not throw the finished
blocks away. A *resumable* output is written in place instead, block by
block, next to a done-ledger (:mod:`napari_connectome.blockwise.ledger`),
and its group attributes say what it is being made from:

``napari_connectome.run``
    The run's signature (inputs, model, parameters, grid): a later run with the
    same signature continues this output; one with another signature is told
    so (:class:`OutputMismatch`) and never writes into it.
``napari_connectome.complete``
    False until every block is written, then True (with the provenance record).

It is a valid OME-Zarr (NGFF 0.4, one level) from the first moment, so a
viewer can open a half-made prediction; the missing chunks read as fill.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_connectome.atomic import remove_dead_temporaries, write_json_atomic
from napari_connectome.errors import InputError, from_os_error
from napari_connectome.provenance import ATTRIBUTE, zarr_attributes
from napari_connectome.pyramid.downsample import LevelPlan
from napari_connectome.pyramid.write import _create_array, _group_attributes


class OutputMismatch(InputError):
    """An output exists but was made from other inputs or parameters (its signature differs)."""


def _read_attrs(path: Path) -> dict | None:
    try:
        data = json.loads((path / ".zattrs").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, f"its attributes cannot be read ({exc}); move it away to recompute it") from None
    return data if isinstance(data, dict) else None


def _open_store(path: Path):
    import tensorstore as ts

    from napari_connectome.volume.cache import tensorstore_context

    try:
        return ts.open({"driver": "zarr", "kvstore": {"driver": "file", "path": str(path / "0")}},
                       open=True, context=tensorstore_context()).result()
    except Exception as exc:
        raise InputError(path / "0", f"cannot be reopened to resume ({exc}); move it away") from None


def output_state(path: str | os.PathLike) -> tuple[dict | None, bool]:
    """``(signature, complete)`` of a resumable output at ``path`` (``(None, False)`` if there is none)."""
    attrs = _read_attrs(Path(path))
    ours = (attrs or {}).get(ATTRIBUTE) or {}
    return ours.get("run"), bool(ours.get("complete", False))


class ResumableOutput:
    """A single-level OME-Zarr written in place, block by block, resumable.

    Use :meth:`open` to create one or continue one; write blocks with
    :meth:`write`; call :meth:`finish` when every block is written.

    Attributes
    ----------
    path
        The OME-Zarr folder.
    signature
        What it is made from (JSON-ready).
    resumed
        True when an earlier run had started it.
    complete
        True when it was finished (by this or an earlier run).
    """

    def __init__(self, path: Path, store, signature: dict, attrs: dict, *, resumed: bool, complete: bool) -> None:
        self.path = path
        self.store = store
        self.signature = signature
        self._attrs = attrs
        self.resumed = resumed
        self.complete = complete

    @classmethod
    def open(cls, path: str | os.PathLike, *, shape, chunks, dtype, axes, voxel_size, offset,
             kind: str, signature: dict, name: str | None = None) -> ResumableOutput:
        """Create the output at ``path``, or continue the one there if it has the same ``signature``.

        Parameters
        ----------
        shape, chunks, dtype, axes
            The array (``axes`` e.g. ``"czyx"`` or ``"zyx"``).
        voxel_size, offset
            Spatial voxel size and offset in nm (``z, y, x``).
        kind
            ``"image"`` or ``"labels"``.
        signature
            What the output is made from; stored, and compared on reopening.

        Raises
        ------
        OutputMismatch
            ``path`` holds an output made from something else (nothing is written).
        InputError
            ``path`` exists and is not one of our outputs, or cannot be written.
        """
        import tensorstore as ts

        from napari_connectome.volume.cache import tensorstore_context

        path = Path(path)
        signature = json.loads(json.dumps(signature))  # what will be read back: lists, not tuples
        dtype = np.dtype(dtype)
        old = _read_attrs(path) if path.exists() else None
        if path.exists() and old is None and any(path.iterdir()):
            raise InputError(path, "exists and is not an output of the suite; move it away or choose another place")
        if old is not None:
            ours = old.get(ATTRIBUTE) or {}
            if ours.get("run") != signature:
                raise OutputMismatch(path, "was made from other inputs or parameters")
            store = _open_store(path)
            if tuple(store.shape) != tuple(shape) or np.dtype(store.dtype.numpy_dtype) != dtype:
                raise OutputMismatch(path, f"holds {tuple(store.shape)} {store.dtype.numpy_dtype}, "
                                           f"not {tuple(shape)} {dtype}")
            # A run killed while writing the metadata left its temporary file: the resumed run owns the group.
            remove_dead_temporaries(path)
            return cls(path, store, signature, old, resumed=True, complete=bool(ours.get("complete")))
        try:
            path.mkdir(parents=True, exist_ok=True)
            store = _create_array(ts, tensorstore_context(), path / "0", tuple(shape), tuple(chunks), dtype,
                                  tuple(axes), "0.4")
        except OSError as exc:
            raise from_os_error(exc, path, action="nothing was written") from None
        except Exception as exc:  # tensorstore words file-system errors its own way
            raise InputError(path, f"cannot be written ({exc})") from None
        full_vs = [1.0 if a not in "zyx" else float(voxel_size["zyx".index(a)]) for a in axes]
        full_off = [0.0 if a not in "zyx" else float(offset["zyx".index(a)]) for a in axes]
        plan = LevelPlan(shape=tuple(shape), voxel_size=tuple(full_vs), factors=(1,) * len(shape))
        attrs = _group_attributes([plan], full_off, tuple(axes), name or path.name.split(".")[0], kind, "0.4")
        attrs[ATTRIBUTE] = {"run": signature, "complete": False}
        out = cls(path, store, signature, attrs, resumed=False, complete=False)
        out._write_metadata()
        return out

    @classmethod
    def reopen(cls, path: str | os.PathLike, *, signature: dict) -> ResumableOutput:
        """The output at ``path``, made with ``signature``, opened to write more blocks (a worker's view)."""
        path = Path(path)
        attrs = _read_attrs(path)
        ours = (attrs or {}).get(ATTRIBUTE) or {}
        if ours.get("run") != signature:
            raise OutputMismatch(path, "was made from other inputs or parameters")
        return cls(path, _open_store(path), signature, attrs, resumed=True, complete=bool(ours.get("complete")))

    def _write_metadata(self) -> None:
        try:
            write_json_atomic(self.path / ".zgroup", {"zarr_format": 2}, tmp_name=".zgroup.partial")
            write_json_atomic(self.path / ".zattrs", self._attrs, tmp_name=".zattrs.partial")
        except OSError as exc:
            raise from_os_error(exc, self.path, action="its metadata was not written") from None

    @property
    def shape(self) -> tuple[int, ...]:
        """The array's shape."""
        return tuple(int(n) for n in self.store.shape)

    @property
    def dtype(self) -> np.dtype:
        """The array's NumPy dtype."""
        return np.dtype(self.store.dtype.numpy_dtype)

    def write(self, key: tuple[slice, ...], data: np.ndarray) -> None:
        """Write ``data`` at ``key`` (whole chunks: a block-wise run's write boxes)."""
        self.store[key].write(data).result()

    def read(self, key: tuple[slice, ...]) -> np.ndarray:
        """Read back what was written at ``key``."""
        return self.store[key].read().result()

    def finish(self, record: dict[str, Any]) -> None:
        """Mark the output complete and store its provenance ``record`` (times and host left out)."""
        self._attrs[ATTRIBUTE] = {"run": self.signature, "complete": True, **zarr_attributes(record)[ATTRIBUTE]}
        self._write_metadata()
        self.complete = True
