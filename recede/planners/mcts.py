"""Monte Carlo tree search (MCTS) over a ``Problem``: discrete primitives or progressive widening
for continuous actions, min-max normalised UCT/PUCT, tree reuse between plans.

The tree
--------
Nodes live in preallocated arrays (the pool holds ``max_nodes`` slots; children sit in
contiguous blocks, see the Numba layer). A node is reached from its parent by one *edge*: an
action held for ``repeat`` control steps (fewer at the end of the horizon), so the tree has
``L = ceil(H / repeat)`` levels. Per node: the edge's action (and primitive index), its
discounted cost ``edge_cost = sum_s gamma^s l(x_s, u)`` and ``edge_discount = gamma^steps``, the
state at the edge's end, the visit count ``N``, a virtual-loss count, the sum ``W`` of the
returns backed up through it and its value. A simulation's return at node n is the discounted
cost from the start of n's edge to the horizon, ``Q = edge_cost + edge_discount * G_child``,
where ``G`` at the leaf is the leaf evaluation: the default policy's rollout to the horizon plus
the terminal cost. The root sums the whole-horizon returns. A node's value is the mean return
``W / N`` (``backup="mean"``, classic UCT, for noisy evaluations) or the best (lowest) return
through it (``backup="best"``: for a deterministic model, the cost of the best sequence found
below it, as in single-player MCTS).

One simulation
--------------
1. **Select** from the root. At a node with ``N`` visits (this simulation included), a new
   child is added while it has fewer children than allowed: all primitives for discrete
   actions, and ``ceil(k N^alpha)`` for continuous ones (progressive widening), drawn from the
   proposal (uniform in the bounds, or Gaussian around the warm start's action at that step,
   whose first draw is the warm-start action itself). Otherwise the child with the best score
   is taken. Values are min-max normalised per level (``q`` in [0, 1], 0 best, over the values
   the level's nodes have had, as MuZero does over the tree; per level because a finite horizon
   leaves deeper nodes less cost to go), so the exploration constant ``c`` does not depend on
   the cost's scale:

   - UCT:  ``(1 - q) + c sqrt(ln N / n)``;
   - PUCT: ``(1 - q) + c P sqrt(N) / (1 + n)`` with the prior ``P`` (given for primitives,
     uniform over the children of a widened node). Unvisited primitives count with the
     parent's value (first-play urgency) and are added when their score wins.

   A discrete UCT node adds its untried primitives first, in random order.
2. **Evaluate** the new leaf: step its edge from the parent's state, then roll the default
   policy to the horizon: uniformly random actions (or a random primitive per edge), or the warm
   start's continuation, optionally with Gaussian noise (``rollout_std``).
3. **Back up** the returns along the path (visits, value sums, values, the levels' ranges).

A non-finite return counts as the worst value of its level so far (+inf if none).

Two paths, one tree
-------------------
- **Fused**: an analytic Numba system with a ``QuadraticCost`` runs whole searches inside one
  Numba call (``model.kernel_args``, ``step_in_place``, ``quadratic_stage``).
- **Batched**, for every other model (MuJoCo, learned) and cost: ``batch`` leaves are selected
  in turn, each adding a virtual loss to its path (counted as a visit with the worst value of
  its level) so that the next descents spread out; their whole action sequences (path, new edge,
  default policy) are evaluated from ``x0`` in one ``dynamics.rollout`` and the cost's
  per-step ``stage_costs`` (:func:`recede.costs.stage_costs`); then all are backed up, each node
  with the simulation's own costs from its edge on (so a stochastic model's or cost's samples
  count everywhere). A cost without ``stage_costs`` puts its total in the last step (then
  ``discount`` must be 1). With ``batch=1`` the batched path takes the same decisions as the
  fused one (tests check it).

A policy as guide
-----------------
``MCTS(problem, proposal_policy=pi, ...)`` with any policy (``act_batch(X: (B, nx)) -> (B, nu)``):
each plan first rolls ``pi`` out in closed loop from ``x0`` through the problem's model, noise-free
(one ``act_batch`` and one ``step`` per step), and that action sequence takes the warm start's
place as the centre of the Gaussian widening proposals (``proposal="gaussian"``, its first draw
the policy's action itself) and as the default policy's sequence (``rollout="warm_start"``). With
discrete primitives and PUCT it is also the prior: at level ``l``, ``P[l, a] ∝ exp(-|prim_a -
u_t|^2 / 2 sigma^2)`` per dimension, ``u_t`` the policy's action at the level's first step and
``sigma = proposal_std`` times the half-range, instead of the config's ``prior``. The policy is
queried along its own predicted trajectory, open loop inside the tree: a node off that trajectory
gets the policy's action for the trajectory's state at that step, not for its own state. A policy
given without an option that reads it is refused.

Between plans
-------------
The action taken is the root child with the most visits (ties: lower value); the plan follows
the most-visited children down the tree and, after that path, the best simulation's actions.
``plan.cost`` is the problem's (undiscounted) cost of those actions. After the controller
applies ``n`` steps (``advance(n)``, or :meth:`MCTS.reroot`) the next ``plan`` re-roots at the
node reached by the plan's first ``n / repeat`` edges and keeps its subtree's statistics, if
``reuse``, ``n`` is a multiple of ``repeat`` and the node's predicted state matches the measured
``x0`` within ``reuse_tol`` (max-norm); else it starts a fresh tree. (The kept statistics were
gathered over a horizon that ended ``n`` steps earlier: the usual approximation of tree reuse in
receding-horizon search.)

Budgets: ``simulations`` per plan, ``max_nodes`` slots in the pool (the search stops when it is
full) and ``plan(..., deadline=)`` (checked between chunks of simulations). Randomness comes
only from ``rng``: same seed, same tree.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np

from recede.costs import quadratic_stage, quadratic_terminal, stage_costs
from recede.errors import InvalidArgumentError
from recede.models.analytic.kernels import fused_args, step_in_place, step_size
from recede.planners.base import (
    OptionEnum,
    as_enum,
    as_generator,
    check_fraction,
    check_number,
    check_positive_int,
    check_proposal,
    initial_actions,
    kernel_threads,
    policy_rollout,
    resolve_config,
)
from recede.problem import Plan, Problem, Status, needs_sensors


class Selection(OptionEnum):
    UCT = "uct"
    PUCT = "puct"


class Proposal(OptionEnum):
    """How progressive widening draws a new continuous action."""

    UNIFORM = "uniform"
    GAUSSIAN = "gaussian"  # around the warm start's action at that step


class Backup(OptionEnum):
    """What a node's value is: the mean of the returns through it (classic UCT, for noisy
    evaluations) or the best (lowest) one, which for a deterministic model is the cost of the
    best sequence found below it (single-player MCTS)."""

    MEAN = "mean"
    BEST = "best"


class RolloutPolicy(OptionEnum):
    """The default policy that evaluates a new leaf."""

    RANDOM = "random"
    WARM_START = "warm_start"  # the warm start's actions from the leaf's step on (zeros without)


@dataclass(frozen=True)
class MCTSConfig:
    """
    simulations: simulations per plan (> 0). max_nodes: the node pool's size (> 1); the search
    stops early when it is full. exploration: ``c`` (>= 0) of UCT/PUCT on min-max normalised
    values. selection: "uct" or "puct". backup: "mean" or "best", a node's value (see
    ``Backup``). discount: ``gamma`` in (0, 1] per control step.
    actions: the discrete primitives, a sequence of A actions (each nu numbers, or numbers when
    nu = 1); levels: instead of ``actions``, ``levels`` evenly spaced values per action dimension
    between the bounds (A = levels^nu); neither: continuous actions with progressive widening.
    prior: PUCT's prior over the primitives (A positive numbers, normalised here); uniform if
    not given. repeat: control steps each tree edge holds its action. widening_k, widening_alpha:
    a node with N visits has at most ``ceil(k N^alpha)`` children (k > 0, alpha in (0, 1)).
    proposal: "uniform" or "gaussian" (std ``proposal_std`` times the half-range of the bounds;
    that is also the width of a ``proposal_policy``'s PUCT prior, see the module docstring).
    rollout: "random" or "warm_start"; rollout_std: Gaussian noise added to the warm start's
    actions in its rollouts (times the half-range of the bounds, >= 0; clipped). batch: leaves
    evaluated per batched rollout (batched path).
    reuse, reuse_tol: keep the subtree between plans (see the module docstring). fused: use the
    in-Numba search where the problem allows it.
    """

    simulations: int = 2000
    max_nodes: int = 100_000
    exploration: float = 1.0
    selection: Selection | str = Selection.UCT
    backup: Backup | str = Backup.MEAN
    discount: float = 1.0
    actions: tuple | None = None
    levels: int = 0
    prior: tuple | None = None
    repeat: int = 1
    widening_k: float = 1.0
    widening_alpha: float = 0.5
    proposal: Proposal | str = Proposal.UNIFORM
    proposal_std: float = 0.3
    rollout: RolloutPolicy | str = RolloutPolicy.RANDOM
    rollout_std: float = 0.0
    batch: int = 32
    reuse: bool = True
    reuse_tol: float = 1e-6
    fused: bool = True

    def __post_init__(self):
        check_positive_int("simulations", self.simulations)
        check_positive_int("max_nodes", self.max_nodes, 2)
        check_number("exploration", self.exploration)
        object.__setattr__(self, "selection", as_enum(Selection, "selection", self.selection))
        object.__setattr__(self, "backup", as_enum(Backup, "backup", self.backup))
        object.__setattr__(self, "proposal", as_enum(Proposal, "proposal", self.proposal))
        object.__setattr__(self, "rollout", as_enum(RolloutPolicy, "rollout", self.rollout))
        check_fraction("discount", self.discount)
        check_positive_int("levels", self.levels, 0)
        if self.levels == 1:
            raise InvalidArgumentError("levels must be 0 (continuous actions) or >= 2, got 1")
        if self.actions is not None:
            if self.levels:
                raise InvalidArgumentError(
                    f"give either actions or levels, not both (levels={self.levels})")
            a = np.asarray(self.actions, dtype=np.float64) if _is_sequence(self.actions) else None
            if a is None or a.size == 0:
                raise InvalidArgumentError(
                    f"actions must be a non-empty sequence of action primitives, got {self.actions!r}")
            if a.ndim not in (1, 2) or not np.all(np.isfinite(a)):
                raise InvalidArgumentError(
                    f"actions must be a finite (A,) or (A, nu) array of primitives, got {self.actions!r}")
            a = a.reshape(-1, 1) if a.ndim == 1 else a
            object.__setattr__(self, "actions", tuple(tuple(float(v) for v in row) for row in a))
        if self.prior is not None:
            p = np.asarray(self.prior, dtype=np.float64) if _is_sequence(self.prior) else None
            if p is None or p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)) or np.any(p <= 0):
                raise InvalidArgumentError(f"prior must be a sequence of positive numbers, got {self.prior!r}")
            if self.actions is None and not self.levels:
                raise InvalidArgumentError("prior needs discrete actions (actions or levels)")
            object.__setattr__(self, "prior", tuple(float(v) for v in p / p.sum()))
        check_positive_int("repeat", self.repeat)
        check_number("widening_k", self.widening_k, strict=True)
        check_fraction("widening_alpha", self.widening_alpha, high_open=True)
        check_number("proposal_std", self.proposal_std, strict=True)
        check_number("rollout_std", self.rollout_std)
        check_positive_int("batch", self.batch)
        check_number("reuse_tol", self.reuse_tol)
        for name in ("reuse", "fused"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise InvalidArgumentError(f"{name} must be True or False, got {getattr(self, name)!r}")

    @property
    def discrete(self) -> bool:
        return self.actions is not None or self.levels > 0


def _is_sequence(v) -> bool:
    return isinstance(v, (list, tuple, np.ndarray))


# ----------------------------------------------------------------------------------------------
# Numba layer. The tree is a ``Tree`` of arrays (one entry per slot, read by field name in the
# kernels); ``meta = [n_slots, root]``, ``stats[l] = [min, max]`` of the finite values the nodes
# of level l have had.
#
# The kernels of the descent are compiled without reference counting (``_nrt=False``): they
# allocate nothing, and the array arguments of inlined helpers otherwise cost atomic counter
# updates on every node and step (most of a simulation's time here).
#
# Children sit in contiguous blocks of slots so that scoring them reads contiguous memory: a
# discrete node gets one block of A slots at its first expansion (slot j holds primitive j once
# it is tried); a widened node gets a first block of _FIRST slots, then blocks of _CHUNK slots
# as it grows (most widened nodes keep one or two children), linked through the
# block heads' ``next_block``. ``live`` marks the slots holding a node; the pool counts slots.
# ----------------------------------------------------------------------------------------------

# ip: integer parameters; fp: float parameters
_H, _REPEAT, _DISCRETE, _PUCT, _PROPOSAL, _ROLLOUT, _BEST, _NOISY = range(8)
_GAMMA, _C, _PW_K, _PW_ALPHA = range(4)
_FIRST, _CHUNK = 2, 8


class Tree(NamedTuple):
    """The node pool: one entry per slot (``n`` slots). Numba passes it to the kernels as a
    tuple and reads its fields by name."""

    parent: np.ndarray  # (n,) int64, -1 at the root
    first_child: np.ndarray  # (n,) int64, the first block's first slot; -1 without children
    next_block: np.ndarray  # (n,) int64, the next block of the parent's children (block heads)
    children: np.ndarray  # (n,) int64, number of children
    primitive: np.ndarray  # (n,) int64, primitive index of the edge (-1: continuous)
    visits: np.ndarray  # (n,) int64, N
    virtual_loss: np.ndarray  # (n,) int64, virtual losses of descents not yet backed up
    value_sum: np.ndarray  # (n,) float64, W
    edge_cost: np.ndarray  # (n,) float64, sum_s gamma^s l(x_s, u) along the edge
    edge_discount: np.ndarray  # (n,) float64, gamma^steps of the edge
    action: np.ndarray  # (n, nu) float64, the edge's action
    state: np.ndarray  # (n, nx) float64, the state at the edge's end
    state_known: np.ndarray  # (n,) bool
    value_isq: np.ndarray  # (n, 2) float64, the value (W / N, or the best return), 1 / sqrt(N)
    live: np.ndarray  # (n,) bool, the slot holds a node


def _new_tree(n: int, nx: int, nu: int) -> Tree:
    return Tree(
        parent=np.full(n, -1, np.int64),
        first_child=np.full(n, -1, np.int64),
        next_block=np.full(n, -1, np.int64),
        children=np.zeros(n, np.int64),
        primitive=np.full(n, -1, np.int64),
        visits=np.zeros(n, np.int64),
        virtual_loss=np.zeros(n, np.int64),
        value_sum=np.zeros(n, np.float64),
        edge_cost=np.zeros(n, np.float64),
        edge_discount=np.ones(n, np.float64),
        action=np.zeros((n, nu), np.float64),
        state=np.zeros((n, nx), np.float64),
        state_known=np.zeros(n, np.bool_),
        value_isq=np.full((n, 2), np.inf),
        live=np.zeros(n, np.bool_),
    )


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _alloc(T, meta, count, parent):
    """Reserve ``count`` empty slots below ``parent``; -1 when the pool is full."""
    base = meta[0]
    if base + count > T.parent.shape[0]:
        return -1
    meta[0] = base + count
    for s in range(base, base + count):
        T.parent[s] = parent
        T.first_child[s] = T.next_block[s] = T.primitive[s] = -1
        T.children[s] = T.visits[s] = T.virtual_loss[s] = 0
        T.value_sum[s] = T.edge_cost[s] = 0.0
        T.edge_discount[s] = 1.0
        T.state_known[s] = T.live[s] = False
        T.value_isq[s, 0] = T.value_isq[s, 1] = np.inf
    return base


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _last_block(T, node):
    b = T.first_child[node]
    while T.next_block[b] >= 0:
        b = T.next_block[b]
    return b


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _new_child(T, meta, node, A, prim, u):
    """Create a child of ``node`` with action ``u``: primitive ``prim``'s slot (A > 0) or the
    next widening slot (A == 0). Returns it, or -1 when the pool is full."""
    first, nxt, nch = T.first_child, T.next_block, T.children
    if A > 0:
        if first[node] < 0:
            base = _alloc(T, meta, A, node)
            if base < 0:
                return -1
            first[node] = base
        ch = first[node] + prim
        T.primitive[ch] = prim
    else:
        k = nch[node]
        j = k if k < _FIRST else (k - _FIRST) % _CHUNK
        if j == 0:
            base = _alloc(T, meta, _FIRST if k == 0 else _CHUNK, node)
            if base < 0:
                return -1
            if k == 0:
                first[node] = base
            else:
                nxt[_last_block(T, node)] = base
            ch = base
        else:
            ch = _last_block(T, node) + j
    nch[node] += 1
    T.live[ch] = True
    for i in range(u.shape[0]):
        T.action[ch, i] = u[i]
    return ch


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _children(T, node, A, out):
    """The live children of ``node`` into ``out``; returns how many."""
    first, nxt, nch, live = T.first_child, T.next_block, T.children, T.live
    k = 0
    b = first[node]
    if b < 0:
        return 0
    if A > 0:
        for j in range(A):
            if live[b + j]:
                out[k] = b + j
                k += 1
        return k
    left, size = nch[node], _FIRST
    while left > 0:
        m = min(size, left)
        for j in range(m):
            out[k] = b + j
            k += 1
        left -= m
        b, size = nxt[b], _CHUNK
    return k


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _normalised(mean, vmin, vmax):
    """Min-max normalised cost in [0, 1] (0 best); non-finite means count as the worst."""
    if not mean < np.inf:
        return 1.0
    if vmax > vmin:
        q = (mean - vmin) / (vmax - vmin)
        return 0.0 if q < 0.0 else (1.0 if q > 1.0 else q)
    return 0.5


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _parent_q(T, node, vmin, vmax):
    """First-play urgency: the node's own mean return seen from its children (its edge
    removed), normalised with the children's level range; 0.5 before any visit."""
    visits, vsum, edge, edisc = T.visits, T.value_sum, T.edge_cost, T.edge_discount
    if visits[node] == 0:
        return 0.5
    return _normalised((vsum[node] / visits[node] - edge[node]) / edisc[node], vmin, vmax)


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _sample_action(t0, first, prop, low, high, prop_std, warm, u):
    """A new continuous action for an edge starting at step t0 (progressive widening);
    ``prop_std[0]``: the Gaussian proposal's std (nu,)."""
    for i in range(u.shape[0]):
        if prop == 0:
            u[i] = low[i] + np.random.random() * (high[i] - low[i])
        else:
            v = warm[t0, i]
            if not first:
                v += prop_std[0, i] * np.random.normal()
            u[i] = min(max(v, low[i]), high[i])


