"""What ``tsav train`` shows while it runs: steps done of all, clips per second, the current loss and
the time left, and each validation's scores.

On a terminal a live rich bar and a validation table whose headers never wrap; when the output goes to a
file or a pipe, plain lines: one every ``every_steps`` steps or ``every_s`` seconds, whichever comes
first, so that a log never stays silent for minutes. :func:`make_progress` picks one.
"""

from __future__ import annotations

import datetime
import math
import os
import time
from collections import deque
from collections.abc import Callable

from rich import box
from rich.console import Console
from rich.table import Table

# Validation columns: (key in the validation row, header). Short headers keep the table within 80 columns.
VALIDATION_COLUMNS = (
    ("train_loss", "train loss"),
    ("ccc_valence", "CCC val"),
    ("ccc_arousal", "CCC aro"),
    ("expr_criterion", "expr"),
    ("au_criterion", "AU"),
    ("criterion", "criterion"),
)
LINE_EVERY_S = 30.0
LINES_PER_PHASE = 20  # plain lines at least every total/20 steps, besides every LINE_EVERY_S seconds
RATE_WINDOW = 10  # steps over which clips per second are averaged


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system tells it, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def cap_workers(asked: int, cores: int | None = None) -> tuple[int, str | None]:
    """Data loader processes for ``asked``: at most one per available core. Returns the number and a
    one-line note when it is fewer than asked (torch would otherwise warn about each loader)."""
    cores = available_cores() if cores is None else cores
    if asked <= cores:
        return asked, None
    return cores, f"data loader: {cores} worker processes, not {asked}: {cores} CPU cores available"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    return str(datetime.timedelta(seconds=round(max(seconds, 0.0))))


def validation_line(row: dict, best: dict, improved: bool) -> str:
    """One validation's scores on one line (for logs and pipes)."""
    scores = "  ".join(f"{header} {row[key]:.4f}" for key, header in VALIDATION_COLUMNS)
    verdict = "new best" if improved else f"best {best.get('criterion', float('nan')):.4f}"
    return f"validation at step {row['step']}: {scores}  ({verdict})"


def validation_table(row: dict, best: dict, improved: bool) -> Table:
    """One validation's scores as a table whose headers are never wrapped nor cut."""
    cells = [str(row["step"]), *(f"{row[key]:.4f}" for key, _ in VALIDATION_COLUMNS)]
    cells.append("[green]new best" if improved else f"{best.get('criterion', float('nan')):.4f}")
    headers = ["step", *(header for _, header in VALIDATION_COLUMNS), "best"]
    # No vertical rules: eight columns with whole headers then fit in 80 columns.
    table = Table(title="validation", box=box.SIMPLE_HEAD, padding=(0, 1))
    for header, cell in zip(headers, cells):
        width = max(len(header), len(cell) - (len("[green]") if cell.startswith("[green]") else 0))
        table.add_column(header, no_wrap=True, min_width=width, overflow="ignore")
    table.add_row(*cells)
    return table


class _Clock:
    """Steps done in this process and their pace: clips per second over the last steps, time left."""

    def __init__(self, first: int, total: int, batch: int):
        self.first, self.total, self.batch = first, total, batch
        self.started = time.monotonic()
        self.recent: deque[tuple[int, float]] = deque([(first, self.started)], maxlen=RATE_WINDOW + 1)

    def tick(self, step: int) -> None:
        self.recent.append((step, time.monotonic()))

    def clips_per_s(self) -> float:
        (step0, t0), (step1, t1) = self.recent[0], self.recent[-1]
        return (step1 - step0) * self.batch / (t1 - t0) if t1 > t0 and step1 > step0 else float("nan")

    def remaining_s(self, step: int) -> float:
        done, elapsed = step - self.first, time.monotonic() - self.started
        return (self.total - step) * elapsed / done if done > 0 else float("nan")

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


