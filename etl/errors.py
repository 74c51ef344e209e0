"""The narrow error hierarchy of opencem: every failure a user can cause names what to fix."""

from __future__ import annotations


class OpencemError(Exception):
    """Base of every error opencem raises on purpose."""


class UsageError(OpencemError):
    """A command was called wrongly, or an input could not be read at all (exit code 2)."""


class ContractError(OpencemError):
    """An extract breaks its contract as a whole (a required column is missing, the file is unreadable)."""

    def __init__(self, message: str, *, file: str | None = None, column: str | None = None,
                 row: int | None = None, expected: str | None = None) -> None:
        self.file, self.column, self.row, self.expected = file, column, row, expected
        parts = [message]
        where = ", ".join(
            f"{k} {v}" for k, v in (("file", file), ("column", column), ("row", row)) if v is not None
        )
        if where:
            parts.append(f"({where})")
        if expected:
            parts.append(f"expected {expected}")
        super().__init__(" ".join(parts))


class MappingError(OpencemError):
    """A mapping file for an operator's own exports is invalid."""


class CheckFailed(OpencemError):
    """A warehouse check failed: nothing is published (exit code 1)."""


class LockHeld(OpencemError):
    """Another refresh holds the warehouse lock (exit code 3)."""
