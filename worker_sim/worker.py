"""The simulated worker: `concurrency` slots, each claiming a job, rendering it on the clock and
reporting as a real worker does, until `--jobs` are done or a signal arrives.

- An empty queue is polled every `--poll` seconds (said once per idle spell, not per poll).
- A network error, a timeout or a 5xx backs off, doubling from 0.5 s to at most 15 s: never a
  hot loop, and never a crash. During a render a failed progress report or heartbeat is one log
  line and the render goes on (a stock Nexrender worker does the same); the final report is
  tried a few times, then left to the server's stall timeout.
- A refusal about the job (cancelled, handed to another worker, an older lease) drops it: one
  line, then the next job.
- A refused token stops the worker (exit 1): no claim can ever succeed.
- SIGINT or SIGTERM: every job in hand is handed back (`requeueJob` / PUT `queued`), then exit 0.
  A second signal exits at once (130).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

from worker_sim.options import Options
from worker_sim.protocols import Claim, JobLost, Protocol, Refused, Unreachable, protocol_for
from worker_sim.render import plan_render

T = TypeVar("T")

BACKOFF_START = 0.5
BACKOFF_CAP = 15.0
FINAL_REPORT_TRIES = 5  # completeJob / failJob: then the stall timeout takes over
HAND_BACK_TRIES = 2
EXIT_REFUSED = 1
EXIT_FORCED = 130


def run(options: Options) -> int:
    return asyncio.run(SimulatedWorker(options).run())


def backoff(failures: int) -> float:
    """Seconds to wait after `failures` failures in a row: 0.5, 1, 2, ... at most 15."""
    return min(BACKOFF_CAP, BACKOFF_START * 2 ** max(0, failures - 1))


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


class SimulatedWorker:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.protocol: Protocol | None = None
        self.tickets = options.jobs  # jobs still to take; None: no limit
        self.outcomes: Counter[str] = Counter()
        self.refusal: str | None = None
        self.stopping = asyncio.Event()
        self.forced = False

    async def run(self) -> int:
        options = self.options
        main = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, self._on_signal, number, main)
        timeout = httpx.Timeout(10.0, connect=5.0)
        try:
            async with httpx.AsyncClient(base_url=options.url, timeout=timeout) as http:
                self.protocol = protocol_for(options.protocol, http, options.token, options.name)
                limit = f"{options.jobs} job(s)" if options.jobs else "until interrupted"
                say(
                    f"{options.name}: {self.protocol.name} worker on {options.url}, "
                    f"{options.concurrency} at a time, renders of ~{options.duration:g}s, "
                    f"fail rate {options.fail_rate:g}, {limit}"
                )
                slots = [self._slot(index) for index in range(options.concurrency)]
                await asyncio.gather(*slots)
        except asyncio.CancelledError:
            if not self.forced:
                raise
            say(f"{options.name}: stopped at once; jobs in hand stay RENDERING until they stall")
            return EXIT_FORCED
        finally:
            for number in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(number)
        summary = ", ".join(f"{count} {what}" for what, count in sorted(self.outcomes.items()))
        say(f"{options.name}: stopped ({summary or 'no jobs'})")
        if self.refusal is not None:
            say(f"{options.name}: error: {self.refusal}")
            return EXIT_REFUSED
        return 0

    def _on_signal(self, number: int, main: asyncio.Task | None) -> None:
        name = signal.Signals(number).name
        if not self.stopping.is_set():
            say(f"{self.options.name}: {name}: handing back the jobs in hand, then stopping")
            self.stopping.set()
        elif main is not None and not self.forced:
            say(f"{self.options.name}: {name} again: stopping now")
            self.forced = True
            main.cancel()

    # -- one slot: claim, render, repeat ----------------------------------------------------

    async def _slot(self, index: int) -> None:
        label = self.options.name
        if self.options.concurrency > 1:
            label = f"{label}#{index + 1}"
        rendered = 0
        try:
            while not self.stopping.is_set():
                if self.tickets is not None:
                    if self.tickets <= 0:
                        return
                    self.tickets -= 1  # taken before the claim: N jobs, whatever the slots
                claim = await self._next_claim(label)
                if claim is None:
                    if self.tickets is not None:
                        self.tickets += 1
                    return
                rendered += 1
                try:
                    outcome = await self._render(label, claim, self._random(index, rendered))
                except Refused:
                    raise
                except Exception as error:  # a worker that stays up: one line, next job
                    say(f"{label} job {claim.id} dropped: {type(error).__name__}: {error}")
                    outcome = "dropped"
                self.outcomes[outcome] += 1
        except Refused as refusal:
            if self.refusal is None:
                self.refusal = str(refusal)
                say(f"{label}: {refusal}: stopping")
            self.stopping.set()

    def _random(self, slot: int, ordinal: int) -> random.Random:
        if self.options.seed is None:
            return random.Random()
        return random.Random(f"{self.options.seed}:{slot}:{ordinal}")

    async def _next_claim(self, label: str) -> Claim | None:
        assert self.protocol is not None
        failures = 0
        idle = False
        while not self.stopping.is_set():
            try:
                claim = await self.protocol.claim()
            except Unreachable as error:
                failures += 1
                delay = backoff(failures)
                say(f"{label} cannot claim: {error}; trying again in {delay:g}s")
                await self._pause(delay)
                continue
            if failures:
                say(f"{label} the server answers again")
                failures = 0
            if claim is not None:
                return claim
            if not idle:
                say(f"{label} queue empty: polling every {self.options.poll:g}s")
                idle = True
            await self._pause(self.options.poll)
        return None

    async def _pause(self, seconds: float) -> bool:
        """Waits `seconds`, or less when a stop is asked for; True when stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)
        return self.stopping.is_set()

    # -- one render ------------------------------------------------------------------------

    async def _render(self, label: str, claim: Claim, rng: random.Random) -> str:
        """Renders `claim` to its end; the outcome, for the summary."""
        assert self.protocol is not None
        protocol = self.protocol
        plan = plan_render(rng, self.options.duration, self.options.fail_rate, claim.composition)
        tag = f"{label} job {claim.id}"
        say(f"{tag} claimed ({claim.describe()}): {plan.frames} frames, ~{plan.seconds:.1f}s")
        started = time.monotonic()
        percent = 0
        try:
            await self._soft(
                tag, "start", lambda: protocol.start(claim, plan.preamble(claim.output))
            )
            for step in plan.steps:
                if await self._work(tag, claim, step.seconds, percent):
                    return await self._hand_back(tag, claim)
                report = functools.partial(protocol.progress, claim, step.progress, step.line)
                await self._soft(tag, "progress", report)
                percent = step.progress
                say(f"{tag} {percent}% (frame {step.frame}/{plan.frames})")
            if plan.failure is not None:
                failure = plan.failure
                if await self._work(tag, claim, failure.seconds, percent):
                    return await self._hand_back(tag, claim)
                delivered, outcome = await self._final(
                    tag, "failJob", lambda: protocol.fail(claim, failure.error, failure.retryable)
                )
                if not delivered:
                    return "unreported"
                kind = ""
                if protocol.retries:
                    kind = " (retryable)" if failure.retryable else " (not retryable)"
                say(f"{tag} failed at frame {failure.frame}{kind}: {failure.error} -> {outcome}")
                return "failed"
            await self._soft(tag, "log", lambda: protocol.log(claim, plan.epilogue()))
            delivered, _ = await self._final(tag, "completeJob", lambda: protocol.complete(claim))
            if not delivered:
                return "unreported"
            say(f"{tag} completed in {time.monotonic() - started:.1f}s")
            return "completed"
        except JobLost as lost:
            say(f"{tag} dropped: {lost}")
            return "dropped"

    async def _work(self, tag: str, claim: Claim, seconds: float, percent: int) -> bool:
        """Renders for `seconds`, sending a heartbeat every `--heartbeat` seconds of a long frame;
        True when a stop was asked for meanwhile."""
        assert self.protocol is not None
        protocol = self.protocol
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if left <= self.options.heartbeat:
                return await self._pause(left)
            if await self._pause(self.options.heartbeat):
                return True
            if await self._soft(tag, "heartbeat", lambda: protocol.heartbeat(claim, percent)):
                say(f"{tag} heartbeat (a long frame at {percent}%)")
        return self.stopping.is_set()

    async def _soft(self, tag: str, what: str, call: Callable[[], Awaitable[object]]) -> bool:
        """A report that may fail for the network's sake: one line, and the render goes on.
        True when it went through; JobLost and Refused pass."""
        try:
            await call()
        except Unreachable as error:
            say(f"{tag} {what} not delivered ({error}); rendering on")
            return False
        return True

    async def _final(
        self,
        tag: str,
        what: str,
        call: Callable[[], Awaitable[T]],
        tries: int = FINAL_REPORT_TRIES,
        *,
        patient: bool = False,
    ) -> tuple[bool, T | None]:
        """A report that ends the job, tried again with back-off: (delivered, its answer). Not
        delivered: the server's stall timeout puts the job back. A stop cuts the waits short
        unless `patient` (the hand-back, which is what a stop is for)."""
        for attempt in range(1, tries + 1):
            try:
                return True, await call()
            except Unreachable as error:
                if attempt == tries:
                    break
                delay = backoff(attempt)
                say(f"{tag} {what} not delivered ({error}); trying again in {delay:g}s")
                if patient:
                    await asyncio.sleep(delay)
                elif await self._pause(delay):
                    break
        say(f"{tag} {what} not delivered; the server's stall timeout will put the job back")
        return False, None

    async def _hand_back(self, tag: str, claim: Claim) -> str:
        assert self.protocol is not None
        protocol = self.protocol
        try:
            delivered, _ = await self._final(
                tag,
                "requeueJob",
                lambda: protocol.hand_back(claim),
                tries=HAND_BACK_TRIES,
                patient=True,
            )
        except JobLost as lost:
            say(f"{tag} could not be handed back: {lost}")
            return "dropped"
        if not delivered:
            return "unreported"
        say(f"{tag} handed back to the queue")
        return "handed back"
