"""Where a volume lives: local path, remote URI, or a dataset inside a file."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

REMOTE_SCHEMES = ("gs", "s3", "http", "https")
# Extensions of container files whose inner datasets are addressed as FILE.h5/inner/path.
CONTAINER_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5", ".cxi")


@dataclass(frozen=True)
class Location:
    """A parsed URI.

    Attributes
    ----------
    uri
        What the user gave, as given.
    scheme
        ``"file"`` for local paths, else ``"gs"``, ``"s3"``, ``"http"``, ``"https"``.
    path
        Local filesystem path (``scheme == "file"``) or the remote path
        after ``scheme://``; for containers, the container file itself.
    inner
        The dataset path inside a container file (HDF5), or None.
    """

    uri: str
    scheme: str
    path: str
    inner: str | None = None

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    @property
    def local_path(self) -> Path:
        return Path(self.path)

    @property
    def name(self) -> str:
        """A short display name (the last meaningful path component)."""
        base = self.inner or self.path
        parts = [p for p in re.split(r"[/\\]", base.rstrip("/\\")) if p]
        name = parts[-1] if parts else base
        if self.inner and parts and len(parts) >= 1:
            stem = Path(self.path).name
            for suffix in CONTAINER_SUFFIXES + (".lzf",):
                stem = stem.replace(suffix, "")
            name = f"{stem}/{self.inner.strip('/')}"
        for suffix in (".ome.zarr", ".zarr", ".n5", ".ome.tiff", ".ome.tif", ".tiff", ".tif"):
            if name.lower().endswith(suffix):
                return name[: -len(suffix)]
        return name

    def child(self, *parts: str) -> Location:
        """The location of a path below this one (same scheme)."""
        joined = "/".join([self.path.rstrip("/")] + [p.strip("/") for p in parts])
        if self.is_local:
            joined = os.path.join(self.path, *parts)
        return Location(uri=joined if self.is_local else f"{self.scheme}://{joined}", scheme=self.scheme, path=joined)

    def kvstore(self) -> dict | str:
        """A tensorstore kvstore spec for this location."""
        if self.is_local:
            return {"driver": "file", "path": os.path.abspath(self.path) + "/"}
        return f"{self.scheme}://{self.path.rstrip('/')}/"


def parse_uri(uri: str | os.PathLike) -> Location:
    """Parse what a user typed into a :class:`Location`.

    ``FILE.h5/path/to/dataset`` addresses an HDF5 dataset: the longest existing
    prefix ending in an HDF5 suffix is the file, the rest the dataset.
    """
    text = os.fspath(uri)
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://(.*)$", text)
    if m and m.group(1).lower() in REMOTE_SCHEMES:
        return Location(uri=text, scheme=m.group(1).lower(), path=m.group(2))
    if m and m.group(1).lower() == "file":
        text = m.group(2)
    path = os.path.expanduser(text)
    if not os.path.exists(path):
        # FILE.h5/inner/dataset: split at the container file.
        parts = Path(path).parts
        for i in range(len(parts), 0, -1):
            head = Path(*parts[:i])
            if head.is_file() and any(s in head.name.lower() for s in CONTAINER_SUFFIXES):
                inner = "/".join(parts[i:])
                return Location(uri=os.fspath(uri), scheme="file", path=str(head), inner=inner or None)
    return Location(uri=os.fspath(uri), scheme="file", path=path.rstrip("/") or path)
