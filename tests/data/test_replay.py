"""The replay buffer: wrap-around, uniform sampling (chi-square), exact save/load, datasets."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from recede.data import ReplayBuffer, TransitionDataset
from recede.errors import InvalidArgumentError


def _fill(buf, n, start=0):
    for i in range(start, start + n):
        buf.add(np.full(buf.nobs, i), np.full(buf.nu, -i), float(i), np.full(buf.nobs, i + 0.5),
                i % 7 == 0, i % 5 == 0, i // 10)


def test_wrap_around_keeps_the_newest_capacity_transitions_in_order():
    buf = ReplayBuffer(10, 3, 2)
    _fill(buf, 25)
    assert len(buf) == 10 and buf.added == 25 and buf.ptr == 5
    ds = buf.to_dataset()
    assert ds.rewards.tolist() == [float(i) for i in range(15, 25)]  # oldest first
    assert np.array_equal(ds.observations[:, 0], np.arange(15, 25))
    assert ds.terminated.tolist() == [i % 7 == 0 for i in range(15, 25)]
    # add_batch wraps the same way as add
    other = ReplayBuffer(10, 3, 2)
    _fill(other, 3)
    rows = np.arange(3, 25)
    other.add_batch(np.repeat(rows[:, None], 3, 1), -np.repeat(rows[:, None], 2, 1), rows.astype(float),
                    np.repeat(rows[:, None] + 0.5, 3, 1), rows % 7 == 0, rows % 5 == 0, rows // 10)
    for k in ("obs", "actions", "rewards", "next_obs", "terminated", "truncated", "episode_ids"):
        assert np.array_equal(getattr(buf, k), getattr(other, k)), k
    assert (buf.ptr, buf.size, buf.added) == (other.ptr, other.size, other.added)


def test_sampling_is_uniform_over_the_stored_rows():
    buf = ReplayBuffer(50, 1, 1)
    _fill(buf, 80)  # wrapped: rows hold transitions 30..79
    rng = np.random.default_rng(0)
    draws = buf.sample(100_000, rng).rewards.astype(int)
    assert draws.min() >= 30 and draws.max() <= 79
    counts = np.bincount(draws - 30, minlength=50)
    p = scipy.stats.chisquare(counts).pvalue
    assert p > 1e-3, p
    # and a biased sampler would fail the same test (the test can fail)
    assert scipy.stats.chisquare(np.bincount(np.minimum(draws - 30, 48), minlength=50)).pvalue < 1e-6


def test_save_and_load_are_exact(tmp_path):
    buf = ReplayBuffer(10, 3, 2)
    _fill(buf, 13)
    buf.obs[2, 1] = np.pi / 3  # a float that must round-trip exactly
    buf.save(str(tmp_path / "b.npz"))
    back = ReplayBuffer.load(str(tmp_path / "b.npz"))
    for k in ("obs", "actions", "rewards", "next_obs", "terminated", "truncated", "episode_ids"):
        assert np.array_equal(getattr(buf, k), getattr(back, k)), k
    assert (buf.ptr, buf.size, buf.added, buf.capacity) == (back.ptr, back.size, back.added, back.capacity)
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    assert all(np.array_equal(a, b) for a, b in zip(buf.sample(7, r1), back.sample(7, r2)))
    assert [p.name for p in tmp_path.iterdir()] == ["b.npz"]  # no temp file left


def test_datasets_round_trip_and_seed_a_buffer():
    rng = np.random.default_rng(0)
    n = 12
    ds = TransitionDataset(observations=rng.normal(size=(n, 2)), actions=rng.normal(size=(n, 1)),
                           next_observations=rng.normal(size=(n, 2)), rewards=rng.normal(size=n),
                           terminated=np.arange(n) == 5, truncated=np.arange(n) == 11,
                           episode_ids=np.repeat([0, 1], [6, 6]))
    buf = ReplayBuffer.from_dataset(ds)
    back = buf.to_dataset()
    for k in ("observations", "actions", "next_observations", "rewards", "terminated", "truncated", "episode_ids"):
        assert np.array_equal(getattr(ds, k), getattr(back, k)), k
    # observe maps logged states to features; a smaller capacity keeps the newest
    feats = ReplayBuffer.from_dataset(ds, 5, observe=lambda X: np.concatenate([np.sin(X), X], axis=-1))
    assert feats.nobs == 4 and len(feats) == 5
    assert np.array_equal(feats.to_dataset().observations[:, 2:], ds.observations[-5:])
    assert np.array_equal(feats.to_dataset().observations[:, :2], np.sin(ds.observations[-5:]))


def test_bad_input_is_refused_by_name(tmp_path):
    with pytest.raises(InvalidArgumentError, match="capacity must be an int >= 1, got 0"):
        ReplayBuffer(0, 2, 1)
    with pytest.raises(InvalidArgumentError, match="cannot sample from an empty replay buffer"):
        ReplayBuffer(3, 2, 1).sample(4, np.random.default_rng(0))
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(InvalidArgumentError, match="cannot read replay buffer"):
        ReplayBuffer.load(str(tmp_path / "x.npz"))
    np.savez(tmp_path / "y.npz", a=np.zeros(3))
    with pytest.raises(InvalidArgumentError, match="not a recede replay buffer"):
        ReplayBuffer.load(str(tmp_path / "y.npz"))
