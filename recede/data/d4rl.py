"""Read a D4RL-style HDF5 file (the layout of ``d4rl``'s ``get_dataset``) into a
:class:`~recede.data.TransitionDataset`. Needs ``h5py``, imported on first use."""

from __future__ import annotations

import os

import numpy as np

from recede.data.dataset import TransitionDataset, as_flags, as_floats
from recede.errors import InvalidArgumentError

REQUIRED = ("observations", "actions", "rewards", "terminals", "timeouts")
OPTIONAL = ("next_observations",)


def load_d4rl_hdf5(path) -> TransitionDataset:
    """Read the D4RL-style HDF5 file at ``path``.

    The file holds ``N`` rows, one per environment step, in episode order:

    - required: ``observations (N, nx)``, ``actions (N, nu)``, ``rewards (N,)``,
      ``terminals (N,)`` and ``timeouts (N,)`` (booleans, or numbers that are 0 or 1);
    - optional: ``next_observations (N, nx)``;
    - anything else (``infos/...``, ``metadata/...``) is ignored.

    An episode ends at a row with ``terminals`` or ``timeouts`` set (and at the file's last
    row). ``episode_ids`` count episodes in file order from 0; ``terminated = terminals`` and
    ``truncated = timeouts``.

    With ``next_observations`` every row becomes a transition. Without it, the next observation
    of row ``i`` is ``observations[i + 1]``, and rows whose next observation is unknown are
    dropped: ``timeouts`` rows (the next row starts a new episode) and the file's last row. A
    ``terminals`` row is kept with ``observations[i + 1]`` as its next observation (as in D4RL's
    ``qlearning_dataset``): that is the next episode's first observation, a placeholder that a
    learner must not bootstrap from, which ``terminated`` says. An episode whose every row is
    dropped leaves a gap in the ids.

    Every episode's last transition in the result has ``terminated`` or ``truncated`` set: one
    whose following rows were dropped, or that ends the file mid-episode, is marked truncated.

    The whole file is read and checked before anything is returned; errors name ``path`` and the
    key (and the row) at fault.
    """
    try:
        import h5py
    except ImportError as e:
        raise ImportError("load_d4rl_hdf5 needs h5py: pip install h5py") from e

    path = os.fspath(path)
    if not os.path.exists(path):
        raise InvalidArgumentError(f"path: no such file {path!r}")
    if os.path.isdir(path):
        raise InvalidArgumentError(f"path must be a file, got the directory {path!r}")
    try:
        with h5py.File(path, "r") as f:
            missing = [key for key in REQUIRED if key not in f]
            if missing:
                raise InvalidArgumentError(
                    f"{path}: missing datasets {missing} (has {sorted(f.keys())})")
            raw = {}
            for key in REQUIRED + OPTIONAL:
                if key not in f:
                    continue
                node = f[key]
                if not isinstance(node, h5py.Dataset):
                    raise InvalidArgumentError(
                        f"{path}: {key} must be a dataset, got a {type(node).__name__}")
                raw[key] = node[()]
    except OSError as e:
        raise InvalidArgumentError(f"{path}: not a readable HDF5 file ({e})") from e

    try:
        obs = as_floats("observations", raw["observations"], 2)
        act = as_floats("actions", raw["actions"], 2)
        rew = as_floats("rewards", raw["rewards"], 1)
        terminals = as_flags("terminals", raw["terminals"])
        timeouts = as_flags("timeouts", raw["timeouts"])
        nxt = None
        if "next_observations" in raw:
            nxt = as_floats("next_observations", raw["next_observations"], 2)
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"{path}: {e}") from None

    n = obs.shape[0]
    columns = dict(actions=act, rewards=rew, terminals=terminals, timeouts=timeouts)
    if nxt is not None:
        columns["next_observations"] = nxt
    for key, a in columns.items():
        if a.shape[0] != n:
            raise InvalidArgumentError(
                f"{path}: {key} has {a.shape[0]} rows but observations has {n}")
    if n == 0:
        raise InvalidArgumentError(f"{path}: observations has 0 rows")
    if nxt is not None and nxt.shape[1] != obs.shape[1]:
        raise InvalidArgumentError(
            f"{path}: next_observations has {nxt.shape[1]} columns "
            f"but observations has {obs.shape[1]}")

    ends = terminals | timeouts
    episode = np.cumsum(ends) - ends  # episodes ended before each row
    if nxt is None:
        keep = terminals | ~timeouts
        keep[-1] = False
        nxt = np.concatenate([obs[1:], obs[-1:]])  # the last row's entry is never kept
    else:
        keep = np.ones(n, dtype=bool)
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        raise InvalidArgumentError(
            f"{path}: no transitions: without next_observations, timeouts rows and the last row "
            f"have no next observation, and the file has only those ({n} rows)")

    ids = episode[rows].astype(np.int64)
    terminated = terminals[rows]
    last = np.r_[ids[1:] != ids[:-1], True]
    truncated = timeouts[rows] | (last & ~terminated)
    try:
        return TransitionDataset(
            observations=obs[rows], actions=act[rows], next_observations=nxt[rows],
            rewards=rew[rows], terminated=terminated, truncated=truncated, episode_ids=ids)
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"{path}: {e}") from None
