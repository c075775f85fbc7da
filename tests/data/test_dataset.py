"""Tests for recede.data: TransitionDataset (validation, npz files, episodes) and the Minari and
D4RL readers, checked against plain loops written here."""

from __future__ import annotations

import os
import re
import sys
import warnings

import numpy as np
import pytest

from recede.data import TransitionDataset, load_d4rl_hdf5, load_minari, save_d4rl_hdf5
from recede.data.dataset import FIELDS, FORMAT
from recede.errors import InvalidArgumentError

DTYPES = dict(observations=np.float64, actions=np.float64, next_observations=np.float64,
              rewards=np.float64, terminated=np.bool_, truncated=np.bool_, episode_ids=np.int64)


def random_episodes(rng, lengths, nx=4, nu=2):
    """One dict per episode: observations (T+1, nx), actions (T, nu), rewards (T,), flags."""
    episodes = []
    for k, T in enumerate(lengths):
        episodes.append(dict(
            observations=rng.normal(size=(T + 1, nx)), actions=rng.normal(size=(T, nu)),
            rewards=rng.normal(size=T), terminated=bool(k % 2 == 0), truncated=bool(k % 2 == 1),
            episode_id=10 + 3 * k))
    return episodes


def dataset_of(episodes):
    return TransitionDataset.concatenate([TransitionDataset.from_episode(**e) for e in episodes])


@pytest.fixture
def data():
    return dataset_of(random_episodes(np.random.default_rng(0), [5, 1, 7, 3]))


def fields(d):
    return {name: getattr(d, name) for name in FIELDS}


def assert_same(a, b):
    for name in FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype == DTYPES[name], name
        assert np.array_equal(x, y), name


# ------------------------------------------------------------------------------------------------
# Construction and validation
# ------------------------------------------------------------------------------------------------


def test_fields_are_typed_readonly_and_copied():
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(6, 3))
    given = dict(observations=obs, actions=rng.normal(size=(6, 2)).astype(np.float32),
                 next_observations=rng.normal(size=(6, 3)), rewards=[1, 2, 3, 4, 5, 6],
                 terminated=np.array([0, 0, 1, 0, 0, 0.0]), truncated=np.zeros(6, bool),
                 episode_ids=np.array([0, 0, 0, 1, 1, 1], np.int32))
    d = TransitionDataset(**given)
    assert (len(d), d.nx, d.nu) == (6, 3, 2)
    for name in FIELDS:
        a = getattr(d, name)
        assert a.dtype == DTYPES[name] and a.flags.c_contiguous and not a.flags.writeable, name
    assert np.array_equal(d.terminated, [False, False, True, False, False, False])
    assert np.array_equal(d.actions, given["actions"].astype(np.float64))
    kept = obs.copy()
    obs[0, 0] = 123.0  # the caller's array stays writable and the dataset doesn't see the change
    assert obs.flags.writeable and np.array_equal(d.observations, kept)
    with pytest.raises(ValueError):
        d.rewards[0] = 1.0
    with pytest.raises(AttributeError):
        d.rewards = np.zeros(6)


def test_nan_is_refused_with_field_row_and_column(data):
    for name, index in (("observations", (12, 3)), ("next_observations", (0, 1)),
                        ("actions", (7, 0))):
        bad = fields(data)
        bad[name] = bad[name].copy()
        bad[name][index] = np.nan
        with pytest.raises(InvalidArgumentError,
                           match=rf"^{name} must be finite, got nan at row {index[0]}, "
                                 rf"column {index[1]}$"):
            TransitionDataset(**bad)
    bad = fields(data)
    bad["rewards"] = bad["rewards"].copy()
    bad["rewards"][4] = -np.inf
    with pytest.raises(InvalidArgumentError, match=r"^rewards must be finite, got -inf at row 4$"):
        TransitionDataset(**bad)


