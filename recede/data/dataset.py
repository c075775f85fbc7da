"""A dataset of transitions ``(x, u, r, x')`` with episode bookkeeping, saved as ``.npz``.

Shapes: ``N`` transitions, ``nx`` observation size, ``nu`` action size, ``T`` steps of one
episode, ``E`` episodes. Every array is a read-only, C-contiguous numpy array.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recede._io import atomic_file
from recede.errors import InvalidArgumentError

FORMAT = "recede.TransitionDataset/1"
"""The tag stored under ``format`` in every saved file; bumped when the layout changes."""

FIELDS = (
    "observations", "actions", "next_observations", "rewards", "terminated", "truncated",
    "episode_ids",
)


# ------------------------------------------------------------------------------------------------
# Argument checks shared with the readers (recede.data.d4rl, recede.data.minari)
# ------------------------------------------------------------------------------------------------


def _where(index) -> str:
    """``(12, 3)`` -> ``"row 12, column 3"``; ``(12,)`` -> ``"row 12"``."""
    parts = [f"row {int(index[0])}"]
    if len(index) > 1:
        parts.append(f"column {int(index[1])}")
    return ", ".join(parts)


def as_floats(name: str, value, ndim: int) -> np.ndarray:
    """``value`` as a float64 array with ``ndim`` dimensions (1: ``(N,)``, 2: ``(N, n)``), every
    entry finite. Booleans and integers are accepted; strings, objects and complex numbers not."""
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise InvalidArgumentError(f"{name} must be an array of real numbers, got dtype {a.dtype}")
    if a.ndim != ndim:
        want = "(N,)" if ndim == 1 else "(N, n)"
        raise InvalidArgumentError(f"{name} must have shape {want}, got shape {a.shape}")
    a = a.astype(np.float64, copy=False)
    bad = ~np.isfinite(a)
    if bad.any():
        index = tuple(np.argwhere(bad)[0])
        raise InvalidArgumentError(f"{name} must be finite, got {a[index]} at {_where(index)}")
    return a


def as_flags(name: str, value) -> np.ndarray:
    """``value`` as a bool array ``(N,)``: booleans, or numbers that are all exactly 0 or 1 (D4RL
    stores its flags as floats in older files)."""
    a = np.asarray(value)
    if a.ndim != 1:
        raise InvalidArgumentError(f"{name} must have shape (N,), got shape {a.shape}")
    if a.dtype.kind == "b":
        return a
    if a.dtype.kind not in "iuf":
        raise InvalidArgumentError(f"{name} must be booleans, got dtype {a.dtype}")
    bad = (a != 0) & (a != 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidArgumentError(f"{name} must be booleans (or 0/1), got {a[i]} at row {i}")
    return a != 0


def as_ids(name: str, value) -> np.ndarray:
    """``value`` as a non-negative int64 array ``(N,)``."""
    a = np.asarray(value)
    if a.ndim != 1:
        raise InvalidArgumentError(f"{name} must have shape (N,), got shape {a.shape}")
    if a.dtype.kind not in "iu":
        raise InvalidArgumentError(f"{name} must be integers, got dtype {a.dtype}")
    if a.dtype.kind == "u" and a.size and a.max() > np.iinfo(np.int64).max:
        i = int(np.argmax(a))
        raise InvalidArgumentError(f"{name} must fit in int64, got {a[i]} at row {i}")
    a = a.astype(np.int64, copy=False)
    if a.size and a.min() < 0:
        i = int(np.argmin(a))
        raise InvalidArgumentError(f"{name} must be non-negative, got {a[i]} at row {i}")
    return a


def _frozen(a: np.ndarray, source) -> np.ndarray:
    """A C-contiguous read-only array that shares no memory with the caller's ``source``."""
    if a is source or not a.flags.owndata or not a.flags.c_contiguous:
        a = np.array(a, order="C", copy=True)
    a.setflags(write=False)
    return a


