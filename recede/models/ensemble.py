"""Learned probabilistic ensembles (PETS): E Gaussian MLPs trained on logged transitions, planned
through with particles.

Each member maps features of ``(x, u)`` to a Gaussian over the state change ``x' - x`` (and, with
``predict_reward``, the reward): a mean and a log-variance, the log-variance kept inside learned
soft bounds (Chua et al. 2018, "Deep RL in a handful of trials"). The members live in one module
with batched weights ``W_l: (E, in, out)``, so one ``baddbmm`` runs every member at once.

As a :class:`~recede.models.base.Dynamics`:

- ``rollout(x0, U)`` and ``step(X, U)`` follow the **mean model** (the elites' mean prediction,
  no sampling): deterministic, and what ``linearize`` differentiates, so iLQR/DDP see one model.
- ``rollout_cost(x0, U, cost)`` (which :class:`~recede.problem.Problem` uses for every sampling
  planner) propagates ``P`` particles per sequence with the configured :class:`Propagation`,
  evaluates ``cost`` on every particle, averages over particles and adds
  ``disagreement_weight`` times the sequence's disagreement (positive: pessimistic, the offline
  MOPO-style setting; negative: optimistic, exploration).
- ``rollout_particles(x0, U)`` returns the particles ``(B, P, H+1, nx)`` and the disagreement
  ``(B, H)`` for costs of one's own.

Shapes: ``E`` members, ``N`` rows; arrays at the public boundary are float64 numpy, the network
computes in float32. The particle rollouts that planners run (``rollout_particles``,
``rollout_cost``) may run the hidden layers in bfloat16 autocast instead: ``precision="auto"``
(the default, or the environment variable ``RECEDE_ENSEMBLE_PRECISION``) picks bfloat16 only on a
CPU that computes it natively (AVX-512 BF16 or AMX, see :func:`native_bf16`) and only if, on the
first planning batch, its predictions stay within ``BF16_TOLERANCE`` of float32's; elsewhere
float32. The choice belongs to the machine, so it is made at run time and never saved.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from recede._io import atomic_directory, atomic_file, deferred_interrupt
from recede._options import OptionEnum, as_enum
from recede.errors import Interrupted, InvalidArgumentError
from recede.models.layers import BatchedMLP
from recede.models.base import as_actions, as_bound, as_state, as_trajectory, broadcast_x0

FORMAT = "recede.Ensemble/1"
WEIGHTS = "weights.safetensors"
META = "model.json"
# Rows per forward pass below which one torch thread is faster than two (the thread pool's
# hand-off costs more than the work). Measured here on 20-step particle rollouts of 5 members:
# 1,000 rows x 64 hidden: 22 ms on one thread, 28 ms on two; 2,000 rows x 128 hidden: 114 ms on
# one, 82 ms on two.
SMALL_BATCH = 1024
PRECISIONS = ("auto", "float32", "bfloat16")
PRECISION_ENV = "RECEDE_ENSEMBLE_PRECISION"
# Largest root-mean-square difference between bfloat16 and float32 predictions of the state change
# (in its data standard deviations, over the first planning batch) at which "auto" keeps bfloat16.
# On a 200 x 4 cart-pole ensemble the difference measured 0.002 (benchmarks/ensemble.py).
BF16_TOLERANCE = 0.01
# Options that say how a model is planned on, as opposed to what it is (see Ensemble.set_planning).
PLANNING_OPTIONS = ("propagation", "particles", "disagreement_weight", "precision")
_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags: the ``flags`` line of ``cpuinfo`` (default: Linux's
    ``/proc/cpuinfo``), else the capabilities torch detected (``torch.cpu.get_capabilities``,
    torch >= 2.9), else none."""
    given = cpuinfo is not None
    if not given:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            cpuinfo = ""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            return frozenset(value.split())
    if given:
        return frozenset()
    caps = getattr(torch.cpu, "get_capabilities", None)
    if caps is not None:
        try:
            return frozenset(k for k, v in caps().items() if v is True)
        except Exception:  # noqa: BLE001  (a probe: no flags is the safe answer)
            return frozenset()
    return frozenset()