def test_mismatched_lengths_and_shapes_are_refused(data):
    n = len(data)
    for name in FIELDS[1:]:
        bad = fields(data)
        bad[name] = bad[name][:-1]
        with pytest.raises(InvalidArgumentError,
                           match=rf"^{name} has {n - 1} rows but observations has {n}$"):
            TransitionDataset(**bad)
    bad = fields(data)
    bad["next_observations"] = bad["next_observations"][:, :-1]
    with pytest.raises(InvalidArgumentError, match=r"next_observations has 3 columns but "
                                                   r"observations has 4"):
        TransitionDataset(**bad)
    bad = fields(data)
    bad["actions"] = bad["actions"][:, 0]
    with pytest.raises(InvalidArgumentError, match=r"actions must have shape \(N, n\), got shape"):
        TransitionDataset(**bad)
    with pytest.raises(InvalidArgumentError, match="dataset is empty"):
        TransitionDataset(**{name: a[:0] for name, a in fields(data).items()})


def test_bad_flags_ids_and_dtypes_are_refused(data):
    for name, value, pattern in (
        ("terminated", 2.0, r"terminated must be booleans \(or 0/1\), got 2.0 at row 3"),
        ("episode_ids", -1, r"episode_ids must be non-negative, got -1 at row 3"),
    ):
        bad = fields(data)
        bad[name] = bad[name].astype(np.float64 if name == "terminated" else np.int64)
        bad[name][3] = value
        with pytest.raises(InvalidArgumentError, match=pattern):
            TransitionDataset(**bad)
    bad = fields(data)
    bad["episode_ids"] = bad["episode_ids"].astype(np.float64)
    with pytest.raises(InvalidArgumentError,
                       match="episode_ids must be integers, got dtype float64"):
        TransitionDataset(**bad)
    bad = fields(data)
    bad["rewards"] = bad["rewards"].astype(str)
    with pytest.raises(InvalidArgumentError, match="rewards must be an array of real numbers"):
        TransitionDataset(**bad)


def test_check_dims(data):
    data.check_dims(4, 2)
    with pytest.raises(InvalidArgumentError,
                       match=r"^dataset has observations of size 4 but the task's state "
                             r"has size 5$"):
        data.check_dims(5, 2)
    with pytest.raises(InvalidArgumentError,
                       match=r"^dataset has actions of size 2 but the model's action has size 1$"):
        data.check_dims(4, 1, where="model")


# ------------------------------------------------------------------------------------------------
# Episodes, concatenate, subset
# ------------------------------------------------------------------------------------------------


def test_from_episode_episodes_and_returns_match_a_hand_loop():
    rng = np.random.default_rng(2)
    lengths = [5, 1, 7, 3]
    episodes = random_episodes(rng, lengths)
    d = dataset_of(episodes)

    rows, ranges, returns = [], [], []
    for e in episodes:
        start, total = len(rows), 0.0
        T = len(e["rewards"])
        for t in range(T):
            last = t == T - 1
            rows.append((e["observations"][t], e["actions"][t], e["observations"][t + 1],
                         e["rewards"][t], last and e["terminated"], last and e["truncated"],
                         e["episode_id"]))
            total += e["rewards"][t]
        ranges.append((start, len(rows)))
        returns.append(total)

    assert len(d) == len(rows) == sum(lengths)
    for i, row in enumerate(rows):
        got = (d.observations[i], d.actions[i], d.next_observations[i], d.rewards[i],
               d.terminated[i], d.truncated[i], d.episode_ids[i])
        for want, have in zip(row, got):
            assert np.array_equal(want, have), i
    assert d.episodes() == ranges
    np.testing.assert_allclose(d.episode_returns(), returns, rtol=1e-12, atol=1e-12)
    assert d.episode_returns().shape == (len(lengths),)


