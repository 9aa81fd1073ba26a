"""A subprocess job, launched and watched with asyncio on the UI thread (qasync, see app/aio.py).

``asyncio.create_subprocess_exec`` starts the job's command line (services.jobs.command_line: the CLI,
under torchrun for N processes) in a session of its own; two coroutines read its stdout and stderr line by
line. Stdout carries the CLI's JSON-lines protocol (lorkd_core/commands/_training.py: start, loading,
step, done | cancelled | error): each record becomes an ``event``; any other line goes to the job log.
Nothing blocks: a line arrives when Qt's event loop sees the pipe readable.

Cancel touches the cancel file (every torchrun rank watches it) and falls back to SIGTERM after
TERM_AFTER_S, which the CLI also turns into a cancel with a checkpoint. A process that exits without a
final record (killed, crashed) ends ``interrupted``: the job's checkpoint lets Resume continue it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

from PySide6.QtCore import QEventLoop, QObject, QTimer, Signal

TERMINAL_EVENTS = ("done", "cancelled", "error")
TERM_AFTER_S = 20.0
LINE_LIMIT = 1 << 20  # bytes per line (a "start" record carries the whole job config)
YIELD_EVERY = 100  # lines handled before the reader lets other events run


class ProcessRun(QObject):
    """One launch. ``started(pid)``; ``event(dict)`` per JSON record; ``log(str)`` per other line;
    ``ended(str state, str error)`` once, with state done | cancelled | failed | interrupted."""

    started = Signal(int)
    event = Signal(dict)
    log = Signal(str)
    ended = Signal(str, str)

    def __init__(self, argv: list[str], cancel_file: Path, *, threads: int = 1, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.argv = argv
        self.cancel_file = Path(cancel_file)
        self.threads = threads
        self.proc: asyncio.subprocess.Process | None = None
        self.returncode: int | None = None
        self._final: dict | None = None
        self._task: asyncio.Task | None = None
        self._term: asyncio.TimerHandle | None = None
        self._kill_asked = False
        self._ended = False

    # ---------------------------------------------------------------- commands (UI thread)

    def start(self) -> None:
        """Schedule the launch on the Qt thread's asyncio loop; returns at once."""
        from ..aio import qt_loop

        if self.cancel_file.exists():
            self.cancel_file.unlink()
        try:
            loop = qt_loop()
        except Exception as exc:  # noqa: BLE001 - no asyncio loop on Qt: the job cannot be watched
            why = f"cannot watch a subprocess: {exc}"
            QTimer.singleShot(0, lambda: self._end("failed", why))
            return
        self._task = loop.create_task(self._run())

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return not self._ended

    def cancel(self) -> None:
        """Stop after the current step with a checkpoint; SIGTERM if the process has not ended by then."""
        self.cancel_file.parent.mkdir(parents=True, exist_ok=True)
        self.cancel_file.touch()
        if self._term is None and self._task is not None:
            self._term = self._task.get_loop().call_later(TERM_AFTER_S, self._signal, signal.SIGTERM, False)

    def kill(self) -> None:
        """Hard kill of the whole process group (torchrun and its ranks): the job ends interrupted."""
        self._kill_asked = True
        self._signal(signal.SIGKILL, True)

    def wait(self, timeout_ms: int) -> bool:
        """Block the caller (Qt and asyncio events keep being processed) until the run ended; True if it did."""
        if self._ended:
            return True
        loop = QEventLoop()
        self.ended.connect(loop.quit)
        QTimer.singleShot(timeout_ms, loop.quit)
        loop.exec()
        self.ended.disconnect(loop.quit)
        return self._ended

    # ---------------------------------------------------------------- the watcher (asyncio, UI thread)

    async def _run(self) -> None:
        try:
            await self._watch()
        except Exception as exc:  # noqa: BLE001 - a bug here must not leave the job "running" for ever
            self.cancel_file.touch()  # the process, if any, stops with a checkpoint on its own
            self._end("interrupted", f"watching the process failed ({type(exc).__name__}: {exc})")

    async def _watch(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), PYTHONUNBUFFERED="1")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=env, limit=LINE_LIMIT, start_new_session=True)
        except OSError as exc:
            self._end("failed", f"could not start {self.argv[0]}: {exc}")
            return
        self.started.emit(self.proc.pid)
        if self._kill_asked:
            self._signal(signal.SIGKILL, True)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        await asyncio.gather(self._read(self.proc.stdout, err=False), self._read(self.proc.stderr, err=True))
        code = await self.proc.wait()
        self.returncode = code
        if self._term is not None:
            self._term.cancel()
        final = (self._final or {}).get("event")
        if final == "done" and code == 0:
            self._end("done", "")
        elif final == "cancelled":
            self._end("cancelled", "")
        elif final == "error":
            self._end("failed", str(self._final.get("message", "")))  # type: ignore[union-attr]
        else:
            how = f"was killed (signal {-code})" if code < 0 else f"exited with code {code}"
            self._end("interrupted", f"the process {how} before the job ended")

    async def _read(self, stream: asyncio.StreamReader, *, err: bool) -> None:
        lines = 0
        while True:
            lines += 1
            if lines % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a full pipe buffer is read without waiting: let Qt events in
            try:
                raw = await stream.readline()
            except ValueError:  # a line over LINE_LIMIT: asyncio has dropped it
                self.log.emit(f"(a line of over {LINE_LIMIT} bytes was left out)")
                continue
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if err:
                if line.strip():
                    self.log.emit(line)
            else:
                self._handle_line(line)

    def _handle_line(self, line: str) -> None:
        if not line.strip():
            return
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if not isinstance(obj, dict) or "event" not in obj:
            self.log.emit(line)
            return
        if obj["event"] in TERMINAL_EVENTS:
            self._final = obj
        self.event.emit(obj)

    def _signal(self, sig: int, group: bool) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        try:
            if group:
                os.killpg(self.proc.pid, sig)  # start_new_session: the group id is the child's pid
            else:
                self.proc.send_signal(sig)
        except ProcessLookupError:
            pass

    def _end(self, state: str, error: str) -> None:
        if not self._ended:
            self._ended = True
            self.ended.emit(state, error)


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
