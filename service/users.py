"""Creating users, issuing and checking their API tokens."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from domain import policy
from domain.errors import BadUserInput, Forbidden, NotFound
from domain.lookups import is_well_formed_id
from domain.policy import Actor
from domain.status import Role
from domain.users import clean_user_name, hash_token, new_token, normalize_email, parse_role
from models import User
from service import metrics
from service.events import publisher


@dataclass(frozen=True)
class IssuedToken:
    """A user and its token: the only moment the token exists outside the client."""

    user: User
    token: str


async def create_user(
    email: object, name: str | None = None, role: object = Role.USER, *, actor: Actor | None = None
) -> IssuedToken:
    """`actor` None: the system (the CLI, the first start); else it must be an admin."""
    _require_admin(actor)
    address = normalize_email(email)
    checked_role = parse_role(role)
    clean_name = clean_user_name(name)
    if await User.filter(email=address).exists():
        raise BadUserInput.single("email", f"{address} is already in use")
    token = new_token()
    try:
        async with in_transaction():
            user = await User.create(
                email=address, name=clean_name, role=checked_role, token_hash=hash_token(token)
            )
    except IntegrityError:  # a concurrent create took the address between check and insert
        raise BadUserInput.single("email", f"{address} is already in use") from None
    return IssuedToken(user=user, token=token)


def actor_of(user: User) -> Actor:
    return Actor(id=user.id, role=user.role)


async def list_users() -> list[User]:
    return await User.all().order_by("created_at", "id")


async def get_user_by_email(email: object) -> User:
    """The user with this address (any case), or NotFound naming it; a malformed address is
    BadUserInput."""
    address = normalize_email(email)
    user = await User.get_or_none(email=address)
    if user is None:
        raise NotFound("User", address)
    return user


async def count_users() -> int:
    return await User.all().count()


async def authenticate(token: str | None) -> User | None:
    """The active user holding this token, or None. The lookup is by an index on the hash;
    equality of fixed-length digests of a random token leaks nothing useful by timing. While
    `tokens` is on (a PostgreSQL server whose bus LISTENs), a token found is remembered."""
    if not token:
        return None
    digest = hash_token(token)
    user = tokens.get(digest)
    if user is None:
        generation = tokens.generation
        user = await User.get_or_none(token_hash=digest)
        if user is None or not user.is_active:
            return None
        tokens.put(digest, user, generation)
    metrics.note_user(user.id)  # the request's log line names whom the token stands for
    return user


class TokenCache:
    """Active users by token hash, so that a request's token costs no statement.

    Only on while the process is told of every revocation at once: a PostgreSQL server whose
    event bus LISTENs (rotate_token and deactivate_user NOTIFY at commit, from any process, the
    command line included; app/factory.py wires `revoke` to the bus). SQLite has no such notice
    (the command line revokes from another process), so there every request reads its token.
    A revocation drops the user's entries; a notice that may have been lost (the bus
    reconnected: `revoke(None)`) drops them all, and while `listening()` says the bus is down
    nothing is remembered or answered. A lookup that started before a revocation does not
    store what it read (`generation`). Entries also expire after `ttl` seconds.
    """

    def __init__(self, size: int = 4096, ttl: float = 30.0) -> None:
        self.size = size
        self.ttl = ttl
        self.generation = 0
        self._listening: Callable[[], bool] | None = None
        self._entries: OrderedDict[str, tuple[User, float]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self._listening is not None and self._listening()

    def enable(self, listening: Callable[[], bool]) -> None:
        """Remember tokens while `listening()` (the bus receives every revocation)."""
        self._listening = listening
        self.revoke(None)

    def disable(self) -> None:
        self._listening = None
        self.revoke(None)

    def get(self, digest: str) -> User | None:
        if not self._entries or not self.enabled:
            return None
        found = self._entries.get(digest)
        if found is None:
            return None
        user, expires = found
        if time.monotonic() >= expires:
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return user

    def put(self, digest: str, user: User, generation: int) -> None:
        if generation != self.generation or not self.enabled:
            return
        self._entries[digest] = (user, time.monotonic() + self.ttl)
        self._entries.move_to_end(digest)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def revoke(self, user_id: str | None) -> None:
        """The user's token changed or they were deactivated (None: anyone's may have)."""
        self.generation += 1
        if user_id is None:
            self._entries.clear()
            return
        for digest in [d for d, (user, _) in self._entries.items() if user.id == user_id]:
            del self._entries[digest]


tokens = TokenCache()


async def rotate_token(user_id: str, *, actor: Actor | None = None) -> IssuedToken:
    """A new token; the old one stops working, and the user's open connections are closed on
    every server process."""
    _require_admin(actor)
    user = await _get(user_id)
    token = new_token()
    await _revoking(user, token_hash=hash_token(token))
    return IssuedToken(user=user, token=token)


async def deactivate_user(user_id: str, *, actor: Actor | None = None) -> User:
    """The user's token stops working, and their open connections are closed on every server
    process."""
    _require_admin(actor)
    user = await _get(user_id)
    await _revoking(user, is_active=False)
    return user


async def _revoking(user: User, **changes: object) -> None:
    async with in_transaction() as connection:
        await User.filter(id=user.id).using_db(connection).update(**changes)
        await publisher().stage_revocation(connection, user.id)
    # This process forgets the token before anything else runs; the others at the notice.
    tokens.revoke(user.id)
    await publisher().revocation_committed(user.id)
    await user.refresh_from_db()


async def _get(user_id: str) -> User:
    if not is_well_formed_id(user_id):
        raise NotFound("User", repr(user_id))
    user = await User.get_or_none(id=user_id)
    if user is None:
        raise NotFound("User", user_id)
    return user


def _require_admin(actor: Actor | None) -> None:
    if actor is not None and not policy.can_manage_users(actor):
        raise Forbidden("Only admins manage users.")
