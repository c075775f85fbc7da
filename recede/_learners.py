"""The policy learners by name: ``LEARNERS[algo] = (module, train function, config class)``,
read by ``recede train-policy`` and by sweeps' ``train-policy`` trials. It lives outside
``recede.policy_learning``, whose package imports torch: importing this imports no learner."""

from __future__ import annotations

LEARNERS = {
    "sac": ("recede.policy_learning.sac", "sac", "SACConfig"),
    "ppo": ("recede.policy_learning.ppo", "ppo", "PPOConfig"),
}


def learner(algo: str):
    """``(train function, config class)`` of ``algo`` (a key of :data:`LEARNERS`)."""
    import importlib

    from recede.errors import InvalidArgumentError

    if algo not in LEARNERS:
        raise InvalidArgumentError(f"algo must be one of {sorted(LEARNERS)}, got {algo!r}")
    module, train, config = LEARNERS[algo]
    mod = importlib.import_module(module)
    return getattr(mod, train), getattr(mod, config)
