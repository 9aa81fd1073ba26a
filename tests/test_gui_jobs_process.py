"""Subprocess jobs are launched and watched with asyncio on the Qt thread (qasync), without torch: fake
children that speak the JSON-lines protocol, flood it, die without a final record, or ignore the cancel file."""

from __future__ import annotations

import asyncio
import gc
import sys
import time

import pytest
from gui_job_support import asyncio_on_qt
from lorkd_studio import aio
from lorkd_studio.jobs.process import ProcessRun
from lorkd_studio.qt_fixes import emit_leaks_true, protect_singletons
from PySide6.QtCore import QTimer

pytestmark = pytest.mark.gui
# the shared fixture this module uses: pytest finds it among its names (autouse: asyncio.run works again in
# later tests of the session)
SHARED_FIXTURES = (asyncio_on_qt,)


@pytest.fixture(autouse=True)
def _singletons_protected(qapp):
    protect_singletons()  # as lorkd-studio does at startup (see test_emit_reference_leak_is_neutralised)


def child(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def collect(run: ProcessRun) -> dict:
    seen: dict = {"events": [], "log": [], "ended": None, "started": None}
    run.started.connect(lambda pid: seen.__setitem__("started", pid))
    run.event.connect(seen["events"].append)
    run.log.connect(seen["log"].append)
    run.ended.connect(lambda state, error: seen.__setitem__("ended", (state, error)))
    return seen


def test_records_become_events_other_lines_the_log_and_done_ends_it(tmp_path, qtbot):
    code = ("import json, sys\n"
            "print(json.dumps({'event': 'start', 'processes': 1}))\n"
            "print('a free text line')\n"
            "print('oops', file=sys.stderr)\n"
            "for i in range(1, 4): print(json.dumps({'event': 'step', 'step': i, 'total': 3}))\n"
            "print(json.dumps({'event': 'done', 'seconds': 0.1}))\n")
    run = ProcessRun(child(code), tmp_path / "cancel")
    seen = collect(run)
    run.start()
    assert seen["started"] is None  # start() only schedules the launch
    qtbot.waitUntil(lambda: seen["ended"] is not None, timeout=20000)
    assert seen["ended"] == ("done", "")
    assert [e["event"] for e in seen["events"]] == ["start", "step", "step", "step", "done"]
    assert [e.get("step") for e in seen["events"] if e["event"] == "step"] == [1, 2, 3]
    assert set(seen["log"]) == {"a free text line", "oops"}
    assert seen["started"] == run.pid and run.returncode == 0
    # it ran on qasync's loop, installed on pytest-qt's QApplication
    import qasync

    assert isinstance(aio.qt_loop(), qasync.QEventLoop) and asyncio.get_event_loop() is aio.qt_loop()


def test_a_process_that_dies_without_a_final_record_is_interrupted(tmp_path, qtbot):
    code = "import json, os\nprint(json.dumps({'event': 'step', 'step': 1, 'total': 9}), flush=True)\nos._exit(3)\n"
    run = ProcessRun(child(code), tmp_path / "cancel")
    seen = collect(run)
    run.start()
    qtbot.waitUntil(lambda: seen["ended"] is not None, timeout=20000)
    assert seen["ended"][0] == "interrupted" and "code 3" in seen["ended"][1]
    assert [e["event"] for e in seen["events"]] == ["step"]


def test_kill_takes_the_whole_process_group_and_leaves_it_interrupted(tmp_path, qtbot):
    # the child starts a grandchild (as torchrun starts its ranks); kill() must take both
    pid_file = tmp_path / "grandchild.pid"
    code = ("import json, subprocess, sys, time\n"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
            f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
            "print(json.dumps({'event': 'step', 'step': 1, 'total': 9}), flush=True)\n"
            "time.sleep(60)\n")
    run = ProcessRun(child(code), tmp_path / "cancel")
    seen = collect(run)
    run.start()
    qtbot.waitUntil(lambda: bool(seen["events"]), timeout=20000)
    run.kill()
    qtbot.waitUntil(lambda: seen["ended"] is not None, timeout=20000)
    assert seen["ended"][0] == "interrupted" and "signal 9" in seen["ended"][1]
    grandchild = int(pid_file.read_text())
    from lorkd_studio.jobs.process import pid_alive

    def reaped() -> bool:  # a zombie until init reaps it: look at its state
        try:
            with open(f"/proc/{grandchild}/stat") as f:
                return f.read().split(")")[-1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    qtbot.waitUntil(lambda: not pid_alive(grandchild) or reaped(), timeout=10000)


def test_cancel_touches_the_file_then_the_child_reports_cancelled(tmp_path, qtbot):
    cancel = tmp_path / "cancel"
    code = ("import json, os, time\n"
            "print(json.dumps({'event': 'start'}), flush=True)\n"
            "deadline = time.time() + 120  # never outlive a failed test (the child has its own session)\n"
            f"while not os.path.exists({str(cancel)!r}) and time.time() < deadline: time.sleep(0.02)\n"
            "print(json.dumps({'event': 'cancelled', 'message': 'job was cancelled'}), flush=True)\n"
            "raise SystemExit(130)\n")
    cancel.touch()  # a stale file from an earlier run is removed at start
    run = ProcessRun(child(code), cancel)
    seen = collect(run)
    run.start()
    qtbot.waitUntil(lambda: bool(seen["events"]), timeout=20000)
    assert seen["ended"] is None
    run.cancel()
    assert run.wait(20000)
    assert seen["ended"] == ("cancelled", "")


def test_a_missing_executable_fails_the_run(tmp_path, qtbot):
    run = ProcessRun([str(tmp_path / "no-such-python")], tmp_path / "cancel")
    seen = collect(run)
    run.start()
    qtbot.waitUntil(lambda: seen["ended"] is not None, timeout=10000)
    assert seen["ended"][0] == "failed" and "could not start" in seen["ended"][1]


def test_ui_heartbeat_while_a_child_floods_progress_records(tmp_path, qtbot):
    """20001 records as fast as a child can print them (a real job sends one per training step): the UI
    thread, which parses them all, never stalls for more than 150 ms."""
    code = ("import json\n"
            "for i in range(1, 20001):\n"
            "    print(json.dumps({'event': 'step', 'step': i, 'total': 20000, 'phase': 'decompose',\n"
            "                      'metrics': {'loss': 1.0 / i, 'task': 0.5, 'kd': 0.5, 'eta_s': 1.0}}))\n"
            "print(json.dumps({'event': 'done'}))\n")
    warm = ProcessRun(child("pass"), tmp_path / "cancel")  # qasync's loop and asyncio's child watcher exist
    warm.start()
    assert warm.wait(20000)
    run = ProcessRun(child(code), tmp_path / "cancel")
    seen = {"steps": 0, "last": 0, "ended": None}

    def on_event(ev: dict) -> None:  # keep nothing per record, as the job manager thins its history
        if ev["event"] == "step":
            seen["steps"] += 1
            seen["last"] = ev["step"]

    run.event.connect(on_event)
    run.ended.connect(lambda state, error: seen.__setitem__("ended", (state, error)))
    beats: list[tuple[float, int]] = []
    timer = QTimer(interval=10)
    timer.timeout.connect(lambda: beats.append((time.perf_counter(), seen["steps"])))
    gc.collect()
    gc.freeze()  # as lorkd-studio does once its start-up imports are done (runtime_policy.freeze_after_3d_preload)
    try:
        timer.start()
        started = time.perf_counter()
        run.start()
        qtbot.waitUntil(lambda: seen["ended"] is not None, timeout=60000)
        seconds = time.perf_counter() - started
        timer.stop()
    finally:
        gc.unfreeze()
    assert seen["ended"] == ("done", "") and seen["steps"] == 20000 and seen["last"] == 20000
    gaps = [(b[0] - a[0], a[1]) for a, b in zip(beats, beats[1:])]
    assert len(gaps) > 10
    worst, at = max(gaps)
    print(f"\nheartbeat while 20000 step records arrived in {seconds:.2f} s: {len(gaps)} beats, "
          f"worst gap {worst * 1000:.0f} ms (after record {at}), median {sorted(g for g, _ in gaps)[len(gaps) // 2] * 1000:.0f} ms")
    assert worst < 0.150, f"worst UI gap {worst * 1000:.0f} ms after record {at}"

def test_emit_reference_leak_is_neutralised():
    """PySide6 6.12.0 on Python 3.11: every Signal.emit() from Python drops a reference to True (and
    QTimer.singleShot one to None); ~24k emits in the app abort the interpreter. The guard makes them
    immortal, so a long job (or this flood) cannot run True's count down to zero."""
    from PySide6.QtCore import QObject, Signal

    class Source(QObject):
        ping = Signal(int)

    source = Source()
    before = sys.getrefcount(True)
    for i in range(50_000):
        source.ping.emit(i)
    if emit_leaks_true():
        assert protect_singletons() and sys.getrefcount(True) > 1 << 39
        assert before - sys.getrefcount(True) <= 50_000 + 64  # it leaks, but from an unreachable height
