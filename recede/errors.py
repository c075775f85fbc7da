"""Error hierarchy. Every error subclasses a built-in so callers may catch ValueError/RuntimeError."""


class RecedeError(Exception):
    """Base class of every error raised on purpose by recede."""


class InvalidArgumentError(RecedeError, ValueError):
    """An argument has the wrong shape, type or value; the message names it and the value."""


class UnknownNameError(InvalidArgumentError, KeyError):
    """A task, planner or other registered name does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PlanningError(RecedeError, RuntimeError):
    """A planner could not produce a plan (e.g. every candidate diverged)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped a long loop; ``partial`` holds what the loop had finished.

    A :class:`KeyboardInterrupt`, so it propagates like any Ctrl-C (``except Exception`` does not
    swallow it). ``partial`` is what the interrupted function would have returned, covering the
    work completed before the interrupt and marked ``interrupted=True`` where the type has the
    field: a :class:`~recede.controllers.RunLog` from ``run_closed_loop``, an ``Episode`` from
    ``run_episode``, a ``FitResult`` from ``Ensemble.fit`` (the model keeps its best held-out
    weights so far), a ``PETSResult`` from ``pets``.
    """

    def __init__(self, partial=None):
        super().__init__()
        self.partial = partial
