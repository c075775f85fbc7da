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
