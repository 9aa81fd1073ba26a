"""The app's service layer without windows: worker thread, backend facade, stats, reports, settings."""

from __future__ import annotations

import csv
import gzip
import json
import threading
import time
import types

import numpy as np
import pytest
import SimpleITK as sitk
from lorkd_studio.services.backend import Backend
from lorkd_studio.services.report import build_report, write_report
from lorkd_studio.services.settings import AppSettings
from lorkd_studio.services.stats import relabel_by_name, structure_stats, volume_changes
from lorkd_studio.services.types import LoadedScan, ModelInfo
from lorkd_studio.services.worker import TorchWorker

from lorkd_core.errors import ScanError
from lorkd_core.progress import Progress


def write_nifti(path, array, spacing=(1.5, 1.5, 3.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


def tiny_ct(shape=(12, 24, 20)) -> np.ndarray:
    ct = np.full(shape, -1000.0, np.float32)
    ct[2:10, 4:20, 3:17] = 40.0
    ct[4:8, 6:12, 5:10] = 60.0
    return ct


@pytest.fixture
def worker(qtbot):
    w = TorchWorker("cpu")
    yield w
    assert w.shutdown(5000)
    assert not w.isRunning()


# ---------------------------------------------------------------- worker


def test_worker_runs_tasks_in_order_off_the_ui_thread(qtbot, worker):
    ui_thread = threading.get_ident()
    seen: list[tuple[str, int]] = []
    results: list[object] = []

    def task(name):
        def fn(ctx):
            seen.append((name, threading.get_ident()))
            for i in range(3):
                ctx.report(i + 1, 3, name)
            return name.upper()
        return fn

    with qtbot.waitSignal(worker.idle, timeout=5000):
        worker.submit("a", task("a"), on_result=results.append)
        worker.submit("b", task("b"), on_result=results.append)
    qtbot.waitUntil(lambda: results == ["A", "B"], timeout=2000)
    assert [n for n, _ in seen] == ["a", "b"]
    assert all(tid != ui_thread for _, tid in seen)


def test_worker_progress_signals_and_error_reach_the_ui(qtbot, worker):
    reports: list[Progress] = []
    errors: list[BaseException] = []

    def failing(ctx):
        ctx.report(1, 2, "half")
        raise ScanError("broken header", "/x/scan.nii.gz")

    with qtbot.waitSignals([worker.task_progress, worker.task_failed], timeout=5000):
        handle = worker.submit("fail", failing, on_progress=reports.append, on_error=errors.append)
    qtbot.waitUntil(lambda: bool(errors), timeout=2000)
    assert handle.state == "failed"
    assert reports and reports[0].message == "half"
    assert isinstance(errors[0], ScanError) and "scan.nii.gz" in str(errors[0])


def test_cancel_stops_between_steps_and_same_key_replaces(qtbot, worker):
    steps: list[int] = []
    cancelled: list[str] = []
    results: list[str] = []

    def slow(ctx):
        for i in range(200):
            ctx.cancel.raise_if_cancelled("slow")
            steps.append(i)
            time.sleep(0.005)
        return "slow"

    first = worker.submit("slow", slow, key="inference", on_cancelled=lambda: cancelled.append("first"),
                          on_result=results.append)
    qtbot.waitUntil(lambda: len(steps) > 3, timeout=5000)
    second = worker.submit("quick", lambda ctx: "quick", key="inference", on_result=results.append)
    qtbot.waitUntil(lambda: results == ["quick"], timeout=5000)
    assert cancelled == ["first"] and first.state == "cancelled" and second.state == "done"
    assert len(steps) < 200


def test_shutdown_with_a_running_task_stops_the_thread(qtbot):
    w = TorchWorker("cpu")
    started = threading.Event()

    def forever(ctx):
        started.set()
        while True:
            ctx.cancel.raise_if_cancelled()
            time.sleep(0.01)

    w.submit("forever", forever)
    assert started.wait(5)
    assert w.shutdown(5000)
    assert not w.isRunning()


# ---------------------------------------------------------------- backend


def test_backend_loads_nifti_and_suggests_a_region(tmp_path):
    path = write_nifti(tmp_path / "ct.nii.gz", tiny_ct())
    loaded = Backend(include_bundled=False).load(path)
    assert loaded.array.shape == (12, 24, 20)
    assert loaded.modality == "CT" and loaded.spacing == (1.5, 1.5, 3.0)
    assert loaded.suggested_region in Backend().taxonomy.regions


def test_a_failing_region_suggestion_never_stops_loading(tmp_path, monkeypatch, caplog):
    """Any error of the classifier falls back to lorkd_core's heuristic; if that fails too, no suggestion."""
    import lorkd_core.engine.region_suggest as region_suggest

    path = write_nifti(tmp_path / "ct.nii.gz", tiny_ct())
    expected = region_suggest.heuristic_region(Backend(include_bundled=False).load(path).scan).region

    def broken(scan, **kwargs):
        raise RuntimeError("classifier exploded")

    monkeypatch.setattr(region_suggest, "suggest_region", broken)
    with caplog.at_level("WARNING", logger="lorkd_studio.services.backend"):
        loaded = Backend(include_bundled=False).load(path)
    assert loaded.suggested_region == expected
    assert "classifier exploded" in caplog.text  # logged with its traceback, not swallowed silently

    monkeypatch.setattr(region_suggest, "heuristic_region", broken)
    loaded = Backend(include_bundled=False).load(path)
    assert loaded.suggested_region is None and loaded.array.shape == (12, 24, 20)


def test_model_folder_with_a_broken_card_is_reported_not_listed(tmp_path):
    broken = tmp_path / "models" / "broken"
    broken.mkdir(parents=True)
    (broken / "card.json").write_text("{ not json")
    backend = Backend([tmp_path / "models"], include_bundled=False)
    models, problems = backend.read_catalog()
    assert models == [] and backend.list_models() == []
    assert [p.folder for p in problems] == [broken]
    assert problems[0].problem.startswith("card is not valid JSON")


@pytest.mark.parametrize("kind", ["truncated", "text", "empty", "folder"])
def test_backend_refuses_bad_input_with_file_and_problem(tmp_path, kind):
    if kind == "truncated":
        good = gzip.compress(write_nifti(tmp_path / "g.nii", tiny_ct()).read_bytes())
        path = tmp_path / "truncated.nii.gz"
        path.write_bytes(good[: len(good) // 2])
    elif kind == "text":
        path = tmp_path / "notes.nii.gz"
        path.write_text("this is not an image\n")
    elif kind == "empty":
        path = tmp_path / "empty.nii.gz"
        path.write_bytes(b"")
    else:
        path = tmp_path / "empty_folder"
        path.mkdir()
    with pytest.raises(ScanError) as info:
        Backend(include_bundled=False).load(path)
    assert info.value.path is not None and info.value.path.name == path.name
    assert info.value.problem


def test_registered_model_runs_and_gets_measurements(tmp_path):
    backend = Backend(include_bundled=False)
    loaded = backend.load(write_nifti(tmp_path / "ct.nii.gz", tiny_ct()))
    names = {1: "liver", 2: "spleen"}

    def runner(scan, ctx):
        labels = np.zeros(scan.array.shape, np.int16)
        labels[scan.array == 40.0] = 1
        labels[scan.array == 60.0] = 2
        return types.SimpleNamespace(labels=labels, label_names=names)

    info = ModelInfo("test:fake", "Fake expert", "expert", "segmentation", "abdomen", "CT", label_names=names)
    backend.register_model(info, runner)
    assert [m.id for m in backend.models_for(backend.list_models(), "abdomen", "CT")] == ["test:fake"]
    assert backend.models_for(backend.list_models(), "brain", "CT") == []
    result = backend.run_model(loaded, info)
    by_name = {s.name: s for s in result.stats}
    voxel_ml = 1.5 * 1.5 * 3.0 / 1000
    assert by_name["spleen"].voxels == 4 * 6 * 5
    assert by_name["spleen"].volume_ml == pytest.approx(120 * voxel_ml)
    assert by_name["spleen"].mean_intensity == pytest.approx(60.0)
    assert by_name["liver"].mean_intensity == pytest.approx(40.0)
    assert not by_name["liver"].touches_border


def test_stats_border_changes_and_relabel():
    labels = np.zeros((4, 5, 6), np.int16)
    labels[0, 1:3, 1:3] = 1  # on the first slice: touches the border
    labels[1:3, 2:4, 2:4] = 2
    image = np.arange(labels.size, dtype=np.float32).reshape(labels.shape)
    stats = structure_stats(labels, image, (2.0, 1.0, 1.0), {1: "a", 2: "b"})
    assert [(s.name, s.touches_border) for s in stats] == [("a", True), ("b", False)]
    assert stats[1].volume_ml == pytest.approx(8 * 2.0 / 1000)
    changes = volume_changes(stats, stats[1:])
    assert [(c.name, c.volume_b) for c in changes] == [("a", 0.0), ("b", stats[1].volume_ml)]
    assert changes[0].percent == -100.0
    relabelled = relabel_by_name(labels, {1: "a", 2: "b"}, {5: "b", 6: "a"})
    assert set(np.unique(relabelled)) == {0, 5, 6}


def test_report_has_geometry_and_no_patient_identifiers(tmp_path, ct_dicom_dir):
    backend = Backend(include_bundled=False)
    loaded = backend.load(ct_dicom_dir)
    labels = np.zeros(loaded.array.shape, np.int16)
    labels[5:10, 200:260, 200:260] = 1
    names = {1: "liver"}
    info = ModelInfo("test:box", "Box expert", "expert", "segmentation", "abdomen", "CT", label_names=names)
    backend.register_model(info, lambda scan, ctx: types.SimpleNamespace(labels=labels, label_names=names))
    result = backend.run_model(loaded, info)
    report = build_report(loaded, result, info)
    assert report["scan"]["size_xyz"] == [512, 512, 20] and report["scan"]["source_format"] == "DICOM"
    text = json.dumps(report)
    for forbidden in ("ct_abdomen_dicom", "1.3.12.2", "Patient", "SIEMENS"):
        assert forbidden not in text
    rows = list(csv.DictReader(write_report(tmp_path / "r.csv", report).open()))
    assert rows[0]["structure"] == "liver" and float(rows[0]["volume_ml"]) > 0
    assert rows[0]["region"] == "abdomen" and rows[0]["size_xyz"] == "512x512x20"
    assert json.loads(write_report(tmp_path / "r.json", report).read_text())["structures"][0]["voxels"] == 5 * 60 * 60


def test_label_map_save_and_reload_is_voxel_exact(tmp_path):
    backend = Backend(include_bundled=False)
    loaded = LoadedScan(backend.load(write_nifti(tmp_path / "ct.nii.gz", tiny_ct())).scan, "abdomen",
                        tmp_path / "ct.nii.gz")
    labels = np.zeros(loaded.array.shape, np.int16)
    labels[3:6, 5:9, 4:8] = 2
    info = ModelInfo("test:m", "M", "expert", "segmentation", "abdomen", "CT", label_names={2: "spleen"})
    backend.register_model(info, lambda s, c: types.SimpleNamespace(labels=labels, label_names={2: "spleen"}))
    out = backend.save_label_map(tmp_path / "out", loaded, backend.run_model(loaded, info), info)
    assert out.name == "out.nii.gz" and (tmp_path / "out.json").is_file()
    reread, names = backend.load_label_map(out, loaded)
    assert np.array_equal(reread, labels) and names == {2: "spleen"}


# ---------------------------------------------------------------- settings


def test_settings_persist_across_instances(tmp_path, qapp):
    path = tmp_path / "settings.ini"
    s = AppSettings(path)
    assert s.device == "auto" and s.first_run and s.recent_files == []
    s.device = "cpu"
    s.model_dirs = [tmp_path, tmp_path / "b", tmp_path]
    for i in range(12):
        s.add_recent(tmp_path / f"scan{i}.nii.gz")
    s.add_recent(tmp_path / "scan3.nii.gz")
    s.last_dir = tmp_path
    s.mark_demo_shown()
    s.sync()
    again = AppSettings(path)
    assert again.device == "cpu"
    assert again.model_dirs == [tmp_path, tmp_path / "b"]
    assert len(again.recent_files) == 10 and again.recent_files[0].name == "scan3.nii.gz"
    assert again.last_dir == tmp_path and not again.first_run
    with pytest.raises(ValueError):
        again.device = "tpu"
