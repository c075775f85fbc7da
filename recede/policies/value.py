"""A learned value ensemble as a numpy cost-to-go ``V(X: (B, nx)) -> (B,)``, and its checkpoint.

:class:`ValueFunction` holds a :class:`~recede.policies.networks.VNet` of ``E`` members and the
map from model states to the network's features (``task.observation``, or the identity). Called
with states it returns, in the cost's units (lower is better):

- the members' mean (``optimism=None``), or
- with ``optimism = kappa > 0``, the optimistic soft minimum over members,
  ``-kappa log(mean_i exp(-V_i / kappa))``: between the mean (large ``kappa``) and the lowest
  member (``kappa -> 0``); POLO's log-sum-exp over a value ensemble, written for costs.

This is what a planner receives (wrapped in :class:`recede.costs.ValueTerminalCost`): the torch
network stays here, and planners never import torch.

Checkpoint: a directory with ``value.safetensors`` (every member's weights and the feature
statistics, float32) and ``value.json`` (format, task, sizes, architecture, the targets' scale,
what fitted it and the weights' SHA-256), written atomically. :func:`load_value` refuses, naming
the file, a corrupted or foreign checkpoint and a value fitted for another task.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Mapping

import numpy as np
import torch

from recede.errors import InvalidArgumentError
from recede.models.ensemble import torch_threads
from recede.policies._checkpoint import read_info, read_weights, write_checkpoint
from recede.policies.networks import VNet

FORMAT = "recede.Value/1"
WEIGHTS = "value.safetensors"
META = "value.json"


class ValueFunction:
    """``V(X: (..., nx)) -> (...)``: a value ensemble's cost-to-go of model states (see the module
    docstring). ``target_mean``, ``target_std``: the network predicts ``(V - mean) / std``."""

    def __init__(self, net: VNet, *, nx: int, observe: Callable[[np.ndarray], np.ndarray] | None = None,
                 target_mean: float = 0.0, target_std: float = 1.0, optimism: float | None = None,
                 task=None, meta: Mapping[str, Any] | None = None):
        self.net, self.nx = net, int(nx)
        self.observe = observe
        self.target_mean, self.target_std = float(target_mean), float(target_std)
        if not (math.isfinite(self.target_mean) and math.isfinite(self.target_std) and self.target_std > 0):
            raise InvalidArgumentError(f"target_std must be finite and > 0 (and target_mean finite), got "
                                       f"target_mean={target_mean!r}, target_std={target_std!r}")
        self.optimism = check_optimism(optimism)
        self.task = task
        self.meta = dict(meta or {})

    @property
    def members(self) -> int:
        return self.net.members

    def __repr__(self) -> str:
        name = getattr(self.task, "name", self.task)
        opt = "" if self.optimism is None else f", optimism={self.optimism:g}"
        return f"ValueFunction(task={name!r}, members={self.members}, nx={self.nx}{opt})"

    def member_values(self, X) -> np.ndarray:
        """Every member's value, ``(E, ...)`` for states ``X: (..., nx)``."""
        X = np.asarray(X, dtype=np.float64)
        if X.shape[-1:] != (self.nx,):
            raise InvalidArgumentError(f"X must hold states of size {self.nx} (shape (..., {self.nx})), "
                                       f"got {X.shape}")
        lead = X.shape[:-1]
        feats = self.observe(X) if self.observe is not None else X
        o = torch.from_numpy(np.ascontiguousarray(np.asarray(feats, dtype=np.float32).reshape(1, -1, feats.shape[-1])))
        with torch.inference_mode(), torch_threads(1 if o.shape[1] < 4096 else None):
            v = self.net(o.expand(self.members, -1, -1))[:, 0]  # (E, N)
        v = v.double().numpy() * self.target_std + self.target_mean
        return v.reshape(self.members, *lead)

    def __call__(self, X) -> np.ndarray:
        v = self.member_values(X)
        if self.optimism is None:
            return v.mean(axis=0)
        k = self.optimism
        m = v.min(axis=0)
        return m - k * np.log(np.mean(np.exp(-(v - m) / k), axis=0))

    def save(self, path: str, **meta) -> None:
        save_value(self, path, meta={**self.meta, **meta})