class Progress:
    """The interface the trainer talks to; this base class shows nothing."""

    def start(self, name: str, first: int, total: int, batch: int) -> None:
        """A phase begins (or resumes) at step ``first`` of ``total``, ``batch`` clips per step."""

    def step(self, step: int, loss: float) -> None:
        """Step ``step`` is done; ``loss`` is its mean training loss."""

    def validation(self, row: dict, best: dict, improved: bool) -> None:
        """A validation's scores (``row``), the best so far, and whether this one is the new best."""

    def finish(self) -> None:
        """The phase ended (done, stopped early, or interrupted)."""


class LineProgress(Progress):
    """Plain lines through ``write``: at the start, every ``every_steps`` steps or ``every_s`` seconds,
    and at the end."""

    def __init__(self, write: Callable[[str], None], *, every_s: float = LINE_EVERY_S, every_steps: int | None = None):
        self.write, self.every_s, self.every_steps = write, every_s, every_steps
        self.clock: _Clock | None = None
        self.name, self.last_line, self.loss, self.at = "", 0.0, float("nan"), 0

    def start(self, name: str, first: int, total: int, batch: int) -> None:
        self.name, self.clock, self.at = name, _Clock(first, total, batch), first
        self.last_line = time.monotonic()
        resumed = f", resuming at step {first}" if first else ""
        self.write(f"{name}: {total} steps of {batch} clips{resumed}")

    def step(self, step: int, loss: float) -> None:
        assert self.clock is not None, "start() first"
        self.clock.tick(step)
        self.loss, self.at = loss, step
        every = self.every_steps or max(1, self.clock.total // LINES_PER_PHASE)
        due = time.monotonic() - self.last_line >= self.every_s or step % every == 0 or step == self.clock.first + 1
        if due and step < self.clock.total:
            self.write(self.line(step))
            self.last_line = time.monotonic()

    def line(self, step: int) -> str:
        assert self.clock is not None
        clock = self.clock
        return (
            f"{self.name}: step {step}/{clock.total} ({100 * step / clock.total:.0f}%)  loss {self.loss:.4f}  "
            f"{clock.clips_per_s():.1f} clips/s  ETA {_duration(clock.remaining_s(step))}"
        )

    def validation(self, row: dict, best: dict, improved: bool) -> None:
        self.write(validation_line(row, best, improved))

    def finish(self) -> None:
        if self.clock is None:
            return
        clock, done = self.clock, self.at - self.clock.first
        rate = done * clock.batch / clock.elapsed_s() if clock.elapsed_s() > 0 else float("nan")
        self.write(
            f"{self.name}: {self.at}/{clock.total} steps, {done} in {_duration(clock.elapsed_s())} "
            f"({rate:.1f} clips/s), last loss {self.loss:.4f}"
        )
        self.clock = None


class BarProgress(Progress):
    """A live rich bar on the terminal; validation tables and log lines print above it."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console()
        self.bar = None
        self.task = None
        self.clock: _Clock | None = None

    def start(self, name: str, first: int, total: int, batch: int) -> None:
        from rich import progress as rp

        self.finish()
        self.clock = _Clock(first, total, batch)
        self.bar = rp.Progress(
            rp.TextColumn("{task.description}"),
            rp.BarColumn(),
            rp.MofNCompleteColumn(),
            rp.TextColumn("steps  {task.fields[rate]} clips/s  loss {task.fields[loss]}  ETA"),
            rp.TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.bar.start()
        self.task = self.bar.add_task(name, total=total, completed=first, rate="?", loss="?")

    def step(self, step: int, loss: float) -> None:
        if self.bar is None or self.clock is None:
            return
        self.clock.tick(step)
        self.bar.update(self.task, completed=step, rate=f"{self.clock.clips_per_s():.1f}", loss=f"{loss:.4f}")

    def validation(self, row: dict, best: dict, improved: bool) -> None:
        self.console.print(validation_table(row, best, improved))

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.stop()
        self.bar, self.task, self.clock = None, None, None


def make_progress(write: Callable[[str], None], console: Console | None = None) -> Progress:
    """A live bar when the console is an interactive terminal, else plain lines through ``write``."""
    console = console or Console()
    if console.is_terminal and not console.is_dumb_terminal:
        return BarProgress(console)
    return LineProgress(write)
