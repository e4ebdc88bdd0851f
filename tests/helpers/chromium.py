"""Headless Chromium driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``:
JSON messages separated by NUL bytes on file descriptors 3 and 4), with nothing but the standard
library: no websocket client, no Node driver, no browser download.

    with Browser() as browser:
        page = browser.open(pathlib.Path("report.html").as_uri())
        page.evaluate("document.title")
        page.errors          # console errors, uncaught exceptions, failed loads, in arrival order

Used by the report tests and ``scripts/bench_report.py``; the caller skips where Debian's
``chromium`` is absent (:data:`CHROMIUM`).
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import pathlib
import select
import shutil
import subprocess
import tempfile
import time

CHROMIUM = pathlib.Path("/usr/bin/chromium")
# What runs here without a display, a GPU, a sandbox or a network, and never phones home.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
)


class BrowserError(RuntimeError):
    pass


def _above_9(fd: int) -> int:
    """``fd`` moved to a number above 9, so that putting the pipe ends onto 3 and 4 overwrites neither."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class Browser:
    """One Chromium process with a fresh profile; ``close`` (or the ``with`` block's end) stops that
    process by its own handle and deletes the profile."""

    def __init__(
        self, executable: pathlib.Path = CHROMIUM, width: int = 1280, height: int = 900, flags: tuple[str, ...] = ()
    ):
        self.profile = tempfile.mkdtemp(prefix="tsav-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        to_chrome_r, from_chrome_w = _above_9(to_chrome_r), _above_9(from_chrome_w)
        # Chromium reads fd 3 and writes fd 4: bash (which, unlike dash, takes descriptors above 9)
        # moves the pipe ends there and execs it; no Python code runs between fork and exec, which
        # is unsafe in a threaded process.
        moves = f"3<&{to_chrome_r} {to_chrome_r}<&- 4>&{from_chrome_w} {from_chrome_w}>&-"
        self.process = subprocess.Popen(
            [
                shutil.which("bash") or "/bin/bash",
                "-c",
                f'exec "$0" "$@" {moves}',
                str(executable),
                *FLAGS,
                *flags,
                "--remote-debugging-pipe",
                f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(to_chrome_r, from_chrome_w),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []  # every event received, in order
        self.size = (width, height)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, method: str, session: str | None = None, timeout: float = 30, **params) -> dict:
        """Send one command and wait for its answer; events that arrive meanwhile are kept."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline, f"{method} got no answer within {timeout} s")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    def wait_for(self, method: str, session: str | None = None, timeout: float = 30, start: int = 0) -> dict:
        """The first event ``method`` (of ``session``) at or after index ``start`` of :attr:`events`."""
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            for event in self.events[seen:]:
                if event.get("method") == method and (session is None or event.get("sessionId") == session):
                    return event.get("params", {})
            seen = len(self.events)
            self._receive(deadline, f"no {method} event within {timeout} s")

    def _receive(self, deadline: float, why: str) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise BrowserError(why)
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium closed the pipe (exit code {self.process.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self.events.append(message)
        return message

    def open(self, url: str, timeout: float = 60) -> "Page":
        """A new tab on ``url``, returned once its load event has fired."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        page = Page(self, session, target)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session)
        start = len(self.events)
        self.call("Page.navigate", session, url=url)
        self.wait_for("Page.loadEventFired", session, timeout=timeout, start=start)
        return page

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.call("Browser.close", timeout=10)
            except (BrowserError, OSError):
                pass
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab: evaluate JavaScript, click and drag with real mouse events, take screenshots."""

    def __init__(self, browser: Browser, session: str, target: str):
        self.browser, self.session, self.target = browser, session, target

    def _events(self, method: str) -> list[dict]:
        return [
            e["params"] for e in self.browser.events if e.get("method") == method and e.get("sessionId") == self.session
        ]

    @property
    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads seen so far."""
        found = []
        for params in self._events("Runtime.consoleAPICalled"):
            if params.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        for params in self._events("Runtime.exceptionThrown"):
            details = params["exceptionDetails"]
            found.append("exception: " + details.get("exception", {}).get("description", details.get("text", "")))
        for params in self._events("Log.entryAdded"):
            if params["entry"].get("level") == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        for params in self._events("Network.loadingFailed"):
            if not params.get("canceled"):
                found.append(f"load failed: {params.get('errorText')}")
        return found

    @property
    def requested_urls(self) -> list[str]:
        """Every URL the page asked for (document, media, anything else)."""
        return [p["request"]["url"] for p in self._events("Network.requestWillBeSent")]

    def evaluate(self, expression: str, timeout: float = 30):
        """The value of a JavaScript expression (promises awaited), as JSON-compatible Python."""
        result = self.browser.call(
            "Runtime.evaluate",
            self.session,
            timeout=timeout,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(details.get("exception", {}).get("description", details.get("text")))
        return result["result"].get("value")

    def mouse(self, kind: str, x: float, y: float, buttons: int = 1) -> None:
        self.browser.call(
            "Input.dispatchMouseEvent",
            self.session,
            type=kind,
            x=x,
            y=y,
            button="left",
            buttons=buttons,
            clickCount=1 if kind != "mouseMoved" else 0,
        )

    def click(self, x: float, y: float) -> None:
        self.mouse("mousePressed", x, y)
        self.mouse("mouseReleased", x, y, buttons=0)

    def drag(self, points: list[tuple[float, float]]) -> None:
        self.mouse("mousePressed", *points[0])
        for x, y in points[1:]:
            self.mouse("mouseMoved", x, y)
        self.mouse("mouseReleased", *points[-1], buttons=0)

    def screenshot(self) -> bytes:
        """PNG of the viewport."""
        return base64.b64decode(self.browser.call("Page.captureScreenshot", self.session, format="png")["data"])

    def close(self) -> None:
        self.browser.call("Target.closeTarget", targetId=self.target)