def _episode_arrays(observations, actions, rewards, terminated, truncated, episode_id,
                    flag_names=("terminated", "truncated")) -> dict:
    """The transition arrays of one episode: ``observations (T+1, nx)``, ``actions (T, nu)``,
    ``rewards (T,)``, bool flags ``(T,)`` (called ``flag_names`` in errors). Errors count rows by
    step within the episode."""
    obs = as_floats("observations", observations, 2)
    act = as_floats("actions", actions, 2)
    rew = as_floats("rewards", rewards, 1)
    steps = act.shape[0]
    if steps < 1:
        raise InvalidArgumentError("actions must hold at least one step (T >= 1), got shape "
                                   f"{act.shape}")
    if obs.shape[0] != steps + 1:
        raise InvalidArgumentError(
            f"observations must have T+1 = {steps + 1} rows for {steps} actions, "
            f"got {obs.shape[0]}")
    if rew.shape[0] != steps:
        raise InvalidArgumentError(f"rewards has {rew.shape[0]} rows but actions has {steps}")
    for name, flags in zip(flag_names, (terminated, truncated)):
        if flags.shape[0] != steps:
            raise InvalidArgumentError(f"{name} has {flags.shape[0]} rows but actions has {steps}")
    return dict(
        observations=obs[:-1], actions=act, next_observations=obs[1:], rewards=rew,
        terminated=terminated, truncated=truncated,
        episode_ids=np.full(steps, episode_id, dtype=np.int64),
    )


def _check_episode_id(episode_id) -> int:
    if isinstance(episode_id, (bool, np.bool_)) or not isinstance(episode_id, (int, np.integer)):
        raise InvalidArgumentError(f"episode_id must be an int, got {episode_id!r}")
    if episode_id < 0 or episode_id > np.iinfo(np.int64).max:
        raise InvalidArgumentError(f"episode_id must be a non-negative int64, got {episode_id}")
    return int(episode_id)


