"""The job dialog's "Demo decomposition" preset: the values docs/gui_decomposition_timing.md documents (and
timed), what the dialog hands to the data preparation and the config, and the preflight accepting it here."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from gui_job_support import manager_fixture, worker_fixture
from lorkd_studio.jobs.dialog import DEMO_MINUTES, DEMO_PRESET, STUDENTS, JobDialog, memory_problem
from lorkd_studio.jobs.wiring import default_job_folder
from lorkd_studio.services import jobs as job_service

pytestmark = pytest.mark.gui
# the shared fixtures this module uses: pytest finds them among its names
SHARED_FIXTURES = (manager_fixture, worker_fixture)

DOC = Path(__file__).resolve().parents[1] / "docs" / "gui_decomposition_timing.md"


def documented() -> dict:
    """The JSON block after the ``demo-preset`` marker in the timing document."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"<!-- demo-preset[^>]*-->\s*```json\n(.*?)\n```", text, re.S)
    assert m, f"{DOC} has no demo-preset JSON block"
    return json.loads(m.group(1))


@pytest.fixture
def dialog(manager, qtbot):
    d = JobDialog(manager, default_job_folder(manager.store.path, "decompose"))
    qtbot.addWidget(d)
    return d


def test_the_dialog_opens_on_the_documented_demo_preset(dialog, tmp_path):
    doc = documented()
    assert doc["preset"] == DEMO_PRESET, "docs/gui_decomposition_timing.md and DEMO_PRESET differ"
    assert doc["minutes_2_cores"] == DEMO_MINUTES
    assert f"about {DEMO_MINUTES} min" in dialog.preset.currentText()
    assert dialog.kind == "decompose" and dialog.preset.currentData() == "demo"
    assert dialog.preset_values() == doc["preset"]  # every field shows the documented value
    assert dialog.student.currentText() == "demo" and STUDENTS["demo"]["kwargs"]["channels"] == [32, 48, 64, 96, 128]
    assert dialog.where.currentData() == "inprocess" and dialog.evaluate.isChecked()
    # Start needs no other input: the output folder is a new one beside the job list
    out = dialog.out.text()
    assert out and out.startswith(str(tmp_path / "jobs" / "decompose-"))

    # an edit turns the preset to Custom; choosing the demo again restores every value
    dialog.steps.setValue(doc["preset"]["steps"] + 1)
    assert dialog.preset.currentData() == "custom" and dialog.steps.value() == doc["preset"]["steps"] + 1
    dialog.preset.setCurrentIndex(dialog.preset.findData("demo"))
    assert dialog.preset_values() == doc["preset"]
    # the adapt job has its own defaults and no preset; back to decompose, the demo again
    dialog.set_job_type("adapt")
    assert not dialog.preset.isVisibleTo(dialog)
    dialog.set_job_type("decompose")
    assert dialog.preset.currentData() == "demo" and dialog.preset_values() == doc["preset"]


def test_the_demo_preset_prepares_its_phantoms_and_passes_the_preflight(dialog, qtbot, tmp_path, monkeypatch):
    preset = documented()["preset"]
    # "Check data" asks for the preset's phantoms (generated into the job folder); recorded, not generated
    asked: dict = {}
    small = job_service.prepare_data

    def prepare(source, path, out, **kw):
        asked.update(source=source, out=out, **{k: v for k, v in kw.items() if k != "ctx"})
        return small("phantoms", "", tmp_path / "small", phantom_cases=1, phantom_size=32, ctx=kw.get("ctx"))

    monkeypatch.setattr(job_service, "prepare_data", prepare)
    dialog.check_button.click()
    qtbot.waitUntil(lambda: "Cases per region" in dialog.report.toPlainText(), timeout=15000)
    assert asked["source"] == "phantoms" and str(asked["out"]) == dialog.out.text()
    assert asked["phantom_cases"] == preset["phantom_cases"] and asked["phantom_size"] == preset["phantom_size"]
    manifest = str(tmp_path / "small" / "data" / "manifest.jsonl")

    # the config the dialog builds from the preset, and the same checks Start runs before a job starts
    cfg = dialog.config(manifest)
    assert type(cfg).__name__ == "DecomposeConfig"
    assert cfg.teacher == str(job_service.bundled_teacher()) and cfg.teacher
    assert cfg.steps == preset["steps"] and cfg.batch_size == preset["batch_size"]
    assert cfg.patch_size == (preset["patch"],) * 3 and cfg.spacing == (preset["spacing_mm"],) * 3
    assert cfg.student == STUDENTS[preset["student"]] and cfg.ranks == preset["rank"]
    assert cfg.lr == pytest.approx(preset["lr"]) and cfg.baseline is preset["baseline"]
    assert cfg.device == preset["device"]
    check = job_service.preflight(cfg, world=1)
    problem = memory_problem(check.memory_bytes, cfg.device)
    assert not check.problems and not problem, check.problems + [problem]
    assert 0 < check.memory_bytes < 4 * 2**30  # a small job: it runs on any machine the app runs on
