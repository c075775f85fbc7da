"""Read a D4RL-style HDF5 file (the layout of ``d4rl``'s ``get_dataset``) into a
:class:`~recede.data.TransitionDataset`, and write one. Needs ``h5py``, imported on first use."""

from __future__ import annotations

import os

import numpy as np

from recede._io import atomic_file
from recede.data.dataset import TransitionDataset, as_flags, as_floats
from recede.errors import InvalidArgumentError

REQUIRED = ("observations", "actions", "rewards", "terminals", "timeouts")
OPTIONAL = ("next_observations",)
SUFFIXES = (".hdf5", ".h5")


def _h5py():
    try:
        import h5py
    except ImportError as e:
        raise ImportError("reading or writing D4RL-style HDF5 files needs h5py: pip install h5py") from e
    return h5py


def save_d4rl_hdf5(dataset: TransitionDataset, path) -> None:
    """Write ``dataset`` to ``path`` (ending in ``.hdf5`` or ``.h5``) in the layout that
    :func:`load_d4rl_hdf5` reads: ``observations (N, nx)``, ``actions (N, nu)``, ``rewards (N,)``,
    ``next_observations (N, nx)`` (float64, as stored), ``terminals (N,)`` (= ``terminated``) and
    ``timeouts (N,)`` (= ``truncated``) (bool), one row per transition in the dataset's order.

    The layout has no episode ids: an episode ends at a row with ``terminals`` or ``timeouts``
    set, and reading the file back numbers the episodes 0, 1, ... in order. So

    - an episode (a run of equal ``episode_ids``, see ``TransitionDataset.episodes``) whose last
      transition has neither flag gets ``timeouts`` set there: its data stops, which is what
      ``truncated`` means (a reader would otherwise run it on into the next episode);
    - a transition with ``terminated`` or ``truncated`` set that is not its episode's last is
      refused (the file would split the episode there).

    With that, ``load_d4rl_hdf5(path)`` gives back ``dataset`` exactly, episode ids renumbered
    from 0 (the same ids when they already are 0, 1, ..., E-1, as ``recede collect`` writes them).
    The file appears whole or not at all: on any error an existing file at ``path`` is left as
    it was.
    """
    if not isinstance(dataset, TransitionDataset):
        raise InvalidArgumentError(
            f"dataset must be a TransitionDataset, got {type(dataset).__name__}")
    path = os.fspath(path)
    if not str(path).lower().endswith(SUFFIXES):
        raise InvalidArgumentError(f"path must end in '.hdf5' or '.h5', got {path!r}")
    h5py = _h5py()

    n = len(dataset)
    last = np.zeros(n, dtype=bool)
    last[[stop - 1 for _, stop in dataset.episodes()]] = True
    flagged = dataset.terminated | dataset.truncated
    inside = np.flatnonzero(flagged & ~last)
    if inside.size:
        i = int(inside[0])
        which = "terminated" if dataset.terminated[i] else "truncated"
        raise InvalidArgumentError(
            f"dataset has {which} set at row {i}, which is not the last row of its episode "
            f"(episode id {int(dataset.episode_ids[i])}): the D4RL layout would end the episode there")
    timeouts = dataset.truncated | (last & ~flagged)
    arrays = dict(observations=dataset.observations, actions=dataset.actions,
                  rewards=dataset.rewards, terminals=dataset.terminated, timeouts=timeouts,
                  next_observations=dataset.next_observations)
    with atomic_file(path, "path") as tmp:
        with h5py.File(tmp, "w") as f:
            for key, value in arrays.items():
                f.create_dataset(key, data=value)


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
    h5py = _h5py()
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
