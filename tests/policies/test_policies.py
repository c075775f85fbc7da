"""Policy and value networks: batched members equal members built alone, the squashed Gaussian's
log-probability against a slow change-of-variables reference, the normaliser against numpy, the
policy checkpoint (exact round trip, refusals by name)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from recede.envs import get_task
from recede.errors import InvalidArgumentError
from recede.models.layers import BatchedMLP
from recede.policies import (
    DeterministicPolicyNet, GaussianPolicyNet, NetworkPolicy, ObsNormalizer, QNet, VNet, load_policy, save_policy,
)


def test_a_batch_of_members_equals_the_members_built_and_run_alone():
    seeds = [4, 9, 2]
    batch = GaussianPolicyNet(3, 5, 2, [-1, -2], [1, 2], hidden=(8, 8), seeds=seeds)
    x = torch.randn(3, 6, 5)
    mu, ls = batch(x)
    for k, s in enumerate(seeds):
        alone = GaussianPolicyNet(1, 5, 2, [-1, -2], [1, 2], hidden=(8, 8), seeds=[s])
        m1, l1 = alone(x[k:k + 1])
        assert torch.equal(m1[0], mu[k]) and torch.equal(l1[0], ls[k])
    q = QNet(3, 5, 2, heads=2, hidden=(8,), seeds=seeds)
    a = torch.randn(3, 6, 2)
    out = q(x, a)
    assert out.shape == (3, 2, 6)
    q1 = QNet(1, 5, 2, heads=2, hidden=(8,), seeds=[9])
    assert torch.equal(q1(x[1:2], a[1:2])[0], out[1])
    assert not torch.equal(out[1, 0], out[1, 1])  # twin heads start apart
    v = VNet(2, 5, heads=3, hidden=(8,), seeds=[1, 2])
    assert v(x[:2]).shape == (2, 3, 6)


def test_batched_mlp_is_one_matmul_per_layer_of_the_members_own_weights():
    net = BatchedMLP(2, [3, 4, 1], activation="tanh", generators=torch.Generator().manual_seed(0))
    x = torch.randn(2, 5, 3)
    ref = torch.stack([torch.tanh(x[e] @ net.weights[0][e] + net.biases[0][e]) @ net.weights[1][e] + net.biases[1][e]
                       for e in range(2)])
    assert torch.allclose(net(x), ref, atol=1e-6)
    with pytest.raises(InvalidArgumentError, match="activation must be one of"):
        BatchedMLP(1, [2, 2], activation="sigmoidish")


def test_squashed_gaussian_log_probability_matches_the_change_of_variables():
    net = GaussianPolicyNet(1, 3, 2, [-2.0, 0.0], [2.0, 1.0], hidden=(8,), seeds=[0]).double()
    obs = torch.randn(1, 4, 3, dtype=torch.float64)
    noise = torch.randn(1, 4, 2, dtype=torch.float64)
    a, logp = net.sample(obs, noise)
    mu, log_std = net(obs)
    z = mu + log_std.exp() * noise
    low, high = torch.tensor([-2.0, 0.0], dtype=torch.float64), torch.tensor([2.0, 1.0], dtype=torch.float64)
    ref = torch.distributions.Normal(mu, log_std.exp()).log_prob(z).sum(-1)
    jac = torch.log((high - low) / 2 * (1 - torch.tanh(z) ** 2)).sum(-1)
    assert torch.allclose(logp, ref - jac, atol=1e-9)
    assert ((a >= low) & (a <= high)).all()
    assert torch.allclose(net.mean_action(obs), (high + low) / 2 + (high - low) / 2 * torch.tanh(mu))


def test_the_normaliser_tracks_numpys_mean_and_variance():
    norm = ObsNormalizer(2, 3)
    data = [torch.randn(2, n, 3) * 3 + 1 for n in (5, 17, 1, 40)]
    for d in data:
        norm.update(d)
    allx = torch.cat(data, dim=1).double().numpy()
    assert np.allclose(norm.mean.numpy()[:, 0], allx.mean(axis=1), atol=1e-5)
    assert np.allclose(norm.var.numpy()[:, 0], allx.var(axis=1), atol=1e-4)


@pytest.mark.parametrize("cls", [GaussianPolicyNet, DeterministicPolicyNet])
def test_a_policy_acts_on_states_and_its_checkpoint_round_trips(tmp_path, cls):
    task = get_task("cartpole-swingup")
    net = cls(3, 5, 1, [-10.0], [10.0], hidden=(16, 16), seeds=[0, 1, 2], normalize=True)
    net.norm.update(torch.randn(3, 50, 5) * 2)
    pol = NetworkPolicy(net, task, member=2, meta={"algo": "test"})
    X = np.random.default_rng(0).normal(size=(7, 4))
    U = pol.act_batch(X)
    assert U.shape == (7, 1) and U.dtype == np.float64
    assert np.allclose(pol.act(X[3]), U[3], rtol=1e-6)  # one row or seven: float32 GEMMs may round apart
    with torch.no_grad():
        ref = net.mean_action(torch.as_tensor(task.observation(X), dtype=torch.float32)[None].expand(3, -1, -1))[2]
    assert np.allclose(U, ref.double().numpy())
    pol.save(str(tmp_path / "p"))
    back = load_policy(str(tmp_path / "p"), task)
    assert np.array_equal(back.act_batch(X), U)
    assert back.meta["algo"] == "test"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_policy_checkpoints_are_refused_by_name(tmp_path):
    task = get_task("cartpole-swingup")
    save_policy(GaussianPolicyNet(1, 5, 1, [-10.0], [10.0], hidden=(8,)), str(tmp_path / "p"), task=task)
    with pytest.raises(InvalidArgumentError, match=r"acts on 5 observations with 1 actions .* but task "
                                                   r"'pendulum-swingup' has 3 observations and 1 actions"):
        load_policy(str(tmp_path / "p"), get_task("pendulum-swingup"))
    with pytest.raises(InvalidArgumentError, match="is not a directory"):
        load_policy(str(tmp_path / "nope"), task)
    w = tmp_path / "p" / "policy.safetensors"
    blob = bytearray(w.read_bytes())
    blob[-3] ^= 0xFF
    w.write_bytes(bytes(blob))
    with pytest.raises(InvalidArgumentError, match="checksum does not match"):
        load_policy(str(tmp_path / "p"), task)
    meta = json.loads((tmp_path / "p" / "policy.json").read_text())
    (tmp_path / "p" / "policy.json").write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(InvalidArgumentError, match="format must be 'recede.Policy/1', got 'other'"):
        load_policy(str(tmp_path / "p"), task)
    (tmp_path / "p" / "policy.json").write_text("{")
    with pytest.raises(InvalidArgumentError, match="not valid JSON"):
        load_policy(str(tmp_path / "p"), task)


@pytest.mark.parametrize("kind", ["gaussian", "deterministic", "gaussian_clip", "linear"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "silu", "elu"])
def test_one_action_in_numpy_equals_the_torch_forward_and_follows_training(kind, activation):
    from recede.policies.policy import KINDS

    task = get_task("cartpole-swingup")
    kw = {} if kind == "linear" else {"hidden": (16, 8)}
    net = KINDS[kind](2, 5, 1, [-10.0], [10.0], activation=activation, seeds=[3, 4], normalize=True, **kw)
    net.norm.update(torch.randn(2, 50, 5) * 2 + 1)
    pol = NetworkPolicy(net, task, member=1)
    X = np.random.default_rng(1).normal(size=(6, 4)) * 3
    U = pol.act_batch(X)  # torch
    for x, u in zip(X, U):
        np.testing.assert_allclose(pol.act(x), u, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # an optimiser's in-place step: the next action sees it
        for w in net.mlp.weights:
            w.mul_(0.5)
    np.testing.assert_allclose(pol.act(X[0]), pol.act_batch(X[:1])[0], rtol=1e-5, atol=1e-5)
