"""A trained network as a recede :class:`~recede.controllers.base.Policy`, and its checkpoint.

:class:`NetworkPolicy` holds one member of a policy network and the task's observation map, so it
acts on **model states** like every other controller (``act(x: (nx,)) -> (nu,)``,
``act_batch(X: (..., nx)) -> (..., nu)``), computing the network's features with
``task.observation(X)`` and normalising them with the network's own statistics.

Checkpoint: a directory with ``policy.safetensors`` (the member's weights, its observation
statistics and action bounds, float32) and ``policy.json`` (the architecture, the task, the sizes,
what trained it and the weights' SHA-256). It is written atomically (a reader sees the old
checkpoint or the new one), and :func:`load_policy` refuses, naming the file and the problem, a
checkpoint that is corrupted, truncated, of another format, or for a task of another observation
or action size. It never unpickles.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

import numpy as np
import torch

from recede.errors import InvalidArgumentError
from recede.models.ensemble import torch_threads
from recede.policies._checkpoint import read_info, read_weights, write_checkpoint
from recede.policies.networks import (
    ClippedGaussianPolicyNet, DeterministicPolicyNet, GaussianPolicyNet, LinearPolicyNet,
)

FORMAT = "recede.Policy/1"
WEIGHTS = "policy.safetensors"
META = "policy.json"
KINDS = {"gaussian": GaussianPolicyNet, "deterministic": DeterministicPolicyNet,
         "gaussian_clip": ClippedGaussianPolicyNet, "linear": LinearPolicyNet}


def task_sizes(task) -> tuple[int, int, int]:
    """``(nx, nobs, nu)`` of a task: its model's state and action sizes and its features' size."""
    d = task.dynamics()
    nobs = int(np.asarray(task.observation(np.zeros((1, d.nx)))).shape[-1])
    return int(d.nx), nobs, int(d.nu)


class NetworkPolicy:
    """Member ``member`` of policy network ``net`` acting on model states of ``task`` (see the
    module docstring). ``deterministic``: act with the mean action (the default, for
    evaluation); else sample from the policy with ``reset(rng)``'s generator."""

    def __init__(self, net: torch.nn.Module, task, *, member: int = 0, deterministic: bool = True,
                 observe: Callable[[np.ndarray], np.ndarray] | None = None, meta: Mapping[str, Any] | None = None):
        self.net, self.task, self.member = net, task, int(member)
        self.deterministic = bool(deterministic)
        self.observe = observe or task.observation
        self.meta = dict(meta or {})
        self.nu = net.nu
        self.device = next(net.parameters()).device
        self._rng = np.random.default_rng(0)
        # act()'s numpy copy of the member (see _act_numpy), refreshed when a weight changes in
        # place (an optimiser step, a load: torch bumps the tensor's version)
        self._np, self._np_version, self._np_tensors = None, None, []

    def __repr__(self) -> str:
        name = getattr(self.task, "name", self.task)
        return f"NetworkPolicy({self.net.kind}, task={name!r}, nobs={self.net.nobs}, nu={self.nu})"

    def reset(self, rng=None) -> None:
        if rng is not None:
            self._rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)

    def act_obs(self, obs: np.ndarray) -> np.ndarray:
        """Actions for features ``obs: (..., nobs)`` -> ``(..., nu)`` float64."""
        obs = np.asarray(obs, dtype=np.float32)
        lead = obs.shape[:-1]
        o = torch.from_numpy(np.ascontiguousarray(obs.reshape(1, -1, obs.shape[-1]))).to(self.device)
        # one thread for the small batches of closed-loop control: a second thread's hand-off costs
        # more than the work (and much more on a busy machine)
        with torch.inference_mode(), torch_threads(1 if o.shape[1] < 1024 else None):
            if self.net.members > 1:
                o = o.expand(self.net.members, -1, -1)
            if self.deterministic or not isinstance(self.net, (GaussianPolicyNet, ClippedGaussianPolicyNet)):
                a = self.net.mean_action(o)
            else:
                noise = torch.from_numpy(self._rng.standard_normal((o.shape[0], o.shape[1], self.nu),
                                                                   dtype=np.float32)).to(self.device)
                a, _ = self.net.sample(o, noise)
        return a[self.member].double().cpu().numpy().reshape(*lead, self.nu)

    def act_batch(self, X: np.ndarray) -> np.ndarray:
        """States ``X: (..., nx)`` -> actions ``(..., nu)``."""
        return self.act_obs(self.observe(np.asarray(X, dtype=np.float64)))

    def act(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 1:
            raise InvalidArgumentError(f"x must be one state (nx,), got shape {x.shape}")
        if self._numpy_ok():
            return self._act_numpy(np.asarray(self.observe(x[None]), dtype=np.float32)[0])
        return self.act_batch(x[None])[0]

    # One state in closed-loop control: the member's mean action in numpy float32, the same
    # arithmetic as the torch forward (so equal up to the GEMMs' rounding), without torch's
    # per-call dispatch, which is most of the time of a small network's single action.
    _ACTS = {"relu": lambda h: np.maximum(h, 0.0, out=h), "tanh": np.tanh,
             "silu": lambda h: h / (1.0 + np.exp(-h)),
             "elu": lambda h: np.where(h > 0, h, np.expm1(np.minimum(h, 0.0)))}

    def _numpy_ok(self) -> bool:
        if not self.deterministic or self.device.type != "cpu" or self.net.kind not in _NUMPY_KINDS:
            return False
        if self._np is None:
            self._np_tensors = list(self.net.parameters()) + list(self.net.buffers())
        version = tuple(t._version for t in self._np_tensors)
        if self._np is None or self._np_version != version:
            self._np, self._np_version = self._numpy_params(), version
        return True

    def _numpy_params(self):
        net, m = self.net, self.member
        with torch.no_grad():
            Ws = [w[m].float().cpu().numpy().copy() for w in net.mlp.weights]
            bs = [b[m].float().cpu().numpy().reshape(-1).copy() for b in net.mlp.biases]
            norm = None
            if net.normalize:
                norm = (net.norm.mean[m, 0].float().cpu().numpy().copy(),
                        torch.sqrt(net.norm.var[m, 0] + net.norm.eps).float().cpu().numpy().copy(), net.norm.clip)
            scale = net.bounds.scale.reshape(-1).float().cpu().numpy().copy()
            centre = net.bounds.centre.reshape(-1).float().cpu().numpy().copy()
        return Ws, bs, norm, scale, centre, self._ACTS[net.mlp.activation]

    def _act_numpy(self, obs: np.ndarray) -> np.ndarray:
        Ws, bs, norm, scale, centre, act = self._np
        h = obs
        if norm is not None:
            h = np.clip((h - norm[0]) / norm[1], -norm[2], norm[2])
        for W, b in zip(Ws[:-1], bs[:-1]):
            h = act(h @ W + b)
        out = h @ Ws[-1] + bs[-1]
        kind = self.net.kind
        if kind == "gaussian":
            a = centre + scale * np.tanh(out[: self.nu])
        elif kind == "deterministic":
            a = centre + scale * np.tanh(out)
        elif kind == "gaussian_clip":
            a = centre + scale * np.clip(out, -1.0, 1.0)
        else:  # linear
            a = np.maximum(np.minimum(out, centre + scale), centre - scale)
        return a.astype(np.float64)

    def save(self, path: str, **meta) -> None:
        """Write this policy's member as a checkpoint directory (see the module docstring)."""
        save_policy(self.net, path, member=self.member, task=self.task, meta={**self.meta, **meta})


_NUMPY_KINDS = ("gaussian", "deterministic", "gaussian_clip", "linear")


def _member_tensors(net: torch.nn.Module, member: int) -> dict[str, torch.Tensor]:
    t = {f"mlp.{k}": v for k, v in net.mlp.member_state(member).items()}
    t["norm.mean"], t["norm.var"], t["norm.count"] = (net.norm.mean[member], net.norm.var[member],
                                                      net.norm.count[member])
    t["bounds.scale"], t["bounds.centre"] = net.bounds.scale[0], net.bounds.centre[0]
    if isinstance(getattr(net, "log_std", None), torch.nn.Parameter):  # a state-independent std
        t["log_std"] = net.log_std[member]
    return {k: v.detach().float().cpu().contiguous() for k, v in t.items()}


def save_policy(net: torch.nn.Module, path: str, *, member: int = 0, task=None,
                meta: Mapping[str, Any] | None = None) -> None:
    """Write member ``member`` of policy network ``net`` to the checkpoint directory ``path``,
    atomically. ``meta``: JSON-ready facts to keep (the algorithm, seed, env steps...)."""
    from safetensors.torch import save

    blob = save(_member_tensors(net, member))
    info = {
        "format": FORMAT,
        "kind": net.kind,
        "task": getattr(task, "name", task),
        "nobs": net.nobs, "nu": net.nu,
        "hidden": list(net.hidden),
        "activation": net.mlp.activation,
        "normalize": net.normalize,
        "meta": dict(meta or {}),
        "versions": {"torch": torch.__version__},
    }
    write_checkpoint(path, WEIGHTS, META, blob, info)


def policy_info(path: str) -> dict:
    """The checkpoint's ``policy.json`` (its task's name is ``["task"]``), checked for format."""
    return _read_info(os.fspath(path))[0]


def _read_info(path: str) -> tuple[dict, str, str]:
    info, mpath, wpath = read_info(path, "policy", WEIGHTS, META, FORMAT,
                                   ("kind", "task", "nobs", "nu", "hidden", "activation", "normalize"))
    if info["kind"] not in KINDS:
        raise InvalidArgumentError(f"{mpath}: kind must be one of {sorted(KINDS)}, got {info['kind']!r}")
    return info, mpath, wpath


def load_policy(path: str, task, *, device: str | torch.device = "cpu",
                deterministic: bool = True) -> NetworkPolicy:
    """Read a checkpoint written by :func:`save_policy` as a :class:`NetworkPolicy` of ``task``
    (a task object: ``recede.envs.get_task(policy_info(path)["task"])`` is the one it was trained
    on). Refuses, naming the file: a missing or
    corrupted checkpoint, a checksum that does not match, tensors of the wrong name or shape, and
    a task whose observation or action size differs from the policy's."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    info, mpath, wpath = _read_info(os.fspath(path))
    blob = read_weights(wpath, info, META)
    try:
        tensors = load(blob)
    except (SafetensorError, Exception) as e:  # noqa: BLE001  (any parse failure)
        raise InvalidArgumentError(f"{wpath}: not a readable safetensors file ({e})") from None
    if isinstance(task, str) or not hasattr(task, "observation"):
        raise InvalidArgumentError(f"task must be a task object (recede.envs.get_task(name)), got {task!r}")
    nx, nobs, nu = task_sizes(task)
    if (nobs, nu) != (info["nobs"], info["nu"]):
        raise InvalidArgumentError(
            f"policy {path!r} acts on {info['nobs']} observations with {info['nu']} actions (task "
            f"{info['task']!r}), but task {task.name!r} has {nobs} observations and {nu} actions")
    try:
        scale, centre = tensors["bounds.scale"], tensors["bounds.centre"]
        net = KINDS[info["kind"]](1, int(info["nobs"]), int(info["nu"]), (centre - scale).flatten(),
                                  (centre + scale).flatten(), hidden=tuple(int(h) for h in info["hidden"]),
                                  activation=info["activation"], normalize=bool(info["normalize"]))
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidArgumentError(f"{mpath}: invalid policy description: {e}") from None
    want = {k: tuple(v.shape) for k, v in _member_tensors(net, 0).items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if want != got:
        raise InvalidArgumentError(f"{wpath}: tensors do not match {META}: expected {want}, got {got}")
    for k, v in tensors.items():
        if not torch.isfinite(v).all():
            raise InvalidArgumentError(f"{wpath}: tensor {k!r} is not finite")
    net.mlp.load_member_state(0, {k[4:]: v for k, v in tensors.items() if k.startswith("mlp.")})
    with torch.no_grad():
        net.norm.mean[0].copy_(tensors["norm.mean"])
        net.norm.var[0].copy_(tensors["norm.var"])
        net.norm.count[0].copy_(tensors["norm.count"])
        if "log_std" in tensors:
            net.log_std[0].copy_(tensors["log_std"])
    net = net.to(device)
    return NetworkPolicy(net, task, deterministic=deterministic, meta=info.get("meta") or {})
