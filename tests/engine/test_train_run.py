"""Training runs: fine-tune a shipped model, cancel and resume to the same weights, refuse bad runs, export."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from conftest import need_torch

torch = need_torch()

from napari_connectome_models.nets.unet import load_network, network_metadata  # noqa: E402
from napari_connectome_models.registry import load_network as load_registered  # noqa: E402
from napari_connectome_models.registry import load_registry  # noqa: E402

from napari_connectome.errors import CancelledError, InputError  # noqa: E402
from napari_connectome.progress import NullProgress  # noqa: E402
from napari_connectome.proofread.demo import make_demo_project  # noqa: E402
from napari_connectome.train import (  # noqa: E402
    evaluate,
    export_weights,
    from_arrays,
    from_project,
    latest_checkpoint,
    make_config,
    network_from_checkpoint,
    plan,
    run_training,
)
from napari_connectome.train.sources import parse_box  # noqa: E402

MODEL = "affinities-fib-10nm"


class CancelAfter(NullProgress):
    """Cancels once ``n`` iterations of this call are done (as the Cancel button would)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.seen = n, 0

    def advance(self, steps: int = 1) -> None:
        super().advance(steps)
        self.seen += 1
        if self.seen >= self.n:
            self.cancelled = True
            raise CancelledError("cancelled by the user")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_demo_project(tmp_path_factory.mktemp("train") / "demo", seed=3)


def project_run(project, *, iterations=4, seed=1, lr=None, base=MODEL):
    p = plan(base=base, voxel_size=project.voxel_size, patch=(4, 4, 4))
    data = from_project(project, box=parse_box([0, 0, 0, 120, 240, 240]), context=p.context)
    return data, make_config(p, data, iterations=iterations, seed=seed, lr=lr, checkpoint_every=2, threads=1)


def weights(path):
    return [t.detach().clone() for t in network_from_checkpoint(path).parameters()]


def test_fine_tune_starts_from_the_registered_model(project, tmp_path):
    data, config = project_run(project, iterations=1, lr=1e-12)
    assert config.init == {"model": MODEL, "sha256": load_registry()[MODEL].sha256}
    assert config.lr == 1e-12 and config.data["labels"]["segmentation"] == "proofread"
    seen = []
    last = run_training(data, config, tmp_path / "run", log=seen.append)
    assert any(f"starting from model {MODEL}" in s for s in seen)
    # one step of a vanishing learning rate: still the shipped weights
    for a, b in zip(weights(last), load_registered(MODEL).parameters(), strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=1e-9)


def test_cancel_and_resume_equal_an_uninterrupted_fine_tune(project, tmp_path):
    data, config = project_run(project, iterations=4)
    full = run_training(data, config, tmp_path / "a")
    with pytest.raises(CancelledError):
        run_training(data, config, tmp_path / "b", progress=CancelAfter(1))
    # the cancel left a checkpoint of the iteration it finished (not only the periodic ones)
    assert latest_checkpoint(tmp_path / "b").name == "checkpoint-0000001.pt"
    progress = NullProgress()
    seen, steps = [], []
    rest = run_training(data, config, tmp_path / "b", progress=progress, log=seen.append,
                        on_iteration=lambda i, loss: steps.append((i, loss)))
    assert [i for i, _ in steps] == [2, 3, 4] and all(np.isfinite(loss) and loss > 0 for _, loss in steps)
    assert any("resumed from checkpoint-0000001.pt at iteration 1" in s for s in seen)
    assert progress.done == 4 and progress.total == 4
    assert rest.name == full.name == "checkpoint-0000004.pt"
    for a, b in zip(weights(full), weights(rest), strict=True):
        assert torch.equal(a, b)
    # and fine-tuning moved the weights away from the shipped ones
    assert any(not torch.equal(a, b.detach()) for a, b in zip(weights(full), load_registered(MODEL).parameters(),
                                                               strict=True))
    outcomes = [json.loads(line)["outcome"] for line in (tmp_path / "b" / "provenance.jsonl").read_text().splitlines()]
    assert outcomes == ["cancelled", "finished"]
    record = json.loads((tmp_path / "b" / "provenance.jsonl").read_text().splitlines()[-1])
    assert record["kind"] == "train" and record["model"]["model"] == MODEL and "torch" in record["software"]
    assert record["inputs"]["data"]["box_nm"] == [[0.0, 0.0, 0.0], [120.0, 240.0, 240.0]]


def test_a_folder_of_another_run_is_refused_untouched(project, tmp_path):
    data, config = project_run(project, iterations=2)
    run_training(data, config, tmp_path / "a")
    before = {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()}
    _, other = project_run(project, iterations=2, seed=2)
    with pytest.raises(InputError, match=r"holds another run's config \(it differs in seed\)"):
        run_training(data, other, tmp_path / "a")
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == before
    # other data (a smaller box) is another run too
    p = plan(base=MODEL, voxel_size=project.voxel_size, patch=(4, 4, 4))
    small = from_project(project, box=parse_box([0, 0, 0, 120, 120, 120]), context=p.context)
    with pytest.raises(InputError, match="differs in data"):
        run_training(small, make_config(p, small, iterations=2, seed=1, checkpoint_every=2, threads=1), tmp_path / "a")
    # a folder with other files in it is not a run folder
    (tmp_path / "papers").mkdir()
    (tmp_path / "papers" / "thesis.tex").write_text("x")
    with pytest.raises(InputError, match="is not empty and holds no training run"):
        run_training(data, config, tmp_path / "papers")
    assert [q.name for q in (tmp_path / "papers").iterdir()] == ["thesis.tex"]
    # extending the run is allowed: more iterations continue it
    _, longer = project_run(project, iterations=3)
    assert run_training(data, longer, tmp_path / "a").name == "checkpoint-0000003.pt"


