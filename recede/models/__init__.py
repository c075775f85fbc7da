"""Dynamics models: the protocols planners talk to and the systems that implement them.

- :mod:`recede.models.base` the ``Dynamics`` / ``Differentiable`` protocols and shared checks
- :mod:`recede.models.analytic` analytic systems with fused Numba kernels
- :mod:`recede.models.linear` linear(ised) models
- :mod:`recede.models.mujoco` MuJoCo models rolled out with ``mujoco.rollout``
- :mod:`recede.models.ensemble` learned probabilistic ensembles (torch)

Nothing is imported here: torch and MuJoCo start thread pools on import, so each submodule is
imported only by the code that uses it.
"""
