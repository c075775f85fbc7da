"""Read a locally stored Minari dataset into a :class:`~recede.data.TransitionDataset`. Needs
``minari`` with its HDF5 backend (``pip install "minari[hdf5]"``), imported on first use."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np

from recede.data.dataset import (
    TransitionDataset,
    _check_episode_id,
    _episode_arrays,
    as_flags,
)
from recede.errors import InvalidArgumentError

_ROOT_VARIABLE = "MINARI_DATASETS_PATH"


@contextlib.contextmanager
def _datasets_root(root) -> Iterator[str]:
    """Point Minari at ``root`` (if given) until the block ends; yield the root in use. Changes the
    process environment meanwhile, so don't call it from several threads at once."""
    if root is None:
        yield os.environ.get(_ROOT_VARIABLE) or os.path.join("~", ".minari", "datasets")
        return
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise InvalidArgumentError(f"root: no such directory {root!r}")
    old = os.environ.get(_ROOT_VARIABLE)
    os.environ[_ROOT_VARIABLE] = root
    try:
        yield root
    finally:
        if old is None:
            os.environ.pop(_ROOT_VARIABLE, None)
        else:
            os.environ[_ROOT_VARIABLE] = old


def _check_space(dataset_id: str, name: str, space) -> None:
    from gymnasium import spaces

    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        raise InvalidArgumentError(
            f"Minari dataset {dataset_id!r}: the {name} space must be a flat Box (shape (n,)), "
            f"got {space}")


def load_minari(dataset_id: str, *, root=None) -> TransitionDataset:
    """Read every episode of the local Minari dataset ``dataset_id`` (e.g.
    ``"mujoco/pusher/expert-v0"``); nothing is downloaded.

    ``root`` is the directory of Minari datasets to look in (it sets ``MINARI_DATASETS_PATH``
    during the call, then restores it); by default ``MINARI_DATASETS_PATH`` or
    ``~/.minari/datasets``.

    Observation and action spaces must be flat ``Box`` spaces, ``(nx,)`` and ``(nu,)``. Episode
    ``k`` with ``T`` steps stores ``observations (T+1, nx)``, ``actions (T, nu)``, ``rewards
    (T,)``, ``terminations (T,)`` and ``truncations (T,)``; it becomes ``T`` transitions
    ``observations[t] -> observations[t+1]`` with ``episode_ids = k`` and the stored flags.
    Episodes with no steps are skipped. Everything is read and checked before anything is
    returned; errors name the dataset, and the episode where it applies (rows are its steps).
    """
    try:
        import minari
    except ImportError as e:
        raise ImportError('load_minari needs minari: pip install "minari[hdf5]"') from e
    if not isinstance(dataset_id, str) or not dataset_id:
        raise InvalidArgumentError(f"dataset_id must be a non-empty string, got {dataset_id!r}")

    parts = []
    with _datasets_root(root) as where:
        try:
            dataset = minari.load_dataset(dataset_id, download=False)
        except FileNotFoundError:
            raise InvalidArgumentError(
                f"dataset_id: no Minari dataset {dataset_id!r} under {where!r} "
                f"(download it with `minari download {dataset_id}`)") from None
        except (ValueError, KeyError, OSError) as e:
            raise InvalidArgumentError(
                f"dataset_id: cannot read the Minari dataset {dataset_id!r} under {where!r}: "
                f"{e}") from e
        _check_space(dataset_id, "observation", dataset.observation_space)
        _check_space(dataset_id, "action", dataset.action_space)
        for episode in dataset.iterate_episodes():
            if len(episode.rewards) == 0:
                continue
            try:
                arrays = _episode_arrays(
                    episode.observations, episode.actions, episode.rewards,
                    as_flags("terminations", episode.terminations),
                    as_flags("truncations", episode.truncations),
                    _check_episode_id(episode.id), ("terminations", "truncations"))
                for name, size, space in (("observations", arrays["observations"].shape[1],
                                           dataset.observation_space),
                                          ("actions", arrays["actions"].shape[1],
                                           dataset.action_space)):
                    if size != space.shape[0]:
                        raise InvalidArgumentError(
                            f"{name} have size {size} but the dataset's space has size "
                            f"{space.shape[0]}")
            except InvalidArgumentError as e:
                raise InvalidArgumentError(
                    f"Minari dataset {dataset_id!r}, episode {episode.id}: {e}") from None
            parts.append(arrays)
    if not parts:
        raise InvalidArgumentError(f"Minari dataset {dataset_id!r} has no transitions")
    try:
        return TransitionDataset(**{name: np.concatenate([p[name] for p in parts])
                                    for name in parts[0]})
    except InvalidArgumentError as e:
        raise InvalidArgumentError(f"Minari dataset {dataset_id!r}: {e}") from None
