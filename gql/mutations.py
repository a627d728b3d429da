"""Mutation root: each returns the job as stored after the change."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from domain.validation import DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY, JobSubmission
from gql.context import require_actor
from gql.selections import asks_for
from gql.types import CreatedUser, Job, JobStage, Role, User
from service import jobs, users


@strawberry.input(description="A new render job.")
class SubmitJobInput:
    project_name: str
    output_name: str
    template_path: str
    data_path: str = strawberry.field(
        description="A data file, or 'inline' when nexrenderConfig carries the data (its data "
        "assets, or none)."
    )
    output_path: str = strawberry.field(
        description="Where the result goes, or 'worker' to leave it where the worker puts it."
    )
    priority: int = strawberry.field(default=DEFAULT_PRIORITY, description="1..10.")
    nexrender_config: JSON | None = strawberry.field(
        default=None, description="A Nexrender job (template, assets, actions)."
    )
    auto_cancel_at: datetime | None = strawberry.field(
        default=None, description="Cancel the job if it has not finished by then."
    )
    max_attempts: int = strawberry.field(
        default=DEFAULT_MAX_ATTEMPTS,
        description="1..10: claims allowed before a job whose worker stalls or fails is FAILED.",
    )

    def to_submission(self) -> JobSubmission:
        return JobSubmission(
            project_name=self.project_name,
            output_name=self.output_name,
            template_path=self.template_path,
            data_path=self.data_path,
            output_path=self.output_path,
            priority=self.priority,
            nexrender_config=self.nexrender_config,
            auto_cancel_at=self.auto_cancel_at,
            max_attempts=self.max_attempts,
        )


# The fencing token on every worker report: the `lease` number the claim answered.
Lease = Annotated[
    int | None,
    strawberry.argument(
        description="The lease number your claim answered (Job.lease): a report under an "
        "older lease (the job was claimed again since) is refused with CONFLICT."
    ),
]


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Submit a job: it is validated and queued, or FAILED.")
    async def submit_job(self, info: Info, input: SubmitJobInput) -> Job:
        return Job.of(await jobs.submit_job(require_actor(info), input.to_submission()))

    @strawberry.mutation
    async def cancel_job(self, info: Info, id: strawberry.ID, reason: str) -> Job:
        return Job.of(await jobs.cancel(str(id), reason, actor=require_actor(info)))

    @strawberry.mutation(description="Start a FAILED or CANCELLED job again.")
    async def retry_job(self, info: Info, id: strawberry.ID) -> Job:
        return Job.of(await jobs.retry(str(id), actor=require_actor(info)))

    @strawberry.mutation
    async def set_job_priority(
        self,
        info: Info,
        id: strawberry.ID,
        priority: int,
    ) -> Job:
        return Job.of(await jobs.set_priority(str(id), priority, actor=require_actor(info)))

    @strawberry.mutation(description="Workers: take the next queued job (null when none).")
    async def claim_job(self, info: Info) -> Job | None:
        # A worker asking for the render spec gets it read with the claimed row.
        job = await jobs.claim_next(
            require_actor(info), read_render_spec=asks_for(info, "nexrenderConfig")
        )
        return None if job is None else Job.of(job)

    @strawberry.mutation(
        description="Workers: report progress (0..100), an optional log line, and optionally "
        "what the job is doing now (stage)."
    )
    async def report_progress(
        self,
        info: Info,
        id: strawberry.ID,
        progress: int,
        log: str | None = None,
        lease: Lease = None,
        stage: JobStage | None = None,
    ) -> Job:
        actor = require_actor(info)
        job = await jobs.report_progress(
            str(id), progress, log, actor=actor, lease=lease, stage=stage
        )
        return Job.of(job)

    @strawberry.mutation(
        description="Workers: still alive on this job (a long frame with no new percentage)."
    )
    async def heartbeat(self, info: Info, id: strawberry.ID, lease: Lease = None) -> Job:
        return Job.of(await jobs.heartbeat(str(id), actor=require_actor(info), lease=lease))

    @strawberry.mutation(description="Workers: add lines to the job's log, stamped with UTC time.")
    async def append_job_log(
        self, info: Info, id: strawberry.ID, lines: list[str], lease: Lease = None
    ) -> Job:
        actor = require_actor(info)
        return Job.of(await jobs.append_log(str(id), lines, actor=actor, lease=lease))

    @strawberry.mutation
    async def complete_job(self, info: Info, id: strawberry.ID, lease: Lease = None) -> Job:
        return Job.of(await jobs.complete(str(id), actor=require_actor(info), lease=lease))

    @strawberry.mutation(
        description="Workers: the attempt failed. retryable: back to the queue after a backoff "
        "while attempts are left; otherwise FAILED."
    )
    async def fail_job(
        self,
        info: Info,
        id: strawberry.ID,
        error: str,
        retryable: bool = False,
        lease: Lease = None,
    ) -> Job:
        actor = require_actor(info)
        job = await jobs.fail(str(id), error, actor=actor, retryable=retryable, lease=lease)
        return Job.of(job)

    @strawberry.mutation(
        description="The holding worker (shutting down) or an admin: back to the queue, keeping "
        "its place; the attempt does not count."
    )
    async def requeue_job(self, info: Info, id: strawberry.ID, lease: Lease = None) -> Job:
        return Job.of(await jobs.requeue(str(id), actor=require_actor(info), lease=lease))

    @strawberry.mutation(description="Admins: create a user; its token is shown this once.")
    async def create_user(
        self, info: Info, email: str, role: Role, name: str | None = None
    ) -> CreatedUser:
        issued = await users.create_user(email, name, role, actor=require_actor(info))
        return CreatedUser(user=User.of(issued.user), token=issued.token)

    @strawberry.mutation(description="Admins: replace a user's token; the old one stops working.")
    async def rotate_token(self, info: Info, user_id: strawberry.ID) -> CreatedUser:
        issued = await users.rotate_token(str(user_id), actor=require_actor(info))
        return CreatedUser(user=User.of(issued.user), token=issued.token)

    @strawberry.mutation(description="Admins: the user's token stops working at once.")
    async def deactivate_user(self, info: Info, user_id: strawberry.ID) -> User:
        return User.of(await users.deactivate_user(str(user_id), actor=require_actor(info)))
