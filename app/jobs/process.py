"""A subprocess job: ``lorkd decompose --progress-json`` (under torchrun for N processes) watched by QProcess.

QProcess is event driven on the UI thread (no reader thread, works with or without qasync's loop).
The child speaks the CLI's JSON-lines protocol (lorkd_core/commands/_training.py); anything else on
stdout/stderr goes to the job log. Cancel touches ``--cancel-file`` (every torchrun rank sees it), then
falls back to SIGTERM, which the CLI also turns into a cancel with a checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

TERMINAL_EVENTS = ("done", "cancelled", "error")


def command_line(config: Path, out: Path, cancel_file: Path, *, processes: int = 1, resume: bool = False,
                 job: str = "decompose") -> list[str]:
    """The argv of a subprocess job (first item: the Python executable)."""
    args = [job, "--config", str(config), "--out", str(out), "--progress-json", "--cancel-file", str(cancel_file)]
    if resume:
        args.append("--resume")
    if processes > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                "-m", "lorkd_core", *args]
    return [sys.executable, "-m", "lorkd_core", *args]


class ProcessRun(QObject):
    """One launch. ``event(dict)`` per JSON line, ``log(str)`` per other line, ``ended(str state, str error)``
    with state done | cancelled | failed | interrupted (the process died without a final event)."""

    event = Signal(dict)
    log = Signal(str)
    ended = Signal(str, str)

    def __init__(self, argv: list[str], cancel_file: Path, *, threads: int = 1, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.argv = argv
        self.cancel_file = Path(cancel_file)
        self._final: dict | None = None
        self._buffer = b""
        self._errbuf = b""
        self.proc = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("OMP_NUM_THREADS", str(threads))
        env.insert("PYTHONUNBUFFERED", "1")
        self.proc.setProcessEnvironment(env)
        self.proc.readyReadStandardOutput.connect(self._read_stdout)
        self.proc.readyReadStandardError.connect(self._read_stderr)
        self.proc.finished.connect(self._on_finished)
        self.proc.errorOccurred.connect(self._on_error)
        self._term_timer = QTimer(self, singleShot=True, interval=20000)
        self._term_timer.timeout.connect(self.proc.terminate)
        self._ended = False

    def start(self) -> None:
        if self.cancel_file.exists():
            self.cancel_file.unlink()
        self.proc.start(self.argv[0], self.argv[1:])

    @property
    def pid(self) -> int | None:
        pid = int(self.proc.processId())
        return pid or None

    def cancel(self) -> None:
        self.cancel_file.parent.mkdir(parents=True, exist_ok=True)
        self.cancel_file.touch()
        self._term_timer.start()

    def kill(self) -> None:
        """Hard kill (tests, and quitting the app without waiting): leaves the job interrupted."""
        self.proc.kill()

    def _lines(self, data: bytes, err: bool) -> list[str]:
        buf = (self._errbuf if err else self._buffer) + data
        *lines, rest = buf.split(b"\n")
        if err:
            self._errbuf = rest
        else:
            self._buffer = rest
        return [ln.decode("utf-8", "replace") for ln in lines]

    def _read_stdout(self) -> None:
        for line in self._lines(bytes(self.proc.readAllStandardOutput().data()), False):
            self._handle_line(line)

    def _read_stderr(self) -> None:
        for line in self._lines(bytes(self.proc.readAllStandardError().data()), True):
            if line.strip():
                self.log.emit(line)

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

    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._read_stdout()
        self._read_stderr()
        for rest, err in ((self._buffer, False), (self._errbuf, True)):
            if rest.strip():
                text = rest.decode("utf-8", "replace")
                self.log.emit(text) if err else self._handle_line(text)
        self._buffer = self._errbuf = b""
        self._term_timer.stop()
        final = (self._final or {}).get("event")
        if final == "done" and code == 0:
            self._end("done", "")
        elif final == "cancelled":
            self._end("cancelled", "")
        elif final == "error":
            self._end("failed", str(self._final.get("message", "")))  # type: ignore[union-attr]
        else:
            how = "crashed" if status == QProcess.ExitStatus.CrashExit else f"exited with code {code}"
            self._end("interrupted", f"the process {how} before the job ended")

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._end("failed", f"could not start {self.argv[0]}: {self.proc.errorString()}")

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
