"""Shared plumbing of the tensorstore backends (OME-Zarr, zarr, N5, precomputed).

* :class:`Store` reads the small JSON metadata files of a location: local
  folders through the file system, anything else (``gs://``, ``s3://``,
  ``http(s)://``) through a tensorstore kvstore in the shared context, so a
  remote volume needs no other client library.
* :func:`unit_to_nm` turns the length units of NGFF, N5 and funlib metadata
  into nanometres.
* :func:`open_array` opens one array through tensorstore and wraps it as a
  :class:`~napari_connectome.volume.lazy.TensorStoreArray`.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

from napari_connectome.errors import InputError
from napari_connectome.volume.location import Location

# Nanometres per unit: the UDUNITS-2 length names NGFF allows, plus the
# abbreviations N5 writers (n5-viewer, BigDataViewer, paintera) and funlib use.
_NM_PER_UNIT: dict[str, float] = {
    "yoctometer": 1e-15,
    "zeptometer": 1e-12,
    "attometer": 1e-9,
    "femtometer": 1e-6,
    "picometer": 1e-3,
    "angstrom": 0.1,
    "nanometer": 1.0,
    "micrometer": 1e3,
    "millimeter": 1e6,
    "centimeter": 1e7,
    "decimeter": 1e8,
    "meter": 1e9,
    "hectometer": 1e11,
    "kilometer": 1e12,
    "megameter": 1e15,
    "gigameter": 1e18,
    "terameter": 1e21,
    "petameter": 1e24,
    "exameter": 1e27,
    "zettameter": 1e30,
    "yottameter": 1e33,
    "inch": 2.54e7,
    "foot": 3.048e8,
    "yard": 9.144e8,
    "mile": 1.609344e12,
    "parsec": 3.0856775814913673e25,
    # abbreviations
    "pm": 1e-3,
    "å": 0.1,
    "a": 0.1,
    "nm": 1.0,
    "um": 1e3,
    "µm": 1e3,  # micro sign U+00B5
    "μm": 1e3,  # greek mu U+03BC
    "micron": 1e3,
    "mm": 1e6,
    "cm": 1e7,
    "m": 1e9,
}


def unit_to_nm(unit: str) -> float | None:
    """Nanometres in one ``unit`` (``"micrometer"``, ``"µm"``, ``"nm"``, ...); None if not a length."""
    text = str(unit).strip().lower().replace("metre", "meter")
    if text in _NM_PER_UNIT:
        return _NM_PER_UNIT[text]
    if text.endswith("s") and text[:-1] in _NM_PER_UNIT and len(text) > 3:
        return _NM_PER_UNIT[text[:-1]]  # plurals: "nanometers", "microns"
    return None


def inconsistent(source: str, problem: str) -> InputError:
    """The error for metadata that contradicts itself or the arrays."""
    return InputError(source, f"inconsistent pyramid metadata: {problem}")


def numbers(values: Any, *, source: str, what: str, n: int | None = None) -> tuple[float, ...]:
    """A list of finite numbers from JSON metadata, else :func:`inconsistent`."""
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise inconsistent(source, f"{what} {values!r} is not a list of numbers") from None
    if not all(math.isfinite(v) for v in out):
        raise inconsistent(source, f"{what} {list(out)} has a value that is not finite")
    if n is not None and len(out) != n:
        raise inconsistent(source, f"{what} has {len(out)} values for {n} axes")
    return out


def _one_line(text: str, limit: int = 240) -> str:
    # tensorstore appends the whole JSON spec to its messages; a person needs the cause.
    text = re.sub(r"\s*\[tensorstore_spec=.*$", "", str(text), flags=re.S)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


class Store:
    """Read-only access to the keys below a location (a folder or a URI prefix).

    Parameters
    ----------
    location
        Where the volume lives. Local paths use the file system; every other
        scheme goes through tensorstore's kvstore (``location.kvstore()``).
    """

    def __init__(self, location: Location) -> None:
        self.location = location
        self._kv = None

    @property
    def local(self) -> bool:
        return self.location.is_local

    def uri(self, key: str = "") -> str:
        """The URI of ``key`` below this location, for messages and sources."""
        key = key.strip("/")
        if not key:
            return self.location.uri
        if self.local:
            return os.path.join(self.location.path, *key.split("/"))
        return self.location.uri.rstrip("/") + "/" + key

    def child(self, key: str) -> Store:
        """The store of a sub-folder."""
        key = key.strip("/")
        if not key:
            return self
        sub = self.location.child(*key.split("/"))
        return Store(Location(uri=self.uri(key), scheme=sub.scheme, path=sub.path))

    def kvstore(self, key: str = "") -> dict | str:
        """A tensorstore kvstore spec for the folder ``key`` below this location."""
        return self.child(key).location.kvstore()

    def _remote(self):
        if self._kv is None:
            import tensorstore as ts

            from napari_connectome.volume.cache import tensorstore_context

            try:
                self._kv = ts.KvStore.open(self.location.kvstore(), context=tensorstore_context()).result()
            except Exception as exc:  # bad bucket name, unsupported scheme
                raise InputError(self.location.uri, f"could not be opened: {_one_line(exc)}") from None
        return self._kv

    def read_bytes(self, key: str) -> bytes | None:
        """The bytes stored under ``key``; None when there is nothing."""
        key = key.strip("/")
        if self.local:
            path = self.uri(key)
            if not os.path.isfile(path):
                return None
            try:
                with open(path, "rb") as f:
                    return f.read()
            except OSError as exc:
                raise InputError(path, f"could not be read: {exc.strerror or exc}") from None
        try:
            result = self._remote().read(key).result()
        except Exception as exc:  # network, permissions
            raise InputError(self.uri(key), f"could not be read: {_one_line(exc)}") from None
        if result.state != "value":
            return None
        return bytes(result.value)

    def exists(self, key: str) -> bool:
        """Whether something is stored under ``key``."""
        if self.local:
            return os.path.isfile(self.uri(key))
        return self.read_bytes(key) is not None

    def read_json(self, key: str) -> Any | None:
        """The JSON document stored under ``key``; None when there is none.

        Raises
        ------
        InputError
            The file exists but is not valid JSON.
        """
        raw = self.read_bytes(key)
        if raw is None:
            return None
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise InputError(self.uri(key), f"is not valid JSON metadata ({_one_line(exc, 120)})") from None

    def read_attrs(self, key: str) -> dict:
        """A JSON object under ``key``; ``{}`` when missing, :class:`InputError` when not an object."""
        doc = self.read_json(key)
        if doc is None:
            return {}
        if not isinstance(doc, dict):
            raise InputError(self.uri(key), "metadata is not a JSON object")
        return doc

    def subfolders(self) -> list[str] | None:
        """Names of the folders directly below; None where that cannot be listed cheaply.

        Remote stores are not listed: object stores have no folders, and
        listing every chunk key of a large volume would take minutes.
        """
        if not self.local:
            return None
        try:
            return sorted(e.name for e in os.scandir(self.location.path) if e.is_dir())
        except OSError:
            return None


def open_array(
    spec: dict,
    *,
    source: str,
    on_error: str,
    notify: Callable | None,
    view: Callable[[Any], Any] | None = None,
):
    """Open ``spec`` read-only in the shared context as a lazy array.

    Parameters
    ----------
    spec
        A tensorstore spec (driver, kvstore, driver options).
    source
        The dataset's path or URI: error messages name it.
    on_error, notify
        The read-error policy (see :class:`~napari_connectome.volume.lazy.TensorStoreArray`).
    view
        Applied to the opened store (transpose, drop a channel) before wrapping.
    """
    return wrap_store(open_store(spec, source=source), source=source, on_error=on_error, notify=notify, view=view)


def open_store(spec: dict, *, source: str):
    """Open ``spec`` read-only in the shared context; one-line :class:`InputError` on failure."""
    return resolve(start_open(spec), source=source)


#: The metadata file tensorstore parses for each driver.
_METADATA_FILES = {"zarr": ".zarray", "zarr3": "zarr.json", "n5": "attributes.json", "neuroglancer_precomputed": "info"}


def _parse_metadata_first(spec: dict) -> None:
    """Parse a local array's metadata file in Python before tensorstore does.

    Tensorstore's parser recurses without a bound: metadata nested a hundred
    thousand levels deep crashes the whole program (SIGSEGV). Python's parser
    stops at its recursion limit, which no real metadata comes near, and the
    file is then refused in one line.
    """
    kv = spec.get("kvstore")
    name = _METADATA_FILES.get(spec.get("driver", ""))
    if not isinstance(kv, dict) or kv.get("driver") != "file" or name is None:
        return
    folder = os.path.join(str(kv.get("path", "")), str(spec.get("path", "")))
    path = os.path.join(folder, name)
    try:
        if not os.path.isfile(path) or os.path.getsize(path) > 64 * 2**20:
            return  # absent (tensorstore says so) or too large to be metadata (tensorstore refuses it)
        with open(path, "rb") as f:
            raw = f.read()
        json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise InputError(path, "the metadata is nested too deeply to be real array metadata") from None
    except (OSError, UnicodeDecodeError, ValueError):
        return  # tensorstore reports these in its own words


def start_open(spec: dict):
    """Start opening ``spec`` (a future), so several levels open concurrently."""
    import tensorstore as ts

    from napari_connectome.volume.cache import tensorstore_context

    _parse_metadata_first(spec)
    return ts.open(spec, read=True, context=tensorstore_context())


def resolve(future, *, source: str):
    """Wait for a :func:`start_open` future; one-line :class:`InputError` on failure."""
    try:
        return future.result()
    except Exception as exc:
        raise InputError(source, f"could not be opened: {_one_line(exc)}") from None


def wrap_store(store, *, source: str, on_error: str, notify, view=None):
    """Wrap an opened tensorstore (after ``view``) as a TensorStoreArray."""
    from napari_connectome.volume.lazy import TensorStoreArray

    if view is not None:
        store = view(store)
    return TensorStoreArray(store, source=source, on_error=on_error, notify=notify)


def downsampling_factors(shape0: Sequence[int], shape: Sequence[int]) -> tuple[float, ...]:
    """Whole-number factors between two level shapes (for metadata that gives none)."""
    return tuple(float(max(1, round(a / b))) if b else 1.0 for a, b in zip(shape0, shape, strict=True))


def by_size(levels: list, spatial: Sequence[int]) -> list:
    """Levels ordered largest first (finest voxels first), stable for ties."""

    def volume(level) -> float:
        return math.prod(level.voxel_size[i] for i in spatial) if spatial else 0.0

    return sorted(levels, key=volume)
