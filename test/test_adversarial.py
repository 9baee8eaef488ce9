"""``bench-adversarial``: its measures catch what they claim to catch, and its ROS-free attacks run clean.

The attacks on the node are the benchmark's own business (minutes, the README's reliability section); here
its core group runs for real on real files, and its two measures get positive controls: a file touched outside
the store and a memory lost are counted.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from affective_memory_ros.bench import adversarial
from affective_memory_ros.person import person_to_bytes


def _report(tmp_path: Path) -> adversarial.Report:
    sandbox = tmp_path / "sandbox"
    adversarial.make_sandbox(sandbox)
    args = argparse.Namespace(domain=157, snapshots=8, calls=0, kills=0, churn_s=0.0)
    return adversarial.Report(sandbox, args)


def test_the_core_attacks_run_clean_and_are_reported(tmp_path: Path) -> None:
    rep = _report(tmp_path)
    adversarial.group_core(rep)
    report = rep.summary(1.0, ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)))
    assert [a["name"] for a in report["attacks"]] == ["core_hostile_store_files", "core_path_checks",
                                                      "core_disk_full", "core_snapshot_while_learning"]
    assert all(a["inputs"] > 0 and a["did"] for a in report["attacks"])
    t = report["totals"]
    assert (t["crashes"], t["hangs"], t["memories_lost"], t["files_touched_outside"], t["failures"]) == (0,) * 5, \
        report["attacks"]
    table = adversarial.markdown(report).splitlines()
    assert len(table) == 2 + 4 + 1 and table[-1].startswith("| **total** |")


def test_a_file_touched_outside_the_store_is_seen(tmp_path: Path) -> None:
    rep = _report(tmp_path)
    with rep.attack("touches", "test") as a:
        a.inputs = 1
        decoy = rep.outside / "decoy.safetensors"
        os.utime(decoy, ns=(1, 1))  # only the mtime changes
        os.chmod(rep.sandbox / "shared", 0o700)
        (rep.outside / "new").write_text("x")
        (rep.store("mine") / "x").parent.mkdir(parents=True)
        (rep.store("mine") / "x").write_text("the store's own: not counted")
    (touched,) = rep.attacks
    assert touched.files_touched_outside == 4, touched  # the decoy, the new file, its folder, the shared folder
    assert touched.failures == ["touched outside the store: outside, outside/decoy.safetensors, outside/new, shared"]


def test_a_lost_memory_is_seen(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    person, sig = adversarial.synthetic_person("ydsgt")
    path = store / "ydsgt.safetensors"
    path.write_bytes(person_to_bytes(person, sig))
    before = adversarial.stored(store)
    assert before == {"ydsgt": person.frames_seen} and adversarial.lost(before, store) == []
    assert adversarial.lost({"ydsgt": person.frames_seen + 1}, store) == ["ydsgt"], "fewer frames: lost"
    path.write_bytes(path.read_bytes()[:-64])
    assert adversarial.lost(before, store) == ["ydsgt"], "no longer loadable: lost"