def check_optimism(optimism) -> float | None:
    if optimism is None:
        return None
    if isinstance(optimism, bool) or not isinstance(optimism, (int, float, np.floating)) \
            or not math.isfinite(optimism) or optimism <= 0:
        raise InvalidArgumentError(f"optimism must be None or a finite temperature > 0 (cost units), "
                                   f"got {optimism!r}")
    return float(optimism)


def save_value(value: ValueFunction, path: str, *, meta: Mapping[str, Any] | None = None) -> None:
    """Write ``value`` as a checkpoint directory at ``path``, atomically."""
    from safetensors.torch import save

    net = value.net
    blob = save({k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()})
    info = {
        "format": FORMAT,
        "task": getattr(value.task, "name", value.task),
        "nx": value.nx,
        "nobs": net.nobs,
        "members": net.members,
        "hidden": list(net.mlp.sizes[1:-1]),
        "activation": net.mlp.activation,
        "normalize": net.normalize,
        "target_mean": value.target_mean,
        "target_std": value.target_std,
        "optimism": value.optimism,
        "meta": dict(meta or {}),
        "versions": {"torch": torch.__version__},
    }
    write_checkpoint(path, WEIGHTS, META, blob, info)


def value_info(path: str) -> dict:
    """The checkpoint's ``value.json``, checked for format and keys."""
    return read_info(path, "value", WEIGHTS, META, FORMAT, ("task", "nx", "nobs", "members", "hidden",
                                                            "activation", "normalize", "target_mean",
                                                            "target_std"))[0]


def load_value(path: str, task=None, *, optimism: float | None | str = "saved") -> ValueFunction:
    """Read a checkpoint written by :func:`save_value`. ``task``: the task object it is used on
    (its ``observation`` gives the features); refused, naming both, when the value was fitted for
    another task (a value is a cost-to-go under one task's cost) or the sizes differ. ``None``:
    only for a value fitted without a task (raw states). ``optimism``: override the saved one."""
    from safetensors.torch import load

    info = value_info(path)
    wpath = os.path.join(os.fspath(path), WEIGHTS)
    blob = read_weights(wpath, info, META)
    saved_task = info["task"]
    if task is not None:
        name = getattr(task, "name", task)
        if saved_task is not None and saved_task != name:
            raise InvalidArgumentError(
                f"value {os.fspath(path)!r} was fitted for task {saved_task!r}, not {name!r}: a value "
                f"is the cost-to-go under one task's cost")
        nx = int(task.dynamics().nx)
        if nx != int(info["nx"]):
            raise InvalidArgumentError(f"value {os.fspath(path)!r} takes states of size {info['nx']}, "
                                       f"but task {name!r} has nx={nx}")
    elif saved_task is not None:
        raise InvalidArgumentError(f"value {os.fspath(path)!r} was fitted for task {saved_task!r}: "
                                   f"pass that task")
    try:
        tensors = load(blob)
        net = VNet(int(info["members"]), int(info["nobs"]), hidden=tuple(int(h) for h in info["hidden"]),
                   activation=info["activation"], normalize=bool(info["normalize"]))
        net.load_state_dict(tensors, strict=True)
    except Exception as e:  # noqa: BLE001  (any parse or shape failure)
        raise InvalidArgumentError(f"{wpath}: tensors do not match {META}: {e}") from None
    for k, v in tensors.items():
        if not torch.isfinite(v).all():
            raise InvalidArgumentError(f"{wpath}: tensor {k!r} is not finite")
    net.eval()
    opt = info.get("optimism") if optimism == "saved" else optimism
    return ValueFunction(net, nx=int(info["nx"]), observe=None if task is None else task.observation,
                         target_mean=info["target_mean"], target_std=info["target_std"], optimism=opt,
                         task=task, meta=info.get("meta") or {})
