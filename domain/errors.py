"""The errors a use case can refuse with, each with a code the wire formats pass on."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class FieldError:
    """One failing rule: `field` is the snake_case input name, dotted for nested values
    (``nexrender_config.assets[0].src``); `message` says what the rule wants."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class DomainError(Exception):
    code: ClassVar[str] = "DOMAIN_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadUserInput(DomainError):
    """Input of the wrong type or shape; lists every failing field, not only the first."""

    code = "BAD_USER_INPUT"

    def __init__(self, errors: Iterable[FieldError], message: str | None = None) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        if not self.errors:
            raise ValueError("BadUserInput needs at least one FieldError")
        super().__init__(message or describe_field_errors(self.errors))

    @classmethod
    def single(cls, field: str, message: str) -> BadUserInput:
        return cls([FieldError(field, message)])


class InvalidTransition(DomainError):
    code = "INVALID_TRANSITION"

    def __init__(
        self,
        job_id: str,
        found: str,
        wanted: str,
        allowed: Sequence[str],
        message: str | None = None,
    ) -> None:
        self.job_id = job_id
        self.found = str(found)
        self.wanted = str(wanted)
        choices = ", ".join(allowed) if allowed else "none: it is final"
        super().__init__(
            message
            or f"Job {job_id} is {self.found} and cannot move to {self.wanted} "
            f"(from {self.found} it may move to: {choices})."
        )


class NotFound(DomainError):
    code = "NOT_FOUND"

    def __init__(self, kind: str, identifier: str) -> None:
        self.kind = kind
        self.identifier = identifier
        super().__init__(f"{kind} {identifier} was not found.")


class Forbidden(DomainError):
    code = "FORBIDDEN"


class Conflict(DomainError):
    """The request is valid but the stored data forbids it (a user who still has jobs)."""

    code = "CONFLICT"


def describe_field_errors(errors: Iterable[FieldError]) -> str:
    return "Invalid input: " + "; ".join(str(error) for error in errors) + "."
