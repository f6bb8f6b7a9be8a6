"""User-facing errors: one clear line, exit code 2.

Anything the user can fix (a malformed spec, a missing dataset, an unknown run id) raises
a subclass of `UserError`; command-line entry points print `error: <message>` and exit 2.
Bugs stay ordinary exceptions with tracebacks.
"""

from __future__ import annotations

from engine.contract.text import printable

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's input, reported as one line."""

    def __str__(self) -> str:
        """One line, whatever the message quotes: whitespace runs collapsed, control characters escaped."""
        return printable(" ".join(str(self.args[0]).split())) if self.args else self.__class__.__name__


class SpecError(UserError):
    """One or more invalid fields of an experiment spec, each with its JSON path."""

    def __init__(self, problems: list[tuple[str, str]], source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        first_path, first_reason = problems[0]
        where = f"{source}: " if source else ""
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{where}{first_path}: {first_reason}{more}")

    def lines(self) -> list[str]:
        return [printable(f"{path}: {reason}") for path, reason in self.problems]


class DataError(UserError):
    """A dataset that is missing or does not parse."""


class ModelError(UserError):
    """An encoder that cannot be found or loaded."""


class RunError(UserError):
    """A run or runs directory that cannot be used."""
