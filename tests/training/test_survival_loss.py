"""cox_loss against a brute-force sum, torchsurv's Breslow path, lifelines and scikit-survival fits."""

import doctest
import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines import CoxPHFitter
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv
from torchsurv.loss.cox import neg_partial_log_likelihood

import hfrisk.training.finetune.survival_loss as survival_loss
from hfrisk.training.finetune.survival_loss import cox_loss


def brute_force_breslow(eta, event, time):
    """Breslow negative partial log-likelihood / events and its gradient, one event at a time."""
    eta, event, time = (np.asarray(a, dtype=float) for a in (eta, event, time))
    value, grad = 0.0, np.zeros_like(eta)
    for i in np.flatnonzero(event):
        at_risk = time >= time[i]
        denominator = np.exp(eta[at_risk]).sum()
        value -= eta[i] - math.log(denominator)
        grad[i] -= 1.0
        grad[at_risk] += np.exp(eta[at_risk]) / denominator
    n_events = event.sum()
    return value / n_events, grad / n_events


def loss_and_grad(eta, event, time, **kwargs):
    log_risk = torch.tensor(eta, dtype=torch.float64, requires_grad=True)
    loss = cox_loss(log_risk, torch.tensor(event), torch.tensor(time, dtype=torch.float64), **kwargs)
    loss.backward()
    return loss.item(), log_risk.grad.numpy()


def test_hand_computed_example_with_censoring_tied_to_an_event():
    # Event at t=1 (risk set: all four); event at t=2 with a censoring also at t=2 (risk set {0, 1, 3}).
    eta, event, time = [0.5, -0.3, 1.2, 0.1], [1, 0, 1, 0], [2.0, 2.0, 1.0, 3.0]
    e = np.exp(eta)
    expected = -((1.2 - math.log(e.sum())) + (0.5 - math.log(e[0] + e[1] + e[3]))) / 2
    for order in ([0, 1, 2, 3], [1, 0, 2, 3], [3, 2, 1, 0]):  # the tie must not depend on input order
        value, _ = loss_and_grad(*(np.asarray(a)[order] for a in (eta, event, time)))
        assert value == pytest.approx(expected, rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 25).flatmap(lambda n: st.tuples(
    st.lists(st.floats(-3, 3), min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n),
    st.lists(st.integers(1, 5), min_size=n, max_size=n),  # few distinct times: many ties of every kind
)))
def test_value_and_gradient_match_brute_force(data):
    eta, event, time = data
    if not any(event):
        return
    value, grad = loss_and_grad(eta, event, [float(t) for t in time])
    expected_value, expected_grad = brute_force_breslow(eta, event, time)
    assert value == pytest.approx(expected_value, rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-9, atol=1e-12)


def test_matches_torchsurv_breslow_when_torchsurv_takes_its_breslow_path():
    rng = np.random.default_rng(1)
    eta = rng.normal(size=40)
    event = rng.random(40) < 0.5
    time = rng.integers(1, 8, size=40).astype(float)  # tied event times -> torchsurv's Breslow branch
    log_hz = torch.tensor(eta, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchsurv warns about the ties
        reference = neg_partial_log_likelihood(
            log_hz, torch.tensor(event), torch.tensor(time), ties_method="breslow", reduction="sum"
        )
    reference.backward()
    value, grad = loss_and_grad(eta, event, time, reduction="sum")
    # torchsurv computes in float32
    assert value == pytest.approx(reference.item(), rel=1e-5)
    np.testing.assert_allclose(grad, log_hz.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_lifelines_fit_is_the_minimum_and_its_log_likelihood_matches():
    rng = np.random.default_rng(2)
    x = rng.normal(size=300)
    event_time = rng.exponential(np.exp(-0.8 * x))
    censor_time = rng.exponential(1.5, size=300)
    frame = pd.DataFrame({"x": x, "T": np.minimum(event_time, censor_time), "E": event_time <= censor_time})
    cph = CoxPHFitter().fit(frame, duration_col="T", event_col="E")  # continuous times: Efron == Breslow
    beta_hat = float(cph.params_["x"])

    beta = torch.tensor(beta_hat, dtype=torch.float64, requires_grad=True)
    loss = cox_loss(beta * torch.tensor(x), torch.tensor(frame["E"].to_numpy()), torch.tensor(frame["T"].to_numpy()))
    loss.backward()
    assert loss.item() * frame["E"].sum() == pytest.approx(-cph.log_likelihood_, rel=1e-8)
    assert abs(beta.grad.item()) < 1e-6  # lifelines' estimate is the minimiser of this loss


def test_sksurv_breslow_fit_is_the_minimum_with_tied_times():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 2))
    latent = rng.exponential(np.exp(-(x @ np.array([0.7, -0.4]))))
    time = np.ceil(latent * 4)  # coarse grid: heavy ties of events with events and with censorings
    event = rng.random(300) < 0.7
    model = CoxPHSurvivalAnalysis(ties="breslow").fit(x, Surv.from_arrays(event, time))
    beta = torch.tensor(model.coef_, dtype=torch.float64, requires_grad=True)
    cox_loss(torch.tensor(x) @ beta, torch.tensor(event), torch.tensor(time)).backward()
    assert beta.grad.abs().max().item() < 1e-6