@numba.njit(cache=True, inline="always", error_model="numpy")
def _score(visits, vloss, vsum, hot, ch, puct, c_term, p, vmin, inv_range, worst):
    """UCT (``c_term = c sqrt(ln N)``) or PUCT (``c_term = c sqrt(N)``, prior ``p``) score of
    child ``ch``: ``1 - q + exploration``. ``inv_range = 1 / (max - min)`` of the returns at the
    child's level (0 while they are equal). Values (mean or best) are cached by the backup
    (``hot``), capped at 1e300 so that a diverged child scores -inf and never NaN; a child under
    virtual loss counts each loss as a visit with the ``worst`` return."""
    mean, isq = hot[ch, 0], hot[ch, 1]
    if vloss[ch] != 0:
        nn = visits[ch] + vloss[ch]
        mean = worst if visits[ch] == 0 else min((mean * visits[ch] + vloss[ch] * worst) / nn, 1e300)
        isq = 1.0 / math.sqrt(nn)
    q = 1.0 - (mean - vmin) * inv_range
    if puct:
        return q + c_term * p / (1.0 + visits[ch] + vloss[ch])
    return q + c_term * isq


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _select(T, meta, stats, ip, fp, prims, prior, low, high, prop_std, warm, path, u):
    """One descent from the root, adding a virtual loss to each node on it and writing the
    path's actions into ``path[t]`` for the steps it covers. ``prior: (L, A)``, PUCT's prior
    over the primitives of a node at each level. Returns ``(leaf, level, new)``;
    ``leaf = -1`` (and no virtual loss left behind) when the pool is full."""
    par, first, nxt, nch = T.parent, T.first_child, T.next_block, T.children
    visits, vloss, vsum, hot = T.visits, T.virtual_loss, T.value_sum, T.value_isq
    action, live = T.action, T.live
    H, repeat, discrete, puct = ip[_H], ip[_REPEAT], ip[_DISCRETE] != 0, ip[_PUCT] != 0
    c, pw_k, pw_alpha = fp[_C], fp[_PW_K], fp[_PW_ALPHA]
    L = (H + repeat - 1) // repeat
    A = prims.shape[0]
    node = meta[1]
    vloss[node] += 1
    level = 0
    while level < L:
        t0 = level * repeat
        steps = min(repeat, H - t0)
        n_node = visits[node] + vloss[node]
        k = nch[node]
        vmin, vmax = stats[level + 1, 0], stats[level + 1, 1]  # the children's level
        worst = vmax if vmax >= vmin else 0.0
        inv_range = 1.0 / (vmax - vmin) if vmax > vmin else 0.0
        c_term = c * (math.sqrt(n_node) if puct else math.sqrt(math.log(n_node)))
        choice, prim, add = -1, -1, False
        if discrete:
            if k < A:
                if puct:  # untried primitives compete, valued at the parent's value
                    fpu = 1.0 - _parent_q(T, node, vmin, vmax)
                    best = -np.inf
                    b = first[node]
                    for a in range(A):
                        if b >= 0 and live[b + a]:
                            s = _score(visits, vloss, vsum, hot, b + a, True, c_term,
                                       prior[level, a], vmin, inv_range, worst)
                            if s > best:
                                best, choice, prim = s, b + a, -1
                        else:
                            s = fpu + c_term * prior[level, a]
                            if s > best:
                                best, choice, prim = s, -1, a
                    add = prim >= 0
                else:  # a random untried primitive
                    b = first[node]
                    r = int(np.random.random() * (A - k))
                    for a in range(A):
                        if b < 0 or not live[b + a]:
                            if r == 0:
                                prim = a
                                break
                            r -= 1
                    add = True
                if add:
                    for i in range(u.shape[0]):
                        u[i] = prims[prim, i]
            else:
                b = first[node]
                best, choice = -np.inf, b  # all -inf (diverged): the first
                for a in range(A):
                    s = _score(visits, vloss, vsum, hot, b + a, puct, c_term, prior[level, a],
                               vmin, inv_range, worst)
                    if s > best:
                        best, choice = s, b + a
        elif k < 1 or k < pw_k * n_node ** pw_alpha:
            add = True
            _sample_action(t0, k == 0, ip[_PROPOSAL], low, high, prop_std, warm, u)
        else:
            p = 1.0 / k
            b, left, size = first[node], k, _FIRST
            best, choice = -np.inf, b
            while left > 0:
                m = min(size, left)
                for j in range(m):
                    s = _score(visits, vloss, vsum, hot, b + j, puct, c_term, p, vmin,
                               inv_range, worst)
                    if s > best:
                        best, choice = s, b + j
                left -= m
                b, size = nxt[b], _CHUNK
        if add:
            child = _new_child(T, meta, node, A, prim, u)
            if child < 0:  # pool full: take back this descent's virtual losses
                root = meta[1]
                while True:
                    vloss[node] -= 1
                    if node == root:
                        break
                    node = par[node]
                return -1, level, False
            vloss[child] += 1
            for t in range(t0, t0 + steps):
                for i in range(u.shape[0]):
                    path[t, i] = u[i]
            return child, level + 1, True
        node = choice
        vloss[node] += 1
        for t in range(t0, t0 + steps):
            for i in range(action.shape[1]):
                path[t, i] = action[node, i]
        level += 1
    return node, level, False


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _fill_rollout(ip, prims, low, high, warm, roll_std, t_start, path):
    """The default policy's actions for steps ``t_start..H-1`` into ``path``: random (a random
    primitive per ``repeat`` steps for discrete actions, uniform per step otherwise) or the warm
    start's continuation (plus Gaussian noise of std ``roll_std`` (nu,) where it is > 0,
    clipped into the bounds)."""
    H, repeat = ip[_H], ip[_REPEAT]
    nu = path.shape[1]
    if ip[_ROLLOUT] == 1:
        noisy = ip[_NOISY] != 0
        for t in range(t_start, H):
            for i in range(nu):
                v = warm[t, i]
                if noisy:
                    v = min(max(v + roll_std[i] * np.random.normal(), low[i]), high[i])
                path[t, i] = v
        return
    if ip[_DISCRETE] != 0:
        a = 0
        for t in range(t_start, H):
            if t == t_start or t % repeat == 0:
                a = int(np.random.random() * prims.shape[0])
            for i in range(nu):
                path[t, i] = prims[a, i]
        return
    for t in range(t_start, H):
        for i in range(nu):
            path[t, i] = low[i] + np.random.random() * (high[i] - low[i])


