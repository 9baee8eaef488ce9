"""Behaviour of the Growing-When-Required affective memory (pure logic, synthetic data)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from affective_memory_ros.memory import EmptyMemoryError, GrowingWhenRequired, GWRConfig


def cfg(**overrides: object) -> GWRConfig:
    base = dict(dim=2, activity_threshold=0.5, habituation_threshold=1.5, max_age=50)
    base.update(overrides)
    return GWRConfig(**base)  # type: ignore[arg-type]


def two_neuron_net(config: GWRConfig) -> GrowingWhenRequired:
    """Neurons at (0, 0) and (1, 0), joined by one edge."""
    net = GrowingWhenRequired(config)
    net.learn(np.array([0.0, 0.0], np.float32))
    net.learn(np.array([1.0, 0.0], np.float32))
    return net


def test_first_two_samples_become_connected_neurons() -> None:
    net = two_neuron_net(cfg())
    assert len(net) == 2
    np.testing.assert_array_equal(net.weights, [[0, 0], [1, 0]])
    assert net.edges().tolist() == [[0, 1, 0]]


def test_grows_on_novel_input_not_on_familiar_input() -> None:
    net = two_neuron_net(cfg())
    for _ in range(200):
        net.learn(np.array([0.0, 0.0], np.float32))
        net.learn(np.array([1.0, 0.0], np.float32))
    assert len(net) == 2, "repeated familiar input must not grow the memory"
    far = np.array([10.0, 10.0], np.float32)
    info = net.learn(far)
    assert info is not None and info.inserted == 2 and len(net) == 3
    np.testing.assert_allclose(net.weights[2], (net.weights[info.bmu] + far) / 2)


def test_no_insertion_while_bmu_is_not_habituated() -> None:
    net = two_neuron_net(cfg(habituation_threshold=0.2))
    info = net.learn(np.array([10.0, 10.0], np.float32))
    assert info is not None and info.inserted is None  # h_b = 1 >= t_h
    assert len(net) == 2


def test_insertion_rewires_bmu_second_and_new_neuron() -> None:
    net = two_neuron_net(cfg())
    info = net.learn(np.array([0.0, 5.0], np.float32))
    assert info is not None and info.inserted == 2
    assert net.edges()[:, :2].tolist() == [[0, 2], [1, 2]]  # b-s removed, r-b and r-s added


def test_habituation_follows_the_formula() -> None:
    c = cfg(tau_b=0.3, tau_n=0.1, kappa=1.05)
    net = two_neuron_net(c)
    h_b, h_n = 1.0, 1.0
    for _ in range(30):
        info = net.learn(np.array([0.01, 0.0], np.float32))
        assert info is not None and info.bmu == 0 and info.inserted is None
        h_b = min(1.0, max(0.0, h_b + c.tau_b * c.kappa * (1 - h_b) - c.tau_b))
        h_n = min(1.0, max(0.0, h_n + c.tau_n * c.kappa * (1 - h_n) - c.tau_n))
        assert net.habituation[0] == pytest.approx(h_b, abs=1e-6)
        assert net.habituation[1] == pytest.approx(h_n, abs=1e-6)
    # h settles near 1 - 1/kappa.
    assert net.habituation[0] == pytest.approx(1 - 1 / c.kappa, abs=1e-3)


def test_modulated_update_scales_by_one_minus_activity() -> None:
    c = cfg(epsilon_b=0.1, epsilon_n=0.05, distance_scale=2.0)
    x = np.array([0.3, 0.4], np.float32)  # distance 0.5 from neuron 0
    a = math.exp(-0.5 / 2.0)
    for modulated, factor in ((True, 1 - a), (False, 1.0)):
        net = two_neuron_net(dataclasses.replace(c, modulated_update=modulated))
        info = net.learn(x)
        assert info is not None and info.activity == pytest.approx(a, rel=1e-6)
        expected_b = 0.1 * 1.0 * factor * x  # w_b = 0, h_b = 1 before the step
        np.testing.assert_allclose(net.weights[0], expected_b, rtol=1e-6)
        expected_n = np.array([1.0, 0.0]) + 0.05 * 1.0 * factor * (x - np.array([1.0, 0.0]))
        np.testing.assert_allclose(net.weights[1], expected_n, rtol=1e-6)


def test_squared_distance_is_the_papers_activity() -> None:
    net = two_neuron_net(cfg(squared_distance=True, distance_scale=1.0))
    info = net.learn(np.array([0.0, 0.5], np.float32))
    assert info is not None and info.activity == pytest.approx(math.exp(-0.25), rel=1e-6)


def test_labels_move_only_on_labelled_samples() -> None:
    net = two_neuron_net(cfg(label_factor=0.4))
    before = net.labels.copy()
    for _ in range(10):
        net.learn(np.array([0.1, 0.0], np.float32))
    np.testing.assert_array_equal(net.labels, before)
    net.learn(np.array([0.1, 0.0], np.float32), label=np.array([1.0, -1.0], np.float32))
    np.testing.assert_allclose(net.labels[0], 0.4 * np.array([1.0, -1.0]), rtol=1e-6)
    np.testing.assert_array_equal(net.labels[1], before[1])
    r = net.recall(np.array([0.0, 0.0], np.float32))
    assert r.neuron == 0 and r.arousal == pytest.approx(0.4) and r.valence == pytest.approx(-0.4)


def test_inserted_neuron_takes_the_sample_label_or_inherits_the_bmus() -> None:
    net = two_neuron_net(cfg())
    net.learn(np.array([0.0, 5.0], np.float32), label=np.array([0.5, 0.25], np.float32))
    np.testing.assert_allclose(net.labels[2], [0.5, 0.25])
    net.learn(np.array([0.0, 0.0], np.float32), label=np.array([-1.0, 1.0], np.float32))
    net.learn(np.array([-9.0, 0.0], np.float32))  # unlabelled insertion next to neuron 0
    np.testing.assert_allclose(net.labels[3], net.labels[0])


def graph_net(config: GWRConfig, weights: list[list[float]], edges: list[tuple[int, int]]) -> GrowingWhenRequired:
    """A network with exactly these neurons and edges (all ages 0)."""
    n = len(weights)
    neighbors = np.full((n, config.max_degree), -1, np.int32)
    for i, j in edges:
        for u, v in ((i, j), (j, i)):
            neighbors[u, np.flatnonzero(neighbors[u] < 0)[0]] = v
    arrays = {
        "weights": np.array(weights, np.float32), "habituation": np.ones(n), "labels": np.zeros((n, 2), np.float32),
        "neighbors": neighbors, "edge_ages": np.zeros((n, config.max_degree), np.int32), "born": np.zeros(n, np.int64),
    }
    return GrowingWhenRequired.from_state(config, arrays, {"steps": 0, "labelled_steps": 0, "insertions": 0,
                                                           "removals": 0})


def assert_ages_symmetric(net: GrowingWhenRequired) -> None:
    for i in range(len(net)):
        for j, age in net.neighbors_of(i).items():
            assert net.neighbors_of(j)[i] == age


def test_only_the_bmus_edges_age_and_old_ones_are_removed() -> None:
    c = cfg(activity_threshold=0.0, max_age=3)  # never inserts
    net = graph_net(c, [[0, 0], [1, 0], [0, 5]], [(0, 1), (0, 2), (1, 2)])
    x = np.array([0.1, 0.0], np.float32)  # BMU 0, second 1
    for step in range(1, 4):
        info = net.learn(x)
        assert info is not None and (info.bmu, info.second) == (0, 1)
        ages = {(int(i), int(j)): int(a) for i, j, a in net.edges()}
        assert ages == {(0, 1): 0, (0, 2): step, (1, 2): 0}
        assert_ages_symmetric(net)
    net.learn(x)  # age 4 > max_age 3: edge 0-2 goes; neuron 2 keeps edge 1-2
    assert [tuple(e[:2]) for e in net.edges()] == [(0, 1), (1, 2)]
    assert len(net) == 3 and net.removals == 0


def test_neurons_left_without_edges_are_removed() -> None:
    c = cfg(activity_threshold=0.0, max_age=2)
    net = graph_net(c, [[0, 0], [1, 0], [0, 5], [9, 9]], [(0, 1), (1, 2), (2, 3)])
    moved = net.weights[3].copy()
    x = np.array([0.9, 0.0], np.float32)  # BMU 1, second 0
    for _ in range(3):
        net.learn(x)
    # Edge 1-2 aged out; neuron 2 keeps edge 2-3, so nobody is isolated yet.
    assert len(net) == 4 and net.num_edges == 2
    net2 = graph_net(c, [[0, 0], [1, 0], [0, 5], [9, 9]], [(0, 1), (1, 2), (0, 3)])
    for _ in range(3):
        net2.learn(x)
    # Edge 1-2 aged out and neuron 2 had no other edge: it is removed, and the last
    # neuron (3) moves into its slot with its edge to 0 intact.
    assert len(net2) == 3 and net2.removals == 1
    np.testing.assert_array_equal(net2.weights[2], moved)
    assert [tuple(e[:2]) for e in net2.edges()] == [(0, 1), (0, 2)]
    assert_ages_symmetric(net2)


def test_neuron_cap_stops_growth_and_adapts_instead() -> None:
    net = GrowingWhenRequired(cfg(max_neurons=5, activity_threshold=0.99))
    rng = np.random.default_rng(0)
    for x in rng.uniform(-10, 10, size=(500, 2)).astype(np.float32):
        net.learn(x)
        assert len(net) <= 5
    assert len(net) == 5


def test_degree_cap_drops_the_oldest_edge() -> None:
    net = GrowingWhenRequired(cfg(max_degree=2, activity_threshold=0.99, max_age=10_000))
    rng = np.random.default_rng(1)
    for x in rng.uniform(-5, 5, size=(400, 2)).astype(np.float32):
        net.learn(x)
        assert all(len(net.neighbors_of(i)) <= 2 for i in range(len(net)))
    assert len(net) > 10


def test_batch_and_single_learning_agree() -> None:
    rng = np.random.default_rng(2)
    xs = rng.normal(size=(300, 5)).astype(np.float32)
    ys = rng.uniform(-1, 1, size=(300, 2)).astype(np.float32)
    c = GWRConfig(dim=5, max_age=20)
    one, batch = GrowingWhenRequired(c), GrowingWhenRequired(c)
    for x, y in zip(xs, ys, strict=True):
        one.learn(x, y)
    batch.learn_batch(xs, ys)
    for key, value in one.state_arrays().items():
        np.testing.assert_array_equal(value, batch.state_arrays()[key], err_msg=key)
    rb = batch.recall_batch(xs[:20])
    for i in range(20):
        r = one.recall(xs[i])
        assert r.neuron == rb.neuron[i] and r.activity == pytest.approx(rb.activity[i])


def test_same_data_same_order_is_bit_identical() -> None:
    rng = np.random.default_rng(3)
    xs = rng.normal(size=(500, 50)).astype(np.float32)
    nets = []
    for _ in range(2):
        net = GrowingWhenRequired(GWRConfig(distance_scale=5.0, habituation_threshold=0.5))
        net.learn_batch(xs)
        nets.append(net)
    assert len(nets[0]) > 10
    for key, value in nets[0].state_arrays().items():
        assert value.tobytes() == nets[1].state_arrays()[key].tobytes(), key


def test_invalid_samples_are_refused_and_change_nothing() -> None:
    net = two_neuron_net(cfg())
    before = {k: v.copy() for k, v in net.state_arrays().items()}
    with pytest.raises(ValueError, match="NaN"):
        net.learn(np.array([np.nan, 0.0]))
    with pytest.raises(ValueError, match="NaN"):
        net.learn(np.array([0.0, 0.0]), label=np.array([np.inf, 0.0]))
    with pytest.raises(ValueError, match="shape"):
        net.learn(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        net.learn_batch(np.array([[0.0, 0.0], [np.nan, 1.0]]))
    for key, value in net.state_arrays().items():
        np.testing.assert_array_equal(value, before[key])
    assert net.steps == 2


def test_recall_from_an_empty_memory_is_a_clear_error() -> None:
    with pytest.raises(EmptyMemoryError):
        GrowingWhenRequired(cfg()).recall(np.zeros(2))


@pytest.mark.parametrize(
    ("field", "value"),
    [("activity_threshold", 1.5), ("kappa", 0.032), ("max_neurons", 1), ("distance_scale", 0.0),
     ("epsilon_b", -0.1), ("label_names", ())],
)
def test_config_refuses_bad_values(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        GWRConfig(**{field: value})  # type: ignore[arg-type]


def test_config_json_round_trip() -> None:
    c = GWRConfig(dim=7, label_names=("a", "b", "c"), squared_distance=True)
    assert GWRConfig.from_json(c.to_json()) == c
    with pytest.raises(ValueError, match="unknown"):
        GWRConfig.from_json('{"dim": 3, "bogus": 1}')


def test_iris_accuracy_with_associative_class_labels() -> None:
    """The toolbox's own behaviour check: Iris, min-max scaled, 15 epochs."""
    datasets = pytest.importorskip("sklearn.datasets")
    iris = datasets.load_iris()
    x = iris.data.astype(np.float32)
    x = (x - x.min(axis=0)) / (x.max(axis=0) - x.min(axis=0))
    onehot = np.eye(3, dtype=np.float32)[iris.target]
    # The toolbox's Iris settings: a_T = 0.85, learning rates 0.2 / 0.001, t_h = 0.1.
    config = GWRConfig(dim=4, label_names=("setosa", "versicolor", "virginica"), activity_threshold=0.85,
                       habituation_threshold=0.1, epsilon_b=0.2, epsilon_n=0.001, max_age=600,
                       modulated_update=False, label_factor=0.4)
    net = GrowingWhenRequired(config)
    for _ in range(15):
        net.learn_batch(x, onehot)
    predicted = np.argmax(net.recall_batch(x).labels, axis=1)
    accuracy = float((predicted == iris.target).mean())
    assert accuracy >= 0.95, f"accuracy {accuracy:.3f} with {len(net)} neurons"
    assert 3 <= len(net) <= 150
