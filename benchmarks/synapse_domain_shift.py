"""Synapse detection under domain shift: site and partner P/R/F before and after fine-tuning on a few annotations.

Protocol (the synapse issue's "domain shift" acceptance item):

* **Shifted render.** The synthetic generator of the network's training data
  (:mod:`napari_connectome.synthetic`, ``synapse_density`` ``--density`` sites
  per µm³, the network's voxel size, ``--shape`` voxels) with other render
  parameters (:data:`SHIFT`, each a CLI option):

  - contrast: ``cytoplasm_level`` 175 → 150, ``membrane_level`` 35 → 60,
    ``extracellular_level`` 105 → 120 (membranes lighter, cytoplasm darker:
    the cytoplasm–membrane step falls from 140 to 90 grey levels);
  - noise: ``noise_sd`` 10 → 20 grey levels;
  - vesicle size: ``vesicle_radius_nm`` 20 → 14.

  Neurons, synapses and labels are those of the same seed rendered normally
  (the render parameters change grey values only), so the two renders of a
  seed have the same ground truth. The script prints the grey-value mean and
  standard deviation of both renders.
* **Before.** The base network (``--model``: a registry name, default
  ``synapses-synthetic-10nm``, or a weights file (``.pt``) such as a training
  script exports, so the benchmark can be rerun on another base) predicts
  each test volume (``--test-seeds``, default 320 321: never used in its
  training, which the script checks against the seeds in its metadata)
  whole; detection is :func:`~napari_connectome.synapses.detect.detect_synapses`
  with the true segmentation at the base model's mask threshold (chosen on
  its own held-out volume: the registry entry's, also for a weights file
  with a registered model's sha256, else the weights' metadata's; a weights
  file with neither needs ``--threshold``, which overrides it in any case).
  Scores
  (:func:`~napari_connectome.synapses.evaluate_synapses`): sites by Hungarian
  matching within 200 nm, partners within 400 nm at both ends and the same
  neuron pair; counts pooled over the seeds. Measured on the shifted render
  and, for reference, on the same seeds rendered normally.
* **Simulated annotations.** Shifted volumes of ``--annotation-seeds``
  (default 240–249: not the model's training or held-out seeds, not test seeds
  — seeds 300 and up are reserved for tests) hold the true synapses a
  proofreader could annotate. For each N of ``--annotations`` (default 20 50)
  and each protocol of ``--protocol`` (``points``, ``boxes`` or ``both``, the
  default) one fine-tuning run; the exact numbers of connections and volumes
  used are reported.

  - **points** (sparse points in many volumes): :func:`choose_annotations`
    shuffles the pool's synapses (``--seed``) and takes whole synapses (every
    connection of a polyadic synapse) until at least N connections are
    chosen. Because the order is one shuffle, the N = 20 annotations are a
    subset of the N = 50 ones. They stand for points a proofreader placed or
    confirmed. Each annotation volume that holds a chosen synapse is trained
    on with targets from the chosen rows only and ``known_radius_nm``
    ``--known-radius`` (250: half the generator's 500 nm minimum spacing of
    presynaptic sites): the mask loss counts only within that distance of an
    annotated post point. The script reports how many true mask voxels of
    *unannotated* synapses still fall inside that region (they are trained as
    background; 0 is the intent). ``near_fraction`` 1.0: every patch is
    centred near an annotation.
  - **boxes** (dense annotation in a few small cubes, the usual practice):
    :func:`choose_boxes` takes whole annotation volumes in seed order
    (``--box-seed``: a seeded order instead) until their connections reach N
    or more; every synapse of each is annotated
    (:func:`box_volume`: targets from the whole table, known everywhere,
    ``known_radius_nm`` None). The N = 20 volumes are a prefix of the N = 50
    ones. ``near_fraction`` the base run's (0.5, its default, when not
    recorded): the network also sees background far from synapses.

* **Fine-tuning** (:func:`fine_tune`): from the base weights (the sha256 is
  checked), the base run's network, input patch and augmentation, the base
  run's ``hard_negative_weight`` (0 when its metadata has none), Adam
  ``--lr`` 2e-4, ``--iterations`` 300, batch 1, ``--train-seed`` 0,
  ``--threads`` torch threads; checkpoints in a scratch folder (``--work``,
  default a new folder under the temporary directory, never in git; one
  sub-folder per run, e.g. ``boxes-20``). The last checkpoint is evaluated:
  there is no held-out annotation to choose another.
* **After.** Each fine-tuned network is evaluated exactly as the base network
  was, at the **base model's threshold** for every protocol and N (not
  re-chosen: a person with 20 annotations has nothing to choose it on).

The table has one row per network (base, then ``points-N`` and ``boxes-N``),
the connections and volumes its fine-tuning used, the pooled shifted site
P/R/F with TP/FP/FN and partner F, the unshifted site and partner F, and the
fine-tuning seconds; ``--json FILE`` writes every figure (per seed too).

Run (about 25 minutes with one torch thread on a shared 2-core machine, ``--protocol both``: 1423 s
measured, of which 1160 s fine-tuning, 206–568 s a run as the machine's other jobs allowed; one
protocol about half)::

    nice -n 19 python benchmarks/synapse_domain_shift.py [--model synapses-synthetic-10nm] \\
        [--protocol points|boxes|both] [--test-seeds 320 321] [--annotation-seeds 240 ... 249] \\
        [--annotations 20 50] [--iterations 300] [--shape 96 160 160] [--threads 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ is not installed: import its siblings from the checkout
    sys.path.insert(0, str(REPO))

from benchmarks.synapses_synthetic import pooled, scores, volume  # noqa: E402
from napari_connectome.inference import predict_affinities  # noqa: E402
from napari_connectome.inference.models import load_model  # noqa: E402
from napari_connectome.synapses.detect import detect_synapses  # noqa: E402
from napari_connectome.train.synapse_loop import SynapseVolume  # noqa: E402
from napari_connectome.train.synapse_targets import synapse_targets  # noqa: E402

#: The shifted render: contrast (grey levels), noise (grey levels) and vesicle size (nm).
SHIFT = {"cytoplasm_level": 150.0, "membrane_level": 60.0, "extracellular_level": 120.0, "noise_sd": 20.0,
         "vesicle_radius_nm": 14.0}


def choose_annotations(synapse_ids, n: int, seed: int) -> list[np.ndarray]:
    """Rows of whole synapses, in a random order, until at least ``n`` rows are chosen.

    Parameters
    ----------
    synapse_ids
        One ``(rows,)`` array per volume: the ``synapse_id`` column of its
        table (rows of one polyadic synapse share it).
    n
        Connections (rows) wanted.
    seed
        Seeds the one shuffle of all synapses of all volumes: a larger ``n``
        with the same seed takes the synapses of a smaller one and more.

    Returns
    -------
    One sorted array of row indices per volume (empty where none was chosen).

    Raises
    ------
    ValueError
        The volumes hold fewer than ``n`` rows.
    """
    ids = [np.asarray(s, dtype=np.int64).reshape(-1) for s in synapse_ids]
    total = sum(len(s) for s in ids)
    if total < n:
        raise ValueError(f"{n} annotations wanted but the volumes hold only {total} connections")
    keys = [(v, int(sid)) for v, s in enumerate(ids) for sid in np.unique(s)]
    chosen: list[list[int]] = [[] for _ in ids]
    count = 0
    for k in np.random.default_rng(seed).permutation(len(keys)):
        if count >= n:
            break
        v, sid = keys[k]
        rows = np.flatnonzero(ids[v] == sid)
        chosen[v].extend(int(r) for r in rows)
        count += len(rows)
    return [np.sort(np.asarray(c, dtype=np.int64)) for c in chosen]


def choose_boxes(connections, n: int, seed: int | None = None) -> list[int]:
    """Volumes annotated whole, in order, until their connections reach at least ``n``.

    Parameters
    ----------
    connections
        Connections (rows) of each volume.
    n
        Connections wanted.
    seed
        None: the volumes in the order given (seed order in the benchmark).
        Otherwise the order is one seeded shuffle of the volumes.

    Returns
    -------
    Indices of the volumes taken, in the order taken: the shortest prefix of
    the order whose connections sum to ``n`` or more (a volume without
    synapses in it is taken too: a box with nothing to annotate). A larger
    ``n`` with the same seed takes the volumes of a smaller one and more.

    Raises
    ------
    ValueError
        The volumes hold fewer than ``n`` connections.
    """
    counts = [int(c) for c in connections]
    if sum(counts) < n:
        raise ValueError(f"{n} annotations wanted but the volumes hold only {sum(counts)} connections")
    order = range(len(counts)) if seed is None else np.random.default_rng(seed).permutation(len(counts))
    taken, total = [], 0
    for v in order:
        if total >= n:
            break
        taken.append(int(v))
        total += counts[v]
    return taken


def box_volume(raw: np.ndarray, labels: np.ndarray, table, *, voxel_size, offset=(0.0, 0.0, 0.0), pad: int,
               mask_radius_nm: float = 80.0, hard_radius_nm: float = 150.0) -> SynapseVolume:
    """A fully annotated training volume: every synapse of ``table``, targets known everywhere."""
    return SynapseVolume.from_arrays(raw, labels, subset(table, np.arange(len(table.synapse_id))),
                                     voxel_size=voxel_size, offset=offset, pad=pad, mask_radius_nm=mask_radius_nm,
                                     hard_radius_nm=hard_radius_nm, known_radius_nm=None)


def subset(table, rows: np.ndarray) -> dict:
    """The columns of ``rows`` of a synapse table, as the training targets take them."""
    return {"synapse_id": np.asarray(table.synapse_id)[rows], "pre": np.asarray(table.pre)[rows],
            "post": np.asarray(table.post)[rows], "post_id": np.asarray(table.post_id)[rows]}


def annotated_volume(raw: np.ndarray, labels: np.ndarray, table, rows: np.ndarray, *, voxel_size,
                     offset=(0.0, 0.0, 0.0), pad: int, mask_radius_nm: float = 80.0,
                     hard_radius_nm: float = 150.0, known_radius_nm: float = 250.0) -> tuple[SynapseVolume, int]:
    """A training volume that knows the synapses ``rows`` of ``table`` only, and what it gets wrong.

    Returns the :class:`~napari_connectome.train.synapse_loop.SynapseVolume`
    (targets of the chosen rows, known within ``known_radius_nm`` of their
    post points) and the number of voxels of the **whole** table's mask that
    lie in the known region but not in the chosen rows' mask: voxels of
    unannotated synapses that training would take for background (0 when the
    known region is small enough).
    """
    chosen = subset(table, rows)
    vol = SynapseVolume.from_arrays(raw, labels, chosen, voxel_size=voxel_size, offset=offset, pad=pad,
                                    mask_radius_nm=mask_radius_nm, hard_radius_nm=hard_radius_nm,
                                    known_radius_nm=known_radius_nm)
    full, _ = synapse_targets(subset(table, np.arange(len(table.synapse_id))), labels, voxel_size=voxel_size,
                              offset=offset, mask_radius_nm=mask_radius_nm)
    leak = int(np.count_nonzero((full > 0) & (vol.mask == 0) & (vol.known > 0)))
    return vol, leak


def fine_tune(volumes: list[SynapseVolume], folder, *, init: dict, net: dict, input_shape, iterations: int,
              lr: float = 2e-4, hard_negative_weight: float = 0.0, near_fraction: float = 1.0,
              augment: dict | None = None, seed: int = 0, threads: int = 1, data: dict | None = None, log=print):
    """``(network in eval mode, seconds)``: the last checkpoint of a fine-tuning run on annotated volumes.

    ``near_fraction`` of the patches are centred near an annotation (1.0 by
    default: every one); the run (``folder``) starts from ``init``
    (``{"model": NAME, "sha256": …}`` or ``{"weights": PATH, "sha256": …}``)
    and writes only its last checkpoint.
    """
    from napari_connectome.train.synapse_loop import (
        SynapseTrainConfig,
        synapse_augment,
        synapse_network_from_checkpoint,
        train_synapses,
    )

    if augment is None:
        from dataclasses import asdict

        augment = asdict(synapse_augment())
    config = SynapseTrainConfig(net=net, input_shape=tuple(int(n) for n in input_shape), iterations=int(iterations),
                                seed=int(seed), lr=float(lr), near_fraction=float(near_fraction),
                                hard_negative_weight=float(hard_negative_weight), augment=augment,
                                checkpoint_every=int(iterations), threads=int(threads), data=data or {}, init=init)
    t0 = time.perf_counter()
    last = train_synapses(volumes, config, folder, log=log)
    seconds = time.perf_counter() - t0
    if last is None:
        raise RuntimeError(f"{folder}: the fine-tuning run wrote no checkpoint")
    return synapse_network_from_checkpoint(last), seconds


def base_detect(entry, meta: dict) -> dict:
    """The detection settings chosen for the base network: its registry entry's, else the metadata's, else {}.

    A weights file whose sha256 is that of a registered synapse model has
    that model's entry.
    """
    detect = entry.detect
    if detect is None:
        from napari_connectome_models.registry import load_registry

        detect = next((e.detect for e in load_registry().values()
                       if e.sha256 == entry.sha256 and e.task == "synapses" and e.detect), None)
    return dict(detect or meta.get("detect") or {})


def base_threshold(entry, meta: dict) -> float | None:
    """The mask threshold chosen for the base network (:func:`base_detect`), or None."""
    chosen = base_detect(entry, meta).get("threshold")
    return None if chosen is None else float(chosen)


def evaluate(net, seeds, render: dict, cache: dict, args, threshold: float, *, min_volume_nm3: float = 1e5,
             pre_reach_nm: float | None = None, orient_radius_nm: float | None = None) -> dict:
    """Per-seed and pooled site and partner scores of ``net`` with the true segmentation."""
    rows = []
    for seed in seeds:
        spec, raw, gt, truth = cache[(seed, tuple(sorted(render.items())))]
        pred = predict_affinities(raw, net, block_shape=(64, 64, 64), threads=args.threads)
        found = detect_synapses(pred, gt, voxel_size=spec.voxel_size, offset=spec.offset, threshold=threshold,
                                min_volume_nm3=min_volume_nm3, pre_reach_nm=pre_reach_nm, raw=raw,
                                orient_radius_nm=orient_radius_nm).table
        rows.append({"seed": seed, "true_connections": len(truth), "detected_connections": len(found),
                     "true_segmentation": scores(found, truth, args)})
    return {"rows": rows, **{part: pooled(rows, "true_segmentation", part) for part in ("sites", "partners")}}


def run(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    entry, net, meta = load_model(args.model, task="synapses")
    vs = tuple(float(v) for v in (entry.voxel_size_nm or meta.get("voxel_size_nm")))
    data = meta.get("synthetic", {})
    train = meta.get("train_config", {})
    used = set()
    for record in (data, train.get("data") or {}):  # the export's record and the training run's own
        used |= {int(s) for s in record.get("train_seeds", [])}
        if record.get("holdout_seed") is not None:
            used.add(int(record["holdout_seed"]))
    for name, seeds in (("test", args.test_seeds), ("annotation", args.annotation_seeds)):
        if used & set(seeds):
            raise SystemExit(f"{name} seeds {sorted(used & set(seeds))} were used in training {args.model}")
    if set(args.test_seeds) & set(args.annotation_seeds):
        raise SystemExit("annotation and test seeds must differ")
    if any(s >= 300 for s in args.annotation_seeds):
        raise SystemExit("seeds 300 and up are test seeds: choose annotation seeds below 300")
    threshold = args.threshold if args.threshold is not None else base_threshold(entry, meta)
    if threshold is None:
        raise SystemExit(f"{args.model} has no chosen mask threshold (no registry entry with its sha256, none in "
                         f"its metadata): pass --threshold")
    net_config = net.config.to_dict()
    input_shape = tuple(train.get("input_shape", (64, 80, 80)))
    hard_weight = float(train.get("hard_negative_weight", 0.0))
    base_near = float(train.get("near_fraction", 0.5))
    mask_radius = float(data.get("mask_radius_nm", 80.0))
    hard_radius = float(data.get("hard_radius_nm", 150.0))
    shift = {"cytoplasm_level": args.cytoplasm_level, "membrane_level": args.membrane_level,
             "extracellular_level": args.extracellular_level, "noise_sd": args.noise_sd,
             "vesicle_radius_nm": args.vesicle_radius}
    renders = {"shifted": shift, "unshifted": {}}

    cache, grey = {}, []
    for seed in args.test_seeds:
        for name, render in renders.items():
            cache[(seed, tuple(sorted(render.items())))] = v = volume(seed, args.shape, vs, args.density, **render)
            grey.append({"seed": seed, "render": name, "mean": float(v[1].mean()), "sd": float(v[1].std())})
    spec_n, spec_s = cache[(args.test_seeds[0], ())][0], cache[(args.test_seeds[0], tuple(sorted(shift.items())))][0]
    print(f"model {args.model} ({entry.sha256[:12]}), voxel size {vs} nm, mask threshold {threshold:g}; "
          f"test seeds {args.test_seeds}, {list(args.shape)} voxels, {args.density:g} synapses/µm³")
    print("  render        cytoplasm membrane extracellular noise_sd vesicle_nm  (cyto-membrane)/noise")
    for name, s in (("unshifted", spec_n), ("shifted", spec_s)):
        print(f"  {name:13s} {s.cytoplasm_level:9.0f} {s.membrane_level:8.0f} {s.extracellular_level:13.0f} "
              f"{s.noise_sd:8.0f} {s.vesicle_radius_nm:10.0f}  {(s.cytoplasm_level - s.membrane_level) / s.noise_sd:.1f}")
    for g in grey:
        print(f"  seed {g['seed']} {g['render']:9s}: grey mean {g['mean']:.1f}, sd {g['sd']:.1f}")

    results = {}
    t0 = time.perf_counter()
    chosen = base_detect(entry, meta)
    orient = chosen.get("orient_radius_nm") if args.orient is None else (
        None if args.orient == "off" else float(args.orient))
    settings = {"min_volume_nm3": float(chosen.get("min_volume_nm3", 1e5)), "pre_reach_nm": chosen.get("pre_reach_nm"),
                "orient_radius_nm": orient}
    results["base"] = {name: evaluate(net, args.test_seeds, render, cache, args, threshold, **settings)
                       for name, render in renders.items()}
    results["base"]["train_seconds"] = 0.0
    print(f"base network evaluated in {time.perf_counter() - t0:.0f} s", flush=True)

    # the annotation pool: shifted volumes of the annotation seeds
    pool = []
    for seed in args.annotation_seeds:
        spec, raw, gt, truth = volume(seed, args.shape, vs, args.density, **shift)
        pool.append((seed, spec, raw, gt, truth))
    print(f"annotation pool: seeds {args.annotation_seeds}, "
          f"{sum(len(p[4]) for p in pool)} connections in "
          f"{sum(np.unique(p[4].synapse_id).size for p in pool)} synapses "
          f"(per seed: {', '.join(f'{p[0]}: {len(p[4])}' for p in pool)})", flush=True)

    if Path(args.model).is_file():
        init = {"weights": str(Path(args.model).resolve()), "sha256": entry.sha256}
    else:
        init = {"model": entry.name, "sha256": entry.sha256}
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="synapse-domain-shift-"))
    print(f"fine-tuning checkpoints under {work}", flush=True)
    protocols = ["points", "boxes"] if args.protocol == "both" else [args.protocol]
    near = {"points": 1.0, "boxes": base_near}
    common = {"generator": "napari_connectome.synthetic", "render": shift, "shape": list(args.shape),
              "voxel_size": list(vs), "synapse_density": args.density, "mask_radius_nm": mask_radius,
              "hard_radius_nm": hard_radius}
    pad = max(net.config.context)
    annotations = {name: {} for name in protocols}
    for protocol in protocols:
        for n in args.annotations:
            if protocol == "points":
                picks = choose_annotations([p[4].synapse_id for p in pool], n, args.seed)
                volumes, leak, per_seed = [], 0, {}
                for (seed, spec, raw, gt, truth), rows in zip(pool, picks, strict=True):
                    if not len(rows):
                        continue
                    vol, lk = annotated_volume(raw, gt, truth, rows, voxel_size=vs, offset=spec.offset, pad=pad,
                                               mask_radius_nm=mask_radius, hard_radius_nm=hard_radius,
                                               known_radius_nm=args.known_radius)
                    volumes.append(vol)
                    leak += lk
                    per_seed[seed] = [int(r) for r in rows]
                n_rows = sum(len(r) for r in picks)
                n_syn = sum(np.unique(p[4].synapse_id[r]).size for p, r in zip(pool, picks, strict=True))
                known = sum(int(v.known.sum()) for v in volumes)
                print(f"\npoints, N = {n}: {n_rows} connections in {n_syn} synapses from {len(volumes)} volumes; "
                      f"known region {known} voxels, {leak} mask voxels of unannotated synapses inside it",
                      flush=True)
                record = {"rows": n_rows, "synapses": n_syn, "volumes": len(volumes), "known_voxels": known,
                          "unannotated_mask_voxels_in_known": leak, "rows_per_seed": per_seed}
                description = {**common, "protocol": "points",
                               "annotation_rows": {str(k): v for k, v in per_seed.items()}, "annotations_asked": n,
                               "selection_seed": args.seed, "known_radius_nm": args.known_radius}
            else:
                taken = choose_boxes([len(p[4]) for p in pool], n, args.box_seed)
                volumes = [box_volume(pool[i][2], pool[i][3], pool[i][4], voxel_size=vs, offset=pool[i][1].offset,
                                      pad=pad, mask_radius_nm=mask_radius, hard_radius_nm=hard_radius)
                           for i in taken]
                seeds = [pool[i][0] for i in taken]
                n_rows = sum(len(pool[i][4]) for i in taken)
                n_syn = sum(np.unique(pool[i][4].synapse_id).size for i in taken)
                known = sum(int(np.prod(v.shape)) for v in volumes)
                print(f"\nboxes, N = {n}: {n_rows} connections in {n_syn} synapses, all of {len(volumes)} whole "
                      f"volumes (seeds {seeds}); targets known everywhere ({known} voxels)", flush=True)
                record = {"rows": n_rows, "synapses": n_syn, "volumes": len(volumes), "known_voxels": known,
                          "seeds": seeds}
                description = {**common, "protocol": "boxes", "box_seeds": seeds, "annotations_asked": n,
                               "box_order_seed": args.box_seed}
            key = f"{protocol}-{n}"
            tuned, seconds = fine_tune(volumes, work / key, init=init, net=net_config, input_shape=input_shape,
                                       iterations=args.iterations, lr=args.lr, hard_negative_weight=hard_weight,
                                       near_fraction=near[protocol], augment=train.get("augment"),
                                       seed=args.train_seed, threads=args.threads, data=description,
                                       log=lambda s: print(f"  [{time.strftime('%H:%M:%S')}] {s}", flush=True))
            print(f"  fine-tuned in {seconds:.0f} s", flush=True)
            results[key] = {name: evaluate(tuned, args.test_seeds, render, cache, args, threshold, **settings)
                            for name, render in renders.items()}
            results[key]["train_seconds"] = seconds
            annotations[protocol][str(n)] = record
    return {"model": args.model, "sha256": entry.sha256, "voxel_size": list(vs), "threshold": threshold,
            "test_seeds": args.test_seeds, "annotation_seeds": args.annotation_seeds, "shape": list(args.shape),
            "density": args.density, "shift": shift, "grey": grey, "annotations": annotations,
            "training": {"iterations": args.iterations, "lr": args.lr,
                         "near_fraction": {k: near[k] for k in protocols},
                         "hard_negative_weight": hard_weight, "input_shape": list(input_shape),
                         "seed": args.train_seed, "selection_seed": args.seed, "box_order_seed": args.box_seed,
                         "threads": args.threads, "known_radius_nm": args.known_radius, "init": init,
                         "work": str(work)},
            "results": results, "wall_seconds": time.perf_counter() - t_start}


def report(result: dict) -> None:
    def f(x: float) -> str:
        return "  nan" if x != x else f"{x:.3f}"

    t = result["training"]
    print(f"\nmodel {result['model']} ({result['sha256'][:12]}), mask threshold {result['threshold']:g} (the base "
          f"model's, kept), test seeds {result['test_seeds']} pooled, {t['iterations']} iterations, near_fraction "
          f"{', '.join(f'{k} {v:g}' for k, v in t['near_fraction'].items())}, hard_negative_weight "
          f"{t['hard_negative_weight']:g}")
    print("| network | connections / volumes | shifted site P | R | F | TP/FP/FN | shifted partner F "
          "| unshifted site F | unshifted partner F | training s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in result["results"].items():
        s, u = r["shifted"], r["unshifted"]
        used = "-"
        if name != "base":
            protocol, n = name.rsplit("-", 1)
            a = result["annotations"][protocol][n]
            used = f"{a['rows']} / {a['volumes']}"
        print(f"| {name} | {used} | {f(s['sites']['precision'])} | {f(s['sites']['recall'])} | "
              f"{f(s['sites']['f_score'])} | {s['sites']['tp']}/{s['sites']['fp']}/{s['sites']['fn']} | "
              f"{f(s['partners']['f_score'])} | {f(u['sites']['f_score'])} | "
              f"{f(u['partners']['f_score'])} | {r['train_seconds']:.0f} |")
    print(f"wall time {result['wall_seconds']:.0f} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="synapses-synthetic-10nm",
                        help="base network: registry name or weights file (.pt; default synapses-synthetic-10nm)")
    parser.add_argument("--test-seeds", nargs="+", type=int, default=[320, 321])
    parser.add_argument("--annotation-seeds", nargs="+", type=int, default=list(range(240, 250)))
    parser.add_argument("--annotations", nargs="+", type=int, default=[20, 50],
                        help="connections to annotate, one fine-tuning run each per protocol (default 20 50)")
    parser.add_argument("--protocol", choices=("points", "boxes", "both"), default="both",
                        help="simulated annotations: whole synapses known near their post points (points), "
                             "whole volumes known everywhere (boxes), or both (default)")
    parser.add_argument("--seed", type=int, default=0,
                        help="points: order in which synapses are annotated (default 0)")
    parser.add_argument("--box-seed", type=int, default=None,
                        help="boxes: shuffle the annotation volumes with this seed (default: seed order)")
    parser.add_argument("--train-seed", type=int, default=0, help="fine-tuning seed (patches; default 0)")
    parser.add_argument("--shape", nargs=3, type=int, default=[96, 160, 160], metavar=("Z", "Y", "X"))
    parser.add_argument("--density", type=float, default=3.0, help="synapses per µm³ (default 3)")
    parser.add_argument("--cytoplasm-level", type=float, default=SHIFT["cytoplasm_level"])
    parser.add_argument("--membrane-level", type=float, default=SHIFT["membrane_level"])
    parser.add_argument("--extracellular-level", type=float, default=SHIFT["extracellular_level"])
    parser.add_argument("--noise-sd", type=float, default=SHIFT["noise_sd"])
    parser.add_argument("--vesicle-radius", type=float, default=SHIFT["vesicle_radius_nm"], help="nm")
    parser.add_argument("--known-radius", type=float, default=250.0,
                        help="points: the loss counts within this distance of an annotated post point, nm "
                             "(default 250)")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--threshold", type=float, help="mask threshold (default: the base model's)")
    parser.add_argument("--orient", metavar="NM|off",
                        help="turn rows round by their darker end within NM (default: the base model's)")
    parser.add_argument("--site-distance-nm", type=float, default=200.0)
    parser.add_argument("--partner-distance-nm", type=float, default=400.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", type=Path, help="checkpoint folder (default: a new one under the temporary "
                                                  "directory); a run already there is resumed")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.work is not None and (args.work.resolve() == REPO or REPO in args.work.resolve().parents):
        parser.error("--work must lie outside the checkout (checkpoints are not for git)")
    result = run(args)
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
