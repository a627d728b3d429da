"""What one simulated render does, decided up front: its frames, the steps its progress moves in,
how long each takes, the log lines an `aerender` would print, and whether (and how) it fails.

No I/O and no clock: the same random generator gives the same plan, which is what `--seed` means.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# Renders of one second or more report every ~1.5 s of work, within these bounds.
MIN_STEPS = 4
MAX_STEPS = 20
SECONDS_PER_STEP = 1.5
HEAVY_FRAME_CHANCE = 0.12  # a step that takes 3..5 times as long: what heartbeats are for

# (error line, retryable): what After Effects says when a render dies.
ERRORS: tuple[tuple[str, bool], ...] = (
    (
        "aerender Error: After Effects error: Unable to obtain a license: the license server "
        "did not answer ( 9999 :: 0 )",
        True,
    ),
    (
        "aerender Error: After Effects error: out of memory rendering frame {frame} ( 23 :: 46 )",
        True,
    ),
    (
        "aerender Error: After Effects error: the output module could not write the file: "
        "no space left on device ( 3 :: 30 )",
        True,
    ),
    (
        "aerender Error: After Effects error: layer 'Logo' of composition '{composition}' is "
        "missing its source footage ( 33 :: 7 )",
        False,
    ),
    (
        "aerender Error: After Effects error: expression disabled on layer 'Title': "
        "ReferenceError: 'headline' is not defined (frame {frame})",
        False,
    ),
)


@dataclass(frozen=True)
class Step:
    seconds: float  # how long this part of the render takes
    progress: int  # the percentage once it is done
    frame: int  # the last frame it rendered (1-based)
    line: str  # the progress line the renderer prints


@dataclass(frozen=True)
class Failure:
    seconds: float  # time spent on the failing frame before the error
    frame: int
    error: str
    retryable: bool


@dataclass(frozen=True)
class RenderPlan:
    composition: str
    frames: int
    fps: int
    steps: tuple[Step, ...]  # the steps rendered (before the failure, if any)
    failure: Failure | None

    @property
    def seconds(self) -> float:
        failing = self.failure.seconds if self.failure else 0.0
        return sum(step.seconds for step in self.steps) + failing

    def preamble(self, output: str) -> list[str]:
        """What aerender prints before the first frame."""
        return [
            "aerender version 24.6x12 (simulated by rendertrack simulate-worker)",
            f'PROGRESS:  Starting composition "{self.composition}".',
            "PROGRESS:  Render Settings: Best Settings",
            "PROGRESS:  Output Module: H.264 - Match Render Settings - 15 Mbps",
            f"PROGRESS:  Output To: {output}",
            f"PROGRESS:  Duration: {timecode(self.frames, self.fps)}",
            f"PROGRESS:  Frame Rate: {self.fps:.2f} (comp)",
        ]

    def epilogue(self) -> list[str]:
        """What aerender prints after the last frame."""
        return [
            f"PROGRESS:  Total Time Elapsed: {round(self.seconds)} Seconds",
            f'PROGRESS:  Finished composition "{self.composition}".',
        ]


def plan_render(
    rng: random.Random, duration: float, fail_rate: float, composition: str = "main"
) -> RenderPlan:
    """A render of about `duration` seconds (give or take 20%) that fails with probability
    `fail_rate`. Every draw is made whatever the outcome, so one seed gives one sequence."""
    seconds = duration * rng.uniform(0.8, 1.2)
    fps = rng.choice((25, 30))
    frames = fps * rng.choice((5, 8, 10, 12, 15, 20))
    count = max(MIN_STEPS, min(MAX_STEPS, round(seconds / SECONDS_PER_STEP)))
    weights = [
        rng.uniform(0.6, 1.4) * (rng.uniform(3.0, 5.0) if rng.random() < HEAVY_FRAME_CHANCE else 1)
        for _ in range(count)
    ]
    fails = rng.random() < fail_rate
    failing_step = rng.randrange(count)
    failing_share = rng.uniform(0.2, 0.9)
    template, retryable = ERRORS[rng.randrange(len(ERRORS))]

    total = sum(weights)
    steps: list[Step] = []
    for index, weight in enumerate(weights, start=1):
        frame = math.ceil(frames * index / count)
        step_seconds = seconds * weight / total
        previous = steps[-1].frame if steps else 0
        per_frame = round(step_seconds / max(1, frame - previous))
        line = f"PROGRESS:  {timecode(frame - 1, fps)} ({frame}): {per_frame} Seconds"
        steps.append(Step(step_seconds, round(100 * index / count), frame, line))

    failure = None
    if fails:
        rendered = steps[:failing_step]
        frame = (rendered[-1].frame if rendered else 0) + 1
        error = template.format(frame=frame, composition=composition)
        failure = Failure(steps[failing_step].seconds * failing_share, frame, error, retryable)
        steps = rendered
    return RenderPlan(composition, frames, fps, tuple(steps), failure)


def timecode(frame: int, fps: int) -> str:
    """aerender's H:MM:SS:FF for a frame number counted from 0."""
    seconds, frames = divmod(frame, fps)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{seconds:02}:{frames:02}"
