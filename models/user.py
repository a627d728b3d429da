"""A person or a render worker that talks to rendertrack, identified by an API token."""

from __future__ import annotations

from typing import Any

from tortoise import fields
from tortoise.exceptions import IntegrityError
from tortoise.models import Model

from domain.errors import Conflict
from domain.status import Role
from domain.users import normalize_email
from models.base import CUID_LENGTH, TouchingManager, new_id


class User(Model):
    id = fields.CharField(primary_key=True, max_length=CUID_LENGTH, default=new_id)
    email = fields.CharField(max_length=320, unique=True)
    name = fields.CharField(max_length=255, null=True)
    role = fields.CharEnumField(Role, max_length=16, default=Role.USER)
    # sha256 of the token; the token itself is shown once and never stored.
    token_hash = fields.CharField(max_length=64, unique=True)
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    jobs: fields.ReverseRelation[Any]
    claimed_jobs: fields.ReverseRelation[Any]

    class Meta:
        table = "users"
        manager = TouchingManager()

    async def save(self, *args: Any, **kwargs: Any) -> None:
        self.email = normalize_email(self.email)
        await super().save(*args, **kwargs)

    async def delete(self, *args: Any, **kwargs: Any) -> None:
        """Refuse to delete a user who has jobs: job history is never lost by a cascade."""
        from models.job import Job

        if await Job.filter(user_id=self.id).exists():
            raise Conflict(f"User {self.email} has jobs and cannot be deleted; deactivate it.")
        try:
            await super().delete(*args, **kwargs)
        except IntegrityError as error:  # a job arrived between the check and the delete
            raise Conflict(
                f"User {self.email} has jobs and cannot be deleted; deactivate it."
            ) from error

    def __str__(self) -> str:
        return self.email
