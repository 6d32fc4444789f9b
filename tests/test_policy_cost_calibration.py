"""CostModel math, expected calibration error, offline policy metrics."""

import numpy as np
import pytest
import torch

from seal.core.errors import InputError
from seal.policy.actions import Action
from seal.policy.calibration import expected_calibration_error, reliability_bins
from seal.policy.cost import CostModel
from seal.policy.data import PolicyData
from seal.policy.metrics import oracle_actions, policy_metrics


def test_cost_model_from_measurements():
    costs = np.array([[0, 100, 500], [0, 140, 700], [0, np.nan, 600]])
    cm = CostModel.from_measurements(costs)
    assert cm.c_coarse == pytest.approx(120.0) and cm.c_full == pytest.approx(600.0)  # NaN left out
    np.testing.assert_allclose(cm.costs(), [0, 120, 600])
    np.testing.assert_allclose(cm.costs(normalized=True), [0, 0.2, 1.0])
    assert CostModel.from_measurements(costs, normalizer=1200).cost_of(Action.FULL_VISION, normalized=True) == 0.5
    with pytest.raises(InputError, match="NO_VISION column"):
        CostModel.from_measurements([[5, 100, 500]])
    with pytest.raises(InputError, match=r"\(N, 3\)"):
        CostModel.from_measurements(np.zeros((4, 2)))


def test_expected_cost_numpy_and_torch():
    cm = CostModel(c_coarse=100.0, c_full=400.0)
    probs = np.array([[1.0, 0, 0], [0.2, 0.3, 0.5], [0, 0, 1.0]])
    np.testing.assert_allclose(cm.expected_cost(probs), [0.0, 230.0, 400.0])
    np.testing.assert_allclose(cm.expected_cost(probs, normalized=True), [0.0, 0.575, 1.0])
    binary = np.array([[0.25, 0.75]])
    np.testing.assert_allclose(cm.expected_cost(binary, actions=(Action.NO_VISION, Action.FULL_VISION)), [300.0])
    t = torch.tensor([[0.5, 0.5, 0.0]], requires_grad=True)
    out = cm.expected_cost(t)
    out.sum().backward()
    assert isinstance(out, torch.Tensor) and out.item() == pytest.approx(50.0)
    torch.testing.assert_close(t.grad, torch.tensor([[0.0, 100.0, 400.0]]))
    with pytest.raises(ValueError, match="last dim"):
        cm.expected_cost(binary)


def test_ece_perfectly_calibrated_is_zero():
    # in each bin the accuracy equals the confidence exactly
    conf = np.array([0.25] * 4 + [0.75] * 4)
    correct = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert expected_calibration_error(conf, correct, n_bins=10) == pytest.approx(0.0, abs=1e-12)
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 50_000)
    assert expected_calibration_error(p, rng.uniform(0, 1, p.size) < p, n_bins=10) < 0.01


def test_ece_miscalibrated():
    conf = np.full(100, 0.9)
    correct = np.arange(100) < 60  # 60 % right at 90 % confidence
    assert expected_calibration_error(conf, correct) == pytest.approx(0.3)
    # two bins: weighted mean of the gaps
    conf = np.array([0.95, 0.95, 0.15, 0.15])
    correct = np.array([1, 0, 0, 0])
    assert expected_calibration_error(conf, correct, n_bins=10) == pytest.approx(0.5 * 0.45 + 0.5 * 0.15)
    bins = reliability_bins(conf, correct, n_bins=10)
    assert bins.count.tolist() == [0, 2, 0, 0, 0, 0, 0, 0, 0, 2] and np.isnan(bins.accuracy[0])
    assert expected_calibration_error([], []) == 0.0
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        expected_calibration_error([1.5], [1])


def test_policy_metrics_and_oracle():
    correct = np.array([[1, 1, 1], [0, 0, 1], [0, 1, 1], [0, 0, 0]], dtype=bool)
    costs = np.array([[0, 10, 40], [0, 10, 50], [0, 10, 30], [0, 10, 60]], dtype=np.float32)
    data = PolicyData(np.zeros((4, 2)), 1.0 - correct, correct, costs)
    oracle = oracle_actions(data)
    assert oracle.tolist() == [0, 2, 1, 2]
    assert oracle_actions(data, (Action.NO_VISION, Action.FULL_VISION)).tolist() == [0, 2, 2, 2]
    probs = np.zeros((4, 3))
    probs[np.arange(4), oracle] = 1.0
    m = policy_metrics(oracle, probs, data)
    assert m["accuracy"] == 0.75 and m["avg_cost"] == pytest.approx((0 + 50 + 10 + 60) / 4)
    assert (m["action_rate_no"], m["action_rate_coarse"], m["action_rate_full"]) == (0.25, 0.25, 0.5)
    assert m["ece"] == pytest.approx(0.25)  # confident everywhere, one wrong
