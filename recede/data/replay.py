"""A replay buffer: a numpy ring of transitions for off-policy learners (SAC, MBPO).

It holds the newest ``capacity`` transitions ``(obs, action, reward, next_obs, terminated,
truncated, episode_id)``; once full, each new transition overwrites the oldest. ``sample(n, rng)``
draws ``n`` stored transitions uniformly with replacement (a :class:`Batch`). It saves to and
loads from one ``.npz`` exactly (written atomically), and converts from and to a
:class:`~recede.data.dataset.TransitionDataset` so logged data can seed it.

Storage is float64 (exact round trips with datasets); learners cast a sampled batch themselves.
Shapes: ``nobs`` observation size, ``nu`` action size, ``n`` rows.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from recede._io import atomic_file
from recede.data.dataset import TransitionDataset
from recede.errors import InvalidArgumentError

FORMAT = "recede.ReplayBuffer/1"
_ARRAYS = ("obs", "actions", "rewards", "next_obs", "terminated", "truncated", "episode_ids")


class Batch(NamedTuple):
    """Sampled transitions: ``obs (n, nobs)``, ``actions (n, nu)``, ``rewards (n,)``,
    ``next_obs (n, nobs)``, ``terminated (n,)`` (float 0/1: no bootstrapping from ``next_obs``)."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray


