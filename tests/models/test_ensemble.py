"""The probabilistic ensemble: particle routing, likelihood, learning a known system, checkpoints.

Oracles: a mock forward pass whose members' outputs encode their index (routing), scipy's normal
log-density (NLL), a linear system's own matrices (learning, Jacobians), finite differences of
``step`` (``linearize``), and a second load of the same checkpoint (bit-identical predictions).
"""

import json
import math
import os

import numpy as np
import pytest
import torch
from scipy import stats
from safetensors.torch import load_file, save_file

from recede import CEM, Problem, QuadraticCost
from recede.data import TransitionDataset
from recede.errors import InvalidArgumentError
from recede.models.base import Differentiable, Dynamics
from recede.models.ensemble import (
    Ensemble, EnsembleConfig, Propagation, TrainConfig, gaussian_nll,
)

# --------------------------------------------------------------------------- helpers

A_TRUE = np.array([[1.0, 0.1], [-0.2, 0.95]])
B_TRUE = np.array([[0.0], [0.1]])


def linear_data(n, seed=0, noise=0.0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1, 1, size=(n, 2))
    U = rng.uniform(-1, 1, size=(n, 1))
    Y = X @ A_TRUE.T + U @ B_TRUE.T + noise * rng.normal(size=(n, 2))
    return TransitionDataset(
        observations=X, actions=U, next_observations=Y, rewards=-np.sum(X**2, axis=1),
        terminated=np.zeros(n, bool), truncated=np.zeros(n, bool), episode_ids=np.arange(n) // 50)


@pytest.fixture(scope="module")
def linear_model():
    m = Ensemble(2, 1, dt=0.1, action_low=-1, action_high=1, members=2, hidden=32, layers=2,
                 predict_reward=True, seed=0)
    fit = m.fit(linear_data(2000), epochs=50, batch_size=32, patience=50, seed=0)
    return m, fit


def mock_routing(model):
    """Replace the forward pass: every member predicts a normalised change of (its member
    index + 1) in every output, with (almost) no variance."""
    elites = list(model.elites)

    def forward(feats, bf16=False):
        E, M, _ = feats.shape
        mean = torch.empty(E, M, model.d_out)
        for k in range(E):
            mean[k] = float(elites[k] + 1)
        return mean, torch.full((E, M, model.d_out), -200.0)

    model._forward_inf = forward
    return model


# --------------------------------------------------------------------------- routing


def increments(X):
    """Per-particle per-step state change of dim 0: (B, P, H)."""
    return np.diff(X[..., 0], axis=2)


def test_tsinf_keeps_each_particle_on_one_member_with_balanced_assignment():
    m = mock_routing(Ensemble(1, 1, members=4, particles=8, propagation="tsinf"))
    X, D, _ = m.rollout_particles(np.zeros(1), np.zeros((5, 6, 1)))
    inc = np.rint(increments(X)).astype(int)  # (5, 8, 6): the member index + 1
    assert np.all(inc == inc[:, :, :1])  # the same member at every step
    counts = np.bincount(inc[:, :, 0].ravel(), minlength=5)[1:]
    assert list(counts) == [10, 10, 10, 10]  # 40 particles over 4 members, exactly balanced
    assert np.all(D > 0)  # particles on different members disagree


def test_ts1_switches_members_between_steps():
    m = mock_routing(Ensemble(1, 1, members=4, particles=8, propagation="ts1"))
    X, _, _ = m.rollout_particles(np.zeros(1), np.zeros((50, 10, 1)))
    inc = np.rint(increments(X)).astype(int)
    assert set(np.unique(inc)) == {1, 2, 3, 4}
    for t in range(10):  # balanced at every step
        assert list(np.bincount(inc[:, :, t].ravel(), minlength=5)[1:]) == [100] * 4
    constant = np.all(inc == inc[:, :, :1], axis=2).mean()
    # a particle keeps one member for all 10 steps with probability (1/4)^9 ~ 4e-6
    assert constant < 0.01
    # a member is reused in consecutive steps about 1/4 of the time
    same = (inc[:, :, 1:] == inc[:, :, :-1]).mean()
    assert 0.2 < same < 0.3


def test_uneven_particle_count_pads_without_losing_rows():
    m = mock_routing(Ensemble(1, 1, members=3, particles=5, propagation="tsinf"))
    X, _, _ = m.rollout_particles(np.zeros(1), np.zeros((7, 4, 1)))  # 35 rows over 3 members
    inc = np.rint(increments(X)).astype(int)
    assert np.all(inc == inc[:, :, :1]) and set(np.unique(inc)) <= {1, 2, 3}
    assert sorted(np.bincount(inc[:, :, 0].ravel(), minlength=4)[1:]) == [11, 12, 12]


def test_only_elites_carry_particles():
    m = Ensemble(1, 1, members=5, elites=2, particles=10)
    m.elites = (1, 3)
    m._fold()
    mock_routing(m)
    for mode in ("ts1", "tsinf"):
        X, _, _ = m.rollout_particles(np.zeros(1), np.zeros((20, 3, 1)), propagation=mode)
        assert set(np.unique(np.rint(increments(X)).astype(int))) == {2, 4}


@pytest.mark.parametrize("mode", ["expectation", "mean"])
def test_expectation_and_mean_move_by_the_members_average(mode):
    m = mock_routing(Ensemble(1, 1, members=4, particles=6, propagation=mode))
    X, D, _ = m.rollout_particles(np.zeros(1), np.zeros((3, 5, 1)))
    assert X.shape == (3, 1 if mode == "mean" else 6, 6, 1)
    np.testing.assert_allclose(increments(X), 2.5, atol=1e-5)  # mean of 1..4
    # disagreement: std of the members' means 1..4 (in units of the data std, here 1)
    np.testing.assert_allclose(D, np.std([1, 2, 3, 4]), rtol=1e-6)


# --------------------------------------------------------------------------- likelihood


def test_gaussian_nll_is_the_normal_log_density():
    rng = np.random.default_rng(0)
    mean, logvar, y = rng.normal(size=(3, 100))
    got = gaussian_nll(torch.tensor(mean), torch.tensor(logvar), torch.tensor(y)).numpy()
    np.testing.assert_allclose(got, -stats.norm.logpdf(y, mean, np.exp(0.5 * logvar)), rtol=1e-12)


def test_constant_variance_model_nll_matches_closed_form():
    """Zero weights and fixed output biases: a Gaussian of constant mean and variance; the
    held-out NLL reported by evaluate() is its average negative log-density (normalised units)."""
    data = linear_data(500, noise=0.05)
    m = Ensemble(2, 1, members=2, hidden=8, layers=1)
    m.in_mean, m.in_std = torch.zeros(3), torch.ones(3)
    m.out_mean, m.out_std = torch.tensor([0.1, -0.2]), torch.tensor([0.5, 2.0])
    mu, raw = np.array([0.3, -0.1]), np.array([-1.0, 0.4])
    with torch.no_grad():
        for w in m.net.weights:
            w.zero_()
        for b in m.net.biases:
            b.zero_()
        m.net.biases[-1][:, 0, :2] = torch.tensor(mu, dtype=torch.float32)
        m.net.biases[-1][:, 0, 2:] = torch.tensor(raw, dtype=torch.float32)
    m._fold()
    softplus = lambda v: np.log1p(np.exp(v))  # noqa: E731
    hi, lo = 0.5, -10.0  # the soft bounds' initial values
    logvar = lo + softplus(hi - softplus(hi - raw) - lo)
    y = (data.next_observations - data.observations - [0.1, -0.2]) / [0.5, 2.0]
    want = -stats.norm.logpdf(y, mu, np.exp(0.5 * logvar)).mean()
    got = m.evaluate(data)
    assert got["nll"] == pytest.approx(want, rel=1e-5)
    assert got["mse"] == pytest.approx(np.mean((y - mu) ** 2), rel=1e-5)


# --------------------------------------------------------------------------- learning


def test_learns_a_linear_system(linear_model):
    m, fit = linear_model
    test = linear_data(1000, seed=1)
    pred = m.step(test.observations, test.actions)
    rmse = np.sqrt(np.mean((pred - test.next_observations) ** 2))
    # bound: 1% of the states' spread (uniform in [-1, 1]: std 0.58)
    assert rmse < 0.006
    A, B = m.linearize(np.zeros((4, 2)), np.zeros((3, 1)))
    np.testing.assert_allclose(A, np.broadcast_to(A_TRUE, A.shape), atol=0.03)
    np.testing.assert_allclose(B, np.broadcast_to(B_TRUE, B.shape), atol=0.03)
    # the learned reward -|x|^2
    mean, _ = m.predict(test.observations, test.actions)
    r_rmse = np.sqrt(np.mean((mean[..., 2].mean(0) - test.rewards) ** 2))
    assert r_rmse < 0.1 * np.std(test.rewards)  # a 10% error on a quadratic, from 1800 points
    assert len(fit.epochs) == 50 and fit.holdout_rows == 200 and fit.train_rows == 1800


def test_fit_restores_each_members_best_weights_and_picks_elites():
    data = linear_data(600, noise=0.02)
    m = Ensemble(2, 1, members=4, elites=2, hidden=16, layers=2)
    fit = m.fit(data, epochs=15, batch_size=32, patience=3)
    assert len(fit.elites) == 2 and fit.elites == m.elites
    assert sorted(np.argsort(fit.best_holdout_mse)[:2]) == list(fit.elites)
    # after restoring, every member is at least as good as at the last epoch's average... per
    # member: the final held-out MSE is the best seen, so the mean is below every epoch's mean
    assert np.mean(fit.best_holdout_mse) <= min(e.holdout_mse for e in fit.epochs) + 1e-6


def test_linearize_matches_finite_differences(linear_model):
    m, _ = linear_model
    rng = np.random.default_rng(3)
    X, U = rng.uniform(-0.5, 0.5, (3, 2)), rng.uniform(-0.5, 0.5, (2, 1))
    A, B = m.linearize(X, U)
    eps = 1e-2
    for t in range(2):
        for i in range(2):
            d = np.zeros(2)
            d[i] = eps
            fd = (m.step_one(X[t] + d, U[t]) - m.step_one(X[t] - d, U[t])) / (2 * eps)
            np.testing.assert_allclose(A[t][:, i], fd, atol=2e-3)
        fd = (m.step_one(X[t], U[t] + eps) - m.step_one(X[t], U[t] - eps)) / (2 * eps)
        np.testing.assert_allclose(B[t][:, 0], fd, atol=2e-3)


def test_training_is_deterministic_given_the_seed():
    data = linear_data(300)
    preds = []
    for seed in (4, 4, 5):
        m = Ensemble(2, 1, members=2, hidden=8, layers=1)
        m.fit(data, epochs=3, seed=seed, batch_size=32)
        preds.append(m.step(data.observations[:20], data.actions[:20]))
    assert np.array_equal(preds[0], preds[1])
    assert not np.array_equal(preds[0], preds[2])


def test_fit_writes_metrics_csv(tmp_path):
    path = tmp_path / "metrics.csv"
    m = Ensemble(2, 1, members=2, hidden=8, layers=1)
    fit = m.fit(linear_data(200), epochs=3, csv_path=str(path))
    lines = path.read_text().strip().splitlines()
    assert lines[0].split(",")[:5] == ["epoch", "train_nll", "train_mse", "holdout_nll", "holdout_mse"]
    assert len(lines) == 1 + len(fit.epochs)
    assert float(lines[-1].split(",")[4]) == pytest.approx(fit.epochs[-1].holdout_mse)


# --------------------------------------------------------------------------- as a Dynamics


def test_is_a_dynamics_and_differentiable(linear_model):
    m, _ = linear_model
    assert isinstance(m, Dynamics) and isinstance(m, Differentiable)


def test_rollout_is_the_mean_model_and_the_mean_propagation(linear_model):
    m, _ = linear_model
    U = np.random.default_rng(0).uniform(-1, 1, (4, 5, 1))
    x0 = np.array([0.3, -0.2])
    X = m.rollout(x0, U)
    ref = np.empty_like(X)
    ref[:, 0] = x0
    for t in range(5):  # reference loop over step()
        ref[:, t + 1] = m.step(ref[:, t], U[:, t])
    np.testing.assert_allclose(X, ref, atol=1e-6)
    Xp, _, _ = m.rollout_particles(x0, U, propagation="mean")
    np.testing.assert_allclose(Xp[:, 0], X, atol=1e-6)
    mean, _ = m.predict(X[:, 0], U[:, 0])  # step = average of the elites' means
    np.testing.assert_allclose(X[:, 1], mean[..., :2].mean(0), atol=1e-6)


def test_rollout_cost_averages_particles_and_adds_disagreement(linear_model):
    m, _ = linear_model
    cost = QuadraticCost([1.0, 1.0], [0.1])
    U = np.random.default_rng(1).uniform(-1, 1, (6, 4, 1))
    x0 = np.array([0.5, 0.5])
    for weight in (0.0, 2.0, -1.0):
        m.config = EnsembleConfig(**{**m.config.to_json(), "disagreement_weight": weight,
                                     "angle_dims": ()})
        m.reseed(7)
        got = m.rollout_cost(x0, U, cost)
        m.reseed(7)
        X, D, _ = m.rollout_particles(x0, U)
        P = X.shape[1]
        per = np.array([[cost(X[b, p][None], U[b][None])[0] for p in range(P)] for b in range(6)])
        np.testing.assert_allclose(got, per.mean(1) + weight * D.sum(1), rtol=1e-10)
    m.config = EnsembleConfig(**{**m.config.to_json(), "disagreement_weight": 0.0, "angle_dims": ()})


def test_same_seed_same_particles(linear_model):
    m, _ = linear_model
    U = np.zeros((3, 4, 1))
    m.reseed(1)
    a = m.rollout_particles(np.zeros(2), U)[0]
    m.reseed(1)
    b = m.rollout_particles(np.zeros(2), U)[0]
    c = m.rollout_particles(np.zeros(2), U)[0]
    assert np.array_equal(a, b) and not np.array_equal(b, c)


def test_learned_reward_cost(linear_model):
    m, _ = linear_model
    cost = m.reward_cost()
    U = np.random.default_rng(2).uniform(-1, 1, (3, 4, 1))
    X = m.rollout(np.array([0.2, 0.1]), U)
    mean, _ = m.predict(X[:, :-1].reshape(-1, 2), U.reshape(-1, 1))
    want = -mean[..., 2].mean(0).reshape(3, 4).sum(1)
    np.testing.assert_allclose(cost(X, U), want, atol=1e-6)  # float32 sums in either order
    c = m.rollout_cost(np.array([0.2, 0.1]), U, cost)
    assert c.shape == (3,) and np.all(np.isfinite(c))


def test_cem_plans_on_the_model(linear_model):
    """CEM through Problem on the learned model drives the state towards the origin about as
    well as CEM on the true linear system."""
    m, _ = linear_model
    cost = QuadraticCost([1.0, 1.0], [0.01], [10.0, 10.0])
    x0 = np.array([0.8, -0.5])
    plan = CEM(Problem(m, cost, 10), samples=100, iterations=4).plan(x0, rng=0)
    X = [x0]
    for u in plan.actions:  # the true system under the plan
        X.append(A_TRUE @ X[-1] + B_TRUE @ u)
    true_cost = cost(np.array(X)[None], plan.actions[None])[0]
    untouched = cost(np.array([np.linalg.matrix_power(A_TRUE, t) @ x0 for t in range(11)])[None],
                     np.zeros((1, 10, 1)))[0]
    assert true_cost < untouched


# --------------------------------------------------------------------------- checkpoints


def test_save_load_predictions_are_bit_identical(linear_model, tmp_path):
    m, _ = linear_model
    m.save(tmp_path / "ck")
    m2 = Ensemble.load(tmp_path / "ck")
    X = np.random.default_rng(0).uniform(-1, 1, (50, 2))
    U = np.random.default_rng(1).uniform(-1, 1, (50, 1))
    for a, b in zip(m.predict(X, U), m2.predict(X, U)):
        assert np.array_equal(a, b)
    m.reseed(3), m2.reseed(3)
    Us = U[:10].reshape(5, 2, 1)
    assert np.array_equal(m.rollout_particles(X[0], Us)[0], m2.rollout_particles(X[0], Us)[0])
    assert m2.elites == m.elites and m2.config == m.config
    meta = json.loads((tmp_path / "ck" / "model.json").read_text())
    assert meta["versions"]["torch"] == torch.__version__
    assert meta["train_config"]["epochs"] == 50


def test_training_resumes_from_a_checkpoint(tmp_path):
    data = linear_data(300)
    a = Ensemble(2, 1, members=2, hidden=8, layers=1)
    a.fit(data, epochs=2, batch_size=32)
    a.save(tmp_path / "ck")
    b = Ensemble.load(tmp_path / "ck")
    a.fit(data, epochs=2, batch_size=32, seed=9)  # the optimiser's moments carry over
    b.fit(data, epochs=2, batch_size=32, seed=9)
    X = data.observations[:30]
    assert np.array_equal(a.step(X, data.actions[:30]), b.step(X, data.actions[:30]))
    assert b.trained_epochs == 4


def test_save_is_atomic_and_replaces(tmp_path, monkeypatch):
    m = Ensemble(2, 1, members=2, hidden=8, layers=1)
    m.save(tmp_path / "ck")
    before = (tmp_path / "ck" / "weights.safetensors").read_bytes()
    import recede.models.ensemble as ens

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ens.json, "dump", boom)
    m2 = Ensemble(2, 1, members=2, hidden=8, layers=1, seed=5)
    with pytest.raises(OSError):
        m2.save(tmp_path / "ck")
    assert (tmp_path / "ck" / "weights.safetensors").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["ck"]


