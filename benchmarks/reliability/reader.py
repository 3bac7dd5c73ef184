"""Reader fuzzing: valid volumes of every format the suite reads, mutated, then opened three ways.

Seeds (small, several chunks, two levels where the format has levels) are
written with the suite itself (``write_ome_zarr``, ``napari-connectome
convert``, ``synthetic``, ``project create``) and with each format's own
library (zarr v2/v3 incl. sharding, tensorstore N5 and precomputed, h5py,
tifffile, imageio). Each case copies one seed, applies one mutation
(:mod:`benchmarks.reliability.mutate`) drawn from the campaign seed and the
case number, and runs, in a persistent worker (one interpreter for many
cases; see :class:`~benchmarks.reliability.core.PersistentWorker`):

``read``
    ``open_volume`` and read every level fully (a level that claims more
    than 64 MiB is read in a box of the original shape plus a margin), level
    0 compared with the original voxels;
``info``
    ``napari-connectome info URI --json`` (``project info`` for a project);
``check``
    ``napari-connectome check URI`` ("command missing" while it does not exist).

Every 25th case (full campaign) also runs ``info`` in a fresh interpreter and
compares its exit with the worker's, so the in-process shortcut is checked.

What each outcome means is in :func:`judge_read`, :func:`judge_info` and
:func:`judge_check`.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.reliability import mutate as mt
from benchmarks.reliability.core import (
    Case,
    PersistentWorker,
    Run,
    Verdict,
    cli,
    cli_has,
    error_message,
    failure_class,
    findings,
    make_case,
    refusal_problem,
    run_process,
)

CATEGORY = "reader"
VS = (30.0, 8.0, 8.0)
SHAPE = (24, 48, 64)
CHUNKS = (8, 16, 16)
TIMEOUT = 20.0
#: A note about chunks that are not there.
_MISSING_NOTE = re.compile(r"\bmissing\b|\babsent\b|read as (?:0|zero|the fill)|fill[ _]value|not written|"
                           r"no chunk|empty chunk", re.IGNORECASE)


@dataclass
class Seed:
    """A valid volume the cases start from."""

    name: str
    folder: Path  # holds the volume and expected.npy
    uri: str  # relative to the folder (may name an HDF5 dataset inside a file)
    root: str  # the file or folder that mutations work on, relative to the folder
    kind: str  # dir | file | slices | project
    compressed: bool
    checksummed: bool
    fmt: str

    @property
    def expected(self) -> Path:
        return self.folder / "expected.npy"


def _image() -> np.ndarray:
    from scipy import ndimage

    rng = np.random.default_rng(12345)
    noise = ndimage.gaussian_filter(rng.random(SHAPE), 2.0)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return (1 + noise * 250).astype(np.uint8)  # no zeros: a chunk read as zeros shows


def _labels() -> np.ndarray:
    z, y, x = np.indices(SHAPE)
    return (1 + (z // 6) * 100 + (y // 12) * 10 + x // 16).astype(np.uint32)


def _write_zarr(path: Path, data, *, fmt: int, compressors="default", shards=None, group: str | None = None):
    import zarr

    kwargs = {}
    if compressors != "default":
        kwargs["compressors"] = compressors
    if shards is not None:
        kwargs["shards"] = shards
    if group is not None:
        root = zarr.open_group(str(path), mode="w", zarr_format=fmt)
        arr = root.create_array(group, shape=data.shape, chunks=CHUNKS, dtype=data.dtype, fill_value=0,
                                config={"write_empty_chunks": True}, **kwargs)
    else:
        arr = zarr.create_array(store=str(path), shape=data.shape, chunks=CHUNKS, dtype=data.dtype, zarr_format=fmt,
                                fill_value=0, config={"write_empty_chunks": True}, **kwargs)
    arr[...] = data
    arr.attrs.update({"resolution": list(VS), "offset": [0, 0, 0]})


def _write_n5(path: Path, data, *, levels: int):
    import tensorstore as ts

    for k in range(levels):
        level = np.ascontiguousarray(data[:, :: 2**k, :: 2**k])
        dst = path / f"s{k}" if levels > 1 else path
        store = ts.open({
            "driver": "n5", "kvstore": {"driver": "file", "path": str(dst)},
            "metadata": {"dimensions": list(reversed(level.shape)), "blockSize": [16, 16, 8],
                         "dataType": str(level.dtype), "compression": {"type": "gzip"}},
            "create": True,
        }).result()
        store.write(level.T).result()
        attrs_file = dst / "attributes.json"
        attrs = json.loads(attrs_file.read_text())
        if levels > 1:
            attrs["downsamplingFactors"] = [2**k, 2**k, 1]
        else:
            attrs["resolution"] = list(reversed(VS))
        attrs_file.write_text(json.dumps(attrs))
    if levels > 1:
        (path / "attributes.json").write_text(json.dumps({"n5": "2.5.1", "resolution": list(reversed(VS))}))


def _write_precomputed(path: Path, data, *, kind: str, encoding: str):
    import tensorstore as ts

    for k in range(2):
        level = np.ascontiguousarray(data[:, :: 2**k, :: 2**k])
        scale = {"size": list(reversed(level.shape)), "resolution": [8 * 2**k, 8 * 2**k, 30],
                 "voxel_offset": [0, 0, 0], "chunk_size": [16, 16, 8], "encoding": encoding}
        if encoding == "compressed_segmentation":
            scale["compressed_segmentation_block_size"] = [8, 8, 4]
        spec = {"driver": "neuroglancer_precomputed", "kvstore": {"driver": "file", "path": str(path)},
                "scale_metadata": scale, "create": True}
        if k == 0:
            spec["multiscale_metadata"] = {"type": kind, "data_type": str(level.dtype), "num_channels": 1}
        store = ts.open(spec).result()
        store[ts.d["channel"][0]].translate_to[0, 0, 0].write(level.T).result()


def _read_zarr_level0(path: Path) -> np.ndarray:
    """Level 0 of an OME-Zarr read with the zarr library (the expected voxels of a suite-written seed)."""
    import zarr

    group = zarr.open_group(str(path), mode="r")
    return np.asarray(group["0"][...])


def build_seeds(folder: Path, *, only: Sequence[str] | None = None) -> tuple[list[Seed], list[str]]:
    """Write every seed volume (or those named in ``only``) under ``folder``.

    Returns the seeds, and notes on those that could not be made.
    """
    import h5py
    import imageio.v3 as iio
    import numcodecs
    import tifffile
    import zarr

    from napari_connectome.pyramid import write_ome_zarr

    folder.mkdir(parents=True, exist_ok=True)
    image, labels = _image(), _labels()
    inputs = folder / "_inputs"
    inputs.mkdir(exist_ok=True)
    with h5py.File(inputs / "data.h5", "w") as f:
        f["raw"] = image
        f["labels"] = labels
    seeds: list[Seed] = []
    notes: list[str] = []

    def add(name, fmt, uri, root, kind, data, writer, *, compressed=True, checksummed=False):
        if only is not None and name not in only:
            return
        d = folder / re.sub(r"[^\w.-]+", "_", name)
        if d.exists():
            shutil.rmtree(d)
        d.mkdir()
        try:
            result = writer(d)
            expected = result if isinstance(result, np.ndarray) else data
            np.save(d / "expected.npy", expected)
            seeds.append(Seed(name, d, uri, root, kind, compressed, checksummed, fmt))
        except Exception as exc:  # noqa: BLE001 - a writer this machine lacks: say so
            notes.append(f"seed {name} could not be written: {type(exc).__name__}: {exc}"[:300])

    def ome(ngff, data, kind):
        return lambda d: write_ome_zarr(d / "vol.ome.zarr", data, voxel_size=VS, kind=kind, chunks=16, ngff=ngff)

    add("ome-zarr 0.4 image", "ome-zarr", "vol.ome.zarr", "vol.ome.zarr", "dir", image, ome("0.4", image, "image"))
    add("ome-zarr 0.5 image", "ome-zarr", "vol.ome.zarr", "vol.ome.zarr", "dir", image, ome("0.5", image, "image"))
    add("ome-zarr 0.4 labels", "ome-zarr", "vol.ome.zarr", "vol.ome.zarr", "dir", labels, ome("0.4", labels, "labels"))
    add("ome-zarr 0.5 labels", "ome-zarr", "vol.ome.zarr", "vol.ome.zarr", "dir", labels, ome("0.5", labels, "labels"))

    def by_convert(d):
        run = run_process(cli("convert", f"{inputs / 'data.h5'}/raw", d / "vol.ome.zarr", "--chunks", "16",
                              "--voxel-size", *map(str, VS), "--quiet"))
        if run.rc != 0:
            raise RuntimeError(f"convert failed: {run.stderr.strip()[-200:]}")

    add("ome-zarr by convert", "ome-zarr", "vol.ome.zarr", "vol.ome.zarr", "dir", image, by_convert)

    def by_synthetic(d):
        run = run_process(cli("synthetic", d / "syn", "--shape", "16", "40", "40", "--quiet"))
        if run.rc != 0:
            raise RuntimeError(f"synthetic failed: {run.stderr.strip()[-200:]}")
        shutil.move(str(d / "syn" / "raw.ome.zarr"), str(d / "vol.ome.zarr"))
        shutil.rmtree(d / "syn")
        return _read_zarr_level0(d / "vol.ome.zarr")

    add("ome-zarr by synthetic", "ome-zarr", "vol.ome.zarr", "vol.ome.zarr", "dir", None, by_synthetic)
    add("zarr v2 zstd", "zarr", "vol.zarr", "vol.zarr", "dir", image,
        lambda d: _write_zarr(d / "vol.zarr", image, fmt=2, compressors=numcodecs.Zstd(level=3)))
    add("zarr v2 uncompressed", "zarr", "vol.zarr", "vol.zarr", "dir", image,
        lambda d: _write_zarr(d / "vol.zarr", image, fmt=2, compressors=None), compressed=False)
    add("zarr v2 gzip labels", "zarr", "vol.zarr", "vol.zarr", "dir", labels,
        lambda d: _write_zarr(d / "vol.zarr", labels, fmt=2, compressors=numcodecs.GZip()), checksummed=True)
    add("zarr v2 group/array", "zarr", "container.zarr/raw", "container.zarr", "dir", image,
        lambda d: _write_zarr(d / "container.zarr", image, fmt=2, group="raw", compressors=numcodecs.Zstd()))
    add("zarr v3 zstd", "zarr", "vol.zarr", "vol.zarr", "dir", image, lambda d: _write_zarr(d / "vol.zarr", image, fmt=3))
    add("zarr v3 gzip", "zarr", "vol.zarr", "vol.zarr", "dir", image,
        lambda d: _write_zarr(d / "vol.zarr", image, fmt=3, compressors=zarr.codecs.GzipCodec()), checksummed=True)
    add("zarr v3 sharded", "zarr", "vol.zarr", "vol.zarr", "dir", image,
        lambda d: _write_zarr(d / "vol.zarr", image, fmt=3, shards=(16, 32, 32)))
    add("n5 single dataset", "n5", "vol.n5", "vol.n5", "dir", image, lambda d: _write_n5(d / "vol.n5", image, levels=1),
        checksummed=True)
    add("n5 multiscale", "n5", "vol.n5", "vol.n5", "dir", image, lambda d: _write_n5(d / "vol.n5", image, levels=2),
        checksummed=True)
    add("precomputed raw", "precomputed", "vol", "vol", "dir", image,
        lambda d: _write_precomputed(d / "vol", image, kind="image", encoding="raw"), compressed=False)
    add("precomputed compressed_segmentation", "precomputed", "vol", "vol", "dir", labels,
        lambda d: _write_precomputed(d / "vol", labels, kind="segmentation", encoding="compressed_segmentation"))

    def h5(d, **kw):
        with h5py.File(d / "data.h5", "w") as f:
            ds = f.create_dataset("volumes/raw", data=image, **kw)
            ds.attrs["resolution"] = list(VS)
            ds.attrs["offset"] = [0.0, 0.0, 0.0]

    add("hdf5 chunked gzip", "hdf5", "data.h5/volumes/raw", "data.h5", "file", image,
        lambda d: h5(d, chunks=CHUNKS, compression="gzip"), checksummed=True)
    add("hdf5 chunked fletcher32", "hdf5", "data.h5/volumes/raw", "data.h5", "file", image,
        lambda d: h5(d, chunks=CHUNKS, fletcher32=True), compressed=False, checksummed=True)

    def h5_single(d):
        with h5py.File(d / "one.h5", "w") as f:
            f["stack"] = labels

    add("hdf5 one contiguous dataset", "hdf5", "one.h5", "one.h5", "file", labels, h5_single, compressed=False)
    add("tiff multipage", "tiff", "stack.tif", "stack.tif", "file", image,
        lambda d: tifffile.imwrite(d / "stack.tif", image), compressed=False)
    add("tiff zlib", "tiff", "stack.tif", "stack.tif", "file", image,
        lambda d: tifffile.imwrite(d / "stack.tif", image, compression="zlib"), checksummed=True)
    add("ome-tiff", "tiff", "stack.ome.tif", "stack.ome.tif", "file", image,
        lambda d: tifffile.imwrite(d / "stack.ome.tif", image, ome=True,
                                   metadata={"axes": "ZYX", "PhysicalSizeZ": 0.03, "PhysicalSizeY": 0.008,
                                             "PhysicalSizeX": 0.008}), compressed=False)
    add("imagej tiff", "tiff", "stack.tif", "stack.tif", "file", image,
        lambda d: tifffile.imwrite(d / "stack.tif", image, imagej=True, resolution=(1 / 8, 1 / 8),
                                   metadata={"spacing": 30, "unit": "nm", "axes": "ZYX"}), compressed=False)

    def slices(d, suffix):
        (d / "slices").mkdir()
        for z in range(image.shape[0]):
            if suffix == ".png":
                iio.imwrite(d / "slices" / f"s{z}.png", image[z])
            else:
                tifffile.imwrite(d / "slices" / f"s{z}.tif", image[z])

    add("png slices", "image-stack", "slices", "slices", "slices", image, lambda d: slices(d, ".png"), checksummed=True)
    add("tiff slices", "image-stack", "slices", "slices", "slices", image, lambda d: slices(d, ".tif"), compressed=False)

    def project(d):
        run = run_process(cli("project", "create", d / "P", "--raw", f"{inputs / 'data.h5'}/raw",
                              "--supervoxels", f"{inputs / 'data.h5'}/labels", "--voxel-size", *map(str, VS)))
        if run.rc != 0:
            raise RuntimeError(f"project create failed: {run.stderr.strip()[-200:]}")

    add("project folder", "project", "P", "P", "project", image, project)
    return seeds, notes


# ====================================================================== one case
def _files(root: Path) -> tuple[list[Path], list[Path]]:
    """(metadata files, data files) under a folder seed."""
    meta, data = [], []
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            (meta if p.name in mt.METADATA_NAMES else data).append(p)
    return meta, data


def _level0(files: list[Path], root: Path) -> list[Path]:
    first = [p for p in files if p.relative_to(root).parts[0] in ("0", "s0", "c", "8_8_30")]
    return first or files


def make_mutation(seed: Seed, case_dir: Path, rng: np.random.Generator) -> Mutation:
    """Copy the seed into ``case_dir`` and damage the copy; returns what was done."""
    shutil.copytree(seed.folder, case_dir, symlinks=True, ignore=shutil.ignore_patterns("expected.npy"))
    root = case_dir / seed.root
    rel = lambda p: str(Path(p).relative_to(case_dir))  # noqa: E731
    if seed.kind in ("dir", "project"):
        meta, data = _files(root)
        roll = rng.random()
        if seed.kind == "project":
            manifest = root / "napari-connectome.json"
            if roll < 0.85:
                return mt.mutate_json(manifest, rng, rel(manifest))
            kind = str(rng.choice(["delete", "directory", "symlink-loop", "junk"]))
            if kind == "junk":
                (root / "notes ünïcödé.txt").write_text("not part of the project")
                return mt.Mutation("project:junk", rel(root), "a junk file beside the manifest", benign=True)
            manifest.unlink()
            if kind == "directory":
                manifest.mkdir()
            elif kind == "symlink-loop":
                manifest.symlink_to(manifest.name)
            return mt.Mutation(f"project:manifest-{kind}", rel(manifest))
        if roll < 0.45 and meta:
            target = meta[int(rng.integers(len(meta)))]
            return mt.mutate_json(target, rng, rel(target))
        if roll < 0.85 and data:
            pool = _level0(data, root)
            target = pool[int(rng.integers(len(pool)))]
            if rng.random() < 0.06 and len(pool) > 1:
                other = pool[int(rng.integers(len(pool)))]
                if other != target and other.stat().st_size > 0:
                    return mt.swap_chunks(target, other, rel(target), rel(other))
            return mt.mutate_file(target, rng, rel(target), compressed=seed.compressed, checksummed=seed.checksummed)
        kind = str(rng.choice(["junk-file", "junk-dir", "meta-delete", "meta-directory", "level-chunks-gone",
                               "root-symlink-loop", "level-renamed"]))
        if kind == "junk-file":
            (root / "README ünïcödé.txt").write_text("notes 😀")
            return mt.Mutation("dir:junk-file", rel(root), "a text file added", benign=True)
        if kind == "junk-dir":
            (root / "backup-😀").mkdir()
            (root / "backup-😀" / "x.bin").write_bytes(b"\0" * 10)
            return mt.Mutation("dir:junk-dir", rel(root), "an unrelated folder added", benign=True)
        if kind in ("meta-delete", "meta-directory") and meta:
            target = meta[int(rng.integers(len(meta)))]
            target.unlink()
            if kind == "meta-directory":
                target.mkdir()
            return mt.Mutation(f"dir:{kind}", rel(target))
        if kind == "level-chunks-gone" and data:
            pool = _level0(data, root)
            for p in pool:
                p.unlink()
            return mt.Mutation("dir:level-chunks-gone", rel(root), f"all {len(pool)} level-0 chunks deleted", missing=True)
        if kind == "level-renamed":
            first = next((p for p in sorted(root.iterdir()) if p.is_dir()), None)
            if first is not None:
                first.rename(first.with_name(first.name + ".old"))
                return mt.Mutation("dir:level-renamed", rel(first), "a level folder renamed", missing=True)
        shutil.rmtree(root)
        root.symlink_to(root.name)
        return mt.Mutation("dir:root-symlink-loop", rel(root), "the volume is a link to itself")
    if seed.kind == "file":
        roll = rng.random()
        if roll < 0.2 and seed.fmt == "hdf5":
            return _mutate_h5_attrs(root, rng, rel(root), seed)
        if roll < 0.2 and seed.fmt == "tiff":
            return _mutate_tiff_description(root, rng, rel(root), case_dir)
        return mt.mutate_file(root, rng, rel(root), compressed=seed.compressed, checksummed=seed.checksummed)
    # slices
    names = sorted(p for p in root.iterdir() if p.is_file())
    roll = rng.random()
    if roll < 0.6:
        target = names[int(rng.integers(len(names)))]
        m = mt.mutate_file(target, rng, rel(target), compressed=True, checksummed=seed.checksummed)
        if m.op == "file:delete":
            m.missing, m.detectable = False, False  # a folder of slices has no list of what should be there
        return m
    kind = str(rng.choice(["odd-shape", "other-dtype", "text-file", "rgb", "empty-slice-dir"]))
    import imageio.v3 as iio
    import tifffile

    suffix = names[0].suffix
    if kind == "odd-shape":
        p = root / f"s{len(names) // 2}b{suffix}"
        (iio.imwrite(p, np.zeros((10, 12), np.uint8)) if suffix == ".png" else tifffile.imwrite(p, np.zeros((10, 12), np.uint8)))
        return mt.Mutation("slices:odd-shape", rel(p), "a slice of another shape added")
    if kind == "other-dtype":
        p = root / f"s{len(names) // 2}b{suffix}"
        arr = np.full(SHAPE[1:], 1000, np.uint16)
        (iio.imwrite(p, arr) if suffix == ".png" else tifffile.imwrite(p, arr))
        return mt.Mutation("slices:other-dtype", rel(p), "a 16-bit slice among 8-bit ones")
    if kind == "rgb":
        p = root / f"s{len(names) // 2}b{suffix}"
        arr = np.zeros((*SHAPE[1:], 3), np.uint8)
        (iio.imwrite(p, arr) if suffix == ".png" else tifffile.imwrite(p, arr, photometric="rgb"))
        return mt.Mutation("slices:rgb", rel(p), "an RGB slice added")
    if kind == "empty-slice-dir":
        (root / f"zz{suffix}").mkdir()
        # Not benign: where it sorts, a folder named like a slice would take a section's place
        # (the suite refuses it rather than guess; reading the other slices would also be clean).
        return mt.Mutation("slices:folder-named-like-a-slice", rel(root / f"zz{suffix}"), "a folder named like a slice")
    (root / "notes.txt").write_text("not a slice")
    return mt.Mutation("slices:text-file", rel(root / "notes.txt"), "a text file among the slices", benign=True)


def _mutate_h5_attrs(path: Path, rng, rel: str, seed: Seed) -> mt.Mutation:
    import h5py

    values = ["abc", [-1.0, -1.0, -1.0], [np.nan] * 3, [1e308] * 3, [1.0, 2.0], 0.0, [0.0, 0.0, 0.0],
              np.zeros((100, 100)), [np.inf] * 3, "30,8,8", [30, 8, 8, 1]]
    value = values[int(rng.integers(len(values)))]
    key = str(rng.choice(["resolution", "offset", "element_size_um"]))
    with h5py.File(path, "r+") as f:
        ds = f["volumes/raw"] if "volumes" in f else f["stack"]
        ds.attrs[key] = value
    return mt.Mutation("hdf5:attr", rel, f"{key} = {mt._short(value)}", detectable=False)


def _mutate_tiff_description(path: Path, rng, rel: str, case_dir: Path) -> mt.Mutation:
    import tifffile

    data = tifffile.imread(path)
    texts = [
        "ImageJ=1.11a\nimages=24\nslices=24\nspacing=abc\nunit=nm\n",
        "ImageJ=1.11a\nimages=24\nslices=24\nspacing=-30\nunit=nm\n",
        "ImageJ=1.11a\nimages=24\nslices=24\nspacing=nan\nunit=furlong\n",
        "ImageJ=1.11a\nimages=1000\nslices=1000\nspacing=30\nunit=nm\n",
        "ImageJ=1.11a\nimages=24\nchannels=3\nslices=8\nhyperstack=true\n",
        '<?xml version="1.0"?><OME><Image><Pixels DimensionOrder="XYZCT" Type="uint8" SizeX="64" SizeY="48" '
        'SizeZ="1000" SizeC="1" SizeT="1" PhysicalSizeX="abc"/></Image></OME>',
        '<?xml version="1.0"?><OME><Image><Pixels DimensionOrder="XYZCT" Type="uint8" SizeX="64" SizeY="48" '
        'SizeZ="24" SizeC="1" SizeT="1" PhysicalSizeX="-0.008" PhysicalSizeZ="1e308"/></Image></OME>',
        "<OME" * 1000,
        "\x01\x7f garbage description",
    ]
    text = texts[int(rng.integers(len(texts)))]
    path.unlink()
    tifffile.imwrite(path, data, description=text, metadata=None)
    detectable = "images=1000" in text or 'SizeZ="1000"' in text  # channels=3 × slices=8: a valid 4-D reading
    return mt.Mutation("tiff:description", rel, text[:60].replace("\n", " "), detectable=detectable)


Mutation = mt.Mutation


# ====================================================================== judging
def _voxel_sizes_bad(info: dict) -> str | None:
    for k, level in enumerate(info.get("levels", [])):
        for key in ("voxel_size_nm", "offset_nm"):
            for v in level.get(key, []):
                if v is None or not math.isfinite(float(v)) or (key == "voxel_size_nm" and float(v) <= 0):
                    return f"level {k} {key} {level.get(key)}"
        if any(int(s) < 1 for s in level.get("shape", [])):
            return f"level {k} shape {level.get('shape')}"
    return None


def _judge_exit(run: Run, m: Mutation) -> Verdict | None:
    """The verdict of a run that crashed, hung or refused (exit 2); None when it exited 0."""
    verdict = Verdict()
    failed = failure_class(run)
    if failed is not None:
        verdict.add(*failed)
        return verdict
    if run.rc == 2:
        problem = refusal_problem(run)
        if problem is not None:
            verdict.add(*problem)
        elif m.benign:
            verdict.add("other", f"refused a volume that is still valid: {error_message(run)[:200]}")
        return verdict
    return None


def judge_read(run: Run, m: Mutation, expected_shape: tuple) -> Verdict:
    """The read of every level: the voxels must be the original ones, or the damage must be said."""
    verdict = _judge_exit(run, m)
    if verdict is not None:
        return verdict
    verdict = Verdict()
    r = getattr(run, "result", None) or {}
    notes = " ".join(r.get("notes", [])) + run.stderr
    noted = bool(_MISSING_NOTE.search(notes))
    if r.get("comparable") is False:
        if m.benign:
            verdict.add("silent wrong", f"read as something else: {r.get('why')}")
        elif m.detectable:
            verdict.add("silent wrong", f"read without error as something else: {r.get('why')}")
        return verdict
    shape = tuple(r.get("shape", ()))
    if m.benign and shape != tuple(expected_shape):
        verdict.add("silent wrong", f"shape {shape}, the volume has {tuple(expected_shape)}")
    if r.get("overlap_equal") is False:
        if r.get("diff_are_zero"):
            if not noted:
                verdict.add("silent wrong", f"{r.get('n_diff')} voxels read as 0 (missing or unreadable chunks) "
                                            "without a note")
        elif m.detectable or m.benign:
            verdict.add("silent wrong", f"{r.get('n_diff')} voxels differ from the original and nothing was said")
        else:
            verdict.notes.append("voxels differ, but no reader can tell (valid data, changed meaning)")
    if r.get("beyond_voxels") and r.get("beyond_zero") and not noted:
        verdict.add("silent wrong", f"the metadata claims more than the data ({shape}); the extra "
                                    f"{r.get('beyond_voxels')} voxels read as 0 without a note")
    if m.missing and r.get("overlap_equal") is not False and not noted:
        verdict.notes.append("chunks removed but the voxels read are the original ones")
    return verdict


def judge_info(run: Run, m: Mutation, expected_shape: tuple, *, project: bool) -> Verdict:
    verdict = _judge_exit(run, m)
    if verdict is not None:
        return verdict
    verdict = Verdict()
    if project:
        return verdict
    try:
        info = json.loads(run.stdout)
    except ValueError:
        verdict.add("silent wrong", "exit 0 but --json printed no JSON")
        return verdict
    bad = _voxel_sizes_bad(info) if isinstance(info, dict) else "not an object"
    if bad:
        verdict.add("silent wrong", f"info reports a nonsensical {bad}")
    if m.benign and isinstance(info, dict) and tuple(info.get("shape", ())) != tuple(expected_shape):
        verdict.add("silent wrong", f"info reports shape {info.get('shape')}, the volume has {list(expected_shape)}")
    return verdict


def judge_check(run: Run, m: Mutation, read_verdict: Verdict, read_run: Run) -> Verdict:
    """``check`` must find something (exit 2) wherever a read fails or is wrong, and pass a valid volume.

    Its contract: exit 0 "all is well"; exit 2 with its findings on stdout
    (``error:``/``warning: FILE: problem``), or with one error line on
    stderr when the volume cannot even be opened.
    """
    verdict = Verdict()
    failed = failure_class(run)
    if failed is not None:
        verdict.add(*failed)
        return verdict
    read_ok = read_run.rc == 0 and read_verdict.classification == "clean"
    read_noted = read_run.rc == 0 and bool(_MISSING_NOTE.search(" ".join((getattr(read_run, "result", None) or {})
                                                                            .get("notes", []))))
    if run.rc == 2:
        problem = refusal_problem(run, allow_findings=True)
        if problem is not None:
            verdict.add(*problem)
        elif m.benign and read_ok and not read_noted:
            said = error_message(run) or " | ".join(findings(run)[:2])
            verdict.add("other", f"check fails a volume that is still valid: {said[:200]}")
        return verdict
    mismatch = [n for n in read_verdict.notes if n.startswith("the manifest records")]
    if mismatch and read_ok:
        verdict.add("silent wrong", f"check says all is well but {mismatch[0]}")
        return verdict
    if not read_ok or read_noted or m.missing:
        why = ("the read refused it" if read_run.rc == 2 else
               "chunks are missing" if (read_noted or m.missing) else f"the read was {read_verdict.classification}")
        if read_run.rc == 0 and read_ok and m.missing and not read_noted:
            return verdict  # chunks removed, yet every voxel read back: nothing to find
        verdict.add("silent wrong", f"check says all is well on a damaged volume ({why})")
    return verdict


# ====================================================================== the cases
@dataclass
class ReaderPlan:
    seeds: list[Seed]
    work: Path
    seed: int
    n: int


def seed_cases(seeds: list[Seed], work: Path, worker_of: Callable[[], PersistentWorker]) -> list[Callable[[], list[Case]]]:
    """The unmutated seeds: each must read back its own voxels (else it is left out of the fuzzing)."""
    out = []
    for s in seeds:
        def one(s=s) -> list[Case]:
            d = work / f"seed-{s.folder.name}"
            shutil.rmtree(d, ignore_errors=True)
            shutil.copytree(s.folder, d, symlinks=True)
            try:
                return _run_three(s, d, mt.Mutation("none", s.root, "unmutated seed", benign=True), worker_of(),
                                  name=f"seed {s.name} (unmutated)")
            finally:
                shutil.rmtree(d, ignore_errors=True)
        out.append(one)
    return out


def _run_three(seed: Seed, d: Path, m: Mutation, worker: PersistentWorker, *, name: str,
               cross_check: bool = False) -> list[Case]:
    expected = np.load(seed.expected, mmap_mode="r")
    uri = str(d / seed.uri)
    details = {"seed": seed.name, "mutation": m.to_dict()}
    if seed.kind == "project":
        read_job = {"kind": "project-read", "dir": uri}
    else:
        read_job = {"kind": "read", "uri": uri, "expected": str(seed.expected), "cap_bytes": 64 * 2**20}
    read = worker.call(read_job, timeout=TIMEOUT)
    if seed.kind == "project":
        rv = Verdict()
        failed = failure_class(read)
        if failed is not None:
            rv.add(*failed)
        elif read.rc == 2:
            problem = refusal_problem(read)
            if problem is not None:
                rv.add(*problem)
            elif m.benign:
                rv.add("other", f"refused a project that is still valid: {error_message(read)[:200]}")
        else:
            for role, rec in ((getattr(read, "result", None) or {}).get("inputs") or {}).items():
                if rec.get("recorded_shape") != rec.get("shape"):
                    # The commands use the volumes themselves; `check` must say it (judge_check).
                    rv.notes.append(f"the manifest records {role} with shape {rec.get('recorded_shape')}, "
                                    f"the volume has {rec.get('shape')}")
    else:
        rv = judge_read(read, m, expected.shape)
    cases = [make_case(f"{CATEGORY}/read", name, read, rv, **details)]
    info_argv = ["project", "info", uri] if seed.kind == "project" else ["info", uri, "--json"]
    info = worker.call({"kind": "cli", "argv": info_argv}, timeout=TIMEOUT)
    iv = judge_info(info, m, expected.shape, project=seed.kind == "project")
    info.argv = cli(*info_argv)
    if cross_check:  # the same command in a fresh interpreter must end the same way
        real = run_process(cli(*info_argv), timeout=TIMEOUT)
        if real.rc != info.rc or (failure_class(real) or ("",))[0] != (failure_class(info) or ("",))[0]:
            iv.add("other", f"in a fresh process: exit {real.rc} ({(real.stderr.strip().splitlines() or [''])[-1][:160]}), "
                            f"in the persistent worker: exit {info.rc}")
        else:
            iv.notes.append("cross-checked in a fresh process: same exit")
    cases.append(make_case(f"{CATEGORY}/info", name, info, iv, **details))
    if cli_has(("check",)):
        chk = worker.call({"kind": "cli", "argv": ["check", uri, "--quiet"]}, timeout=TIMEOUT)
        cv = judge_check(chk, m, rv, read)
        chk.argv = cli("check", uri)
        cases.append(make_case(f"{CATEGORY}/check", name, chk, cv, **details))
    else:
        cases.append(Case(category=f"{CATEGORY}/check", name=name, command=" ".join(["napari-connectome", "check", uri]),
                          classification="missing", reason="command missing: napari-connectome check",
                          details=details))
    read.argv = ["<read>", uri]
    cases[0].command = f"open_volume({seed.uri}) + read every level" if seed.kind != "project" else \
        f"open_project({seed.uri}) + read every input"
    return cases


def fuzz_cases(seeds: list[Seed], work: Path, *, seed: int, n: int, worker_of: Callable[[], PersistentWorker],
               cross_check_every: int = 0) -> list[Callable[[], list[Case]]]:
    """``n`` mutation cases, round-robin over the seeds, each deterministic from (seed, case number).

    Every ``cross_check_every``-th case also runs ``info`` in a fresh process
    and compares its exit with the persistent worker's (0: never).
    """
    out = []
    for i in range(n):
        def one(i=i) -> list[Case]:
            s = seeds[i % len(seeds)]
            rng = np.random.default_rng([seed, i])
            d = work / f"case-{i:05d}"
            _force_rm(d)
            try:
                m = make_mutation(s, d, rng)
            except Exception as exc:  # noqa: BLE001 - a mutation the seed cannot take: say so
                _force_rm(d)
                return [Case(category=f"{CATEGORY}/read", name=f"#{i} {s.name}", command="",
                             classification="clean", reason=f"mutation not applicable ({type(exc).__name__}: {exc})"[:200],
                             details={"seed": s.name, "skipped": True})]
            try:
                return _run_three(s, d, m, worker_of(), name=f"#{i} {s.name}: {m.op} {m.target} {m.detail}"[:200],
                                  cross_check=bool(cross_check_every) and i % cross_check_every == 0)
            finally:
                _force_rm(d)
        out.append(one)
    return out


def _force_rm(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)