@numba.njit(cache=True, error_model="numpy", _nrt=False, inline="always")
def _update(T, stats, best, node, lv, Q):
    """Count the return ``Q`` at ``node`` (level ``lv``) and refresh the node's value and its
    level's range (over node values, as in MuZero, not single returns); returns the return
    counted (a non-finite one counts as the worst value of its level, +inf if none)."""
    visits, vloss, vsum, hot = T.visits, T.virtual_loss, T.value_sum, T.value_isq
    if not Q < np.inf:
        Q = stats[lv, 1] if stats[lv, 1] >= stats[lv, 0] else np.inf
    visits[node] += 1
    vloss[node] -= 1
    vsum[node] += Q
    if best:
        v = min(hot[node, 0], Q, 1e300)
    else:
        v = min(vsum[node] / visits[node], 1e300)
    hot[node, 0] = v
    hot[node, 1] = 1.0 / math.sqrt(visits[node])
    if v < 1e300 and (v < stats[lv, 0] or v > stats[lv, 1]):
        stats[lv, 0] = min(stats[lv, 0], v)
        stats[lv, 1] = max(stats[lv, 1], v)
    return Q


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _backup(T, meta, stats, ip, leaf, level, G):
    """Back the return ``G`` of the leaf (at ``level``) up to the root through the stored edge
    costs (``Q = edge_cost + edge_discount G`` at each node: exact for deterministic models);
    returns the root's (whole-horizon) return."""
    par, edge, edisc = T.parent, T.edge_cost, T.edge_discount
    root = meta[1]
    best = ip[_BEST] != 0
    node, lv = leaf, level
    while node != root:
        G = _update(T, stats, best, node, lv, edge[node] + edisc[node] * G)
        node = par[node]
        lv -= 1
    return _update(T, stats, best, root, 0, G)


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _backup_returns(T, meta, stats, ip, leaf, level, R):
    """Back up one simulation whose discounted returns from each step ``t`` are ``R[t]``
    (its own costs, so a stochastic model's or cost's samples count at every node); returns
    ``R[0]``."""
    par = T.parent
    repeat = ip[_REPEAT]
    root = meta[1]
    best = ip[_BEST] != 0
    node, lv = leaf, level
    while node != root:
        _update(T, stats, best, node, lv, R[(lv - 1) * repeat])
        node = par[node]
        lv -= 1
    return _update(T, stats, best, root, 0, R[0])


