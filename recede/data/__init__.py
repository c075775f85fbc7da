"""Offline data: :class:`TransitionDataset` (transitions ``x -> x'`` with episode bookkeeping,
saved as ``.npz``), the replay buffer of off-policy learners (:class:`ReplayBuffer`), readers for
Minari datasets and D4RL-style HDF5 files, and a writer for the latter.

Shapes: ``N`` transitions, ``nx`` observation size, ``nu`` action size. The readers import their
optional dependencies (``minari``, ``h5py``) on first use.
"""

from recede.data.d4rl import load_d4rl_hdf5, save_d4rl_hdf5
from recede.data.dataset import TransitionDataset
from recede.data.minari import load_minari
from recede.data.replay import Batch, ReplayBuffer

__all__ = ["Batch", "ReplayBuffer", "TransitionDataset", "load_d4rl_hdf5", "load_minari",
           "save_d4rl_hdf5"]
