"""Progress reporting for long work.

Long-running functions take ``progress: ProgressCallback | None``. They call it with a
:class:`ProgressEvent` after each unit of work; if the callback returns ``True`` the work
stops cleanly (finished units are kept) and :class:`~embedviz.errors.Cancelled` is raised.
The app turns this into a progress bar with ETA and a cancel button, the CLI into tqdm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from embedviz.errors import Cancelled


@dataclass(frozen=True)
class ProgressEvent:
    """One step of long work: ``done`` of ``total`` units, at stage ``stage``."""

    done: int
    total: int
    stage: str = ""
    message: str = ""
    elapsed_s: float = 0.0

    @property
    def fraction(self) -> float:
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)

    @property
    def eta_s(self) -> float | None:
        """Seconds left, extrapolated from the rate so far (None until there is a rate)."""
        if self.done <= 0 or self.total <= 0 or self.elapsed_s <= 0:
            return None
        return self.elapsed_s / self.done * max(0, self.total - self.done)


#: Returns True to ask the work to stop.
ProgressCallback = Callable[[ProgressEvent], "bool | None"]


@dataclass
class ProgressReporter:
    """Helper for library code: tracks time and turns a stop request into ``Cancelled``."""

    callback: ProgressCallback | None
    total: int
    stage: str = ""
    done: int = 0
    _t0: float = field(default_factory=time.perf_counter)

    def advance(self, n: int = 1, message: str = "") -> None:
        self.done += n
        self.report(message)

    def report(self, message: str = "") -> None:
        if self.callback is None:
            return
        event = ProgressEvent(
            done=self.done,
            total=self.total,
            stage=self.stage,
            message=message,
            elapsed_s=time.perf_counter() - self._t0,
        )
        if self.callback(event):
            raise Cancelled(f"stopped at {self.done}/{self.total} ({self.stage or 'work'})")


def format_eta(seconds: float | None) -> str:
    """'1:05' style ETA, or '?' when unknown."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