@numba.njit(cache=True, error_model="numpy", _nrt=False)
def _search_fused(T, meta, stats, ip, fp, prims, prior, low, high, prop_std, warm, scratch,
                  n_sims, sys_id, p, dt, substeps, Q, R, Qf, diagonal, x_goal, u_goal, is_angle,
                  best, best_cost):
    """``n_sims`` simulations on an analytic system (``model.kernel_args``) with a quadratic
    cost (``cost.kernel_args``); returns how many ran (fewer when the pool fills). The best
    simulation's actions and return go to ``best`` (H, nu) and ``best_cost[0]``; ``scratch``
    comes from :func:`_scratch`."""
    par, edge, edisc = T.parent, T.edge_cost, T.edge_discount
    action, state, known = T.action, T.state, T.state_known
    path, u, x, xs, k, acc, e, du = scratch
    H, repeat = ip[_H], ip[_REPEAT]
    gamma = fp[_GAMMA]
    nx, nu = state.shape[1], action.shape[1]
    h = step_size(dt, substeps)
    done = 0
    for _ in range(n_sims):
        leaf, level, new = _select(T, meta, stats, ip, fp, prims, prior, low, high, prop_std,
                                   warm, path, u)
        if leaf < 0:
            break
        t_leaf = min(level * repeat, H)
        if new:
            pa = par[leaf]
            for i in range(nx):
                x[i] = state[pa, i]
            for i in range(nu):
                u[i] = action[leaf, i]
            cost, disc = 0.0, 1.0
            for t in range((level - 1) * repeat, t_leaf):
                cost += disc * quadratic_stage(x, u, Q, R, Qf, diagonal, x_goal, u_goal,
                                               is_angle, e, du)
                step_in_place(sys_id, x, u, p, h, substeps, xs, k, acc)
                disc *= gamma
            for i in range(nx):
                state[leaf, i] = x[i]
            edge[leaf], edisc[leaf], known[leaf] = cost, disc, True
        else:
            for i in range(nx):
                x[i] = state[leaf, i]
        _fill_rollout(ip, prims, low, high, warm, prop_std[1], t_leaf, path)
        G, disc = 0.0, 1.0
        for t in range(t_leaf, H):
            for i in range(nu):
                u[i] = path[t, i]
            G += disc * quadratic_stage(x, u, Q, R, Qf, diagonal, x_goal, u_goal, is_angle,
                                        e, du)
            step_in_place(sys_id, x, u, p, h, substeps, xs, k, acc)
            disc *= gamma
        G += disc * quadratic_terminal(x, Q, R, Qf, diagonal, x_goal, u_goal, is_angle, e)
        total = _backup(T, meta, stats, ip, leaf, level, G)
        if total < best_cost[0]:
            best_cost[0] = total
            for t in range(H):
                for i in range(nu):
                    best[t, i] = path[t, i]
        done += 1
    return done