def test_from_episode_refusals():
    rng = np.random.default_rng(3)
    obs, act, rew = rng.normal(size=(4, 2)), rng.normal(size=(3, 1)), rng.normal(size=3)
    with pytest.raises(InvalidArgumentError, match=r"observations must have T\+1 = 4 rows for 3 "
                                                   r"actions, got 3"):
        TransitionDataset.from_episode(obs[:-1], act, rew, True, False, 0)
    with pytest.raises(InvalidArgumentError, match="rewards has 2 rows but actions has 3"):
        TransitionDataset.from_episode(obs, act, rew[:-1], True, False, 0)
    with pytest.raises(InvalidArgumentError, match="at least one step"):
        TransitionDataset.from_episode(obs[:1], act[:0], rew[:0], True, False, 0)
    with pytest.raises(InvalidArgumentError, match="terminated must be a bool, got 1"):
        TransitionDataset.from_episode(obs, act, rew, 1, False, 0)
    with pytest.raises(InvalidArgumentError, match="episode_id must be a non-negative"):
        TransitionDataset.from_episode(obs, act, rew, True, False, -2)
    obs[2, 1] = np.nan  # rows count steps of the episode
    with pytest.raises(InvalidArgumentError, match="observations must be finite, got nan at row 2, "
                                                   "column 1"):
        TransitionDataset.from_episode(obs, act, rew, True, False, 0)


def test_concatenate_and_subset(data):
    rng = np.random.default_rng(4)
    other = dataset_of(random_episodes(rng, [2, 2]))
    both = TransitionDataset.concatenate([data, other])
    for name in FIELDS:
        assert np.array_equal(getattr(both, name),
                              np.concatenate([getattr(data, name), getattr(other, name)]))
    with pytest.raises(InvalidArgumentError, match=r"datasets\[1\] has observations of size 3 but "
                                                   r"datasets\[0\] has 4"):
        TransitionDataset.concatenate([data, dataset_of(random_episodes(rng, [2], nx=3))])
    with pytest.raises(InvalidArgumentError, match="at least one"):
        TransitionDataset.concatenate([])

    idx = np.array([3, 0, 3, len(data) - 1])
    picked = data.subset(idx)
    mask = np.arange(len(data)) % 3 == 0
    masked = data.subset(mask)
    for name in FIELDS:
        assert np.array_equal(getattr(picked, name), getattr(data, name)[idx])
        assert np.array_equal(getattr(masked, name), getattr(data, name)[mask])
    with pytest.raises(InvalidArgumentError, match=rf"indices\[1\] = {len(data)} is out of range"):
        data.subset([0, len(data)])
    with pytest.raises(InvalidArgumentError, match="dataset is empty"):
        data.subset([])


# ------------------------------------------------------------------------------------------------
# npz files
# ------------------------------------------------------------------------------------------------


def test_save_load_round_trip_is_bit_identical(data, tmp_path):
    path = tmp_path / "data.npz"
    data.save(path)
    loaded = TransitionDataset.load(path)
    assert_same(data, loaded)
    assert os.listdir(tmp_path) == ["data.npz"]
    with np.load(path, allow_pickle=False) as archive:
        assert str(archive["format"]) == FORMAT
        assert sorted(archive.files) == sorted(("format",) + FIELDS)


def test_failed_save_keeps_the_old_file_and_leaves_no_temporary(data, tmp_path, monkeypatch):
    path = tmp_path / "data.npz"
    data.save(path)
    before = path.read_bytes()

    def broken_savez(file, **arrays):
        file.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        data.subset([0]).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["data.npz"]
    with pytest.raises(OSError):
        data.save(tmp_path / "new.npz")
    assert os.listdir(tmp_path) == ["data.npz"]


def test_save_refuses_other_suffixes(data, tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"path must end in '\.npz', got '.*data\.npy'"):
        data.save(tmp_path / "data.npy")
    assert os.listdir(tmp_path) == []


