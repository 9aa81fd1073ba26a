#!/usr/bin/env python
"""Time the demo decomposition started from the GUI, as a person would start it.

    xvfb-run -a python scripts/time_gui_decomposition.py --out gui_timing.json

Runs the real main window (throw-away settings and job list in ``--workdir``), waits until the app has
opened the demo case and its worker is idle, opens *Jobs → New decomposition…*, checks that the dialog shows
the "Demo decomposition" preset and runs in the app (worker thread), keeps every default and clicks *Start*.
From that click on it records:

- every change of what the user sees of the job's progress: the dialog's progress bar and report while the
  phantoms are generated and checked, then the job panel's progress bar (value and text), its ETA label, the
  job's row in the table, the log and the evaluation table;
- a 10 ms QTimer heartbeat on the UI thread (its worst gap is the longest time the UI could not respond);
- when the job is done, when the new experts appear in the expert switcher, when the evaluation table is
  shown and when the switcher shows the new experts' Dice.

It prints a summary and the evaluation table the app shows, and writes all figures to ``--out`` (JSON).
Exit status 0 when the job finished and was evaluated, 1 otherwise (timeout, failure).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

POLL_MS = 50  # how often the visible widgets are read
HEARTBEAT_MS = 10


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def region_table(markdown: str) -> str:
    """The per-region section of the evaluation markdown (the part worth printing)."""
    m = re.search(r"## Per region\n(.*?)(?:\n## |\Z)", markdown, re.S)
    return (m.group(1) if m else markdown).strip()


def region_dice(markdown: str) -> dict[str, dict[str, float]]:
    """{region: {"teacher": d, "experts": d, "baseline": d}} from the per-region table."""
    lines = [ln for ln in region_table(markdown).splitlines() if ln.startswith("|")]
    if len(lines) < 3:
        return {}
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    cols = {c.split()[0].lower(): i for i, c in enumerate(head) if c.endswith("Dice")}
    out: dict[str, dict[str, float]] = {}
    for ln in lines[2:]:
        cells = [c.strip().strip("*") for c in ln.strip("|").split("|")]
        row = {}
        for model, i in cols.items():
            try:
                row[model] = float(cells[i])
            except (ValueError, IndexError):
                pass
        out[cells[0]] = row
    return out


class Recorder:
    """Reads the visible progress widgets every POLL_MS and keeps a timestamp per change."""

    def __init__(self, window, t0_holder: dict) -> None:
        self.window = window
        self.t = t0_holder
        self.updates: list[dict[str, Any]] = []
        self.last: dict[str, Any] = {}
        self.dialog = None
        self.job_id: str | None = None

    def now(self) -> float:
        return time.perf_counter() - self.t["start"]

    def snapshot(self) -> dict[str, Any]:
        snap: dict[str, Any] = {}
        d = self.dialog
        if d is not None and d.isVisible():
            snap["dialog.bar"] = d.progress.value() if d.progress.isVisible() else None
            snap["dialog.report"] = d.report.toPlainText()[-200:]
        panel = self.window.jobs_panel
        if self.job_id is not None:
            snap["bar"] = (panel.bar.value(), panel.bar.format())
            snap["eta"] = panel.eta.text()
            row = panel._rows.get(self.job_id)
            if row is not None:
                snap["row"] = tuple(panel.table.item(row, c).text() for c in range(panel.table.columnCount()))
            doc = panel.log.document()
            snap["log"] = (doc.blockCount(), doc.lastBlock().text())
            snap["evaluation"] = len(panel.evaluation.toPlainText())
        return snap

    def poll(self) -> None:
        if "start" not in self.t:
            return
        snap = self.snapshot()
        changed = [k for k, v in snap.items() if self.last.get(k, object()) != v and v is not None]
        if changed:
            text = {k: snap[k] for k in changed}
            self.updates.append({"t": round(self.now(), 3), "changed": changed,
                                 "text": json.dumps(text, default=str)[:240]})
        self.last.update(snap)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="gui_decomposition_timing.json", help="JSON file with the figures")
    parser.add_argument("--workdir", help="settings, job list and job folder (default: a new temp folder)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    parser.add_argument("--idle-wait", type=float, default=180.0,
                        help="at most this long for the app to open the demo case before Start")
    parser.add_argument("--quick", action="store_true",
                        help="check the script itself: change the dialog to 4 steps on 2 small phantoms per region "
                             "before Start (not a timing of the demo preset)")
    args = parser.parse_args(argv)

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="lorkd-gui-timing-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["LORKD_JOBS_FILE"] = str(workdir / "jobs.json")
    load_start = load_average()

    from lorkd_studio.jobs.dialog import DEMO_PRESET, JobDialog
    from lorkd_studio.main import _install_event_loop, _run_event_loop
    from lorkd_studio.main_window import MainWindow
    from lorkd_studio.qt_fixes import protect_singletons
    from lorkd_studio.runtime_policy import freeze_after_3d_preload, responsive_gil_switching
    from lorkd_studio.services.settings import AppSettings
    from lorkd_studio.session import Session
    from lorkd_studio.theme import apply_dark_theme
    from PySide6.QtCore import Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    protect_singletons()
    app = QApplication.instance() or QApplication(["lorkd-studio"])
    app.setApplicationName("LoRKD Studio")
    app.setOrganizationName("LoRKD")
    apply_dark_theme(app)
    loop = _install_event_loop(app)
    session = Session(AppSettings(workdir / "settings.ini"))
    window = MainWindow(session, restore_layout=False)
    responsive_gil_switching()  # as lorkd_studio.main does
    freeze_after_3d_preload(app)
    window.move(0, 0)
    window.show()
    window.start(None)  # lists the models and opens the demo case, as on a first start

    manager = window.jobs
    t: dict[str, float] = {}
    marks: dict[str, float] = {}
    info: dict[str, Any] = {"workdir": str(workdir), "problems": []}
    rec_holder: dict[str, Any] = {}
    recorder = Recorder(window, t)
    beats: list[float] = []
    signals: list[tuple[float, int, int]] = []
    launched = time.perf_counter()

    def mark(name: str) -> None:
        if name not in marks and "start" in t:
            marks[name] = round(time.perf_counter() - t["start"], 3)
            print(f"[{marks[name]:8.1f} s] {name}", flush=True)

    def finish(code: int) -> None:
        info["exit"] = code
        QTimer.singleShot(0, lambda: (window.close(), app.quit()))

    # ------------------------------------------------------------ heartbeat and polling

    heartbeat = QTimer()
    heartbeat.setInterval(HEARTBEAT_MS)
    heartbeat.setTimerType(Qt.TimerType.PreciseTimer)
    heartbeat.timeout.connect(lambda: beats.append(time.perf_counter()) if "start" in t and "end" not in t else None)
    poller = QTimer()
    poller.setInterval(POLL_MS)
    poller.timeout.connect(recorder.poll)

    # ------------------------------------------------------------ the job's signals

    def on_added(job_id: str) -> None:
        recorder.job_id = job_id
        rec_holder["rec"] = manager.get(job_id)
        mark("job started (dialog accepted)")

    def on_progress(job_id: str, step: int, total: int, metrics: dict) -> None:
        signals.append((time.perf_counter() - t["start"], step, total))
        if step == 0:
            mark("loading the training data")
        else:
            mark("first training step")
        phase = manager.get(job_id).phase
        if phase == "baseline":
            mark("baseline phase")

    def on_finished(job_id: str, state: str) -> None:
        info["state"] = state
        mark(f"job {state}")
        if state != "done":
            info["problems"].append("\n".join(manager.get(job_id).log[-20:]))
            finish(1)

    def on_evaluated(job_id: str, text: str) -> None:
        mark("evaluation shown")
        info["evaluation"] = text
        info["evaluated_dice"] = {r: v["experts"] for r, v in region_dice(text).items() if "experts" in v}

    manager.job_added.connect(on_added)
    manager.job_progress.connect(on_progress)
    manager.job_finished.connect(on_finished)
    manager.evaluated.connect(on_evaluated)

    # ------------------------------------------------------------ the expert switcher

    def new_models() -> list:
        rec = rec_holder.get("rec")
        if rec is None:
            return []
        out = Path(rec.out).resolve()
        return [m for m in session.state.catalog if m.path is not None and out in Path(m.path).resolve().parents]

    def watch_switcher() -> None:
        if "start" not in t:
            return
        models = {m.id: m for m in new_models()}
        lst = window.expert_panel.list
        shown = [lst.item(r) for r in range(lst.count()) if lst.item(r).data(Qt.ItemDataRole.UserRole) in models]
        if shown:
            mark("new experts in the expert switcher")
            info["switcher"] = [it.text().replace("\n", " | ") for it in shown]
            experts = [it for it in shown if models[it.data(Qt.ItemDataRole.UserRole)].kind != "teacher"]
            evaluated = info.get("evaluated_dice", {})
            if experts and evaluated and all(
                    f"Dice {evaluated[models[it.data(Qt.ItemDataRole.UserRole)].region]:.2f}" in it.text()
                    for it in experts if models[it.data(Qt.ItemDataRole.UserRole)].region in evaluated):
                mark("switcher shows the new experts' Dice")
        rec = rec_holder.get("rec")
        if rec is not None and rec.phase == "evaluation failed" and "end" not in t:
            info["problems"].append("the evaluation failed: " + "\n".join(rec.log[-5:]))
            t["end"] = time.perf_counter()
            finish(1)
            return
        if rec is not None and rec.state == "done" and not rec.evaluate and shown and "end" not in t:
            info["problems"].append("the job was not evaluated ('Evaluate when done' was off)")
            t["end"] = time.perf_counter()
            finish(1)
            return
        if "evaluation shown" in marks and "new experts in the expert switcher" in marks and "end" not in t:
            # give the switcher a few seconds to show the evaluated Dice (recorded, not required)
            waited = time.perf_counter() - t["start"] - marks["evaluation shown"]
            if "switcher shows the new experts' Dice" in marks or waited > 5.0:
                t["end"] = time.perf_counter()
                QTimer.singleShot(500, lambda: finish(0))  # a last look at the widgets

    switcher = QTimer()
    switcher.setInterval(POLL_MS)
    switcher.timeout.connect(watch_switcher)

    # ------------------------------------------------------------ the person: menu, dialog, Start

    def find_dialog() -> JobDialog | None:
        for w in QApplication.topLevelWidgets():
            if isinstance(w, JobDialog) and w.isVisible():
                return w
        return None

    def press_start() -> None:
        dialog = find_dialog()
        if dialog is None:
            QTimer.singleShot(50, press_start)
            return
        recorder.dialog = dialog
        info["dialog"] = {"title": dialog.windowTitle(), "preset": dialog.preset.currentData(),
                          "preset_text": dialog.preset.currentText(), "values": dialog.preset_values(),
                          "out": dialog.out.text()}
        if dialog.preset.currentData() != "demo" or dialog.preset_values() != DEMO_PRESET:
            info["problems"].append(f"the dialog did not open on the demo preset: {info['dialog']}")
        if args.quick:
            dialog.steps.setValue(4)
            dialog.phantom_cases.setValue(2)
            dialog.phantom_size.setValue(64)
            info["dialog"]["quick_values"] = dialog.preset_values()
        if dialog.where.currentData() != "inprocess":
            info["problems"].append("the dialog's default is not 'In the app (worker thread)'")
        print(f"dialog: {dialog.windowTitle()} / preset: {dialog.preset.currentText()}", flush=True)
        print(f"        values: {json.dumps(dialog.preset_values())}", flush=True)
        print(f"        output folder: {dialog.out.text()}", flush=True)
        t["start"] = time.perf_counter()
        info["load_at_start"] = load_average()
        heartbeat.start()
        poller.start()
        switcher.start()
        QTest.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)

    def open_dialog() -> None:
        menu = next(a.menu() for a in window.menuBar().actions() if a.text().replace("&", "") == "Jobs")
        action = next(a for a in menu.actions() if a.text() == "New decomposition…")
        info["waited_for_app_s"] = round(time.perf_counter() - launched, 1)
        QTimer.singleShot(100, press_start)
        action.trigger()  # the modal dialog runs its own event loop until it is accepted

    idle_since: dict[str, float] = {}

    def wait_until_ready() -> None:
        ready = session.state.scan is not None and not session.worker.busy
        now = time.perf_counter()
        if ready:
            idle_since.setdefault("t", now)
            if now - idle_since["t"] >= 1.0:
                open_dialog()
                return
        else:
            idle_since.clear()
        if now - launched > args.idle_wait and session.state.scan is None:
            info["problems"].append("the demo case did not open; starting anyway")
            open_dialog()
            return
        QTimer.singleShot(100, wait_until_ready)

    def watchdog() -> None:
        if "start" in t and time.perf_counter() - t["start"] > args.timeout and "end" not in t:
            info["problems"].append(f"timed out after {args.timeout} s")
            finish(1)

    dog = QTimer()
    dog.setInterval(1000)
    dog.timeout.connect(watchdog)
    dog.start()
    QTimer.singleShot(200, wait_until_ready)
    _run_event_loop(app, loop)

    # ------------------------------------------------------------ report

    end = t.get("end", time.perf_counter())
    gaps = [b - a for a, b in zip(beats, beats[1:])]
    worst_beat = max(range(len(gaps)), key=gaps.__getitem__) if gaps else None
    times = [0.0] + [u["t"] for u in recorder.updates]
    upd_gaps = [b - a for a, b in zip(times, times[1:])]
    worst_upd = max(range(len(upd_gaps)), key=upd_gaps.__getitem__) if upd_gaps else None
    rec = rec_holder.get("rec")
    evaluation = info.get("evaluation", "")
    sorted_gaps = sorted(gaps)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "load_average_before": load_start,
                    "load_average_at_start": info.get("load_at_start"), "load_average_at_end": load_average(),
                    "python": platform.python_version()},
        "dialog": info.get("dialog"),
        "job_config": rec.config if rec is not None else None,
        "state": info.get("state"),
        "seconds": {
            "start_to_done": marks.get("job done"),
            "start_to_experts_in_switcher": marks.get("new experts in the expert switcher"),
            "start_to_evaluation_shown": marks.get("evaluation shown"),
            "start_to_switcher_dice": marks.get("switcher shows the new experts' Dice"),
            "marks": marks,
        },
        "progress": {
            "visible_updates": len(recorder.updates),
            "max_gap_s": round(max(upd_gaps), 3) if upd_gaps else None,
            "max_gap_after": recorder.updates[worst_upd - 1] if worst_upd else None,
            "max_gap_ends_with": recorder.updates[worst_upd] if worst_upd is not None else None,
            "progress_signals": len(signals),
            "updates": recorder.updates,
        },
        "heartbeat": {
            "interval_ms": HEARTBEAT_MS, "beats": len(beats),
            "worst_gap_ms": round(1000 * max(gaps), 1) if gaps else None,
            "worst_gap_at_s": round(beats[worst_beat] - t["start"], 2) if worst_beat is not None else None,
            "p99_gap_ms": round(1000 * sorted_gaps[int(0.99 * (len(sorted_gaps) - 1))], 1) if gaps else None,
            "gaps_over_100ms": sum(g > 0.1 for g in gaps),
            "worst_gaps": [{"at_s": round(beats[i + 1] - t["start"], 2), "ms": round(1000 * gaps[i], 1)}
                           for i in sorted(range(len(gaps)), key=gaps.__getitem__)[-10:][::-1]],
        },
        "switcher": info.get("switcher"),
        "switcher_shows_evaluated_dice": "switcher shows the new experts' Dice" in marks,
        "dice": region_dice(evaluation) if evaluation else {},
        "evaluation_markdown": evaluation,
        "quick_check_not_a_timing": bool(args.quick),
        "problems": info["problems"],
        "wall_s_total": round(end - t["start"], 1) if "start" in t else None,
        "workdir": str(workdir),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    s = result["seconds"]
    print("\n== GUI demo decomposition timing")
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}); load average at start {info.get('load_at_start')}, "
          f"at end {result['machine']['load_average_at_end']}")
    print(f"Start -> job done:                     {s['start_to_done']} s")
    print(f"Start -> new experts in the switcher:  {s['start_to_experts_in_switcher']} s")
    print(f"Start -> evaluation table shown:       {s['start_to_evaluation_shown']} s")
    print(f"Start -> switcher shows their Dice:    {s['start_to_switcher_dice']} s "
          f"(switcher entries at the end: {result['switcher']})")
    p = result["progress"]
    print(f"visible progress updates: {p['visible_updates']} (progress signals {p['progress_signals']}); "
          f"largest gap {p['max_gap_s']} s")
    if p["max_gap_ends_with"]:
        print(f"   the largest gap ended at {p['max_gap_ends_with']['t']} s with {p['max_gap_ends_with']['text']}")
    h = result["heartbeat"]
    print(f"UI heartbeat ({HEARTBEAT_MS} ms timer): {h['beats']} beats, worst gap {h['worst_gap_ms']} ms "
          f"(at {h['worst_gap_at_s']} s), p99 {h['p99_gap_ms']} ms, {h['gaps_over_100ms']} gaps over 100 ms")
    for name, value in marks.items():
        print(f"   {value:8.1f} s  {name}")
    if evaluation:
        print("\nEvaluation shown by the app (per region):\n")
        print(region_table(evaluation))
    for problem in info["problems"]:
        print(f"PROBLEM: {problem}")
    print(f"\nwrote {args.out}")
    ok = info.get("exit") == 0 and result["state"] == "done" and bool(evaluation) and not info["problems"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