def _scratch(H: int, nx: int, nu: int) -> tuple:
    """Work arrays of the fused search: path (H, nu), u, x, xs, k, acc, e, du."""
    return (np.empty((H, nu)), np.empty(nu), np.empty(nx), np.empty(nx), np.empty(nx),
            np.empty(nx), np.empty(nx), np.empty(nu))


@numba.njit(cache=True, error_model="numpy")
def _select_batch(T, meta, stats, ip, fp, prims, prior, low, high, prop_std, warm, U, leaves,
                  levels, news):
    """Select ``U.shape[0]`` leaves in turn (virtual losses spread them) and write each one's
    whole action sequence (path, new edge, default policy) into ``U[w]``; returns how many
    were selected (fewer when the pool fills)."""
    H, repeat = ip[_H], ip[_REPEAT]
    u = np.empty(U.shape[2])
    for w in range(U.shape[0]):
        leaf, level, new = _select(T, meta, stats, ip, fp, prims, prior, low, high, prop_std,
                                   warm, U[w], u)
        if leaf < 0:
            return w
        leaves[w], levels[w], news[w] = leaf, level, new
        _fill_rollout(ip, prims, low, high, warm, prop_std[1], min(level * repeat, H), U[w])
    return U.shape[0]


@numba.njit(cache=True, error_model="numpy")
def _backup_batch(T, meta, stats, ip, fp, leaves, levels, news, n, C, X, U, best, best_cost):
    """Back up the first ``n`` selected leaves from their sequences' per-step costs
    ``C: (B, H+1)`` and states ``X: (B, H+1, nx)`` (new leaves take their edge's cost and end
    state from them first)."""
    edge, edisc, state, known = T.edge_cost, T.edge_discount, T.state, T.state_known
    H, repeat = ip[_H], ip[_REPEAT]
    gamma = fp[_GAMMA]
    for w in range(n):
        if news[w]:
            leaf, level = leaves[w], levels[w]
            t_leaf = min(level * repeat, H)
            cost, disc = 0.0, 1.0
            for t in range((level - 1) * repeat, t_leaf):
                cost += disc * C[w, t]
                disc *= gamma
            edge[leaf], edisc[leaf], known[leaf] = cost, disc, True
            state[leaf, :] = X[w, t_leaf]
    R = np.empty(H + 1)
    for w in range(n):
        G = 0.0
        for t in range(H, -1, -1):  # discounted returns from each step
            G = C[w, t] + gamma * G
            R[t] = G
        total = _backup_returns(T, meta, stats, ip, leaves[w], levels[w], R)
        if total < best_cost[0]:
            best_cost[0] = total
            best[:] = U[w]