def test_batch_without_events_gives_a_differentiable_zero():
    log_risk = torch.randn(8, 1, requires_grad=True)
    loss = cox_loss(log_risk, torch.zeros(8, dtype=torch.bool), torch.arange(8.0))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.equal(log_risk.grad, torch.zeros_like(log_risk))


def test_correctly_ordered_risk_gives_lower_loss_than_reversed():
    time = torch.arange(1.0, 21.0)
    event = torch.ones(20)
    right = cox_loss(-time, event, time)  # earliest event = highest risk
    flat = cox_loss(torch.zeros(20), event, time)
    wrong = cox_loss(time, event, time)
    assert right < flat < wrong
    assert flat.item() == pytest.approx(sum(math.log(k) for k in range(1, 21)) / 20)


@settings(max_examples=40, deadline=None)
@given(st.integers(3, 30), st.floats(0.0, 3.0), st.floats(0.01, 3.0), st.integers(0, 10_000))
def test_loss_falls_as_a_correct_ranking_gets_sharper(n, scale, extra, seed):
    rng = np.random.default_rng(seed)
    time = torch.tensor(rng.permutation(n) + 1.0, dtype=torch.float64)
    event = torch.tensor(rng.random(n) < 0.6)
    if not event.any():
        event[0] = True
    assert cox_loss(-(scale + extra) * time, event, time) <= cox_loss(-scale * time, event, time) + 1e-12


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 30), st.floats(-50, 50), st.integers(0, 10_000))
def test_invariant_to_shift_and_order_of_subjects(n, shift, seed):
    rng = np.random.default_rng(seed)
    eta = torch.tensor(rng.normal(size=n))
    event = torch.tensor(rng.random(n) < 0.5)
    time = torch.tensor(rng.integers(1, 6, size=n).astype(float))
    base = cox_loss(eta, event, time)
    assert cox_loss(eta + shift, event, time).item() == pytest.approx(base.item(), rel=1e-9, abs=1e-9)
    perm = torch.tensor(rng.permutation(n))
    assert cox_loss(eta[perm], event[perm], time[perm]).item() == pytest.approx(base.item(), rel=1e-12, abs=1e-12)


def test_mean_is_sum_over_events_and_dtype_is_kept():
    eta = torch.tensor([0.3, -1.0, 2.0, 0.0, 0.5], dtype=torch.float64)
    event = torch.tensor([1, 1, 0, 1, 0])
    time = torch.tensor([1.0, 1.0, 2.0, 3.0, 3.0])  # two tied events: the mean divides by 3, not by 2 times
    mean = cox_loss(eta, event, time)
    assert mean.dtype == torch.float64
    assert mean.item() == pytest.approx(cox_loss(eta, event, time, reduction="sum").item() / 3)


def test_rejects_bad_inputs():
    with pytest.raises(ValueError, match="same length"):
        cox_loss(torch.zeros(3), torch.ones(4), torch.ones(3))
    with pytest.raises(ValueError, match="shape"):
        cox_loss(torch.zeros(3, 2), torch.ones(3), torch.ones(3))
    with pytest.raises(TypeError):
        cox_loss(torch.zeros(3, dtype=torch.long), torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="reduction"):
        cox_loss(torch.zeros(3), torch.ones(3), torch.ones(3), reduction="max")


def test_docstring_examples_run():
    assert doctest.testmod(survival_loss).failed == 0
