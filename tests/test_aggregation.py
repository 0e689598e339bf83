"""Each server rule against a computation done by hand."""

import math

import pytest
import torch

from feddcg.aggregation import (InvalidUpdate, append_bounded, beta_momentum_average, beta_weights,
                                domain_wise_update, fedavg_update, validate_update, weighted_average)


def t(*values):
    return torch.tensor(values, dtype=torch.float32)


def test_weighted_average_of_generators_within_a_domain():
    states = [{"w": t(1.0, 2.0)}, {"w": t(3.0, 6.0)}]
    out = weighted_average(states, [1, 3])
    assert torch.allclose(out["w"], t(2.5, 5.0))  # (1*1 + 3*3)/4, (2 + 18)/4
    assert out["w"].dtype == torch.float32


def test_eq5_domain_wise_update_weights_deltas_by_dataset_size():
    current = {"p": t(10.0, 0.0)}
    deltas = [{"p": t(1.0, -2.0)}, {"p": t(4.0, 2.0)}]
    out = domain_wise_update(current, deltas, dataset_sizes=[100, 300])
    # V + (100*dV1 + 300*dV2) / 400 = 10 + (100 + 1200)/400, 0 + (-200 + 600)/400
    assert torch.allclose(out["p"], t(13.25, 1.0))


def test_fedavg_update_of_the_global_prompt():
    out = fedavg_update({"g": t(0.0)}, [{"g": t(2.0)}, {"g": t(-1.0)}, {"g": t(5.0)}], [1, 1, 2])
    assert torch.allclose(out["g"], t((2 - 1 + 10) / 4))


def test_beta_weights_are_the_beta_density_at_relative_age():
    # Beta(2, 1): pdf(t) = 2t; three iterates at t = 1/6, 1/2, 5/6
    assert beta_weights(3, 2.0, 1.0) == pytest.approx([1 / 3, 1.0, 5 / 3])
    # Beta(1, 1) is uniform: a plain moving average
    assert beta_weights(4, 1.0, 1.0) == pytest.approx([1.0] * 4)
    # Beta(0.5, 0.5): pdf(t) = 1 / (pi sqrt(t (1 - t))), both ends heavier than the middle
    w = beta_weights(3, 0.5, 0.5)
    assert w[0] == pytest.approx(1 / (math.pi * math.sqrt(1 / 6 * 5 / 6)))
    assert w[0] == pytest.approx(w[2]) and w[1] < w[0]


def test_eq6_beta_momentum_average_by_hand():
    history = [{"p": t(0.0)}, {"p": t(3.0)}, {"p": t(6.0)}]
    out = beta_momentum_average(history, 2.0, 1.0)
    expected = (1 / 3 * 0 + 1 * 3 + 5 / 3 * 6) / (1 / 3 + 1 + 5 / 3)
    assert out["p"].item() == pytest.approx(expected, rel=1e-6)


def test_eq6_with_one_iterate_returns_it():
    assert torch.equal(beta_momentum_average([{"p": t(4.0, 5.0)}], 2.0, 1.0)["p"], t(4.0, 5.0))


def test_history_stays_bounded():
    history = []
    for k in range(10):
        history = append_bounded(history, {"p": t(float(k))}, 3)
    assert [h["p"].item() for h in history] == [7.0, 8.0, 9.0]


def test_float64_accumulation_is_cast_back():
    states = [{"w": torch.tensor([0.1], dtype=torch.float16)}] * 3
    assert weighted_average(states, [1, 1, 1])["w"].dtype == torch.float16


def test_validate_update_rejects_broken_updates():
    reference = {"a": torch.zeros(2), "b": torch.zeros(3)}
    validate_update({"a": torch.ones(2), "b": torch.ones(3)}, reference)
    with pytest.raises(InvalidUpdate, match="missing"):
        validate_update({"a": torch.ones(2)}, reference)
    with pytest.raises(InvalidUpdate, match="shape"):
        validate_update({"a": torch.ones(2), "b": torch.ones(4)}, reference)
    with pytest.raises(InvalidUpdate, match="NaN or Inf"):
        validate_update({"a": torch.tensor([1.0, float("nan")]), "b": torch.ones(3)}, reference)


def test_empty_or_zero_weight_aggregation_is_an_error():
    with pytest.raises(ValueError):
        weighted_average([], [])
    with pytest.raises(ValueError):
        weighted_average([{"w": t(1.0)}], [0])