@numba.njit(cache=True, error_model="numpy")
def _principal(T, meta, H, repeat, A, actions, nodes):
    """Follow the most-visited children (ties: lower value) from the root, writing their
    actions into ``actions[t]`` and the nodes into ``nodes[level]``; returns the number of
    levels."""
    visits, action, hot = T.visits, T.action, T.value_isq
    buf = np.empty(meta[0], np.int64)
    node, level, t = meta[1], 0, 0
    while t < H:
        best, bn, bm = -1, 0, np.inf
        for j in range(_children(T, node, A, buf)):
            ch = buf[j]
            n = visits[ch]
            if n > 0:
                m = hot[ch, 0]
                if n > bn or (n == bn and m < bm):
                    best, bn, bm = ch, n, m
        if best < 0:
            break
        steps = min(repeat, H - t)
        for s in range(t, t + steps):
            actions[s, :] = action[best]
        nodes[level] = best
        node = best
        level += 1
        t += steps
    return level


@numba.njit(cache=True, error_model="numpy")
def _copy_node(T, o, T2, s):
    """Copy slot ``o`` of ``T`` into slot ``s`` of ``T2``, all but the links (parent, children)."""
    T2.primitive[s], T2.visits[s] = T.primitive[o], T.visits[o]
    T2.virtual_loss[s], T2.value_sum[s] = T.virtual_loss[o], T.value_sum[o]
    T2.edge_cost[s], T2.edge_discount[s] = T.edge_cost[o], T.edge_discount[o]
    T2.state_known[s], T2.live[s] = T.state_known[o], T.live[o]
    T2.action[s, :] = T.action[o]
    T2.state[s, :] = T.state[o]
    T2.value_isq[s, :] = T.value_isq[o]