def _count(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidArgumentError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class ReplayBuffer:
    """A ring of the newest ``capacity`` transitions; see the module docstring."""

    def __init__(self, capacity: int, nobs: int, nu: int):
        self.capacity = _count("capacity", capacity)
        self.nobs, self.nu = _count("nobs", nobs), _count("nu", nu)
        self.obs = np.zeros((self.capacity, self.nobs))
        self.actions = np.zeros((self.capacity, self.nu))
        self.rewards = np.zeros(self.capacity)
        self.next_obs = np.zeros((self.capacity, self.nobs))
        self.terminated = np.zeros(self.capacity, dtype=bool)
        self.truncated = np.zeros(self.capacity, dtype=bool)
        self.episode_ids = np.zeros(self.capacity, dtype=np.int64)
        self.ptr = 0  # where the next transition goes
        self.size = 0
        self.added = 0  # transitions ever added

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        return f"ReplayBuffer({self.size}/{self.capacity}, nobs={self.nobs}, nu={self.nu})"

    def add(self, obs, action, reward: float, next_obs, terminated: bool, truncated: bool = False,
            episode_id: int = 0) -> None:
        """Store one transition (overwriting the oldest once full)."""
        i = self.ptr
        self.obs[i] = obs
        self.actions[i] = action
        self.rewards[i] = reward
        self.next_obs[i] = next_obs
        self.terminated[i] = terminated
        self.truncated[i] = truncated
        self.episode_ids[i] = episode_id
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.added += 1

    def add_batch(self, obs, actions, rewards, next_obs, terminated, truncated=None, episode_ids=None) -> None:
        """Store ``n`` transitions in order (rows ``(n, ...)``); the newest ``capacity`` are kept."""
        obs = np.asarray(obs, dtype=np.float64).reshape(-1, self.nobs)
        n = obs.shape[0]
        cols = {
            "obs": obs,
            "actions": np.asarray(actions, dtype=np.float64).reshape(n, self.nu),
            "rewards": np.asarray(rewards, dtype=np.float64).reshape(n),
            "next_obs": np.asarray(next_obs, dtype=np.float64).reshape(n, self.nobs),
            "terminated": np.asarray(terminated, dtype=bool).reshape(n),
            "truncated": np.zeros(n, dtype=bool) if truncated is None else np.asarray(truncated, dtype=bool).reshape(n),
            "episode_ids": np.zeros(n, dtype=np.int64) if episode_ids is None
            else np.asarray(episode_ids, dtype=np.int64).reshape(n),
        }
        if n > self.capacity:  # only the newest capacity rows survive, where add() would leave them
            drop = n - self.capacity
            cols = {k: v[drop:] for k, v in cols.items()}
            self.ptr = (self.ptr + drop) % self.capacity
            self.added += drop
            n = self.capacity
        idx = (self.ptr + np.arange(n)) % self.capacity
        for k, v in cols.items():
            getattr(self, k)[idx] = v
        self.ptr = int((self.ptr + n) % self.capacity)
        self.size = min(self.size + n, self.capacity)
        self.added += n

    def sample_indices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.size == 0:
            raise InvalidArgumentError("cannot sample from an empty replay buffer")
        return rng.integers(0, self.size, size=n)

    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        """``n`` transitions drawn uniformly with replacement with ``rng``."""
        i = self.sample_indices(_count("n", n), rng)
        return Batch(self.obs[i], self.actions[i], self.rewards[i], self.next_obs[i],
                     self.terminated[i].astype(np.float64))

    def _order(self) -> np.ndarray:
        """Row indices oldest first."""
        if self.size < self.capacity:
            return np.arange(self.size)
        return (self.ptr + np.arange(self.capacity)) % self.capacity

    def resized(self, capacity: int) -> "ReplayBuffer":
        """A new buffer of ``capacity`` holding the newest of these transitions, oldest first
        (a buffer that never wrapped keeps every row at its index)."""
        buf = ReplayBuffer(capacity, self.nobs, self.nu)
        o = self._order()
        if o.size:
            buf.add_batch(self.obs[o], self.actions[o], self.rewards[o], self.next_obs[o], self.terminated[o],
                          self.truncated[o], self.episode_ids[o])
        buf.added = self.added
        return buf

    # ------------------------------------------------------------------ datasets and files

    def to_dataset(self) -> TransitionDataset:
        """The stored transitions, oldest first, as a dataset."""
        o = self._order()
        if o.size == 0:
            raise InvalidArgumentError("cannot convert an empty replay buffer to a dataset")
        return TransitionDataset(observations=self.obs[o], actions=self.actions[o],
                                 next_observations=self.next_obs[o], rewards=self.rewards[o],
                                 terminated=self.terminated[o], truncated=self.truncated[o],
                                 episode_ids=self.episode_ids[o])

    @classmethod
    def from_dataset(cls, dataset: TransitionDataset, capacity: int | None = None, *,
                     observe: Callable[[np.ndarray], np.ndarray] | None = None) -> "ReplayBuffer":
        """A buffer holding ``dataset``'s transitions (the newest ``capacity``; default all).
        ``observe`` maps the dataset's observations to the learner's features (e.g.
        ``task.observation`` for data logged as model states)."""
        obs, nxt = dataset.observations, dataset.next_observations
        if observe is not None:
            obs, nxt = np.asarray(observe(obs), dtype=np.float64), np.asarray(observe(nxt), dtype=np.float64)
        buf = cls(len(dataset) if capacity is None else capacity, obs.shape[1], dataset.nu)
        buf.add_batch(obs, dataset.actions, dataset.rewards, nxt, dataset.terminated,
                      dataset.truncated, dataset.episode_ids)
        return buf

    def state_dict(self) -> dict[str, np.ndarray]:
        meta = np.array([self.capacity, self.nobs, self.nu, self.ptr, self.size, self.added], dtype=np.int64)
        return {"meta": meta, **{k: getattr(self, k) for k in _ARRAYS}}

    @classmethod
    def from_state_dict(cls, d, where: str = "replay buffer") -> "ReplayBuffer":
        try:
            capacity, nobs, nu, ptr, size, added = (int(v) for v in np.asarray(d["meta"]))
            buf = cls(capacity, nobs, nu)
            for k in _ARRAYS:
                a = np.asarray(d[k])
                want = getattr(buf, k)
                if a.shape != want.shape:
                    raise InvalidArgumentError(f"{where}: {k} has shape {a.shape}, expected {want.shape}")
                want[...] = a
        except (KeyError, ValueError, TypeError) as e:
            raise InvalidArgumentError(f"{where}: not a replay buffer ({e})") from None
        if not (0 <= ptr < capacity and 0 <= size <= capacity and added >= size):
            raise InvalidArgumentError(f"{where}: inconsistent pointers ptr={ptr}, size={size}, "
                                       f"added={added}, capacity={capacity}")
        buf.ptr, buf.size, buf.added = ptr, size, added
        return buf

    def save(self, path: str) -> None:
        """Write the buffer to ``path`` (``.npz``) atomically; :meth:`load` restores it exactly."""
        with atomic_file(path, "path") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, format=np.array(FORMAT), **self.state_dict())

    @classmethod
    def load(cls, path: str) -> "ReplayBuffer":
        try:
            with np.load(path, allow_pickle=False) as z:
                if "format" not in z.files or str(z["format"]) != FORMAT:
                    raise InvalidArgumentError(f"{path}: not a recede replay buffer (format {FORMAT!r})")
                d = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as e:
            raise InvalidArgumentError(f"{path}: cannot read replay buffer ({e})") from None
        return cls.from_state_dict(d, str(path))
