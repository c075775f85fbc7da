"""Policy and value networks (torch), batched over ``K`` members (seeds trained as one batch).

Every network here is a :class:`~recede.models.layers.BatchedMLP` underneath: ``K`` independent
networks in one module, so ``K`` seeds, twin critics or a value ensemble cost one ``baddbmm`` per
layer. Inputs are observations ``obs: (K, N, nobs)`` (a policy's features of the model state,
``task.observation(x)``), actions ``act: (K, N, nu)`` in the env's units.

- :class:`ObsNormalizer`: per-member running mean and std of observations (Chan et al.'s parallel
  update), applied inside every network that is given one, saved with it.
- :class:`GaussianPolicyNet`: a tanh-squashed Gaussian (SAC's actor), mapped to the action bounds.
- :class:`ClippedGaussianPolicyNet`: an unsquashed Gaussian with a state-independent ``log_std``
  whose samples are clipped to the bounds (PPO's actor).
- :class:`DeterministicPolicyNet`: ``tanh`` of an MLP mapped to the bounds (TD3/DDPG, behaviour
  cloning, the S-step of guided policy search).
- :class:`LinearPolicyNet`: ``W obs + b`` clipped to the bounds (linear inside them; behaviour
  cloning's oracle class: a linear expert is in it exactly).
- :class:`QNet`: ``heads`` Q functions per member (twin critics: ``heads=2``), one module.
- :class:`VNet`: ``heads`` state-value functions per member (PPO's critic, value ensembles).
- :func:`orthogonal_init`: re-draw a :class:`BatchedMLP`'s weights orthogonally (PPO's init).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from recede.errors import InvalidArgumentError
from recede.models.layers import BatchedMLP

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # CleanRL's and the SAC paper code's bounds


def _check_dim(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _generators(seeds: Sequence[int] | None, members: int, salt: int) -> list[torch.Generator] | None:
    """One CPU generator per member, seeded from ``(seed, salt)`` so different networks of one
    seed draw different weights, and the same network of one seed the same weights in any batch."""
    if seeds is None:
        return None
    if len(seeds) != members:
        raise InvalidArgumentError(f"seeds must hold one seed per member ({members}), got {list(seeds)!r}")
    gens = []
    for s in seeds:
        g = torch.Generator()
        g.manual_seed((int(s) * 1_000_003 + salt) % (2 ** 63))
        gens.append(g)
    return gens


def _head_generators(seeds, members: int, heads: int, salt: int) -> list[torch.Generator] | None:
    """Generators for ``members * heads`` networks, member-major: head ``h`` of member ``k``
    draws from its own stream of seed ``k``."""
    if seeds is None:
        return None
    _generators(seeds, members, salt)  # checks the count
    return [g for s in seeds for h in range(heads) for g in _generators([s], 1, salt + 7919 * h)]


def _run(mlp: BatchedMLP, x: torch.Tensor) -> torch.Tensor:
    """``mlp(x)``, a lone member run as a batch of two (itself twice, the copy's output dropped).

    torch multiplies a batch of one matrix with another kernel than a batch of several (MKL's
    gemv where a layer is one wide), so a member alone would differ in the last bits from the same
    member in a batch of seeds; as a batch of two it takes the batched kernel, whose results do not
    depend on the batch's size (forward and backward)."""
    if mlp.members != 1:
        return mlp(x)
    Ws = [w.expand(2, *w.shape[1:]) for w in mlp.weights]
    bs = [b.expand(2, *b.shape[1:]) for b in mlp.biases]
    h = x.expand(2, *x.shape[1:])
    for w, b in zip(Ws[:-1], bs[:-1]):
        h = mlp._act(torch.baddbmm(b, h, w))
    return torch.baddbmm(bs[-1], h, Ws[-1])[:1]


class ObsNormalizer(torch.nn.Module):
    """Per-member running observation statistics: ``(obs - mean) / sqrt(var + eps)``, clipped
    to ``+-clip``. ``update(obs: (K, N, nobs))`` folds a batch in; frozen until updated, so a
    network whose normaliser is never updated sees raw observations (mean 0, var 1)."""

    def __init__(self, members: int, nobs: int, *, clip: float = 10.0, eps: float = 1e-8):
        super().__init__()
        self.clip, self.eps = float(clip), float(eps)
        self.register_buffer("mean", torch.zeros(members, 1, nobs))
        self.register_buffer("var", torch.ones(members, 1, nobs))
        self.register_buffer("count", torch.zeros(members, 1, 1))

    @torch.no_grad()
    def update(self, obs: torch.Tensor) -> None:
        n = obs.shape[1]
        bmean = obs.mean(dim=1, keepdim=True)
        bvar = obs.var(dim=1, unbiased=False, keepdim=True)
        tot = self.count + n
        delta = bmean - self.mean
        self.mean += delta * (n / tot)
        m2 = self.var * self.count + bvar * n + delta.pow(2) * self.count * n / tot
        self.var.copy_(m2 / tot)
        self.count.copy_(tot)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        z = (obs - self.mean) / torch.sqrt(self.var + self.eps)
        return z.clamp(-self.clip, self.clip)


class _Bounds(torch.nn.Module):
    """Maps ``[-1, 1]`` to ``[low, high]`` per action dim."""

    def __init__(self, low, high):
        super().__init__()
        low = torch.as_tensor(low, dtype=torch.float32).reshape(1, 1, -1)
        high = torch.as_tensor(high, dtype=torch.float32).reshape(1, 1, -1)
        if not (torch.isfinite(low).all() and torch.isfinite(high).all() and (high > low).all()):
            raise InvalidArgumentError(f"action bounds must be finite with high > low, got low="
                                       f"{low.flatten().tolist()}, high={high.flatten().tolist()}")
        self.register_buffer("scale", (high - low) / 2.0)
        self.register_buffer("centre", (high + low) / 2.0)


class GaussianPolicyNet(torch.nn.Module):
    """A tanh-squashed Gaussian policy per member: ``a = centre + scale * tanh(mu + std * eps)``.

    ``forward(obs)`` -> ``(mu, log_std)`` of the pre-squash Gaussian, ``(K, N, nu)`` each;
    ``sample(obs, noise)`` -> actions and their log-probabilities ``(K, N)`` (change of
    variables through tanh and the bounds' scale); ``mean_action(obs)``: the deterministic
    action ``centre + scale * tanh(mu)``.
    """

    kind = "gaussian"

    def __init__(self, members: int, nobs: int, nu: int, low, high, *, hidden: Sequence[int] = (256, 256),
                 activation: str = "relu", seeds: Sequence[int] | None = None, normalize: bool = False):
        super().__init__()
        self.members, self.nobs, self.nu = _check_dim("members", members), _check_dim("nobs", nobs), _check_dim("nu", nu)
        self.hidden, self.normalize = tuple(int(h) for h in hidden), bool(normalize)
        self.mlp = BatchedMLP(members, [nobs, *self.hidden, 2 * nu], activation=activation,
                              generators=_generators(seeds, members, 1))
        self.norm = ObsNormalizer(members, nobs)
        self.bounds = _Bounds(low, high)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.mlp(self.norm(obs) if self.normalize else obs)
        mu, log_std = out[..., : self.nu], torch.tanh(out[..., self.nu:])
        return mu, LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1.0)

    def sample(self, obs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterised sample with standard normal ``noise (K, N, nu)``: actions (K, N, nu)
        and log-probabilities (K, N)."""
        mu, log_std = self(obs)
        z = mu + log_std.exp() * noise
        # log N(z; mu, std) - log|d a / d z|, with log(1 - tanh(z)^2) = 2 (log 2 - z - softplus(-2z))
        logp = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2.0 * math.pi)).sum(-1)
        logp = logp - (2.0 * (math.log(2.0) - z - F.softplus(-2.0 * z))).sum(-1)
        logp = logp - torch.log(self.bounds.scale).sum(-1)
        return self.bounds.centre + self.bounds.scale * torch.tanh(z), logp

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        mu, _ = self(obs)
        return self.bounds.centre + self.bounds.scale * torch.tanh(mu)


def orthogonal_init(mlp: BatchedMLP, gains: Sequence[float], *, seeds: Sequence[int] | None = None,
                    salt: int = 0) -> BatchedMLP:
    """Re-draw every layer of ``mlp`` as an orthogonal matrix times ``gains[l]`` with zero biases
    (``torch.nn.init.orthogonal_`` on the ``(out, in)`` weight, as CleanRL's and the PPO code's
    ``layer_init``). ``seeds``: one per member (member ``e`` draws from its own generator seeded
    from ``(seeds[e], salt)``, so a member's weights do not depend on the batch); None draws from
    torch's global generator."""
    gains = [float(g) for g in gains]
    if len(gains) != len(mlp.weights):
        raise InvalidArgumentError(f"gains must hold one gain per layer ({len(mlp.weights)}), got {gains!r}")
    gens = _generators(seeds, mlp.members, salt) or [None] * mlp.members
    with torch.no_grad():
        for e, g in enumerate(gens):
            for w, b, gain in zip(mlp.weights, mlp.biases, gains):
                t = torch.empty(w.shape[2], w.shape[1])
                torch.nn.init.orthogonal_(t, gain=gain, generator=g)
                w[e].copy_(t.T)
                b[e].zero_()
    return mlp


class ClippedGaussianPolicyNet(torch.nn.Module):
    """A Gaussian policy per member with a state-independent log standard deviation, its samples
    clipped to the action bounds (PPO's actor: CleanRL's ``ppo_continuous_action.py``, the PPO
    paper's MuJoCo policy).

    The network works in normalised action units: ``z ~ N(mu(obs), exp(log_std)^2)`` per dim, and
    the env receives ``a = centre + scale * clip(z, -1, 1)``, so ``z = +-1`` are the bounds
    whatever their units. ``log_std`` is a parameter ``(K, 1, nu)`` (initially
    ``log_std_init``). ``forward(obs)`` -> ``(mu, log_std)`` ``(K, N, nu)`` each (``log_std``
    broadcast); :meth:`head` is the same on features already normalised; ``sample(obs, noise)`` ->
    clipped actions and the log-density of the unclipped ``z`` ``(K, N)``; ``mean_action(obs)``:
    the deterministic action ``centre + scale * clip(mu, -1, 1)``. Initialisation: orthogonal
    layers with gain ``sqrt(2)``, the last with gain 0.01 (the mean starts near the centre).
    """

    kind = "gaussian_clip"

    def __init__(self, members: int, nobs: int, nu: int, low, high, *, hidden: Sequence[int] = (64, 64),
                 activation: str = "tanh", seeds: Sequence[int] | None = None, normalize: bool = False,
                 log_std_init: float = 0.0):
        super().__init__()
        self.members, self.nobs, self.nu = _check_dim("members", members), _check_dim("nobs", nobs), _check_dim("nu", nu)
        self.hidden, self.normalize = tuple(int(h) for h in hidden), bool(normalize)
        # drawn from a throwaway generator, then re-drawn orthogonally from the members' own
        self.mlp = BatchedMLP(members, [nobs, *self.hidden, nu], activation=activation, generators=torch.Generator())
        orthogonal_init(self.mlp, [math.sqrt(2.0)] * len(self.hidden) + [0.01], seeds=seeds, salt=5)
        self.log_std = torch.nn.Parameter(torch.full((members, 1, nu), float(log_std_init)))
        self.norm = ObsNormalizer(members, nobs)
        self.bounds = _Bounds(low, high)

    def head(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, log_std)`` for features ``feats`` already normalised (``(K, N, nobs)``)."""
        mu = _run(self.mlp, feats)
        return mu, self.log_std.expand_as(mu)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.norm(obs) if self.normalize else obs)

    def to_action(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised actions ``z`` -> the env's actions, clipped to the bounds."""
        return self.bounds.centre + self.bounds.scale * z.clamp(-1.0, 1.0)

    @staticmethod
    def log_prob(z: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
        """Log-density of normalised actions ``z`` under ``N(mu, exp(log_std)^2)``, summed over
        the action dims: ``(K, N, nu)`` -> ``(K, N)``."""
        return (-0.5 * ((z - mu) * torch.exp(-log_std)).pow(2) - log_std - 0.5 * math.log(2.0 * math.pi)).sum(-1)

    def sample(self, obs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A sample with standard normal ``noise (K, N, nu)``: the env's actions (clipped)
        ``(K, N, nu)`` and the log-density of the unclipped sample in the env's units ``(K, N)``."""
        mu, log_std = self(obs)
        z = mu + log_std.exp() * noise
        logp = self.log_prob(z, mu, log_std) - torch.log(self.bounds.scale).sum(-1)
        return self.to_action(z), logp

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        mu, _ = self(obs)
        return self.to_action(mu)


class DeterministicPolicyNet(torch.nn.Module):
    """``a = centre + scale * tanh(mlp(obs))`` per member (``K, N, nu``)."""

    kind = "deterministic"

    def __init__(self, members: int, nobs: int, nu: int, low, high, *, hidden: Sequence[int] = (256, 256),
                 activation: str = "relu", seeds: Sequence[int] | None = None, normalize: bool = False):
        super().__init__()
        self.members, self.nobs, self.nu = _check_dim("members", members), _check_dim("nobs", nobs), _check_dim("nu", nu)
        self.hidden, self.normalize = tuple(int(h) for h in hidden), bool(normalize)
        self.mlp = BatchedMLP(members, [nobs, *self.hidden, nu], activation=activation,
                              generators=_generators(seeds, members, 2))
        self.norm = ObsNormalizer(members, nobs)
        self.bounds = _Bounds(low, high)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.mlp(self.norm(obs) if self.normalize else obs)
        return self.bounds.centre + self.bounds.scale * torch.tanh(out)

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs)


class LinearPolicyNet(torch.nn.Module):
    """``a = clip(W obs + b, low, high)`` per member: linear in the (normalised, when
    ``normalize``) observations inside the action bounds, no hidden layer and no squashing.
    :meth:`linear` is the unclipped output (what behaviour cloning fits), :meth:`gain` the map in
    raw observation units. ``hidden`` must be ``()`` (it is accepted so checkpoints load it as
    every other kind)."""

    kind = "linear"

    def __init__(self, members: int, nobs: int, nu: int, low, high, *, hidden: Sequence[int] = (),
                 activation: str = "relu", seeds: Sequence[int] | None = None, normalize: bool = False):
        super().__init__()
        self.members, self.nobs, self.nu = _check_dim("members", members), _check_dim("nobs", nobs), _check_dim("nu", nu)
        if tuple(hidden):
            raise InvalidArgumentError(f"hidden must be () for a linear policy, got {tuple(hidden)!r}")
        self.hidden, self.normalize = (), bool(normalize)
        self.mlp = BatchedMLP(members, [nobs, nu], activation=activation, generators=_generators(seeds, members, 4))
        self.norm = ObsNormalizer(members, nobs)
        self.bounds = _Bounds(low, high)

    def linear(self, obs: torch.Tensor) -> torch.Tensor:
        return _run(self.mlp, self.norm(obs) if self.normalize else obs)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        b = self.bounds
        return torch.maximum(torch.minimum(self.linear(obs), b.centre + b.scale), b.centre - b.scale)

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs)

    @torch.no_grad()
    def gain(self, member: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W (nu, nobs), b (nu,))`` with ``linear(obs) = W obs + b`` in raw observation units
        (the normaliser folded in; its clip at ``+-clip`` standard deviations aside)."""
        W, b = self.mlp.weights[0][member].T, self.mlp.biases[0][member, 0]
        if not self.normalize:
            return W.clone(), b.clone()
        inv = 1.0 / torch.sqrt(self.norm.var[member, 0] + self.norm.eps)
        W = W * inv
        return W, b - W @ self.norm.mean[member, 0]


class QNet(torch.nn.Module):
    """``heads`` Q functions per member, one module of ``members * heads`` MLPs:
    ``forward(obs (K, N, nobs), act (K, N, nu)) -> (K, heads, N)``."""

    def __init__(self, members: int, nobs: int, nu: int, *, heads: int = 2, hidden: Sequence[int] = (256, 256),
                 activation: str = "relu", seeds: Sequence[int] | None = None):
        super().__init__()
        self.members, self.heads = _check_dim("members", members), _check_dim("heads", heads)
        self.nobs, self.nu = _check_dim("nobs", nobs), _check_dim("nu", nu)
        gens = _head_generators(seeds, members, heads, salt=3)
        self.mlp = BatchedMLP(members * heads, [nobs + nu, *hidden, 1], activation=activation, generators=gens)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        K, N = obs.shape[0], obs.shape[1]
        x = torch.cat([obs, act], dim=-1)
        x = x.unsqueeze(1).expand(K, self.heads, N, x.shape[-1]).reshape(K * self.heads, N, -1)
        return self.mlp(x).reshape(K, self.heads, N)


class VNet(torch.nn.Module):
    """``heads`` state-value functions per member: ``forward(obs (K, N, nobs)) -> (K, heads, N)``."""

    def __init__(self, members: int, nobs: int, *, heads: int = 1, hidden: Sequence[int] = (256, 256),
                 activation: str = "tanh", seeds: Sequence[int] | None = None, normalize: bool = False):
        super().__init__()
        self.members, self.heads = _check_dim("members", members), _check_dim("heads", heads)
        self.nobs, self.normalize = _check_dim("nobs", nobs), bool(normalize)
        gens = _head_generators(seeds, members, heads, salt=4)
        self.mlp = BatchedMLP(members * heads, [nobs, *hidden, 1], activation=activation, generators=gens)
        self.norm = ObsNormalizer(members, nobs)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        K, N = obs.shape[0], obs.shape[1]
        x = self.norm(obs) if self.normalize else obs
        x = x.unsqueeze(1).expand(K, self.heads, N, x.shape[-1]).reshape(K * self.heads, N, -1)
        return _run(self.mlp, x).reshape(K, self.heads, N)