@pytest.fixture()
def checkpoint(tmp_path):
    m = Ensemble(2, 1, members=2, hidden=8, layers=1)
    m.fit(linear_data(100), epochs=1)
    path = tmp_path / "ck"
    m.save(path)
    return path


def _rewrite_weights(path, change):
    w = load_file(path / "weights.safetensors")
    change(w)
    save_file(w, str(path / "weights.safetensors"))
    meta = json.loads((path / "model.json").read_text())
    import hashlib

    meta["weights_sha256"] = hashlib.sha256((path / "weights.safetensors").read_bytes()).hexdigest()
    (path / "model.json").write_text(json.dumps(meta))


def test_corrupted_weights_are_refused(checkpoint):
    raw = bytearray((checkpoint / "weights.safetensors").read_bytes())
    raw[-3] ^= 0xFF
    (checkpoint / "weights.safetensors").write_bytes(bytes(raw))
    with pytest.raises(InvalidArgumentError, match="checksum"):
        Ensemble.load(checkpoint)


@pytest.mark.parametrize("edit, match", [
    (lambda meta: meta.update(format="other/1"), "format"),
    (lambda meta: meta.pop("nx"), "missing keys"),
    (lambda meta: meta["config"].update(hidden=9), "shape"),
    (lambda meta: meta["config"].update(members=0), "members must be"),
    (lambda meta: meta.update(elites=[0, 0]), "elites"),
    (lambda meta: meta.update(nu=3), "shape"),
])
def test_mismatched_model_json_is_refused(checkpoint, edit, match):
    meta = json.loads((checkpoint / "model.json").read_text())
    edit(meta)
    (checkpoint / "model.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidArgumentError, match=match):
        Ensemble.load(checkpoint)


def test_broken_files_are_refused(checkpoint, tmp_path):
    (checkpoint / "model.json").write_text("{not json")
    with pytest.raises(InvalidArgumentError, match="not valid JSON"):
        Ensemble.load(checkpoint)
    with pytest.raises(InvalidArgumentError, match="not a directory"):
        Ensemble.load(tmp_path / "nowhere")
    os.remove(checkpoint / "weights.safetensors")
    with pytest.raises(InvalidArgumentError, match="no weights.safetensors"):
        Ensemble.load(checkpoint)


def test_tensors_are_checked_by_name_and_finiteness(checkpoint):
    _rewrite_weights(checkpoint, lambda w: w.__setitem__("layers.0.weight", w["layers.0.weight"] * math.nan))
    with pytest.raises(InvalidArgumentError, match="not finite"):
        Ensemble.load(checkpoint)
    _rewrite_weights(checkpoint, lambda w: w.pop("layers.0.weight"))
    with pytest.raises(InvalidArgumentError, match="missing"):
        Ensemble.load(checkpoint)


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("options, match", [
    ({"members": 0}, "members must be"),
    ({"elites": 6}, "elites must be <= members"),
    ({"propagation": "ts2"}, "propagation must be one of"),
    ({"particles": 0}, "particles must be"),
    ({"angle_dims": (5,)}, "angle_dims"),
    ({"disagreement_weight": math.inf}, "disagreement_weight"),
])
def test_bad_options_are_refused(options, match):
    with pytest.raises(InvalidArgumentError, match=match):
        Ensemble(2, 1, **options)


@pytest.mark.parametrize("options, match", [
    ({"epochs": 0}, "epochs"), ({"holdout": 1.0}, "holdout"), ({"learning_rate": 0}, "learning_rate"),
    ({"batch_size": 2.5}, "batch_size"),
])
def test_bad_training_options_are_refused(options, match):
    with pytest.raises(InvalidArgumentError, match=match):
        TrainConfig(**options)


def test_bad_data_and_inputs_are_refused():
    m = Ensemble(3, 1)
    with pytest.raises(InvalidArgumentError, match="nx=3"):
        m.fit(linear_data(50), epochs=1)
    with pytest.raises(InvalidArgumentError, match="x0 must have shape"):
        m.rollout(np.zeros(2), np.zeros((1, 2, 1)))
    with pytest.raises(InvalidArgumentError, match="U must be finite"):
        m.rollout_particles(np.zeros(3), np.full((1, 2, 1), np.nan))
    assert Propagation("ts1") is Propagation.TS1
