"""Option enums shared by planners and models (a model never imports a planner)."""

from __future__ import annotations

import enum

from recede.errors import InvalidArgumentError


class OptionEnum(enum.Enum):
    """A config option with named string values; ``str()`` gives the value (CLI, JSON)."""

    def __str__(self) -> str:
        return self.value


def as_enum(cls: type[enum.Enum], name: str, value) -> enum.Enum:
    """``cls(value)`` (a member or its value), or an error naming the option and the choices."""
    try:
        return cls(value)
    except ValueError:
        raise InvalidArgumentError(
            f"{name} must be one of {[m.value for m in cls]}, got {value!r}") from None
