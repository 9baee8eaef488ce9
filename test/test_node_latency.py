"""``bench-latency``: its arithmetic on synthetic messages, its frames on real media, its command line.

The benchmark itself starts a node and runs for minutes; these checks take seconds and start no node.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from affective_memory_ros.bench import node_latency as nl

MS = 1_000_000  # ns


def _clip(n: int = 5) -> list[np.ndarray]:
    return [np.full((480, 640, 3), i, np.uint8) for i in range(n)]


def _newcomer(name: str, value: int) -> nl.Newcomer:
    return nl.Newcomer(name, [np.full((nl.INSET, nl.INSET, 3), value, np.uint8)])


def test_percentiles_in_ms_and_empty() -> None:
    p = nl.percentiles([0.010, 0.020, 0.030, 1.0])
    assert p["p50"] == 25.0 and p["max"] == 1000.0 and p["mean"] == pytest.approx(265.0)
    assert nl.percentiles([]) == {"p50": None, "p90": None, "p99": None, "max": None, "mean": None}


def test_stream_shows_each_newcomer_then_nobody_alternating_places() -> None:
    clip = _clip()
    stream = nl.Stream(clip, [_newcomer("a", 200), _newcomer("b", 250)], fps=10, every=0.3, gap=0.2)
    assert (stream.show, stream.period) == (3, 5)
    shown = [stream.frame(i, i)[1] for i in range(12)]
    assert shown == [0, 0, 0, None, None, 1, 1, 1, None, None, 2, 2]  # the third arrival is "a" again
    frame, k = stream.frame(5, 7)
    assert k == 1
    y0, y1 = nl.INSET_YS[0], nl.INSET_YS[1]
    assert (frame[y1:y1 + nl.INSET, nl.INSET_X:nl.INSET_X + nl.INSET] == 250).all()
    assert (frame[y0:y1, nl.INSET_X] == 7 % len(clip)).all()  # the other place shows the clip
    assert (frame[:, nl.INSET_RIGHT:] == 7 % len(clip)).all()  # the known person's side is untouched
    assert (clip[7 % len(clip)] == 7 % len(clip)).all()  # the clip itself is never drawn on
    plain, k = nl.Stream(clip).frame(3, 8)
    assert k is None and plain is clip[8 % len(clip)]


def test_summary_latency_per_frame_drops_seeding_and_newcomers() -> None:
    base = 1_000_000 * MS
    stamps = [base + i * 33 * MS for i in range(6)]
    sent = [(stamps[0], None), (stamps[1], 0), (stamps[2], 0), (stamps[3], 0), (stamps[4], None), (stamps[5], None)]
    known, inset = 400.0, 100.0
    av = [
        nl.AV(stamps[0] + 20 * MS, stamps[0], "old", False, known),
        # frame 1: two faces; the frame's latency is its last message's
        nl.AV(stamps[1] + 30 * MS, stamps[1], "old", False, known),
        nl.AV(stamps[1] + 50 * MS, stamps[1], "new", True, inset),
        # frame 2 dropped; frame 3: the newcomer is ready
        nl.AV(stamps[3] + 40 * MS, stamps[3], "old", False, known),
        nl.AV(stamps[3] + 45 * MS, stamps[3], "new", False, inset),
        nl.AV(stamps[4] + 25 * MS, stamps[4], "old", False, known),
        nl.AV(base - 99 * MS, base - 99 * MS, "earlier", True, known),  # another condition's frame: ignored
    ]
    in_view = [(s + 60 * MS, s) for s in (stamps[0], stamps[1], stamps[3], stamps[4], stamps[5])]  # 5: nobody
    s = nl.summarize(sent, av, in_view, seen_before={"old"}, arrivals=[_newcomer("photo", 1)])
    assert (s["frames_sent"], s["frames_processed"], s["frames_dropped"], s["frames_with_estimate"]) == (6, 5, 1, 4)
    assert s["dropped_share"] == round(1 / 6, 3)
    assert s["latency_ms"]["p50"] == pytest.approx(35.0) and s["latency_ms"]["max"] == 50.0
    assert s["latency_ms_while_seeding"]["frames"] == 1 and s["latency_ms_while_seeding"]["max"] == 50.0
    assert s["messages"] == 6 and s["seeding_share"] == round(1 / 6, 3)
    assert s["person_ids"] == ["new", "old"] and s["new_person_ids"] == ["new"]
    assert s["newcomer_messages"] == 2 and s["newcomer_seeding_share"] == 0.5
    (row,) = s["newcomers"]
    assert row["name"] == "photo" and row["person_ids"] == ["new"] and row["frames_with_estimate"] == 2
    assert row["ready_after_s"] == pytest.approx(0.07)
    assert s["newcomers_repeated"] is False


def test_summary_of_nothing_received() -> None:
    s = nl.summarize([(1, None), (2, None)], [], [], set())
    assert s["frames_processed"] == 0 and s["dropped_share"] == 1.0 and s["latency_ms"]["p99"] is None
    assert s["seeding_share"] is None and "newcomers" not in s


def test_newcomers_are_distinct_faces_of_the_media(media_dir: Path) -> None:
    arrivals = nl.newcomers(media_dir, None, needed=7)
    assert len(arrivals) == 7
    assert arrivals[0].name == nl.NEWCOMER_VIDEO and len(arrivals[0].frames) > 30  # a video newcomer moves
    assert len({a.name for a in arrivals}) == 7
    for a in arrivals:
        assert all(f.shape == (nl.INSET, nl.INSET, 3) and f.dtype == np.uint8 for f in a.frames)
        assert float(np.std(a.frames[0])) > 10  # a face, not padding
    assert not np.array_equal(arrivals[1].frames[0], arrivals[1].frames[1])  # photos are jittered


def test_command_line_defaults_and_choices() -> None:
    parser = argparse.ArgumentParser()
    nl.add_arguments(parser)
    args = parser.parse_args([])
    assert args.fps == 30.0 and args.device == "cpu" and args.conditions == ["steady", "newcomers"]
    args = parser.parse_args(["--memory-mode", "paper", "personal", "--param", "max_seed_edits:=16",
                              "--domain-id", "171"])
    assert args.memory_mode == ["paper", "personal"] and args.param == ["max_seed_edits:=16"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--memory-mode", "nonsense"])
