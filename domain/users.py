"""Rules for users: e-mail addresses and API tokens."""

from __future__ import annotations

import hashlib
import hmac
import secrets

import email_validator
from email_validator import EmailNotValidError, validate_email

from domain.errors import BadUserInput
from domain.paths import has_control_characters
from domain.status import Role
from domain.validation import storage_problem

TOKEN_PREFIX = "rt_"
# An address names an account and is never mailed: render workers live on internal names
# (render01@farm.local, ops@studio.internal, builder@localhost, a bare host name). Only the form
# is checked: no DNS, no "globally deliverable" rule (a dot, a known kind of top-level domain).
# email-validator refuses special-use names even so; these three name a private network or a
# host, so they leave its list (a documented, process-wide setting of the library). invalid,
# onion and arpa stay refused.
INTERNAL_DOMAIN_NAMES = ("local", "localhost", "test")
for _name in INTERNAL_DOMAIN_NAMES:
    if _name in email_validator.SPECIAL_USE_DOMAIN_NAMES:
        email_validator.SPECIAL_USE_DOMAIN_NAMES.remove(_name)
SHOWN_EMAIL_LENGTH = 80


def normalize_email(raw: object) -> str:
    """A well-formed address, lower-cased as a whole so that lookups are case-insensitive. A
    refusal names the address it refused."""
    if not isinstance(raw, str) or not raw.strip():
        raise BadUserInput.single("email", "is required")
    text = raw.strip()
    try:
        checked = validate_email(text, check_deliverability=False, globally_deliverable=False)
    except EmailNotValidError as error:
        raise BadUserInput.single(
            "email", f"{_shown(text)} is not a valid address: {str(error).rstrip('.')}"
        ) from None
    if checked.ascii_domain.rsplit(".", 1)[-1].isdigit():  # 10.0.0.5: an address, not a name
        raise BadUserInput.single(
            "email",
            f"{_shown(text)} is not a valid address: the part after the @-sign must be a "
            "host or domain name, not a number",
        )
    return checked.normalized.lower()


def _shown(text: str) -> str:
    """The address quoted for a message: control characters escaped, a long one cut."""
    if len(text) > SHOWN_EMAIL_LENGTH:
        return repr(text[:SHOWN_EMAIL_LENGTH] + "...")
    return repr(text)


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
    if has_control_characters(trimmed):
        raise BadUserInput.single("name", "must not contain control characters")
    if (problem := storage_problem(trimmed)) is not None:
        raise BadUserInput.single("name", problem)
    return trimmed or None
