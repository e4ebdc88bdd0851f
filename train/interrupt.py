"""Stopping a training run cleanly: Ctrl-C (SIGINT) or SIGTERM asks the trainer to stop at the next
micro-batch; it saves the state of its last complete step for ``--resume`` and then ends through
:func:`stop`. A second Ctrl-C stops at once (the state saved last stays on disk)."""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
import threading
from collections.abc import Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C after saving its state: a KeyboardInterrupt, so that the command ends
    with Ctrl-C's usual exit status (130)."""


def stop(signum: int, message: str) -> None:
    """End the run as the signal asks: Ctrl-C as a KeyboardInterrupt, SIGTERM with the shell's status
    for it (143), the way the process would have ended without a handler."""
    if signum == signal.SIGINT:
        raise Interrupted(message)
    raise SystemExit(128 + signum)


class StopRequest:
    """Set by the first SIGINT/SIGTERM while :meth:`watch` is active; a second SIGINT raises at once."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    @contextlib.contextmanager
    def watch(self) -> Iterator[StopRequest]:
        """Catch the signals for the duration (only the main thread may; elsewhere nothing is caught)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def resume_command(argv: list[str] | None = None) -> str:
    """The command that continues this run: ``tsav train`` with this process's arguments and ``--resume``
    (the arguments are this process's own when it runs the command line, else a placeholder)."""
    argv = sys.argv if argv is None else argv
    if "train" not in argv[1:]:
        return "tsav train ... --resume (with the same options)"
    arguments = argv[argv.index("train", 1) + 1 :]
    if "--resume" not in arguments:
        arguments = [*arguments, "--resume"]
    return shlex.join(["tsav", "train", *arguments])


def ignore_in_worker() -> None:
    """Data loader workers leave Ctrl-C to the trainer: a terminal sends SIGINT to the whole process group,
    and a worker that died of it would break the loader before the state is saved."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