@numba.njit(cache=True, error_model="numpy")
def _compact(T, meta, new_root, A, T2):
    """Copy the subtree of ``new_root`` into the empty tree ``T2`` breadth first, with
    ``new_root`` as slot 0 and each node's children packed into fresh blocks (in their order);
    returns the number of slots used."""
    meta2 = np.zeros(2, np.int64)
    _alloc(T2, meta2, 1, -1)
    _copy_node(T, new_root, T2, 0)
    q_old = np.empty(meta[0], np.int64)
    q_new = np.empty(meta[0], np.int64)
    buf = np.empty(meta[0], np.int64)
    q_old[0], q_new[0] = new_root, 0
    head, tail = 0, 1
    while head < tail:
        o, m = q_old[head], q_new[head]
        head += 1
        k = _children(T, o, A, buf)
        if k == 0:
            continue
        # widened: the first block, then whole blocks, contiguous and linked as _new_child does
        size = A if A > 0 else _FIRST + max(0, -(-(k - _FIRST) // _CHUNK)) * _CHUNK
        base = _alloc(T2, meta2, size, m)
        if A == 0 and size > _FIRST:
            T2.next_block[base] = base + _FIRST
            for b in range(base + _FIRST, base + size - _CHUNK, _CHUNK):
                T2.next_block[b] = b + _CHUNK
        for j in range(k):
            o_c = buf[j]
            s = base + (T.primitive[o_c] if A > 0 else j)
            _copy_node(T, o_c, T2, s)
            q_old[tail], q_new[tail] = o_c, s
            tail += 1
        T2.first_child[m], T2.children[m] = base, k
    return meta2[0]


# ----------------------------------------------------------------------------------------------
# Python layer
# ----------------------------------------------------------------------------------------------


def _grid(levels: int, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    axes = [np.linspace(lo, hi, levels) for lo, hi in zip(low, high)]
    return np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)


class MCTS:
    """Monte Carlo tree search: discrete primitives or progressive widening, UCT/PUCT, tree reuse.

    ``MCTS(problem, levels=5)``; the algorithm and its options: the module docstring.

    ``plan(x0, *, warm_start=None, rng=None, deadline=None) -> Plan``; ``plan.iterations`` is the
    number of simulations run, ``plan.info`` holds ``simulations`` (also as ``samples``: each
    simulation evaluates one whole sequence), ``nodes`` (slots used), ``reused``
    (nodes kept from the last plan), ``root_visits``, ``depth`` (levels of the most-visited
    path), ``best_cost`` (the best simulation's discounted return), ``fused`` and ``stop``.
    """

    def __init__(self, problem: Problem, config: MCTSConfig | None = None, *,
                 proposal_policy=None, **options):
        if not isinstance(problem, Problem):
            raise InvalidArgumentError(f"problem must be a recede.Problem, got {type(problem).__name__}")
        config = resolve_config(MCTSConfig, config, options)
        self.problem, self.config = problem, config
        p, c = problem, config
        H, nu = p.horizon, p.nu
        self._low = np.ascontiguousarray(p.action_low)
        self._high = np.ascontiguousarray(p.action_high)
        if c.discrete:
            if c.levels:
                if not (np.all(np.isfinite(self._low)) and np.all(np.isfinite(self._high))):
                    raise InvalidArgumentError(
                        f"levels needs finite action bounds, got action_low={self._low}, "
                        f"action_high={self._high}")
                prims = _grid(c.levels, self._low, self._high)
            else:
                prims = np.array(c.actions, dtype=np.float64)
                if prims.shape[1] != nu:
                    raise InvalidArgumentError(
                        f"actions must hold primitives of {nu} numbers (nu), got shape {prims.shape}")
                outside = np.any((prims < self._low) | (prims > self._high), axis=1)
                if outside.any():
                    raise InvalidArgumentError(
                        f"actions must lie within the action bounds [{self._low}, {self._high}], "
                        f"got {prims[np.argmax(outside)]}")
            prior = np.full(prims.shape[0], 1.0 / prims.shape[0])
            if c.prior is not None:
                if len(c.prior) != prims.shape[0]:
                    raise InvalidArgumentError(
                        f"prior must have one entry per primitive ({prims.shape[0]}), got {len(c.prior)}")
                prior = np.array(c.prior)
        else:
            if not (np.all(np.isfinite(self._low)) and np.all(np.isfinite(self._high))):
                raise InvalidArgumentError(
                    f"continuous MCTS needs finite action bounds, got action_low={self._low}, "
                    f"action_high={self._high}")
            prims, prior = np.zeros((0, nu)), np.zeros(0)
        self.primitives = np.ascontiguousarray(prims)  # (A, nu); (0, nu) for continuous actions
        L = -(-H // c.repeat)
        self._prior = np.ascontiguousarray(np.tile(prior, (L, 1)))  # (L, A): the same at every level
        half = 0.5 * (self._high - self._low)
        self.proposal_policy = check_proposal(proposal_policy, "proposal_policy")
        if proposal_policy is not None:
            puct_prior = c.discrete and c.selection is Selection.PUCT
            if not (puct_prior or c.rollout is RolloutPolicy.WARM_START
                    or (not c.discrete and c.proposal is Proposal.GAUSSIAN)):
                raise InvalidArgumentError(
                    "proposal_policy needs an option that reads it: selection='puct' with discrete "
                    "actions (its prior), proposal='gaussian' (widening around it) or "
                    "rollout='warm_start' (its actions as the default policy); got selection="
                    f"{c.selection.value!r}, proposal={c.proposal.value!r}, rollout={c.rollout.value!r}")
            if puct_prior and not np.all(np.isfinite(half)):
                raise InvalidArgumentError(
                    f"proposal_policy's PUCT prior needs finite action bounds, got "
                    f"action_low={self._low}, action_high={self._high}")
        self._prior_std = c.proposal_std * half  # (nu,): the policy prior's width
        if c.rollout_std > 0 and not np.all(np.isfinite(half)):
            raise InvalidArgumentError(
                f"rollout_std needs finite action bounds, got action_low={self._low}, "
                f"action_high={self._high}")
        half = np.where(np.isfinite(half), half, 0.0)
        # row 0: the widening proposal's std, row 1: the rollouts' noise around the warm start
        self._prop_std = np.stack([c.proposal_std * half, c.rollout_std * half])
        self._ip = np.array([H, c.repeat, int(c.discrete), int(c.selection is Selection.PUCT),
                             int(c.proposal is Proposal.GAUSSIAN),
                             int(c.rollout is RolloutPolicy.WARM_START),
                             int(c.backup is Backup.BEST), int(c.rollout_std > 0)], np.int64)
        self._fp = np.array([c.discount, c.exploration, c.widening_k, c.widening_alpha], np.float64)
        dyn = p.dynamics
        self.fused = bool(c.fused and fused_args(dyn, p.cost) is not None)
        if not self.fused and not hasattr(p.cost, "stage_costs") and c.discount != 1:
            raise InvalidArgumentError(
                f"discount must be 1 for a cost without stage_costs ({type(p.cost).__name__}), "
                f"got {c.discount}")
        self._tree = self._spare = None  # the node pool, and a second one for re-rooting
        self._valid = False  # the pool holds a tree
        self._meta = np.zeros(2, np.int64)
        self._stats = np.empty((-(-H // c.repeat) + 1, 2))  # one row per level, root included
        self._chain = np.zeros(0, np.int64)
        self._pending = None  # steps applied since the last plan (advance)
        self._kept = False  # the tree was re-rooted for the next plan

    # -- tree reuse ---------------------------------------------------------------------------
    def advance(self, n: int) -> None:
        """The controller applied ``n`` actions of the last plan: the next ``plan`` tries to
        re-root at the node they lead to."""
        self._pending = int(n)

    def reroot(self, n: int, x0) -> bool:
        """Re-root now at the node reached by the last plan's first ``n`` steps, if it exists and
        its predicted state matches ``x0`` within ``reuse_tol``; returns whether the subtree was
        kept (otherwise the tree is dropped). The kept nodes' visits and value sums are
        unchanged; the new root's value sum is re-expressed without its old edge."""
        x0 = self.problem.check_x0(x0)
        self._pending = None
        T, c = self._tree, self.config
        self._kept = False
        if (not self._valid or not c.reuse or n <= 0 or n % c.repeat
                or n // c.repeat > self._chain.size):
            self._valid = False
            return False
        node = int(self._chain[n // c.repeat - 1])
        if not (T.state_known[node] and np.max(np.abs(T.state[node] - x0)) <= c.reuse_tol):
            self._valid = False
            return False
        # compact into the spare pool (the slots it uses are initialised as they are taken)
        if self._spare is None or self._spare.parent.shape[0] != T.parent.shape[0]:
            self._spare = _new_tree(T.parent.shape[0], self.problem.nx, self.problem.nu)
        T2 = self._spare
        size = _compact(T, self._meta, node, self.primitives.shape[0], T2)
        vsum, visits, edge, edisc = T2.value_sum, T2.visits, T2.edge_cost, T2.edge_discount
        # the root's returns lose its old edge: Q = edge + edisc G  ->  G
        vsum[0] = (vsum[0] - visits[0] * edge[0]) / edisc[0]
        if c.backup is Backup.BEST:
            T2.value_isq[0, 0] = (T2.value_isq[0, 0] - edge[0]) / edisc[0]
        else:
            T2.value_isq[0, 0] = min(vsum[0] / visits[0], 1e300) if visits[0] else np.inf
        edge[0], edisc[0], T2.primitive[0] = 0.0, 1.0, -1
        T2.action[0] = 0.0
        d = n // c.repeat  # levels shift up by d
        self._stats[: self._stats.shape[0] - d] = self._stats[d:].copy()
        self._stats[self._stats.shape[0] - d:] = (np.inf, -np.inf)
        self._tree, self._spare = T2, T
        self._meta[:] = (size, 0)
        self._chain = np.zeros(0, np.int64)
        self._kept = True
        return True

    def tree(self) -> dict[str, np.ndarray]:
        """A copy of the tree's slots, one array per field (``parent``, ``first_child``,
        ``next_block``, ``children``, ``primitive``, ``visits``, ``virtual_loss``, ``value_sum``,
        ``edge_cost``, ``edge_discount``, ``action``, ``state``, ``state_known``, ``live``) and
        ``root``. Only slots with ``live`` hold nodes."""
        if not self._valid:
            return {}
        n, T = int(self._meta[0]), self._tree
        out = {k: a[:n].copy() for k, a in T._asdict().items() if k != "value_isq"}
        out["root"] = int(self._meta[1])
        return out

    # -- planning -----------------------------------------------------------------------------
    def plan(self, x0, *, warm_start=None, rng=None, deadline: float | None = None) -> Plan:
        if deadline is not None and not (isinstance(deadline, (int, float)) and math.isfinite(deadline)):
            raise InvalidArgumentError(
                f"deadline must be a finite time.perf_counter() instant or None, got {deadline!r}")
        p, c = self.problem, self.config
        x0 = p.check_x0(x0)
        rng = as_generator(rng)
        H, nu, nx = p.horizon, p.nu, p.nx
        warm = np.ascontiguousarray(initial_actions(warm_start, self._low, self._high, H))
        prior = self._prior
        if self.proposal_policy is not None:  # the policy's own trajectory replaces the warm start
            warm = np.ascontiguousarray(policy_rollout(p, self.proposal_policy, x0, 1)[0])
            if c.discrete and c.selection is Selection.PUCT:
                prior = self.policy_prior(warm)
        if self._pending is not None:
            self.reroot(self._pending, x0)
        reused = 0
        if self._kept and np.max(np.abs(self._tree.state[0] - x0)) <= c.reuse_tol:
            reused = int(np.count_nonzero(self._tree.live[: self._meta[0]]))
        self._kept = False
        if not reused:
            if self._tree is None or self._tree.parent.shape[0] != c.max_nodes:
                self._tree = _new_tree(c.max_nodes, nx, nu)
            self._meta[:] = 0
            self._stats[:] = (np.inf, -np.inf)
            _alloc(self._tree, self._meta, 1, -1)
            self._tree.live[0] = True
            self._tree.state[0] = x0
            self._tree.state_known[0] = True
            self._valid = True
        self._pending = None
        T = self._tree
        _seed(int(rng.integers(0, 2**31 - 1)))
        best = warm.copy()
        best_cost = np.array([np.inf])
        args = (T, self._meta, self._stats, self._ip, self._fp, self.primitives, prior,
                self._low, self._high, self._prop_std, warm)
        with kernel_threads(p.dynamics, serial=self.fused):
            done, stop = self._search(args, x0, best, best_cost, deadline)
            actions = best.copy()
            nodes = np.zeros(H, np.int64)
            depth = _principal(T, self._meta, H, c.repeat, self.primitives.shape[0], actions, nodes)
            self._chain = nodes[:depth].copy()
            cost, X = p.evaluate(x0, actions[None], return_states=True)
        status = {"simulations": Status.MAX_ITERATIONS, "nodes": Status.MAX_ITERATIONS,
                  "deadline": Status.DEADLINE}[stop]
        if not math.isfinite(cost[0]):
            status = Status.DIVERGED
        return Plan(actions=actions, states=X[0], cost=float(cost[0]), iterations=done,
                    status=status,
                    info={"simulations": done, "samples": done, "nodes": int(self._meta[0]), "reused": reused,
                          "root_visits": int(T.visits[self._meta[1]]), "depth": depth,
                          "best_cost": float(best_cost[0]), "fused": self.fused, "stop": stop})

    def policy_prior(self, actions: np.ndarray) -> np.ndarray:
        """PUCT's prior ``(L, A)`` from a policy's actions ``(H, nu)``: at level ``l``,
        ``P[l, a] ∝ exp(-sum_i (prim_ai - u_ti)^2 / (2 sigma_i^2))`` with ``u_t`` the action at
        the level's first step ``t = l * repeat`` and ``sigma = proposal_std * half-range``."""
        u = actions[:: self.config.repeat]  # (L, nu)
        std = np.where(self._prior_std > 0, self._prior_std, np.inf)  # a zero-width bound: no say
        d = (self.primitives[None, :, :] - u[:, None, :]) / std
        logits = -0.5 * np.sum(d * d, axis=2)
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.ascontiguousarray(w / w.sum(axis=1, keepdims=True))

    def _search(self, args, x0, best, best_cost, deadline):
        c = self.config
        total = c.simulations
        done = 0
        if self.fused:
            m, q = self.problem.dynamics, self.problem.cost
            extra = (*m.kernel_args, *q.kernel_args, best, best_cost)
            scratch = _scratch(self.problem.horizon, self.problem.nx, self.problem.nu)
            chunk = total if deadline is None else min(total, 32)
            while done < total:
                if deadline is not None and done and time.perf_counter() >= deadline:
                    return done, "deadline"
                t = time.perf_counter()
                ran = _search_fused(*args, scratch, min(chunk, total - done), *extra)
                done += ran
                if ran < chunk and done < total:
                    return done, "nodes"
                if deadline is not None:  # aim each chunk at about a millisecond
                    per = max((time.perf_counter() - t) / max(ran, 1), 1e-8)
                    chunk = max(1, min(int(1e-3 / per), int((deadline - time.perf_counter()) / per) + 1))
            return done, "simulations"
        p = self.problem
        H, nu = p.horizon, p.nu
        W = min(c.batch, total)
        U = np.empty((W, H, nu))
        leaves, levels = np.empty(W, np.int64), np.empty(W, np.int64)
        news = np.empty(W, np.bool_)
        while done < total:
            if deadline is not None and done and time.perf_counter() >= deadline:
                return done, "deadline"
            want = min(W, total - done)
            n = _select_batch(*args, U[:want], leaves, levels, news)
            if n:
                Ub = U[:n]
                if needs_sensors(p.cost):
                    X, S = p.dynamics.rollout(x0, Ub, sensors=True)
                else:
                    X, S = p.dynamics.rollout(x0, Ub), None
                C = stage_costs(p.cost, X, Ub, S)
                if C is None:  # only totals: the whole cost in the last step
                    C = np.zeros((n, H + 1))
                    C[:, H] = p.cost(X, Ub) if S is None else p.cost(X, Ub, S)
                C = np.ascontiguousarray(C, dtype=np.float64)
                _backup_batch(args[0], args[1], args[2], args[3], args[4], leaves, levels, news,
                              n, C, np.ascontiguousarray(X), Ub, best, best_cost)
            done += n
            if n < want:
                return done, "nodes"
        return done, "simulations"


@numba.njit(cache=True, error_model="numpy")
def _seed(seed):
    np.random.seed(seed)