# ------------------------------------------------------------------------------------------------
# The dataset
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class TransitionDataset:
    """``N >= 1`` transitions ``x -> x'`` under action ``u`` with reward ``r``.

    Fields (converted and validated on construction; stored read-only, C-contiguous, never
    sharing memory with the arrays passed in):

    - ``observations (N, nx) float64``: the observation ``x`` the action was taken in.
    - ``actions (N, nu) float64``.
    - ``next_observations (N, nx) float64``: the observation ``x'`` after the action.
    - ``rewards (N,) float64``.
    - ``terminated (N,) bool``: the episode ended in a terminal state at ``x'`` (don't bootstrap).
    - ``truncated (N,) bool``: the episode was cut off after this transition (time limit, or
      the data stops); ``x'`` is a real, non-terminal observation.
    - ``episode_ids (N,) int64``, non-negative: consecutive rows with equal ids form an episode.

    Float fields must be finite, ``nx >= 1`` and ``nu >= 1``. ``len(dataset)`` is ``N``.
    """

    observations: np.ndarray
    actions: np.ndarray
    next_observations: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    episode_ids: np.ndarray

    def __post_init__(self):
        given = {name: getattr(self, name) for name in FIELDS}
        arrays = dict(
            observations=as_floats("observations", given["observations"], 2),
            actions=as_floats("actions", given["actions"], 2),
            next_observations=as_floats("next_observations", given["next_observations"], 2),
            rewards=as_floats("rewards", given["rewards"], 1),
            terminated=as_flags("terminated", given["terminated"]),
            truncated=as_flags("truncated", given["truncated"]),
            episode_ids=as_ids("episode_ids", given["episode_ids"]),
        )
        n = arrays["observations"].shape[0]
        for name in FIELDS[1:]:
            rows = arrays[name].shape[0]
            if rows != n:
                raise InvalidArgumentError(f"{name} has {rows} rows but observations has {n}")
        if n == 0:
            raise InvalidArgumentError("dataset is empty: observations has 0 rows")
        nx = arrays["observations"].shape[1]
        if nx == 0:
            raise InvalidArgumentError("observations must have at least one column, got shape "
                                       f"{arrays['observations'].shape}")
        if arrays["actions"].shape[1] == 0:
            raise InvalidArgumentError("actions must have at least one column, got shape "
                                       f"{arrays['actions'].shape}")
        width = arrays["next_observations"].shape[1]
        if width != nx:
            raise InvalidArgumentError(
                f"next_observations has {width} columns but observations has {nx}")
        for name in FIELDS:
            object.__setattr__(self, name, _frozen(arrays[name], given[name]))

    # -- sizes -------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.observations.shape[0]

    @property
    def nx(self) -> int:
        """Observation size."""
        return self.observations.shape[1]

    @property
    def nu(self) -> int:
        """Action size."""
        return self.actions.shape[1]

    def __repr__(self) -> str:
        return (f"TransitionDataset(N={len(self)}, nx={self.nx}, nu={self.nu}, "
                f"episodes={len(self.episodes())})")

    def check_dims(self, nx: int, nu: int, where: str = "task") -> None:
        """Raise unless the observations have size ``nx`` and the actions size ``nu`` (those of
        ``where``, e.g. the task or model the dataset is meant for)."""
        if self.nx != nx:
            raise InvalidArgumentError(
                f"dataset has observations of size {self.nx} but the {where}'s state has size {nx}")
        if self.nu != nu:
            raise InvalidArgumentError(
                f"dataset has actions of size {self.nu} but the {where}'s action has size {nu}")

    # -- episodes ----------------------------------------------------------------------------------

    def episodes(self) -> list[tuple[int, int]]:
        """The ``E`` runs of consecutive equal ``episode_ids`` as ``(start, stop)`` row ranges, in
        order; ``dataset.rewards[start:stop]`` are one episode's rewards."""
        ids = self.episode_ids
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        stops = np.r_[starts[1:], len(ids)]
        return [(int(a), int(b)) for a, b in zip(starts, stops)]

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of each episode of :meth:`episodes`: ``(E,) float64``."""
        starts = [start for start, _ in self.episodes()]
        return np.add.reduceat(self.rewards, starts)

    # -- building ----------------------------------------------------------------------------------

    @classmethod
    def from_episode(cls, observations, actions, rewards, terminated: bool, truncated: bool,
                     episode_id: int = 0) -> TransitionDataset:
        """The ``T`` transitions of one episode: ``observations (T+1, nx)`` (the first is the reset
        observation), ``actions (T, nu)``, ``rewards (T,)``, ``T >= 1``. ``terminated`` and
        ``truncated`` describe how the episode ended and are set on the last transition only;
        every row gets ``episode_id``."""
        flags = []
        for name, flag in (("terminated", terminated), ("truncated", truncated)):
            if not isinstance(flag, (bool, np.bool_)):
                raise InvalidArgumentError(f"{name} must be a bool, got {flag!r}")
            flags.append(bool(flag))
        episode_id = _check_episode_id(episode_id)
        actions = as_floats("actions", actions, 2)
        steps = actions.shape[0]
        ends = [np.zeros(steps, dtype=bool) for _ in flags]
        if steps:
            for end, flag in zip(ends, flags):
                end[-1] = flag
        return cls(**_episode_arrays(observations, actions, rewards, *ends, episode_id))

    @classmethod
    def concatenate(cls, datasets: Sequence[TransitionDataset]) -> TransitionDataset:
        """The rows of ``datasets`` one after the other (at least one dataset, all of the same
        ``nx`` and ``nu``). Episode ids are kept as they are: give the parts distinct ids if an
        episode must not run on across a seam."""
        datasets = list(datasets)
        if not datasets:
            raise InvalidArgumentError(
                "datasets must hold at least one TransitionDataset, got none")
        for i, d in enumerate(datasets):
            if not isinstance(d, TransitionDataset):
                raise InvalidArgumentError(
                    f"datasets[{i}] must be a TransitionDataset, got {type(d).__name__}")
            for name, size, first in (("observations", d.nx, datasets[0].nx),
                                      ("actions", d.nu, datasets[0].nu)):
                if size != first:
                    raise InvalidArgumentError(
                        f"datasets[{i}] has {name} of size {size} but datasets[0] has {first}")
        return cls(**{name: np.concatenate([getattr(d, name) for d in datasets])
                      for name in FIELDS})

    def subset(self, indices) -> TransitionDataset:
        """The rows picked by ``indices``: integer row numbers ``(M,)`` (in ``[-N, N)``, repeats
        allowed) or a boolean mask ``(N,)``; at least one row must remain."""
        idx = np.asarray(indices)
        n = len(self)
        if idx.ndim != 1:
            raise InvalidArgumentError(f"indices must be one-dimensional, got shape {idx.shape}")
        if idx.dtype.kind == "b":
            if idx.shape[0] != n:
                raise InvalidArgumentError(
                    f"indices is a boolean mask of {idx.shape[0]} rows but the dataset has {n}")
        elif idx.dtype.kind in "iu":
            bad = (idx < -n) | (idx >= n)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise InvalidArgumentError(
                    f"indices[{i}] = {idx[i]} is out of range for a dataset of {n} transitions")
        elif idx.size == 0:
            idx = idx.astype(np.int64)
        else:
            raise InvalidArgumentError(
                f"indices must be integers or booleans, got dtype {idx.dtype}")
        return type(self)(**{name: getattr(self, name)[idx] for name in FIELDS})

    # -- files -------------------------------------------------------------------------------------

    def save(self, path) -> None:
        """Write the dataset to ``path`` (which must end in ``.npz``) as an uncompressed npz archive
        holding every field plus ``format`` (:data:`FORMAT`). The file appears whole or not at all:
        on any error an existing file at ``path`` is left as it was."""
        path = os.fspath(path)
        if not str(path).endswith(".npz"):
            raise InvalidArgumentError(f"path must end in '.npz', got {path!r}")
        arrays = {name: getattr(self, name) for name in FIELDS}
        with atomic_file(path, "path") as tmp, open(tmp, "wb") as f:
            np.savez(f, format=np.array(FORMAT), **arrays)  # a file object: no .npz appended

    @classmethod
    def load(cls, path) -> TransitionDataset:
        """Read a dataset written by :meth:`save`. Every error names ``path``: a missing file, a
        file that isn't a readable npz archive, missing or unexpected keys, another format tag,
        or data that fails validation."""
        path = os.fspath(path)
        if not os.path.exists(path):
            raise InvalidArgumentError(f"path: no such file {path!r}")
        if os.path.isdir(path):
            raise InvalidArgumentError(f"path must be a file, got the directory {path!r}")
        unreadable = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)
        try:
            # Our own file object, closed whatever happens (np.load leaks its own when the zip
            # directory is unreadable).
            with open(path, "rb") as f:
                if f.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip file, empty or not
                    raise InvalidArgumentError(
                        f"{path}: not an npz archive (it doesn't start like a zip file)")
                f.seek(0)
                with np.load(f, allow_pickle=False) as archive:
                    arrays = {key: archive[key] for key in archive.files}
        except InvalidArgumentError:
            raise
        except unreadable as e:
            raise InvalidArgumentError(
                f"{path}: not a readable npz archive ({type(e).__name__}: {e})") from e
        expected = ("format",) + FIELDS
        missing = [key for key in expected if key not in arrays]
        if missing:
            raise InvalidArgumentError(f"{path}: missing keys {missing}")
        unexpected = sorted(key for key in arrays if key not in expected)
        if unexpected:
            raise InvalidArgumentError(f"{path}: unexpected keys {unexpected}")
        tag = arrays.pop("format")
        if tag.shape != () or tag.dtype.kind != "U" or str(tag) != FORMAT:
            raise InvalidArgumentError(f"{path}: format must be {FORMAT!r}, got {tag!r}")
        try:
            return cls(**arrays)
        except InvalidArgumentError as e:
            raise InvalidArgumentError(f"{path}: {e}") from None
