"""Rules for users: e-mail addresses and API tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from email_validator import EmailNotValidError, validate_email

from domain.errors import BadUserInput
from domain.status import Role

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