def test_load_refuses_unreadable_files_naming_the_path(data, tmp_path):
    good = tmp_path / "good.npz"
    data.save(good)
    blob = good.read_bytes()
    cases = {
        "random.npz": np.random.default_rng(5).bytes(300),
        "half.npz": blob[: len(blob) // 2],
        "array.npz": None,
    }
    for name, content in cases.items():
        path = tmp_path / name
        if content is None:
            with open(path, "wb") as f:
                np.save(f, np.zeros(3))
        else:
            path.write_bytes(content)
        with pytest.raises(InvalidArgumentError, match=re.escape(str(path))):
            TransitionDataset.load(path)
    with pytest.raises(InvalidArgumentError, match="no such file"):
        TransitionDataset.load(tmp_path / "missing.npz")


def test_load_refuses_missing_keys_bad_tags_and_bad_data(data, tmp_path):
    arrays = fields(data)
    path = tmp_path / "bad.npz"

    np.savez(path, format=np.array(FORMAT),
             **{k: v for k, v in arrays.items() if k not in ("rewards", "truncated")})
    with pytest.raises(InvalidArgumentError,
                       match=re.escape(f"{path}: missing keys ['rewards', 'truncated']")):
        TransitionDataset.load(path)

    np.savez(path, format=np.array("something.else/1"), **arrays)
    with pytest.raises(InvalidArgumentError, match=re.escape(f"{path}: format must be")):
        TransitionDataset.load(path)

    obs = arrays["observations"].copy()
    obs[9, 2] = np.inf
    np.savez(path, format=np.array(FORMAT), **{**arrays, "observations": obs})
    with pytest.raises(InvalidArgumentError, match=re.escape(
            f"{path}: observations must be finite, got inf at row 9, column 2")):
        TransitionDataset.load(path)


# ------------------------------------------------------------------------------------------------
# D4RL-style HDF5
# ------------------------------------------------------------------------------------------------


def d4rl_arrays(rng, n=12, nx=3, nu=2):
    """A terminal at row 3 and a timeout at row 7 (episodes 0-3, 4-7, 8-11; the last one is cut
    off by the end of the file)."""
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    terminals[3] = True
    timeouts[7] = True
    return dict(observations=rng.normal(size=(n, nx)).astype(np.float32),
                actions=rng.normal(size=(n, nu)).astype(np.float32),
                rewards=rng.normal(size=n).astype(np.float32), terminals=terminals,
                timeouts=timeouts)


def write_hdf5(path, arrays):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            f.create_dataset(key, data=value)
        f.create_dataset("infos/qpos", data=np.zeros((3, 2)))  # ignored by the reader


def ref_d4rl(a):
    """Transitions the reader must produce, by a plain loop over the rows."""
    obs, nxt = a["observations"], a.get("next_observations")
    n = len(obs)
    rows, episode = [], 0
    for i in range(n):
        term, tout = bool(a["terminals"][i]), bool(a["timeouts"][i])
        if nxt is not None:
            rows.append([obs[i], a["actions"][i], nxt[i], a["rewards"][i], term, tout, episode])
        elif i + 1 < n and (term or not tout):
            rows.append([obs[i], a["actions"][i], obs[i + 1], a["rewards"][i], term, tout, episode])
        if term or tout:
            episode += 1
    for k, row in enumerate(rows):  # an episode's last kept row ends it: truncated if not terminal
        if (k + 1 == len(rows) or rows[k + 1][6] != row[6]) and not row[4]:
            row[5] = True
    return rows


def assert_rows(d, rows):
    assert len(d) == len(rows)
    for i, row in enumerate(rows):
        got = (d.observations[i], d.actions[i], d.next_observations[i], d.rewards[i],
               d.terminated[i], d.truncated[i], d.episode_ids[i])
        for k, (want, have) in enumerate(zip(row, got)):
            assert np.array_equal(np.asarray(want, np.float64),
                                  np.asarray(have, np.float64)), (i, k)


@pytest.mark.parametrize("flags_as_floats", [False, True])
def test_d4rl_without_next_observations(tmp_path, flags_as_floats):
    a = d4rl_arrays(np.random.default_rng(6))
    if flags_as_floats:  # older D4RL files store the flags as 0.0/1.0
        a["terminals"] = a["terminals"].astype(np.float32)
        a["timeouts"] = a["timeouts"].astype(np.float32)
    path = tmp_path / "d.hdf5"
    write_hdf5(path, a)
    d = load_d4rl_hdf5(path)
    assert_rows(d, ref_d4rl(a))
    # Rows 7 (timeout) and 11 (last) are dropped; the terminal row 3 keeps obs[4] as its next.
    assert len(d) == 10
    assert d.episodes() == [(0, 4), (4, 7), (7, 10)]
    assert np.array_equal(d.next_observations[3], a["observations"][4].astype(np.float64))
    assert d.terminated.tolist() == [i == 3 for i in range(10)]
    assert d.truncated.tolist() == [i in (6, 9) for i in range(10)]


def test_d4rl_terminal_timeout_rows_are_kept_without_next_observations(tmp_path):
    a = d4rl_arrays(np.random.default_rng(12))
    a["terminals"][9] = a["timeouts"][9] = True
    path = tmp_path / "d.hdf5"
    write_hdf5(path, a)
    d = load_d4rl_hdf5(path)
    assert_rows(d, ref_d4rl(a))
    # Rows 7 (timeout only) and 11 (last) dropped; row 9 ends its episode by termination.
    assert len(d) == 10
    assert d.episodes() == [(0, 4), (4, 7), (7, 9), (9, 10)]
    assert d.terminated[8] and d.truncated[8]
    assert np.array_equal(d.next_observations[8], a["observations"][10].astype(np.float64))


def test_d4rl_with_next_observations(tmp_path):
    rng = np.random.default_rng(7)
    a = d4rl_arrays(rng)
    a["next_observations"] = rng.normal(size=a["observations"].shape)
    a["terminals"][9] = a["timeouts"][9] = True  # a row can be both
    path = tmp_path / "d.hdf5"
    write_hdf5(path, a)
    d = load_d4rl_hdf5(path)
    assert_rows(d, ref_d4rl(a))
    assert len(d) == 12
    assert d.episodes() == [(0, 4), (4, 8), (8, 10), (10, 12)]
    assert d.truncated[[7, 9, 11]].all() and d.terminated[[3, 9]].all()


def test_d4rl_refusals_name_the_file_and_key(tmp_path):
    rng = np.random.default_rng(8)
    path = tmp_path / "d.hdf5"

    a = d4rl_arrays(rng)
    del a["timeouts"]
    write_hdf5(path, a)
    with pytest.raises(InvalidArgumentError, match=re.escape(f"{path}: missing datasets "
                                                             f"['timeouts']")):
        load_d4rl_hdf5(path)

    a = d4rl_arrays(rng)
    a["rewards"] = a["rewards"][:-1]
    write_hdf5(path, a)
    with pytest.raises(InvalidArgumentError,
                       match=re.escape(f"{path}: rewards has 11 rows but observations has 12")):
        load_d4rl_hdf5(path)

    a = d4rl_arrays(rng)
    a["actions"][5, 1] = np.nan
    write_hdf5(path, a)
    with pytest.raises(InvalidArgumentError, match=re.escape(
            f"{path}: actions must be finite, got nan at row 5, column 1")):
        load_d4rl_hdf5(path)

    a = d4rl_arrays(rng)
    a["terminals"] = a["terminals"].astype(np.float32)
    a["terminals"][2] = 0.5
    write_hdf5(path, a)
    with pytest.raises(InvalidArgumentError,
                       match=re.escape(f"{path}: terminals must be booleans")):
        load_d4rl_hdf5(path)

    path.write_bytes(b"not hdf5 at all")
    with pytest.raises(InvalidArgumentError, match=re.escape(f"{path}: not a readable HDF5 file")):
        load_d4rl_hdf5(path)


def renumbered(d):
    """``d`` with its episodes numbered 0, 1, ... in order (what a D4RL file can hold)."""
    ids = np.repeat(np.arange(len(d.episodes())), [b - a for a, b in d.episodes()])
    return TransitionDataset(**{**fields(d), "episode_ids": ids})


def test_d4rl_writer_round_trips_exactly(tmp_path):
    h5py = pytest.importorskip("h5py")
    # episodes ending terminated, truncated, both; ids 10, 13, ... (renumbered by the file)
    episodes = random_episodes(np.random.default_rng(13), [5, 1, 7, 3, 2], nx=3, nu=2)
    episodes[4]["terminated"] = episodes[4]["truncated"] = True
    d = dataset_of(episodes)
    path = tmp_path / "d.hdf5"
    save_d4rl_hdf5(d, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.hdf5"]  # no temporary file left

    # the file itself: D4RL's keys, one row per transition, flags as booleans
    with h5py.File(path, "r") as f:
        assert sorted(f.keys()) == sorted(["observations", "actions", "rewards", "terminals",
                                           "timeouts", "next_observations"])
        for key, name in [("observations", "observations"), ("actions", "actions"),
                          ("rewards", "rewards"), ("next_observations", "next_observations"),
                          ("terminals", "terminated"), ("timeouts", "truncated")]:
            assert f[key].dtype == getattr(d, name).dtype
            assert np.array_equal(f[key][()], getattr(d, name)), key

    back = load_d4rl_hdf5(path)
    assert_same(back, renumbered(d))
    assert back.episodes() == d.episodes()
    assert back.episode_ids[[0, 5, 6, 13, 16]].tolist() == [0, 1, 2, 3, 4]

    # ids already 0..E-1 (as `recede collect` writes them): the very same dataset
    exact = renumbered(d)
    save_d4rl_hdf5(exact, tmp_path / "e.h5")
    assert_same(load_d4rl_hdf5(tmp_path / "e.h5"), exact)


def test_d4rl_writer_ends_unflagged_episodes_with_a_timeout(tmp_path):
    pytest.importorskip("h5py")
    episodes = random_episodes(np.random.default_rng(14), [3, 4, 2], nx=2, nu=1)
    episodes[1]["terminated"] = episodes[1]["truncated"] = False  # its data just stops
    d = dataset_of(episodes)
    path = tmp_path / "d.hdf5"
    save_d4rl_hdf5(d, path)
    back = load_d4rl_hdf5(path)
    assert back.episodes() == d.episodes() == [(0, 3), (3, 7), (7, 9)]
    truncated = d.truncated.copy()
    truncated[6] = True
    assert_same(back, TransitionDataset(**{**fields(renumbered(d)), "truncated": truncated}))


def test_d4rl_writer_refusals(tmp_path, data):
    pytest.importorskip("h5py")
    path = tmp_path / "d.hdf5"
    save_d4rl_hdf5(data, path)
    before = path.read_bytes()

    with pytest.raises(InvalidArgumentError, match=re.escape(
            "dataset must be a TransitionDataset, got dict")):
        save_d4rl_hdf5(fields(data), path)
    with pytest.raises(InvalidArgumentError, match=re.escape(
            f"path must end in '.hdf5' or '.h5', got '{tmp_path / 'd.npz'}'")):
        save_d4rl_hdf5(data, tmp_path / "d.npz")
    (tmp_path / "dir.h5").mkdir()
    with pytest.raises(InvalidArgumentError, match=re.escape(
            f"path must be a file path, got the directory '{tmp_path / 'dir.h5'}'")):
        save_d4rl_hdf5(data, tmp_path / "dir.h5")
    with pytest.raises(InvalidArgumentError, match="path: the directory of .* does not exist"):
        save_d4rl_hdf5(data, tmp_path / "missing" / "d.h5")

    # a flag inside an episode: the file would split the episode there
    terminated = np.zeros(len(data), bool)
    terminated[2] = True  # rows 0-4 are the first episode (id 10)
    inside = TransitionDataset(**{**fields(data), "terminated": terminated})
    with pytest.raises(InvalidArgumentError, match=re.escape(
            "dataset has terminated set at row 2, which is not the last row of its episode "
            "(episode id 10): the D4RL layout would end the episode there")):
        save_d4rl_hdf5(inside, path)

    assert path.read_bytes() == before  # refused before anything was written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.hdf5", "dir.h5"]


# ------------------------------------------------------------------------------------------------
# Minari
# ------------------------------------------------------------------------------------------------


def create_minari(root, dataset_id, episodes, observation_space, action_space, monkeypatch):
    """Write a Minari dataset under ``root`` with ``create_dataset_from_buffers`` (needs no jax
    when the buffers are given whole)."""
    minari = pytest.importorskip("minari")
    pytest.importorskip("h5py")
    from minari.data_collector import EpisodeBuffer

    buffers = [EpisodeBuffer(id=k, **e) for k, e in enumerate(episodes)]
    with monkeypatch.context() as m, warnings.catch_warnings():
        m.setenv("MINARI_DATASETS_PATH", str(root))
        warnings.simplefilter("ignore", UserWarning)  # no env/eval_env spec for a synthetic set
        minari.create_dataset_from_buffers(
            dataset_id, buffers, observation_space=observation_space, action_space=action_space,
            algorithm_name="random", author="recede tests", author_email="tests@example.com",
            code_permalink="https://example.com", description="tiny test set",
            data_format="hdf5")


def minari_episodes(rng, lengths, nx=3, nu=2):
    episodes = []
    for k, T in enumerate(lengths):
        terminations = np.zeros(T, bool)
        truncations = np.zeros(T, bool)
        (terminations if k % 2 == 0 else truncations)[-1] = True
        episodes.append(dict(observations=rng.normal(size=(T + 1, nx)),
                             actions=rng.uniform(-1, 1, size=(T, nu)).astype(np.float32),
                             rewards=rng.normal(size=T), terminations=terminations,
                             truncations=truncations))
    return episodes


def boxes(nx=3, nu=2):
    from gymnasium import spaces

    return (spaces.Box(-np.inf, np.inf, (nx,), np.float64),
            spaces.Box(-1.0, 1.0, (nu,), np.float32))


def test_minari_round_trip(tmp_path, monkeypatch):
    pytest.importorskip("minari")
    episodes = minari_episodes(np.random.default_rng(9), [3, 1, 4])
    create_minari(tmp_path, "recede/tiny-v0", episodes, *boxes(), monkeypatch)
    monkeypatch.delenv("MINARI_DATASETS_PATH", raising=False)

    d = load_minari("recede/tiny-v0", root=tmp_path)
    assert "MINARI_DATASETS_PATH" not in os.environ  # restored after the call

    rows = []
    for k, e in enumerate(episodes):
        for t in range(len(e["rewards"])):
            rows.append([e["observations"][t], e["actions"][t], e["observations"][t + 1],
                         e["rewards"][t], e["terminations"][t], e["truncations"][t], k])
    assert_rows(d, rows)
    assert d.episodes() == [(0, 3), (3, 4), (4, 8)]

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "elsewhere"))
    with pytest.raises(InvalidArgumentError) as info:
        load_minari("recede/unknown-v0", root=tmp_path)
    assert "recede/unknown-v0" in str(info.value) and str(tmp_path) in str(info.value)
    assert os.environ["MINARI_DATASETS_PATH"] == str(tmp_path / "elsewhere")