@pytest.mark.parametrize("field, value, needle", [
    ("iterations", 0, "--iterations: must be a whole number ≥ 1, got 0"),
    ("iterations", -3, "--iterations: must be a whole number ≥ 1, got -3"),
    ("iterations", 2.5, "--iterations: must be a whole number ≥ 1, got 2.5"),
    ("iterations", 10**9, "is that a typo"),
    ("seed", -1, "--seed: must be a whole number ≥ 0"),
    ("lr", 0.0, "--lr: must lie between 0 and 1"),
])
def test_nonsense_numbers_are_refused(field, value, needle):
    data = from_arrays(np.zeros((4, 8, 8), np.uint8), np.ones((4, 8, 8), np.int32))
    p = plan(base=None, voxel_size=(10.0, 10.0, 10.0), patch=(4, 4, 4))
    options = {"iterations": 5, "seed": 0, "lr": None, field: value}
    with pytest.raises(InputError, match=needle.replace("(", r"\(")):
        make_config(p, data, **options)


def test_unknown_base_and_a_non_affinity_model_are_refused(tmp_path):
    with pytest.raises(InputError, match="is neither a registered model .have: affinities-fib-10nm. nor a weights file"):
        plan(base="no-such-model")
    with pytest.raises(InputError, match="only affinity networks can be fine-tuned"):
        plan(base="rank-prior-gala-fib")
    bad = tmp_path / "bad.pt"
    bad.write_text("not torch")
    with pytest.raises(InputError, match="is not a torch weights file"):
        plan(base=bad)


def test_labels_that_define_no_affinity_are_refused(tmp_path):
    lab = np.zeros((6, 12, 12), np.int32)
    lab[3, 6, 6] = 5  # one painted voxel: no pair of painted voxels at any offset
    data = from_arrays(np.zeros(lab.shape, np.uint8), lab, sparse=True, context=30, labels_name="strokes")
    p = plan(base=None, voxel_size=(10.0, 10.0, 10.0), patch=(4, 4, 4))
    config = make_config(p, data, iterations=1)
    with pytest.raises(InputError, match="strokes: define no affinity"):
        run_training(data, config, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_export_writes_registry_weights_with_what_made_them(project, tmp_path):
    data, config = project_run(project, iterations=2)
    last = run_training(data, config, tmp_path / "run")
    out = export_weights(tmp_path / "run", tmp_path / "w" / "fib-proofread.pt")
    model = load_network(out)
    for a, b in zip(model.parameters(), weights(last), strict=True):
        assert torch.equal(a.detach(), b)
    meta = network_metadata(out)
    assert meta["init"]["model"] == MODEL and meta["iteration"] == 2 and meta["data"] == config.data
    assert meta["provenance"][0]["outcome"] == "finished" and meta["loss"] is not None
    side = json.loads((tmp_path / "w" / "fib-proofread.json").read_text())
    assert side["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest() == side["registry_entry"]["sha256"]
    entry = side["registry_entry"]
    assert entry["offsets"] == [list(o) for o in model.config.offsets] and entry["voxel_size_nm"] == [20.0, 10.0, 10.0]
    assert entry["output_shape"] == list(model.config.output_shape(entry["fov_voxels"]))
    # the same run may export again over its own file; another file is never replaced
    assert export_weights(tmp_path / "run", out) == out
    foreign = tmp_path / "w" / "other.pt"
    foreign.write_bytes(b"precious")
    with pytest.raises(InputError, match="already exists and is not an export of this run"):
        export_weights(tmp_path / "run", foreign)
    assert foreign.read_bytes() == b"precious"
    with pytest.raises(InputError, match="holds no checkpoint yet"):
        export_weights(tmp_path / "empty", tmp_path / "x.pt")


def test_evaluate_measures_the_labelled_region(project):
    from napari_connectome_models.nets.unet import UNet3D, UNetConfig

    from napari_connectome.train import affinities_from_labels

    data, _ = project_run(project)
    m = evaluate(load_registered(MODEL), data)
    assert 0.0 < m["loss"] < 5.0 and 0.5 < m["accuracy"] <= 1.0
    # a network that says "same object" everywhere is right exactly on the positive targets
    offsets = load_registered(MODEL).config.offsets
    always = UNet3D(UNetConfig(base_features=2, offsets=offsets))
    with torch.no_grad():
        for t in always.parameters():
            t.zero_()
        always.head.bias.fill_(20.0)
    crop = tuple(slice(a, b) for a, b in zip(*data.region, strict=True))
    target, mask = affinities_from_labels(data.labels[crop], offsets, known=data.known[crop], zero=data.zero)
    got = evaluate(always, data)
    assert got["pairs"] == m["pairs"] == int(mask.sum())
    assert got["accuracy"] == pytest.approx(float(target[mask > 0].mean()))