def native_bf16(flags: Sequence[str] | frozenset[str] | None = None) -> bool:
    """Whether the CPU computes bfloat16 natively: AVX-512 BF16 (``avx512_bf16``) or AMX
    (``amx_bf16``) among ``flags`` (default: :func:`cpu_flags`). Elsewhere torch emulates
    bfloat16 and autocast runs slower than float32 (10x on an AVX2-only EPYC)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in _NATIVE_BF16_FLAGS)


def _check_precision(value, where: str = "precision") -> str:
    if value not in PRECISIONS:
        raise InvalidArgumentError(f"{where} must be one of {list(PRECISIONS)}, got {value!r}")
    return value


class Propagation(OptionEnum):
    """How particles move through the ensemble (Chua et al. 2018).

    ts1: every particle picks a random elite at every step; tsinf: every particle keeps the elite
    it drew at the start (both balanced: each elite carries the same number of particles);
    expectation: every particle moves by the elites' average Gaussian (mean of the means, mean
    of the variances: aleatoric noise only, as mbrl-lib's "expectation"), sampled; mean: no
    sampling, the elites' mean prediction (one particle suffices).
    """

    TS1 = "ts1"
    TSINF = "tsinf"
    EXPECTATION = "expectation"
    MEAN = "mean"


def _check_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_float(name, value, minimum=0.0, *, strict=False, maximum=None):
    ok = (not isinstance(value, bool) and isinstance(value, (int, float, np.floating))
          and math.isfinite(value) and (value > minimum if strict else value >= minimum)
          and (maximum is None or value < maximum))
    if not ok:
        rng = f"{'>' if strict else '>='} {minimum:g}" + ("" if maximum is None else f" and < {maximum:g}")
        raise InvalidArgumentError(f"{name} must be a finite number {rng}, got {value!r}")


@dataclass(frozen=True)
class EnsembleConfig:
    """
    members: E networks. hidden, layers: width and number of hidden layers (``layers`` linear
    maps of width ``hidden`` plus the output map; mbrl-lib's ``num_layers``).
    predict_reward: also predict the reward (one more output).
    elites: members used for prediction, the best on held-out error (default: all).
    angle_dims: state dimensions fed to the network as (sin, cos) instead of the raw angle.
    propagation, particles: how ``rollout_cost`` propagates uncertainty (see :class:`Propagation`).
    disagreement_weight: cost added per unit of disagreement (see ``rollout_particles``).
    bf16: read from checkpoints written before ``precision`` (the model's run-time option that
    replaced it) and ignored: whether bfloat16 pays depends on the machine, not the model.
    """

    members: int = 5
    hidden: int = 200
    layers: int = 4
    predict_reward: bool = False
    elites: int | None = None
    angle_dims: tuple[int, ...] = ()
    propagation: Propagation = Propagation.TSINF
    particles: int = 20
    disagreement_weight: float = 0.0
    bf16: dataclasses.InitVar[bool | None] = None

    def __post_init__(self, bf16=None):
        _check_int("members", self.members)
        _check_int("hidden", self.hidden)
        _check_int("layers", self.layers)
        _check_int("particles", self.particles)
        if self.elites is not None:
            _check_int("elites", self.elites)
            if self.elites > self.members:
                raise InvalidArgumentError(
                    f"elites must be <= members ({self.members}), got {self.elites}")
        object.__setattr__(self, "propagation", as_enum(Propagation, "propagation", self.propagation))
        object.__setattr__(self, "angle_dims", tuple(int(i) for i in self.angle_dims))
        if not (isinstance(self.disagreement_weight, (int, float)) and math.isfinite(self.disagreement_weight)):
            raise InvalidArgumentError(
                f"disagreement_weight must be a finite number, got {self.disagreement_weight!r}")
        if not isinstance(self.predict_reward, bool):
            raise InvalidArgumentError(f"predict_reward must be True or False, got {self.predict_reward!r}")
        if bf16 is not None and not isinstance(bf16, bool):
            raise InvalidArgumentError(f"bf16 must be True or False, got {bf16!r}")

    @property
    def n_elites(self) -> int:
        return self.members if self.elites is None else self.elites

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["propagation"] = self.propagation.value
        d["angle_dims"] = list(self.angle_dims)
        return d


@dataclass(frozen=True)
class TrainConfig:
    """
    epochs: at most this many passes over each member's bootstrap sample.
    batch_size: rows per member per gradient step. learning_rate: Adam's.
    weight_decay: L2 penalty on the weight matrices (not biases or log-variance bounds).
    holdout: share of the data held out (at most ``max_holdout`` rows) for early stopping and
    choosing elites; 0 trains every epoch and ranks members on the training data.
    patience: stop after this many epochs in which no member improved its held-out MSE by more
    than ``min_improvement`` (relative). Each member ends with the weights of its best held-out
    MSE (any improvement counts there).
    bootstrap: each member trains on its own resample (with replacement) of the training rows.
    logvar_bound_weight: weight of the penalty that tightens the learned log-variance bounds.
    seed: weights' initialisation, the split, the bootstrap and the batches.
    """

    epochs: int = 100
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 5e-5
    holdout: float = 0.1
    max_holdout: int = 5000
    patience: int = 5
    min_improvement: float = 0.01
    bootstrap: bool = True
    logvar_bound_weight: float = 0.01
    seed: int = 0

    def __post_init__(self):
        _check_int("epochs", self.epochs)
        _check_int("batch_size", self.batch_size)
        _check_int("max_holdout", self.max_holdout)
        _check_int("patience", self.patience)
        _check_int("seed", self.seed, 0)
        _check_float("learning_rate", self.learning_rate, strict=True)
        _check_float("weight_decay", self.weight_decay)
        _check_float("holdout", self.holdout, maximum=1.0)
        _check_float("min_improvement", self.min_improvement)
        _check_float("logvar_bound_weight", self.logvar_bound_weight)
        if not isinstance(self.bootstrap, bool):
            raise InvalidArgumentError(f"bootstrap must be True or False, got {self.bootstrap!r}")


@dataclass(frozen=True)
class EpochLog:
    """One training epoch. NLL is the Gaussian negative log-likelihood per target dimension
    (nats, in normalised target units), MSE the squared error of the mean in the same units;
    both averaged over members (train: over the epoch's batches; held-out: the whole split)."""

    epoch: int
    train_nll: float
    train_mse: float
    holdout_nll: float
    holdout_mse: float
    improved: int  # members whose held-out MSE beat their best by more than min_improvement
    seconds: float


@dataclass(frozen=True)
class FitResult:
    epochs: tuple[EpochLog, ...]
    best_holdout_mse: tuple[float, ...]  # per member, after restoring its best weights
    elites: tuple[int, ...]
    stopped_early: bool
    train_rows: int
    holdout_rows: int
    seconds: float
    interrupted: bool = False  # Ctrl-C stopped the fit; ``epochs`` are the ones completed


def gaussian_nll(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-element negative log-likelihood ``0.5 (log 2 pi + logvar + (target - mean)^2 / var)``."""
    return 0.5 * (math.log(2.0 * math.pi) + logvar + (target - mean) ** 2 * torch.exp(-logvar))


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch threads (``None``: unchanged)."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class _Net(BatchedMLP):
    """E Gaussian MLPs with batched weights: (E, N, d_in) -> mean, logvar (E, N, d_out)."""

    def __init__(self, members: int, d_in: int, d_out: int, hidden: int, layers: int,
                 generator: torch.Generator):
        # truncated normal, std 1 / (2 sqrt(fan_in)) (mbrl-lib's and the PETS code's init)
        super().__init__(members, [d_in] + [hidden] * layers + [2 * d_out], activation="silu",
                         init="trunc_normal", generators=generator)
        self.d_out = d_out
        self.max_logvar = torch.nn.Parameter(torch.full((1, d_out), 0.5))
        self.min_logvar = torch.nn.Parameter(torch.full((1, d_out), -10.0))

    def forward(self, x: torch.Tensor, members: Sequence[int] | None = None, bf16: bool = False):
        out = super().forward(x, members, bf16)
        mean, raw = out[..., : self.d_out], out[..., self.d_out:]
        return mean, self.bound_logvar(raw)

    def bound_logvar(self, raw: torch.Tensor) -> torch.Tensor:
        lv = self.max_logvar - F.softplus(self.max_logvar - raw)
        return self.min_logvar + F.softplus(lv - self.min_logvar)


class Ensemble:
    """A probabilistic ensemble dynamics model; see the module docstring.

    ``Ensemble(nx, nu, dt=..., action_low=..., action_high=..., members=5, ...)`` or with an
    :class:`EnsembleConfig`. Train with :meth:`fit` on a :class:`~recede.data.TransitionDataset`,
    save with :meth:`save`, load with :meth:`Ensemble.load`. ``seed`` initialises the weights
    and the particles' random stream (reset it with :meth:`reseed`). ``task``: the name of the
    task the model is for, if any (recorded in the checkpoint, so that ``recede run --model``
    can refuse it for another task). ``interrupted``: the last :meth:`fit` was stopped by Ctrl-C
    (the weights are its best held-out ones by then).
    """

    parallel_rollouts = True  # torch uses the cores: planners' Numba kernels stay on one thread

    def __init__(self, nx: int, nu: int, *, dt: float = 1.0, action_low=None, action_high=None,
                 config: EnsembleConfig | None = None, seed: int = 0, state_names=None,
                 task: str | None = None, precision: str | None = None, **options):
        if "bf16" in options:
            raise InvalidArgumentError("bf16 is no longer a model option: pass precision='bfloat16' "
                                       "(or 'auto', 'float32')")
        _check_int("nx", nx)
        _check_int("nu", nu)
        _check_float("dt", dt, strict=True)
        _check_int("seed", seed, 0)
        if task is not None and not isinstance(task, str):
            raise InvalidArgumentError(f"task must be a task name or None, got {task!r}")
        self.config = config or EnsembleConfig(**options)
        if config is not None and options:
            raise InvalidArgumentError(f"pass either config or options, got both ({sorted(options)})")
        c = self.config
        for i in c.angle_dims:
            if not 0 <= i < nx:
                raise InvalidArgumentError(f"angle_dims must index the state (0..{nx - 1}), got {i}")
        self.nx, self.nu, self.dt = int(nx), int(nu), float(dt)
        self.action_low = self._bound("action_low", action_low, -np.inf)
        self.action_high = self._bound("action_high", action_high, np.inf)
        self.angle_dims = c.angle_dims
        self.state_names = tuple(state_names) if state_names is not None else None
        self.task = task
        self._plain = np.array([i for i in range(nx) if i not in c.angle_dims], dtype=np.int64)
        self._angles = np.array(c.angle_dims, dtype=np.int64)
        self.d_in = nx + len(c.angle_dims) + nu
        self.d_out = nx + int(c.predict_reward)
        self.seed = int(seed)
        self.net = _Net(c.members, self.d_in, self.d_out, c.hidden, c.layers,
                        torch.Generator().manual_seed(self.seed))
        # normalisers (inputs: the features; targets: the state change and reward)
        self.in_mean = torch.zeros(self.d_in)
        self.in_std = torch.ones(self.d_in)
        self.out_mean = torch.zeros(self.d_out)
        self.out_std = torch.ones(self.d_out)
        self.elites: tuple[int, ...] = tuple(range(c.n_elites))
        self.trained_epochs = 0
        self.interrupted = False
        self.train_config: TrainConfig | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        self.precision = _check_precision(
            os.environ.get(PRECISION_ENV, "auto") if precision is None else precision,
            f"precision (from ${PRECISION_ENV})" if precision is None else "precision")
        self.precision_note = ""
        self._fold()
        self.reseed(self.seed)

    # ----------------------------------------------------------------- basics

    def _bound(self, name, value, default) -> np.ndarray:
        return as_bound(name, default if value is None else value, self.nu)

    def reseed(self, seed: int) -> None:
        """Restart the particles' random stream (member assignment and sampling noise)."""
        _check_int("seed", seed, 0)
        self._gen = torch.Generator().manual_seed(int(seed) + 1)

    def __repr__(self) -> str:
        c = self.config
        return (f"Ensemble(nx={self.nx}, nu={self.nu}, members={c.members}, hidden={c.hidden}, "
                f"layers={c.layers}, elites={list(self.elites)}, propagation={c.propagation.value}, "
                f"particles={c.particles}, disagreement_weight={c.disagreement_weight:g}, "
                f"precision={self.precision})")

    def set_planning(self, **options) -> None:
        """Change how planners run this model, not what it learned: ``propagation``,
        ``particles``, ``disagreement_weight`` (see :class:`EnsembleConfig`) and ``precision``
        (``"auto"``, ``"float32"`` or ``"bfloat16"``; see the module docstring). Any other option
        is the model's own and raises."""
        other = sorted(set(options) - set(PLANNING_OPTIONS))
        if other:
            raise InvalidArgumentError(
                f"model option {other[0]!r} is fixed by the trained model; the options a run may set "
                f"are {', '.join(PLANNING_OPTIONS)}")
        if "precision" in options:
            self.precision = _check_precision(options.pop("precision"))
            self._plan_bf16 = None
            self.precision_note = ""
        if options:
            self.config = dataclasses.replace(self.config, **options)

    def _planning_bf16(self, feats: torch.Tensor) -> bool:
        """Whether planning's forward passes run in bfloat16 (decided once per set of weights,
        on the first planning batch ``feats``: (E_elite, M, d_in)); see the module docstring."""
        if self._plan_bf16 is not None:
            return self._plan_bf16
        if self.precision == "float32":
            use, note = False, "float32"
        elif self.precision == "auto" and not native_bf16():
            use, note = False, "float32 (auto: this CPU has no native bfloat16)"
        else:
            err = self._bf16_error(feats)
            if self.precision == "bfloat16":
                use, note = True, f"bfloat16 (as asked; {err:.2g} data stds from float32)"
            elif err <= BF16_TOLERANCE:
                use, note = True, f"bfloat16 (auto: native on this CPU, {err:.2g} data stds from float32)"
            else:
                use = False
                note = (f"float32 (auto: bfloat16 was {err:.2g} data stds from float32 on the first "
                        f"planning batch, above the tolerance {BF16_TOLERANCE:g})")
                warnings.warn(f"Ensemble: planning in {note}", RuntimeWarning, stacklevel=4)
        self._plan_bf16, self.precision_note = use, note
        return use

    def _bf16_error(self, feats: torch.Tensor) -> float:
        """Root-mean-square difference of bfloat16's and float32's mean predictions on ``feats``
        (E_elite, M, d_in), in data standard deviations of the targets (the network's own
        output units), over at most 4,096 rows per member."""
        f = feats[:, :4096]
        m32, _ = self._forward_inf(f, bf16=False)
        m16, _ = self._forward_inf(f, bf16=True)
        return float(torch.sqrt(torch.mean((m16 - m32) ** 2)))

    def features(self, X: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
        """Network inputs ``(..., d_in)`` of states ``(..., nx)`` and actions ``(..., nu)``:
        plain state dims, then (sin, cos) of each angle dim, then the action (unnormalised)."""
        parts = [X[..., self._plain]]
        if self._angles.size:
            a = X[..., self._angles]
            parts += [torch.sin(a), torch.cos(a)]
        parts.append(U)
        return torch.cat(parts, dim=-1)

    def _fold(self) -> None:
        """Cache the elites' weights for inference: per member and layer, ``(out, in)``
        matrices for ``F.linear`` (MKL's GEMM ran ~25% faster through it than through
        ``baddbmm`` here), with the input normaliser folded into the first layer
        (``W1' = W1 / s``, ``b1' = b1 - (m / s) W1``)."""
        with torch.no_grad():
            e = list(self.elites)
            Ws = [w.detach()[e].clone() for w in self.net.weights]
            bs = [b.detach()[e].clone() for b in self.net.biases]
            inv = 1.0 / self.in_std
            bs[0] = bs[0] - (self.in_mean * inv)[None, None, :] @ Ws[0]
            Ws[0] = Ws[0] * inv[None, :, None]
            layers = [[(Ws[l][k].t().contiguous(), bs[l][k, 0].contiguous()) for l in range(len(Ws))]
                      for k in range(len(e))]
            self._inf = (layers, self.net.max_logvar.detach().clone(), self.net.min_logvar.detach().clone())
        self._plan_bf16 = None  # new weights: planning's precision is decided again
        self.precision_note = ""

    def _forward_inf(self, feats: torch.Tensor, bf16: bool = False):
        """Inference on raw features (E_elite, M, d_in) -> normalised mean, logvar (E, M, d_out).
        Each member runs its whole MLP in turn, so its activations stay in cache. ``bf16``: the
        hidden layers in bfloat16 autocast (the output layer stays float32)."""
        layers, mx, mn = self._inf
        outs = []
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        for k, member in enumerate(layers):
            h = feats[k]
            with ctx:
                for w, b in member[:-1]:
                    h = F.silu(F.linear(h, w, b), inplace=True)
            outs.append(F.linear(h.float(), *member[-1]))
        out = torch.stack(outs)
        mean, raw = out[..., : self.d_out], out[..., self.d_out:]
        lv = mx - F.softplus(mx - raw)
        return mean, mn + F.softplus(lv - mn)

    def _threads(self, rows: int):
        return torch_threads(1 if rows < SMALL_BATCH else None)

    # ----------------------------------------------------------------- prediction

    def predict(self, X, U, *, planning: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Every elite's Gaussian over the next state (and reward): X: (N, nx), U: (N, nu) ->
        mean, var: (E_elite, N, d_out) in data units, the state part as ``x'`` (not the change).
        planning: run the hidden layers in planning's precision (bfloat16 where it is native and
        accurate enough, see the module docstring), as model rollouts for Dyna/MBPO do."""
        mean, var = self.predict_tensors(X, U, planning=planning)
        return mean.double().numpy(), var.double().numpy()

    def predict_tensors(self, X, U, *, planning: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`predict` as float32 torch tensors (no float64 copies of the ``E x N`` outputs)."""
        X = as_state(X, self.nx, "X", batch=True)
        U = np.ascontiguousarray(np.asarray(U, dtype=np.float64))
        if U.shape != (X.shape[0], self.nu):
            raise InvalidArgumentError(f"U must have shape ({X.shape[0]}, {self.nu}), got {U.shape}")
        with torch.inference_mode(), self._threads(X.shape[0]):
            x = _f32(X)
            f = self.features(x, _f32(U)).expand(len(self.elites), X.shape[0], self.d_in)
            m, lv = self._forward_inf(f, bf16=planning and self._planning_bf16(f))
            mean = m * self.out_std + self.out_mean
            var = torch.exp(lv) * self.out_std**2
            mean[..., : self.nx] += x
        return mean, var

    def _mean_step(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Mean model, float32 (N, nx) -> (N, d_out): elites' mean change added to x."""
        f = self.features(x, u)
        m, _ = self._forward_inf(f.expand(len(self.elites), *f.shape))
        m = m.mean(0) * self.out_std + self.out_mean
        return torch.cat([x + m[:, : self.nx], m[:, self.nx:]], dim=1)

    def step(self, X, U) -> np.ndarray:
        """Mean model: X: (B, nx), U: (B, nu) -> next states (B, nx)."""
        X = as_state(X, self.nx, "X", batch=True)
        U = np.asarray(U, dtype=np.float64)
        if U.shape != (X.shape[0], self.nu):
            raise InvalidArgumentError(f"U must have shape ({X.shape[0]}, {self.nu}), got {U.shape}")
        with torch.inference_mode(), self._threads(X.shape[0]):
            out = self._mean_step(_f32(X), _f32(U))
        return out[:, : self.nx].double().numpy()

    def step_one(self, x, u) -> np.ndarray:
        return self.step(np.asarray(x, dtype=np.float64)[None], np.asarray(u, dtype=np.float64)[None])[0]

    def rollout(self, x0, U) -> np.ndarray:
        """Mean model: x0: (nx,) or (B, nx), U: (B, H, nu) -> X: (B, H+1, nx)."""
        U = as_actions(U, self.nu)
        x0 = broadcast_x0(as_state(x0, self.nx, batch=True), U.shape[0])
        B, H, _ = U.shape
        X = torch.empty(B, H + 1, self.nx)
        with torch.inference_mode(), self._threads(B):
            x = _f32(x0)
            u = _f32(U)
            X[:, 0] = x
            for t in range(H):
                x = self._mean_step(x, u[:, t])[:, : self.nx]
                X[:, t + 1] = x
        out = X.double().numpy()
        out[:, 0] = x0  # exact float64 start
        return out

    def _assignment(self, n: int, e: int) -> torch.Tensor:
        """A random balanced assignment of n rows to e groups: (e, ceil(n/e)) row indices; the
        first n entries of its flattening are a permutation of range(n), the rest repeat rows."""
        m = -(-n // e)
        perm = torch.randperm(n, generator=self._gen)
        if m * e > n:
            perm = torch.cat([perm, perm[: m * e - n]])
        return perm.view(e, m)

    def rollout_particles(self, x0, U, *, particles: int | None = None,
                          propagation: Propagation | str | None = None):
        """Particles through the ensemble: x0: (nx,) or (B, nx), U: (B, H, nu) ->
        (X: (B, P, H+1, nx), disagreement: (B, H), rewards: (B, P, H) or None).

        disagreement[b, t]: the spread of the prediction of step t, in units of the state
        change's data std: the root mean over state dims of the variance across particles
        (ts1, tsinf), or across the elites' means (expectation, mean) of ``x_{t+1}``."""
        c = self.config
        mode = c.propagation if propagation is None else as_enum(Propagation, "propagation", propagation)
        P = c.particles if particles is None else particles
        _check_int("particles", P)
        if mode is Propagation.MEAN:
            P = 1
        U = as_actions(U, self.nu)
        x0 = broadcast_x0(as_state(x0, self.nx, batch=True), U.shape[0])
        with torch.inference_mode(), self._threads(U.shape[0] * P):
            X, D, R = self._particles(_f32(x0), _f32(U), P, mode)
        Xn = X.double().numpy()
        Xn[:, :, 0] = x0[:, None]
        return Xn, D.double().numpy(), None if R is None else R.double().numpy()

    def _particles(self, x0: torch.Tensor, U: torch.Tensor, P: int, mode: Propagation):
        B, H, nu = U.shape
        nx, E = self.nx, len(self.elites)
        N = B * P
        X = torch.empty(B, P, H + 1, nx)
        X[:, :, 0] = x0[:, None]
        R = torch.empty(B, P, H) if self.config.predict_reward else None
        D = torch.empty(B, H)
        scale = self.out_std[:nx]
        x = x0.repeat_interleave(P, 0)  # (N, nx), row b*P + p
        Uf = U.repeat_interleave(P, 0)  # (N, H, nu)
        Xf, Rf = X.view(N, H + 1, nx), None if R is None else R.view(N, H)
        bf16 = None

        def forward(feats):  # planning's precision, decided on the first batch
            nonlocal bf16
            if bf16 is None:
                bf16 = self._planning_bf16(feats)
            return self._forward_inf(feats, bf16=bf16)

        if mode is Propagation.TSINF:
            # particles stay grouped by member (E, M) for the whole rollout; one scatter at the end
            idx = self._assignment(N, E)
            flat = idx.reshape(-1)
            M = idx.shape[1]
            xg = x[flat].view(E, M, nx)
            Ug = Uf[flat].view(E, M, H, nu)
            Xg = torch.empty(E, M, H + 1, nx)
            Rg = torch.empty(E, M, H) if R is not None else None
            Xg[:, :, 0] = xg
            for t in range(H):
                m, lv = forward(self.features(xg, Ug[:, :, t]))
                out = (m + torch.exp(0.5 * lv) * torch.randn(m.shape, generator=self._gen)) \
                    * self.out_std + self.out_mean
                xg = xg + out[..., :nx]
                Xg[:, :, t + 1] = xg
                if Rg is not None:
                    Rg[:, :, t] = out[..., nx]
            first = flat[:N]
            Xf[first] = Xg.view(E * M, H + 1, nx)[:N]
            if Rf is not None:
                Rf[first] = Rg.view(E * M, H)[:N]
        elif mode is Propagation.TS1:
            for t in range(H):
                idx = self._assignment(N, E)
                flat = idx.reshape(-1)
                first = flat[:N]
                xg, ug = x[flat].view(E, -1, nx), Uf[flat, t].view(E, -1, nu)
                m, lv = forward(self.features(xg, ug))
                out = (m + torch.exp(0.5 * lv) * torch.randn(m.shape, generator=self._gen)) \
                    * self.out_std + self.out_mean
                x = x.clone()
                x[first] = (xg + out[..., :nx]).reshape(-1, nx)[:N]
                Xf[:, t + 1] = x
                if Rf is not None:
                    Rf[first, t] = out[..., nx].reshape(-1)[:N]
        if mode in (Propagation.TS1, Propagation.TSINF):
            spread = X[:, :, 1:].var(dim=1, unbiased=False) / scale**2 if P > 1 else \
                torch.zeros(B, H, nx)
            D[:] = spread.mean(-1).sqrt()
            return X, D, R
        for t in range(H):
            f = self.features(x, Uf[:, t])
            m, lv = forward(f.expand(E, *f.shape))
            mu = m * self.out_std + self.out_mean  # (E, N, d_out)
            mean = mu.mean(0)
            spread = mu[..., :nx].var(0, unbiased=False) / scale**2 if E > 1 else torch.zeros(N, nx)
            D[:, t] = spread.mean(-1).sqrt().view(B, P).mean(1)
            if mode is Propagation.EXPECTATION:
                var = (torch.exp(lv) * self.out_std**2).mean(0)
                mean = mean + var.sqrt() * torch.randn(mean.shape, generator=self._gen)
            x = x + mean[:, :nx]
            Xf[:, t + 1] = x
            if Rf is not None:
                Rf[:, t] = mean[:, nx]
        return X, D, R

    def rollout_cost(self, x0, U, cost) -> np.ndarray | None:
        """Planners' hot path (see ``Problem.costs``): the mean over particles of ``cost`` on
        each particle, plus ``disagreement_weight`` times the sum over steps of the
        disagreement. ``cost`` may be :meth:`reward_cost` (the learned reward). (B,) float64."""
        c = self.config
        B, H, _ = U.shape
        X, D, R = self.rollout_particles(x0, U)
        P = X.shape[1]
        if isinstance(cost, LearnedRewardCost):
            if R is None:
                raise InvalidArgumentError("reward_cost needs a model trained with predict_reward=True")
            per = -R.sum(axis=2)
        else:
            Ur = np.repeat(U, P, axis=0) if P > 1 else U
            per = np.asarray(cost(X.reshape(B * P, H + 1, self.nx), Ur), dtype=np.float64).reshape(B, P)
        with np.errstate(invalid="ignore"):
            total = per.mean(axis=1)
        if c.disagreement_weight:
            total = total + c.disagreement_weight * D.sum(axis=1)
        return total

    def reward_cost(self) -> "LearnedRewardCost":
        """A cost that is minus the learned reward (needs ``predict_reward=True``)."""
        if not self.config.predict_reward:
            raise InvalidArgumentError("reward_cost needs a model trained with predict_reward=True")
        return LearnedRewardCost(self)

    # ----------------------------------------------------------------- derivatives

    def linearize(self, X, U) -> tuple[np.ndarray, np.ndarray]:
        """Jacobians of the mean model by autograd: X: (H+1, nx), U: (H, nu) ->
        A: (H, nx, nx), B: (H, nx, nu)."""
        X, U = as_trajectory(X, U, self.nx, self.nu)
        H = U.shape[0]

        def f(x, u):
            return self._mean_step(x[None], u[None])[0, : self.nx]

        x = _f32(X[:H])
        u = _f32(U)
        with self._threads(H):
            A, Bm = torch.func.vmap(torch.func.jacrev(f, argnums=(0, 1)))(x, u)
        return A.double().numpy(), Bm.double().numpy()

    # ----------------------------------------------------------------- training

    def _arrays(self, dataset, chunk: int = 65536):
        """Float32 inputs (N, d_in) and targets (N, d_out) of a transition dataset, built in
        chunks (the state change in float64 first, then rounded), so that a large dataset is
        never held again in float64."""
        obs, act = np.asarray(dataset.observations), np.asarray(dataset.actions)
        nxt = np.asarray(dataset.next_observations)
        if obs.ndim != 2 or obs.shape[1] != self.nx or act.ndim != 2 or act.shape[1] != self.nu:
            raise InvalidArgumentError(
                f"dataset has observations of size {obs.shape[1:]} and actions of size {act.shape[1:]}, "
                f"but the model has nx={self.nx}, nu={self.nu}")
        n = obs.shape[0]
        inputs = torch.empty(n, self.d_in)
        target = torch.empty(n, self.d_out)
        rewards = np.asarray(dataset.rewards) if self.config.predict_reward else None
        for i in range(0, n, chunk):
            j = min(n, i + chunk)
            x = torch.from_numpy(np.array(obs[i:j], dtype=np.float64))
            inputs[i:j] = self.features(x, torch.from_numpy(np.array(act[i:j], dtype=np.float64)))
            target[i:j, : self.nx] = torch.from_numpy(np.asarray(nxt[i:j], dtype=np.float64) - obs[i:j])
            if rewards is not None:
                target[i:j, self.nx] = torch.from_numpy(np.array(rewards[i:j], dtype=np.float64))
        return inputs, target

    def fit(self, dataset, config: TrainConfig | None = None, *, progress: bool = False,
            csv_path: str | None = None, reset: bool = False, **options) -> FitResult:
        """Train on a :class:`~recede.data.TransitionDataset` (see :class:`TrainConfig`).

        Continues from the current weights (and optimiser state) unless ``reset``, so training
        resumes after :meth:`load` and PETS refits on a growing dataset. The normalisers are
        refit to the dataset every call. Returns the per-epoch metrics; ``csv_path`` writes
        them as CSV (atomically, after every epoch). Deterministic given ``config.seed``.

        Ctrl-C stops it cleanly: each member gets the weights of its best completed epoch, the
        elites are chosen as at a normal end, ``interrupted`` is set on the model, and
        :class:`~recede.errors.Interrupted` is raised with the FitResult of the completed epochs
        (``interrupted=True``), so the caller can still save the model.
        """
        if config is not None and options:
            raise InvalidArgumentError(f"pass either config or options, got both ({sorted(options)})")
        tc = config or TrainConfig(**options)
        c = self.config
        E = c.members
        started = time.perf_counter()
        gen = torch.Generator().manual_seed(tc.seed)
        if reset:
            self.net = _Net(E, self.d_in, self.d_out, c.hidden, c.layers, torch.Generator().manual_seed(self.seed))
            self._optimizer = None
            self.trained_epochs = 0
        inputs, target = self._arrays(dataset)
        n = inputs.shape[0]
        n_hold = min(int(round(tc.holdout * n)), tc.max_holdout) if tc.holdout > 0 else 0
        if n_hold and n - n_hold < 1:
            raise InvalidArgumentError(f"dataset has {n} rows: too few to hold out {n_hold}")
        order = torch.randperm(n, generator=gen, dtype=torch.int32)
        hold, train = order[:n_hold].long(), order[n_hold:]
        # normalisers from the training rows (float64 statistics, in chunks), applied in place
        self.in_mean, self.in_std = _moments(inputs, train)
        self.out_mean, self.out_std = _moments(target, train)
        inputs.sub_(self.in_mean).div_(self.in_std)
        target.sub_(self.out_mean).div_(self.out_std)
        Xh, Yh = inputs[hold], target[hold]
        nt = train.shape[0]
        # int32 row indices, never a copy of the training rows: a member's bootstrap sample
        # (positions in ``train``), then its order in each epoch
        boot = (torch.randint(0, nt, (E, nt), generator=gen, dtype=torch.int32) if tc.bootstrap
                else None)
        perm = torch.empty(E, nt, dtype=torch.int32)
        net = self.net
        decay = [p for p in net.weights]
        rest = [*net.biases, net.max_logvar, net.min_logvar]
        if self._optimizer is None:
            self._optimizer = torch.optim.Adam(
                [{"params": decay, "weight_decay": tc.weight_decay}, {"params": rest, "weight_decay": 0.0}],
                lr=tc.learning_rate, fused=True)
        else:
            for g, wd in zip(self._optimizer.param_groups, (tc.weight_decay, 0.0)):
                g["lr"], g["weight_decay"] = tc.learning_rate, wd
        opt = self._optimizer
        if n_hold:
            Xeval, Yeval = Xh, Yh
        else:
            first = train[: min(nt, tc.max_holdout)].long()
            Xeval, Yeval = inputs[first], target[first]
        best = self._member_mse(Xeval, Yeval)
        ref = best.clone()
        snapshot = [p.detach().clone() for p in net.parameters()]
        logs: list[EpochLog] = []
        stale, stopped, interrupt = 0, False, None
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=tc.epochs, desc="train", unit="epoch", dynamic_ncols=True, file=sys.stderr)
        try:
            for epoch in range(tc.epochs):
                t0 = time.perf_counter()
                net.train()
                for k in range(E):
                    perm[k] = torch.randperm(nt, generator=gen, dtype=torch.int32)
                tot_nll = tot_mse = 0.0
                batches = 0
                for i in range(0, nt, tc.batch_size):
                    r = perm[:, i:i + tc.batch_size].long()
                    if boot is not None:
                        r = torch.gather(boot, 1, r).long()
                    r = train[r].long()
                    xb, yb = inputs[r], target[r]
                    mean, lv = net(xb)
                    nll = gaussian_nll(mean, lv, yb).mean()
                    loss = nll * E + tc.logvar_bound_weight * (net.max_logvar.sum() - net.min_logvar.sum())
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    with torch.no_grad():
                        tot_nll += float(nll)
                        tot_mse += float(((mean - yb) ** 2).mean())
                    batches += 1
                net.eval()
                mse = self._member_mse(Xeval, Yeval)
                h_nll = self._member_nll(Xeval, Yeval)
                # snapshot every member that beat its best; count an epoch as progress only when
                # some member beat its best by more than min_improvement (relative)
                better = mse < best
                significant = (ref - mse) / torch.clamp(ref.abs(), min=1e-12) > tc.min_improvement
                # the epoch counts whole or not at all: a Ctrl-C here waits for the bookkeeping
                with deferred_interrupt(), torch.no_grad():
                    for p, s in zip(net.parameters(), snapshot):
                        if p.shape[0] == E and p.dim() == 3:  # per-member tensors
                            s[better] = p.detach()[better]
                        elif better.any():
                            s.copy_(p.detach())
                    best = torch.where(better, mse, best)
                    ref = torch.where(significant, mse, ref)
                    stale = 0 if significant.any() else stale + 1
                    self.trained_epochs += 1
                    logs.append(EpochLog(epoch=self.trained_epochs, train_nll=tot_nll / batches,
                                         train_mse=tot_mse / batches, holdout_nll=float(h_nll.mean()),
                                         holdout_mse=float(mse.mean()), improved=int(significant.sum()),
                                         seconds=time.perf_counter() - t0))
                if csv_path is not None:
                    write_metrics_csv(csv_path, logs)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(nll=f"{logs[-1].holdout_nll:.3f}", mse=f"{logs[-1].holdout_mse:.4f}")
                if n_hold and stale >= tc.patience:
                    stopped = True
                    break
        except KeyboardInterrupt as e:
            interrupt = e  # an epoch cut short is dropped: back to the completed epochs' best
        finally:
            if bar is not None:
                bar.close()
        with torch.no_grad():
            if n_hold or interrupt is not None:
                for p, s in zip(net.parameters(), snapshot):
                    p.copy_(s)
        final = self._member_mse(Xeval, Yeval)
        self.elites = tuple(int(i) for i in torch.argsort(final)[: c.n_elites].sort().values)
        self.train_config = tc
        self.interrupted = interrupt is not None
        self._fold()
        result = FitResult(epochs=tuple(logs), best_holdout_mse=tuple(float(v) for v in final),
                           elites=self.elites, stopped_early=stopped, train_rows=nt,
                           holdout_rows=n_hold, seconds=time.perf_counter() - started,
                           interrupted=interrupt is not None)
        if interrupt is not None:
            if csv_path is not None and logs:
                write_metrics_csv(csv_path, logs)  # in case the Ctrl-C cut the last write short
            raise Interrupted(result).with_traceback(interrupt.__traceback__) from None
        return result

    def _member_eval(self, X, Y, chunk=8192):
        mse = torch.zeros(self.config.members, dtype=torch.float64)
        nll = torch.zeros(self.config.members, dtype=torch.float64)
        with torch.no_grad():
            for i in range(0, X.shape[0], chunk):
                xb, yb = X[i:i + chunk], Y[i:i + chunk]
                mean, lv = self.net(xb.expand(self.config.members, *xb.shape))
                mse += ((mean - yb) ** 2).mean(-1).sum(-1).double()
                nll += gaussian_nll(mean, lv, yb).mean(-1).sum(-1).double()
        return mse / X.shape[0], nll / X.shape[0]

    def _member_mse(self, X, Y):
        return self._member_eval(X, Y)[0]

    def _member_nll(self, X, Y):
        return self._member_eval(X, Y)[1]

    def evaluate(self, dataset) -> dict[str, float]:
        """Held-out style metrics of the elites on ``dataset``: NLL and MSE per target dim in
        normalised units (as in training), and the RMSE of the mean model's next state in data
        units."""
        inputs, target = self._arrays(dataset)
        Xn = (inputs - self.in_mean) / self.in_std
        Yn = (target - self.out_mean) / self.out_std
        mse, nll = self._member_eval(Xn, Yn)
        e = list(self.elites)
        nxt = self.step(dataset.observations, dataset.actions)
        rmse = float(np.sqrt(np.mean((nxt - np.asarray(dataset.next_observations)) ** 2)))
        return {"nll": float(nll[e].mean()), "mse": float(mse[e].mean()), "rmse": rmse}

    # ----------------------------------------------------------------- checkpoints

    def _tensors(self) -> dict[str, torch.Tensor]:
        t = {}
        for i, (w, b) in enumerate(zip(self.net.weights, self.net.biases)):
            t[f"layers.{i}.weight"] = w.detach()
            t[f"layers.{i}.bias"] = b.detach()
        t["max_logvar"] = self.net.max_logvar.detach()
        t["min_logvar"] = self.net.min_logvar.detach()
        t["norm.in_mean"], t["norm.in_std"] = self.in_mean, self.in_std
        t["norm.out_mean"], t["norm.out_std"] = self.out_mean, self.out_std
        if self._optimizer is not None:
            params = list(self.net.parameters())
            for j, p in enumerate(params):
                st = self._optimizer.state.get(p)
                if st:
                    t[f"optim.{j}.exp_avg"] = st["exp_avg"]
                    t[f"optim.{j}.exp_avg_sq"] = st["exp_avg_sq"]
                    t[f"optim.{j}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1)
        return {k: v.contiguous().float() for k, v in t.items()}

    def save(self, path: str) -> None:
        """Write a checkpoint directory ``path`` (``weights.safetensors`` + ``model.json``)
        atomically: a reader sees the old checkpoint or the new one, never a mix."""
        from safetensors.torch import save

        blob = save(self._tensors())
        meta = {
            "format": FORMAT,
            "nx": self.nx, "nu": self.nu, "dt": self.dt,
            "action_low": [_json_float(v) for v in self.action_low],
            "action_high": [_json_float(v) for v in self.action_high],
            "state_names": None if self.state_names is None else list(self.state_names),
            "task": self.task,
            "seed": self.seed,
            "config": self.config.to_json(),
            "elites": list(self.elites),
            "trained_epochs": self.trained_epochs,
            "interrupted": self.interrupted,
            "train_config": None if self.train_config is None else dataclasses.asdict(self.train_config),
            "weights_sha256": hashlib.sha256(blob).hexdigest(),
            "versions": _versions(),
        }
        with atomic_directory(path, "path") as tmp:
            with open(os.path.join(tmp, WEIGHTS), "wb") as f:
                f.write(blob)
            with open(os.path.join(tmp, META), "w", encoding="utf-8") as f:
                json.dump(meta, f, indent=2, allow_nan=False)
                f.write("\n")

    @classmethod
    def load(cls, path: str) -> "Ensemble":
        """Read a checkpoint written by :meth:`save`. Checks the format, the configuration, every
        tensor's name, shape and finiteness, and the weights' checksum; never unpickles."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        path = os.fspath(path)
        if not os.path.isdir(path):
            raise InvalidArgumentError(f"model checkpoint {path!r} is not a directory")
        mpath, wpath = os.path.join(path, META), os.path.join(path, WEIGHTS)
        for p in (mpath, wpath):
            if not os.path.isfile(p):
                raise InvalidArgumentError(f"model checkpoint {path!r} has no {os.path.basename(p)}")
        try:
            with open(mpath, encoding="utf-8") as f:
                meta = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InvalidArgumentError(f"{mpath}: not valid JSON ({e})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
            raise InvalidArgumentError(f"{mpath}: format must be {FORMAT!r}, got {got!r}")
        need = ("nx", "nu", "dt", "action_low", "action_high", "seed", "config", "elites", "weights_sha256")
        missing = [k for k in need if k not in meta]
        if missing:
            raise InvalidArgumentError(f"{mpath}: missing keys {missing}")
        with open(wpath, "rb") as f:
            blob = f.read()
        if hashlib.sha256(blob).hexdigest() != meta["weights_sha256"]:
            raise InvalidArgumentError(f"{wpath}: checksum does not match model.json (corrupted or "
                                       f"from another checkpoint)")
        try:
            cfg = dict(meta["config"])
            cfg["angle_dims"] = tuple(cfg.get("angle_dims", ()))
            config = EnsembleConfig(**cfg)
            model = cls(int(meta["nx"]), int(meta["nu"]), dt=float(meta["dt"]),
                        action_low=[_from_json_float(v) for v in meta["action_low"]],
                        action_high=[_from_json_float(v) for v in meta["action_high"]],
                        config=config, seed=int(meta["seed"]), state_names=meta.get("state_names"),
                        task=meta.get("task"))  # absent from checkpoints before it was recorded
        except (TypeError, ValueError) as e:
            raise InvalidArgumentError(f"{mpath}: invalid model description: {e}") from None
        try:
            tensors = load(blob)
        except (SafetensorError, Exception) as e:  # noqa: BLE001  (any parse failure)
            raise InvalidArgumentError(f"{wpath}: not a readable safetensors file ({e})") from None
        want = {k: tuple(v.shape) for k, v in model._tensors().items() if not k.startswith("optim.")}
        got = {k: tuple(v.shape) for k, v in tensors.items() if not k.startswith("optim.")}
        if want.keys() != got.keys():
            raise InvalidArgumentError(
                f"{wpath}: tensors do not match model.json: missing {sorted(want.keys() - got.keys())}, "
                f"unexpected {sorted(got.keys() - want.keys())}")
        for k, shape in want.items():
            if got[k] != shape:
                raise InvalidArgumentError(f"{wpath}: tensor {k!r} has shape {got[k]}, model.json implies {shape}")
            if tensors[k].dtype != torch.float32:
                raise InvalidArgumentError(f"{wpath}: tensor {k!r} has dtype {tensors[k].dtype}, expected float32")
            if not torch.isfinite(tensors[k]).all():
                raise InvalidArgumentError(f"{wpath}: tensor {k!r} is not finite")
        elites = meta["elites"]
        if (not isinstance(elites, list) or len(elites) != config.n_elites
                or sorted(set(elites)) != sorted(elites) or not all(
                    isinstance(i, int) and 0 <= i < config.members for i in elites)):
            raise InvalidArgumentError(f"{mpath}: elites must be {config.n_elites} distinct member "
                                       f"indices below {config.members}, got {elites!r}")
        with torch.no_grad():
            for i, (w, b) in enumerate(zip(model.net.weights, model.net.biases)):
                w.copy_(tensors[f"layers.{i}.weight"])
                b.copy_(tensors[f"layers.{i}.bias"])
            model.net.max_logvar.copy_(tensors["max_logvar"])
            model.net.min_logvar.copy_(tensors["min_logvar"])
        model.in_mean, model.in_std = tensors["norm.in_mean"], tensors["norm.in_std"]
        model.out_mean, model.out_std = tensors["norm.out_mean"], tensors["norm.out_std"]
        model.elites = tuple(elites)
        model.trained_epochs = int(meta.get("trained_epochs", 0))
        model.interrupted = meta.get("interrupted") is True
        tcfg = meta.get("train_config")
        if tcfg:
            try:
                model.train_config = TrainConfig(**tcfg)
            except (TypeError, ValueError) as e:
                raise InvalidArgumentError(f"{mpath}: invalid train_config: {e}") from None
            optim = {k: v for k, v in tensors.items() if k.startswith("optim.")}
            if optim:
                model._restore_optimizer(optim, model.train_config, wpath)
        model._fold()
        return model

    def _restore_optimizer(self, optim: dict, tc: TrainConfig, where: str) -> None:
        net = self.net
        self._optimizer = torch.optim.Adam(
            [{"params": list(net.weights), "weight_decay": tc.weight_decay},
             {"params": [*net.biases, net.max_logvar, net.min_logvar], "weight_decay": 0.0}],
            lr=tc.learning_rate, fused=True)
        for j, p in enumerate(net.parameters()):
            if f"optim.{j}.exp_avg" not in optim:
                continue
            a, s = optim[f"optim.{j}.exp_avg"], optim[f"optim.{j}.exp_avg_sq"]
            if a.shape != p.shape or s.shape != p.shape:
                raise InvalidArgumentError(f"{where}: optimiser state {j} has the wrong shape")
            self._optimizer.state[p] = {"step": torch.tensor(float(optim[f"optim.{j}.step"][0])),
                                        "exp_avg": a.clone(), "exp_avg_sq": s.clone()}


class LearnedRewardCost:
    """``cost(X, U) = -sum_t r(x_t, u_t)`` with ``r`` the ensemble's mean reward prediction.
    Inside the ensemble's ``rollout_cost`` the particles' own sampled rewards are used."""

    def __init__(self, model: Ensemble):
        self.model = model

    def stage_costs(self, X, U) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        U = np.asarray(U, dtype=np.float64)
        B, H, nu = U.shape
        m = self.model
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(X[:, :-1].reshape(B * H, -1))).float()
            u = torch.from_numpy(np.ascontiguousarray(U.reshape(B * H, nu))).float()
            r = m._mean_step(x, u)[:, m.nx].double().numpy().reshape(B, H)
        out = np.zeros((B, H + 1))
        out[:, :-1] = -r
        return out

    def __call__(self, X, U) -> np.ndarray:
        return self.stage_costs(X, U).sum(axis=1)

    def stage(self, x, u) -> float:
        return float(self.stage_costs(np.asarray(x)[None, None].repeat(2, 1), np.asarray(u)[None, None])[0, 0])


def _f32(a) -> torch.Tensor:
    """A float32 tensor copy of an array (writable, so torch never warns about read-only input)."""
    return torch.from_numpy(np.asarray(a).astype(np.float32))


def _moments(a: torch.Tensor, rows: torch.Tensor, chunk: int = 65536):
    """Mean and std (float32) over ``a[rows]``, accumulated in float64 chunk by chunk."""
    total = torch.zeros(a.shape[1], dtype=torch.float64)
    sq = torch.zeros(a.shape[1], dtype=torch.float64)
    for i in range(0, rows.shape[0], chunk):
        c = a[rows[i:i + chunk]].double()
        total += c.sum(0)
        sq += (c * c).sum(0)
    n = rows.shape[0]
    mean = total / n
    var = torch.clamp(sq / n - mean * mean, min=0.0)
    return mean.float(), _safe_std(var.sqrt()).float()


def _safe_std(s: torch.Tensor) -> torch.Tensor:
    """Standard deviations with constant columns mapped to 1 (they carry no information)."""
    return torch.where(s < 1e-12, torch.ones_like(s), s)


def _json_float(v: float):
    return v if math.isfinite(v) else ("inf" if v > 0 else "-inf")


def _from_json_float(v) -> float:
    if v in ("inf", "-inf"):
        return float(v)
    return float(v)


def _versions() -> dict[str, str]:
    import safetensors

    from recede._version import __version__

    return {"recede": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "safetensors": safetensors.__version__, "python": platform.python_version()}


def write_metrics_csv(path: str, logs: Sequence[EpochLog]) -> None:
    """Per-epoch metrics as CSV, written atomically."""
    names = [f.name for f in dataclasses.fields(EpochLog)]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(names)
    for log in logs:
        w.writerow([getattr(log, n) for n in names])
    with atomic_file(path, "csv_path") as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())
