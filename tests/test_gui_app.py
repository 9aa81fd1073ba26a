"""The real main window, driven as a person would: open, pick a region, run, switch, compare, save.

Models here are test doubles registered through the service layer (``Backend.register_model``): they
threshold the scan instead of running a network, so the GUI flow is tested in seconds. One test runs a
real tiny network through lorkd_core's Predictor.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import SimpleITK as sitk
from lorkd_studio.dialogs import ERROR_DIALOG_NAME
from lorkd_studio.main_window import MainWindow
from lorkd_studio.screenshot import grab_window, image_stats
from lorkd_studio.services.backend import Backend
from lorkd_studio.services.settings import AppSettings
from lorkd_studio.services.types import ClassificationResult, ModelInfo, SegmentationResult
from lorkd_studio.session import Session
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QMessageBox

pytestmark = pytest.mark.gui

NAMES = {1: "liver", 2: "spleen"}
SIGNAL_TIMEOUT = 30000


# ---------------------------------------------------------------- test doubles and data


def fake_runner(grow: int = 0, delay: float = 0.0):
    """Liver = voxels of 40 HU, spleen = 60 HU; ``grow`` widens the spleen so two experts differ."""

    def run(scan, ctx):
        steps = 4
        for i in range(steps):
            ctx.cancel.raise_if_cancelled("fake expert")
            time.sleep(delay / steps)
            ctx.report(i + 1, steps, "segmenting")
        a = scan.array
        labels = np.zeros(a.shape, np.int16)
        labels[(a > 30) & (a < 50)] = 1
        spleen = (a > 55) & (a < 65)
        for _ in range(grow):
            spleen = spleen | np.roll(spleen, 1, axis=2)
        labels[spleen] = 2
        return types.SimpleNamespace(labels=labels, label_names=NAMES)

    return run


def slow_runner(seconds: float = 2.0):
    """Busy on the worker like real inference: Python and numpy work, progress and a cancel check per step."""

    def run(scan, ctx):
        steps = 60
        data = np.random.default_rng(0).random(200_000)
        end = time.perf_counter() + seconds
        for i in range(steps):
            ctx.cancel.raise_if_cancelled("slow expert")
            total = 0.0
            while time.perf_counter() < end - (steps - i - 1) * seconds / steps:
                total += sum(range(200))  # holds the GIL, as pure-Python work does
                np.sort(data)
            ctx.report(i + 1, steps, f"window {i + 1}/{steps}")
        return fake_runner()(scan, types.SimpleNamespace(cancel=ctx.cancel, report=lambda *a, **k: None))

    return run


def box_runner():
    """Two boxes in the middle of any scan: clean shapes, so 3D surfaces of a 512x512 scan stay cheap."""

    def run(scan, ctx):
        z, y, x = scan.array.shape
        labels = np.zeros((z, y, x), np.int16)
        labels[z // 4: 3 * z // 4, y // 4: y // 2, x // 4: x // 2] = 1
        labels[z // 3: 2 * z // 3, y // 2: 3 * y // 4, x // 2 + 4: 3 * x // 4] = 2
        ctx.report(1, 1, "boxes")
        return types.SimpleNamespace(labels=labels, label_names=NAMES)

    return run


def fake_models():
    common = dict(task="segmentation", region="abdomen", modality="CT", label_names=NAMES)
    return [
        (ModelInfo("test:expert", "Test expert · Abdomen", "expert", parameters=120_000, ranks="rank 4",
                   training="test double", dice=0.9, **common), fake_runner()),
        (ModelInfo("test:teacher", "Test teacher · Abdomen", "teacher", parameters=2_000_000,
                   training="test double", dice=0.88, **common), fake_runner(grow=2)),
        (ModelInfo("test:slow", "Slow test expert · Abdomen", "user", **common), slow_runner()),
    ]


def synthetic_volume(shape=(16, 48, 40)) -> np.ndarray:
    ct = np.full(shape, -1000.0, np.float32)
    ct[2:14, 6:42, 4:36] = -80.0  # body
    ct[4:12, 10:30, 6:20] = 40.0  # "liver"
    ct[5:10, 14:24, 24:32] = 60.0  # "spleen"
    return ct


def synthetic_ct(path, spacing=(2.0, 2.0, 4.0)):
    image = sitk.GetImageFromArray(synthetic_volume())
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return path


def write_dicom_series(folder, volume, spacing=(2.0, 2.0, 4.0)):
    """A CT series with the UIDs a DICOM SEG must reference (the real test series has them removed)."""
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    for k, plane in enumerate(volume.astype(np.int16)):
        image = sitk.GetImageFromArray(plane[None])
        image.SetSpacing(spacing)
        image.SetOrigin((0.0, 0.0, k * spacing[2]))
        tags = {"0008|0060": "CT", "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0008|0018": generate_uid(),
                "0020|000d": study, "0020|000e": series, "0020|0052": frame, "0020|0013": str(k + 1),
                "0020|0032": f"0\\0\\{k * spacing[2]}", "0020|0037": "1\\0\\0\\0\\1\\0",
                "0028|0030": f"{spacing[1]}\\{spacing[0]}", "0018|0050": str(spacing[2]),
                "0028|1052": "0", "0028|1053": "1"}
        for key, value in tags.items():
            image.SetMetaData(key, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(image)
    return folder


@pytest.fixture
def ct_path(tmp_path):
    return synthetic_ct(tmp_path / "tiny_ct.nii.gz")


@pytest.fixture
def make_window(qtbot, tmp_path):
    windows: list[MainWindow] = []

    def make(models=None, register=True) -> MainWindow:
        settings = AppSettings(tmp_path / f"settings{len(windows)}.ini")
        backend = Backend(include_bundled=False)
        for info, runner in (fake_models() if models is None else models) if register else ():
            backend.register_model(info, runner)
        window = MainWindow(Session(settings, backend), restore_layout=False)
        windows.append(window)
        window.show()
        qtbot.waitExposed(window)
        with qtbot.waitSignal(window.state.catalog_changed, timeout=SIGNAL_TIMEOUT):
            window.session.refresh_models()
        return window

    yield make
    for window in windows:
        window.close()
        assert not window.session.worker.isRunning(), "the worker thread must stop with the window"


def wait_result(qtbot, window, action, model_id=None, timeout=SIGNAL_TIMEOUT):
    def done(result):
        return result is not None and (model_id is None or result.model_id == model_id)

    with qtbot.waitSignal(window.state.result_changed, timeout=timeout, check_params_cb=done):
        action()
    return window.state.result


def open_in_region(qtbot, window, path, region="abdomen", model_id="test:expert"):
    """Open a scan, then pick the region in the region picker (first another one, so the pick is a change)."""
    with qtbot.waitSignal(window.state.scan_changed, timeout=SIGNAL_TIMEOUT):
        window.open_path(path)
    picker = window.region_panel
    assert picker.combo.currentData() == window.state.region == (window.state.suggested_region or "abdomen")
    other = "brain" if region != "brain" else "thorax"
    picker.select_region(other)
    assert window.state.region == other and window.state.offered == []
    assert window.expert_panel.empty.isVisibleTo(window.expert_panel)
    return wait_result(qtbot, window, lambda: picker.select_region(region), model_id)


def find_error_dialog(qtbot, window) -> QMessageBox:
    qtbot.waitUntil(lambda: bool(visible_dialogs(window)), timeout=SIGNAL_TIMEOUT)
    return visible_dialogs(window)[-1]


def visible_dialogs(window):
    return [d for d in window.findChildren(QMessageBox, ERROR_DIALOG_NAME) if d.isVisible()]


# ---------------------------------------------------------------- flows


def test_open_pick_region_run_switch_compare_save(qtbot, make_window, ct_path, tmp_path):
    window = make_window()
    result = open_in_region(qtbot, window, ct_path)
    assert isinstance(result, SegmentationResult) and result.model_id == "test:expert"
    assert window.central.currentWidget() is window.viewer

    # The expert switcher lists the region's models, region experts first, with the selected one's card.
    names = [window.expert_panel.list.item(i).text().split("\n")[0] for i in range(window.expert_panel.list.count())]
    assert names == ["Test expert · Abdomen", "Slow test expert · Abdomen", "Test teacher · Abdomen"]
    assert window.expert_panel.title.text() == "Test expert · Abdomen"
    assert window.expert_panel._fields["Dice"].text() == "0.900"
    rows = {r[0]: r for r in window.outputs_panel.rows()}
    assert set(rows) == {"Liver", "Spleen"}
    assert rows["Spleen"][1] == pytest.approx(5 * 10 * 8 * 2.0 * 2.0 * 4.0 / 1000)
    assert rows["Spleen"][2] == pytest.approx(60.0) and not rows["Spleen"][3]

    # Switch expert: the list click re-runs inference on the worker.
    result_b = wait_result(qtbot, window, lambda: window.expert_panel.select_model("test:teacher"), "test:teacher")
    assert window.state.model_id == "test:teacher"
    spleen_b = next(s for s in result_b.stats if s.name == "spleen")
    assert spleen_b.volume_ml > rows["Spleen"][1]

    # Compare with the region expert: per-structure volume changes and a difference overlay.
    panel = window.compare_panel
    window.results_tabs.setCurrentWidget(panel)
    assert {panel.other.itemData(i) for i in range(panel.other.count())} == {"test:expert", "test:slow"}
    panel.other.setCurrentIndex(panel.other.findData("test:expert"))
    with qtbot.waitSignal(window.state.comparison_changed, timeout=SIGNAL_TIMEOUT,
                          check_params_cb=lambda c: c is not None):
        qtbot.mouseClick(panel.button, Qt.MouseButton.LeftButton)
    changes = {c.name: c for c in window.state.comparison.changes}
    assert changes["liver"].delta == pytest.approx(0.0)
    assert changes["spleen"].delta < 0  # B (the region expert) finds a smaller spleen than A (the teacher)
    assert panel.table.rowCount() == 2
    panel.difference.setChecked(True)
    assert "only A" in window.viewer.model.names.values()
    panel.difference.setChecked(False)

    # Structure visibility from the table reaches the viewer.
    item = window.outputs_panel.table.item(0, 0)
    item.setCheckState(Qt.CheckState.Unchecked)
    assert item.data(Qt.ItemDataRole.UserRole) in window.viewer.model.hidden

    # Save label map, report and screenshot; the label map reopens with the same voxels.
    with qtbot.waitSignal(window.session.saved, timeout=SIGNAL_TIMEOUT):
        window.save_label_map(tmp_path / "out" / "seg.nii.gz")
    labels, names = window.session.backend.load_label_map(tmp_path / "out" / "seg.nii.gz", window.state.scan)
    assert np.array_equal(labels, window.state.result.labels) and names == NAMES
    sidecar = json.loads((tmp_path / "out" / "seg.json").read_text())
    assert sidecar["model"] == "test:teacher" and sidecar["region"] == "abdomen"
    with qtbot.waitSignal(window.session.saved, timeout=SIGNAL_TIMEOUT):
        window.save_report(tmp_path / "out" / "report.json")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["model"]["id"] == "test:teacher" and report["scan"]["size_xyz"] == [40, 48, 16]
    assert {s["structure"] for s in report["structures"]} == {"liver", "spleen"}
    assert report["compare"]["model"]["id"] == "test:expert"
    assert "tiny_ct" not in json.dumps(report)
    window.save_screenshot(tmp_path / "out" / "shot.png")
    std, colors = image_stats(grab_window(window))
    assert (tmp_path / "out" / "shot.png").stat().st_size > 10_000 and std > 10 and colors > 50

    # Recent files remember the scan.
    window._fill_recent_menu()
    assert window.session.settings.recent_files[0] == ct_path.resolve()
    assert any(a.text() == "tiny_ct.nii.gz" for a in window.recent_menu.actions())


def test_dicom_series_flow_with_dicom_seg(qtbot, make_window, ct_dicom_dir, tmp_path):
    common = dict(task="segmentation", region="abdomen", modality="CT", label_names=NAMES)
    window = make_window([(ModelInfo("test:boxes", "Box expert · Abdomen", "expert", **common), box_runner())])
    window.display_panel.surfaces.setChecked(False)  # a user setting; 3D surfaces of 512 x 512 slices are slow
    result = open_in_region(qtbot, window, ct_dicom_dir, model_id="test:boxes")
    assert window.state.scan.is_dicom and window.state.scan.array.shape == (20, 512, 512)
    assert result.labels.shape == (20, 512, 512) and len(result.stats) == 2
    assert window.save_seg_action.isEnabled()
    assert any(name.startswith("DICOM") for name in window.display_panel._presets)
    with qtbot.waitSignal(window.session.saved, timeout=SIGNAL_TIMEOUT):
        window.save_label_map(tmp_path / "dicom_seg.nii.gz")
    labels, _ = window.session.backend.load_label_map(tmp_path / "dicom_seg.nii.gz", window.state.scan)
    assert np.array_equal(labels, result.labels)
    # The shared series is anonymised down to no UIDs, so a DICOM SEG cannot reference it: a clear dialog.
    with qtbot.waitSignal(window.session.failed, timeout=SIGNAL_TIMEOUT) as failed:
        window.save_dicom_seg(tmp_path / "seg.dcm")
    assert "UID" in failed.args[2] and not (tmp_path / "seg.dcm").exists()
    find_error_dialog(qtbot, window).close()

    series = write_dicom_series(tmp_path / "series", synthetic_volume())
    open_in_region(qtbot, window, series, model_id="test:boxes")
    with qtbot.waitSignal(window.session.saved, timeout=SIGNAL_TIMEOUT):
        window.save_dicom_seg(tmp_path / "seg.dcm")
    import pydicom

    ds = pydicom.dcmread(tmp_path / "seg.dcm")
    assert ds.Modality == "SEG" and len(ds.SegmentSequence) == 2


def test_bad_inputs_show_a_dialog_and_keep_the_open_scan(qtbot, make_window, ct_path, tmp_path):
    window = make_window()
    open_in_region(qtbot, window, ct_path)
    good = window.state.scan
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(ct_path.read_bytes()[:300])
    text = tmp_path / "notes.nii.gz"
    text.write_text("not an image at all\n")
    empty = tmp_path / "zero.nii.gz"
    empty.write_bytes(b"")
    folder = tmp_path / "empty_folder"
    folder.mkdir()
    for bad in (truncated, text, empty, folder):
        with qtbot.waitSignal(window.session.failed, timeout=SIGNAL_TIMEOUT) as failed:
            window.open_path(bad)
        title, path, problem = failed.args
        assert bad.name in title and path.endswith(bad.name) and problem
        dialog = find_error_dialog(qtbot, window)
        assert bad.name in dialog.informativeText() and problem in dialog.informativeText()
        dialog.close()
        qtbot.waitUntil(lambda: not visible_dialogs(window), timeout=5000)
        assert window.state.scan is good
    # Still usable: switching the expert runs again on the scan that stayed open.
    result = wait_result(qtbot, window, lambda: window.expert_panel.select_model("test:teacher"), "test:teacher")
    assert result.labels.shape == good.array.shape
    assert window.session.settings.recent_files == [ct_path.resolve()]


def test_drop_a_file_and_cursor_readout(qtbot, make_window, ct_path):
    window = make_window()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(ct_path))])
    drop = QDropEvent(QPointF(200, 200), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton,
                      Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.state.scan_changed, timeout=SIGNAL_TIMEOUT):
        window.dropEvent(drop)
    assert window.state.scan.source == ct_path
    window.region_panel.select_region("abdomen")
    qtbot.waitUntil(lambda: isinstance(window.state.result, SegmentationResult), timeout=SIGNAL_TIMEOUT)
    canvas = window.viewer.slice_views["axial"].canvas
    qtbot.waitUntil(lambda: canvas.isVisible() and canvas.width() > 50, timeout=5000)
    spleen_voxel = (7, 19, 28)  # identity direction: display grid = array grid
    pos = canvas.screen_pos(spleen_voxel)
    window.viewer.set_slice("axial", spleen_voxel[0])
    qtbot.mouseMove(canvas, QPoint(int(pos.x()), int(pos.y())))
    qtbot.waitUntil(lambda: "HU" in window.cursor_label.text(), timeout=5000)
    assert "Spleen" in window.cursor_label.text()


def test_ui_stays_responsive_while_inference_runs_and_cancel_works(qtbot, make_window, ct_path):
    """The worker never holds up the UI thread: a 10 ms heartbeat keeps beating while an expert runs.

    Measured with the real viewer (slice views plus the 3D view, which renders offscreen into images and
    so keeps the window raster-composited even under software OpenGL)."""
    window = make_window()
    open_in_region(qtbot, window, ct_path)
    first = window.state.result
    gaps: list[float] = []
    last = [time.perf_counter()]

    def beat():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    heartbeat = QTimer()
    heartbeat.setInterval(10)
    heartbeat.timeout.connect(beat)
    worker = window.session.worker
    with qtbot.waitSignal(worker.task_started, timeout=SIGNAL_TIMEOUT):
        window.expert_panel.select_model("test:slow")
    qtbot.wait(150)  # the click's own repaints (list, card, progress bar) are not the worker's doing
    started = last[0] = time.perf_counter()
    heartbeat.start()
    with qtbot.waitSignal(worker.task_succeeded, timeout=SIGNAL_TIMEOUT):
        assert window.job_panel.busy_shown
    heartbeat.stop()
    measured = time.perf_counter() - started
    assert measured > 1.0 and len(gaps) > 0.5 * measured / 0.010, "the heartbeat must have run throughout"
    assert max(gaps) < 0.150, f"UI thread blocked for {max(gaps) * 1000:.0f} ms while the worker ran"
    qtbot.waitUntil(lambda: window.state.result is not None and window.state.result.model_id == "test:slow")

    # Cancel from the progress bar: the run stops between steps and the previous result stays.
    window.expert_panel.select_model("test:expert")
    qtbot.waitUntil(lambda: window.state.result is not None and window.state.result.model_id == "test:expert",
                    timeout=SIGNAL_TIMEOUT)
    kept = window.state.result
    assert kept is not first
    with qtbot.waitSignal(worker.task_progress, timeout=SIGNAL_TIMEOUT):
        window.session.run_model("test:slow")
    with qtbot.waitSignal(worker.task_cancelled, timeout=SIGNAL_TIMEOUT):
        qtbot.mouseClick(window.job_panel.cancel, Qt.MouseButton.LeftButton)
    assert window.state.result is kept


def test_a_broken_model_folder_is_reported_and_the_rest_still_listed(qtbot, make_window, tmp_path):
    window = make_window()
    broken = tmp_path / "models" / "broken"
    broken.mkdir(parents=True)
    (broken / "card.json").write_text('{"format": "lorkd-model/1", "kind": ')
    button = window.model_problems_button
    assert not button.isVisibleTo(window)
    with qtbot.waitSignal(window.state.model_problems_changed, timeout=SIGNAL_TIMEOUT):
        window.add_model_folder(tmp_path / "models")
    qtbot.waitUntil(lambda: bool(window.state.catalog), timeout=SIGNAL_TIMEOUT)
    assert {m.id for m in window.state.catalog} == {"test:expert", "test:teacher", "test:slow"}
    assert button.isVisibleTo(window) and button.text() == "1 model folder skipped"
    assert str(broken) in button.toolTip() and "not valid JSON" in button.toolTip()
    assert str(broken) in window.statusBar().currentMessage()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    shown = [box for box in window.findChildren(QMessageBox) if box.isVisible()]
    assert len(shown) == 1 and str(broken) in shown[0].text() and "not valid JSON" in shown[0].text()
    shown[0].close()
    window.clear_model_folders()
    qtbot.waitUntil(lambda: not button.isVisibleTo(window), timeout=SIGNAL_TIMEOUT)


def test_real_tiny_model_through_the_predictor(qtbot, make_window, ct_path, tmp_path):
    pytest.importorskip("lorkd_core.engine.inference")
    tiny = pytest.importorskip("test_inference_tiny", reason="tiny engine model builders not available")
    models = tiny.build_models(tmp_path / "models", regions=["abdomen"], baseline=False)
    tiny.build_classifier(tmp_path / "models", regions=("abdomen",))
    window = make_window(register=False)
    with qtbot.waitSignal(window.state.catalog_changed, timeout=SIGNAL_TIMEOUT):
        window.add_model_folder(models)
    assert window.session.settings.model_dirs == [models]
    with qtbot.waitSignal(window.state.scan_changed, timeout=SIGNAL_TIMEOUT):
        window.open_path(ct_path)
    window.region_panel.select_region("brain")
    offered = {m.kind: m for m in window.session.backend.models_for(window.state.catalog, "abdomen", "CT")}
    assert {"user", "teacher", "baseline"} <= set(offered)
    expert = offered["user"]
    result = wait_result(qtbot, window, lambda: window.region_panel.select_region("abdomen"), expert.id,
                         timeout=120000)
    assert isinstance(result, SegmentationResult) and result.labels.shape == window.state.scan.array.shape
    assert window.expert_panel.title.text() == expert.name and "rank 2" in window.expert_panel._fields["Ranks"].text()

    classifier = offered["baseline"]
    assert classifier.task == "classification"
    result = wait_result(qtbot, window, lambda: window.expert_panel.select_model(classifier.id), classifier.id,
                         timeout=120000)
    assert isinstance(result, ClassificationResult)
    assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
    assert window.outputs_panel.pages.currentIndex() == 1 and len(window.outputs_panel.chart.values()) == 2
    if result.saliency is not None:
        window.outputs_panel.saliency.setChecked(True)
        assert window.viewer_link.show_saliency


# ---------------------------------------------------------------- the command line


def test_startup_freezes_the_gc_once_the_3d_preload_is_done(qtbot, qapp):
    from lorkd_studio.runtime_policy import freeze_after_3d_preload
    from lorkd_studio.viewer.volume_view import preload_3d

    gc.unfreeze()
    try:
        freeze_after_3d_preload(qapp)
        qtbot.waitUntil(lambda: gc.get_freeze_count() > 0, timeout=SIGNAL_TIMEOUT)
        assert not preload_3d().is_alive()
    finally:
        gc.unfreeze()  # the rest of the session's tests count objects with gc.get_objects()


def _run_cli(args, timeout=180):
    env = dict(os.environ, LORKD_STUDIO_SETTINGS=os.devnull)
    return subprocess.run([sys.executable, "-m", "lorkd_studio.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_screenshot_cli_writes_a_png_and_fails_in_one_line(tmp_path, ct_path, qapp):
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs the X server pytest-xvfb provides")
    out = tmp_path / "shot.png"
    done = _run_cli(["--screenshot", str(out), str(ct_path), "--region", "abdomen"])
    assert done.returncode == 0, done.stderr[-2000:]
    from PySide6.QtGui import QImage

    std, colors = image_stats(QImage(str(out)))
    assert std > 10 and colors > 50, "the screenshot must show more than an empty window"

    empty = tmp_path / "zero.nii.gz"
    empty.write_bytes(b"")
    failed = _run_cli(["--screenshot", str(tmp_path / "no.png"), str(empty)])
    errors = [line for line in failed.stderr.splitlines() if line.startswith("lorkd-studio: error:")]
    assert failed.returncode != 0 and len(errors) == 1 and "zero.nii.gz" in errors[0]
    assert not (tmp_path / "no.png").exists()


def test_window_opens_without_importing_torch(qapp):
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs the X server pytest-xvfb provides")
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from lorkd_studio.main_window import MainWindow\n"
        "from lorkd_studio.services.settings import AppSettings\n"
        "from lorkd_studio.session import Session\n"
        "import os\n"
        "w = MainWindow(Session(AppSettings(os.devnull)), restore_layout=False)\n"
        "w.show(); app.processEvents()\n"
        "print('torch' in sys.modules, round(time.perf_counter() - t, 2))\n"
        "w.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    imported, seconds = out.stdout.split()[-2:]
    assert imported == "False", "torch must be imported on the worker, not while the window opens"
    assert float(seconds) < 10
