"""Segment colours through edits, and skeletons that follow them, on a Proofreader over the gala-fib sample."""

from __future__ import annotations

import threading

import pytest

from napari_connectome.candidates import find_candidates
from napari_connectome.graph import agglomerate_project
from napari_connectome.proofread import Proofreader
from napari_connectome.samples import gala_fib_project
from napari_connectome.tasks.colours import PALETTE, SegmentColours, segment_size


@pytest.fixture
def pr(tmp_path):
    project = gala_fib_project(tmp_path / "gala")
    agglomerate_project(project, threshold=0.5)
    with Proofreader.open(project, user="ana") as proofreader:
        yield proofreader


def following(pr) -> SegmentColours:
    colours = SegmentColours()
    pr.add_listener(lambda r: colours.follow(pr, r))
    return colours


def first(pr, kind: str):
    for cand in find_candidates(pr):
        if cand.kind == kind:
            return cand
    pytest.skip(f"no {kind} candidate")


def test_a_merge_gives_the_larger_part_s_colour_whichever_is_named_first(pr):
    colours = following(pr)
    cand = first(pr, "false_split")
    a, b = (pr.segment_of(int(sv)) for sv in cand.supervoxels[:2])
    colours.for_segments([a, b], pr)  # what the task showed (sizes noted)
    larger = a if segment_size(pr, a) >= segment_size(pr, b) else b
    # Merge naming the smaller one first: the result still takes the larger one's colour.
    svs = [int(pr.segment_supervoxels(s)[0]) for s in ((b, a) if larger == a else (a, b))]
    merged = pr.merge_supervoxels(*svs).after_segments[0]
    assert colours.colour(merged) == colours.colour(larger)
    # Undo divides it again, under new ids: each part has its own colour back.
    pr.undo()
    parts = [pr.segment_of(int(sv)) for sv in cand.supervoxels[:2]]
    assert set(parts).isdisjoint({a, b})  # new ids
    assert [colours.colour(p) for p in parts] == [colours.colour(a), colours.colour(b)]


def test_a_split_keeps_the_colour_on_the_larger_part_and_undo_and_redo_restore(pr):
    colours = following(pr)
    cand = first(pr, "false_merge")
    (seg,) = (pr.segment_of(int(cand.supervoxels[0])),)
    body = colours.colour(seg)
    preview = pr.preview_split_supervoxels(list(cand.supervoxels), list(cand.sinks))
    shown = colours.split_preview(pr, seg, preview.source_supervoxels, preview.sink_supervoxels)
    result = pr.split(preview)
    a, b = result.after_segments
    larger, smaller = (a, b) if segment_size(pr, a) >= segment_size(pr, b) else (b, a)
    assert colours.colour(larger) == body
    assert colours.colour(smaller) != body and colours.colour(smaller) in PALETTE
    # The question showed each side in the colour it has now.
    source_part = pr.segment_of(int(preview.source_supervoxels[0]))
    sink_part = pr.segment_of(int(preview.sink_supervoxels[0]))
    assert shown == (colours.colour(source_part), colours.colour(sink_part))
    pr.undo()
    assert colours.colour(pr.segment_of(int(cand.supervoxels[0]))) == body
    pr.redo()
    assert colours.colour(pr.segment_of(int(preview.source_supervoxels[0]))) == colours.colour(source_part)
    assert colours.colour(pr.segment_of(int(preview.sink_supervoxels[0]))) == colours.colour(sink_part)


def test_two_segments_of_one_task_never_share_a_colour():
    colours = SegmentColours()
    # Find two ids that the id colour puts on the same palette entry.
    seen: dict[int, int] = {}
    for seg in range(1, 1000):
        i = colours.index(seg)
        if i in seen:
            pair = (seen[i], seg)
            break
        seen[i] = seg
    shown = colours.for_segments(pair)
    assert shown[pair[0]] != shown[pair[1]]
    assert colours.colour(pair[1]) == colours.colour(pair[0])  # remembered colours are unchanged


def test_following_skeletons_make_the_merged_segments_skeleton(pr):
    from napari_connectome.skeleton import SkeletonStore
    from napari_connectome.tasks.skeletons import FollowingSkeletons

    store = SkeletonStore.open(pr)
    skeletons = FollowingSkeletons(store, pr, save=False)
    pr.add_listener(skeletons.follow)
    try:
        cand = first(pr, "false_split")
        merged = pr.merge_supervoxels(*(int(sv) for sv in cand.supervoxels[:2])).after_segments[0]
        got = []  # a view is prepared in a worker thread, which waits for the new skeleton
        worker = threading.Thread(target=lambda: got.append(skeletons.get(merged)))
        worker.start()
        worker.join(60)
        assert got and got[0] is not None and got[0].segment_id == merged
        assert not skeletons.errors
    finally:
        skeletons.close()