def test_minari_refusals(tmp_path, monkeypatch):
    pytest.importorskip("minari")
    from gymnasium import spaces

    episodes = minari_episodes(np.random.default_rng(10), [2, 3])
    episodes[1]["observations"][2, 0] = np.nan
    create_minari(tmp_path, "recede/nan-v0", episodes, *boxes(), monkeypatch)
    with pytest.raises(InvalidArgumentError, match=re.escape(
            "Minari dataset 'recede/nan-v0', episode 1: observations must be finite, got nan at "
            "row 2, column 0")):
        load_minari("recede/nan-v0", root=tmp_path)

    rng = np.random.default_rng(11)
    dict_space = spaces.Dict({"x": spaces.Box(-np.inf, np.inf, (2,), np.float64)})
    episodes = [dict(observations={"x": rng.normal(size=(3, 2))},
                     actions=rng.uniform(-1, 1, size=(2, 2)).astype(np.float32),
                     rewards=rng.normal(size=2), terminations=np.array([False, True]),
                     truncations=np.zeros(2, bool))]
    create_minari(tmp_path, "recede/dict-v0", episodes, dict_space, boxes()[1], monkeypatch)
    with pytest.raises(InvalidArgumentError, match=r"observation space must be a flat Box"):
        load_minari("recede/dict-v0", root=tmp_path)

    with pytest.raises(InvalidArgumentError, match="root: no such directory"):
        load_minari("recede/nan-v0", root=tmp_path / "missing")


def test_minari_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "minari", None)
    with pytest.raises(ImportError, match=re.escape('pip install "minari[hdf5]"')):
        load_minari("anything-v0")
