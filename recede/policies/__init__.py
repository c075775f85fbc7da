"""Policies and value functions (torch): networks batched over members, and checkpoints.

- :mod:`recede.policies.networks` :class:`GaussianPolicyNet` (tanh-squashed, SAC),
  :class:`ClippedGaussianPolicyNet` (state-independent std, clipped samples, PPO),
  :class:`DeterministicPolicyNet`, :class:`QNet` (twin or ensemble critics as one module),
  :class:`VNet`, :class:`ObsNormalizer`; all built on :class:`recede.models.layers.BatchedMLP`,
  the dynamics ensemble's batched layers.
- :mod:`recede.policies.policy` :class:`NetworkPolicy` (a network acting on model states through
  ``task.observation``: a recede ``Policy``), :func:`save_policy`, :func:`load_policy`.
- :mod:`recede.policies.value` :class:`ValueFunction` (a value ensemble as a numpy cost-to-go, the
  terminal cost of :class:`recede.costs.ValueTerminalCost`), :func:`save_value`, :func:`load_value`.

Shapes: ``K`` members (seeds trained as one batch), ``N`` rows; ``obs: (K, N, nobs)``,
``act: (K, N, nu)``.
"""

from recede.policies.networks import (
    ClippedGaussianPolicyNet, DeterministicPolicyNet, GaussianPolicyNet, LinearPolicyNet, ObsNormalizer, QNet, VNet,
    orthogonal_init,
)
from recede.policies.policy import NetworkPolicy, load_policy, policy_info, save_policy, task_sizes
from recede.policies.value import ValueFunction, load_value, save_value, value_info

__all__ = ["ClippedGaussianPolicyNet", "DeterministicPolicyNet", "GaussianPolicyNet", "LinearPolicyNet",
           "NetworkPolicy", "ObsNormalizer", "QNet", "VNet", "ValueFunction", "load_policy", "load_value",
           "orthogonal_init", "policy_info", "save_policy", "save_value", "task_sizes", "value_info"]
