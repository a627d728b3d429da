"""Rules for users: e-mail addresses and API tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from email_validator import EmailNotValidError, validate_email

from domain.errors import BadUserInput
from domain.status import Role
from domain.validation import storage_problem

TOKEN_PREFIX = "rt_"


def normalize_email(raw: object) -> str:
    """A valid address, lower-cased as a whole so that lookups are case-insensitive."""
    if not isinstance(raw, str) or not raw.strip():
        raise BadUserInput.single("email", "is required")
    try:
        checked = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as error:
        raise BadUserInput.single(
            "email", f"is not a valid address: {str(error).rstrip('.')}"
        ) from None
    return checked.normalized.lower()


def parse_role(raw: object) -> Role:
    names = ", ".join(role.value.lower() for role in Role)
    if isinstance(raw, Role):
        return raw
    if isinstance(raw, str) and raw.strip().upper() in Role.__members__:
        return Role(raw.strip().upper())
    raise BadUserInput.single("role", f"must be one of {names}")


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens carry 256 random bits, so a plain SHA-256 is a safe, indexable digest."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), stored_hash)


MAX_USER_NAME_LENGTH = 255


def clean_user_name(name: object) -> str | None:
    """A display name: optional, trimmed, at most 255 characters, storable, no control
    characters. Blank means none."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise BadUserInput.single("name", "must be a string")
    trimmed = name.strip()
    if len(trimmed) > MAX_USER_NAME_LENGTH:
        raise BadUserInput.single("name", f"must be at most {MAX_USER_NAME_LENGTH} characters")
    if any(ord(character) < 32 or ord(character) == 127 for character in trimmed):
        raise BadUserInput.single("name", "must not contain control characters")
    if (problem := storage_problem(trimmed)) is not None:
        raise BadUserInput.single("name", problem)
    return trimmed or None
