"""ViewerWidget driven through pytest-qt: rendering, orientation, linking, window/level, teardown."""

from __future__ import annotations

import gc
import subprocess
import sys

import numpy as np
import pytest
from lorkd_studio.viewer import ViewerWidget
from lorkd_studio.viewer.demo import DEMO_COLORS, DEMO_NAMES, synthetic_abdomen
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QMouseEvent, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

SPACING = (1.5, 1.5, 4.0)


def _vtk_object_ids() -> set[int]:
    from vtkmodules.vtkCommonCore import vtkObjectBase

    return {id(o) for o in gc.get_objects() if isinstance(o, vtkObjectBase)}


@pytest.fixture(scope="module")
def shared_viewer(qapp):
    # One widget for the module: creating a GL interactor per test would triple the run time.
    widget = ViewerWidget()
    widget.resize(900, 720)
    widget.show()
    QTest.qWaitForWindowExposed(widget)
    yield widget
    widget.close()
    widget.deleteLater()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


@pytest.fixture
def viewer(shared_viewer, qtbot):
    shared_viewer.set_layout("2x2")
    shared_viewer.set_mouse_mode("crosshair")
    shared_viewer.show_surfaces(False)
    shared_viewer.volume_view.hidden_surfaces.clear()
    return shared_viewer


@pytest.fixture(scope="module")
def abdomen():
    return synthetic_abdomen((40, 96, 112))


def _array(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    ptr = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes())
    rows = ptr.reshape(image.height(), image.bytesPerLine())[:, : image.width() * 3]
    return rows.reshape(image.height(), -1, 3).copy()  # the QImage's memory dies with it


def _count_color(rgb: np.ndarray, color, tol: int = 6) -> int:
    return int((np.abs(rgb.astype(int) - np.array(color)).max(axis=2) <= tol).sum())


def _load(viewer, abdomen, opacity: float = 1.0):
    ct, labels = abdomen
    viewer.set_volume(ct, spacing=SPACING, modality="CT")
    viewer.set_labels(labels, DEMO_COLORS, DEMO_NAMES)
    viewer.set_opacity(opacity)


def _send_wheel(widget, steps: int, modifiers=Qt.KeyboardModifier.NoModifier):
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(
        pos,
        widget.mapToGlobal(pos),
        QPoint(),
        QPoint(0, 120 * steps),
        Qt.MouseButton.NoButton,
        modifiers,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, event)


def _send_mouse(widget, kind, pos: QPointF, buttons, modifiers=Qt.KeyboardModifier.NoModifier):
    button = Qt.MouseButton.NoButton if kind == QMouseEvent.Type.MouseMove else buttons
    QApplication.sendEvent(
        widget, QMouseEvent(kind, pos, widget.mapToGlobal(pos), button, buttons, modifiers)
    )


def test_slice_views_show_volume_and_label_colours(viewer, abdomen):
    _load(viewer, abdomen)
    viewer.set_crosshair((20, 48, 56))
    images = viewer.grab_views()
    for name in ("axial", "coronal", "sagittal"):
        rgb = _array(images[name])
        assert rgb.std() > 20, f"{name} view looks blank"
    assert _count_color(_array(images["axial"]), DEMO_COLORS[1]) > 200  # liver
    assert _count_color(_array(images["axial"]), DEMO_COLORS[5]) > 50  # vertebra


def test_3d_view_with_surfaces_is_not_blank(viewer, abdomen):
    if not viewer.volume_view.available:
        pytest.skip("no OpenGL-capable display (Qt offscreen platform): the 3D view cannot render")
    _load(viewer, abdomen)
    viewer.show_surfaces(True)
    assert viewer.volume_view.wait_for_surfaces(30)
    shot = _array(viewer.grab_views()["3d"])
    assert shot.shape[0] > 100 and shot.std() > 10
    warm = (shot[:, :, 0].astype(int) - shot[:, :, 2]) > 60  # the orange liver, not the blue-grey background
    assert warm.sum() > 500
    whole = _array(viewer.grab_composite())
    panel = viewer.volume_view.geometry()
    inside = whole[panel.top() + 30 : panel.bottom(), panel.left() : panel.right()]
    assert ((inside[:, :, 0].astype(int) - inside[:, :, 2]) > 60).sum() > 500, (
        "3D scene missing from the window grab"
    )
    viewer.set_surface_visible(1, False)  # the liver, the largest warm surface
    no_liver = _array(viewer.grab_views()["3d"])
    assert ((no_liver[:, :, 0].astype(int) - no_liver[:, :, 2]) > 60).sum() < 0.7 * warm.sum()
    viewer.set_surface_visible(1, True)
    viewer.show_surfaces(False)
    hidden = _array(viewer.grab_views()["3d"])
    assert (np.abs(shot.astype(int) - hidden).max(axis=2) > 40).sum() > 2000


@pytest.mark.parametrize("view", ["axial", "coronal", "sagittal"])
def test_marker_lands_at_the_same_place_for_lps_and_ras_storage(viewer, view):
    # Marker in the patient's left-anterior-superior corner on an LPS grid: high x, low y, high z.
    lps = np.zeros((12, 16, 20), np.float32)
    lps[8:11, 2:5, 14:18] = 1000.0
    ras = lps[:, ::-1, ::-1].copy()  # same anatomy stored with x -> right, y -> anterior
    ras_origin = (19.0, 15.0, 0.0)
    positions = []
    for array, direction, origin in [
        (lps, None, (0, 0, 0)),
        (ras, (-1, 0, 0, 0, -1, 0, 0, 0, 1), ras_origin),
    ]:
        viewer.set_volume(array, spacing=(1, 1, 1), origin=origin, direction=direction, window=(1000, 500))
        viewer.set_labels((array > 0).astype(np.int16), {1: (255, 0, 255)}, {1: "marker"})
        viewer.set_opacity(1.0)
        viewer.set_crosshair(np.argwhere(array > 0)[0])
        rgb = _array(viewer.grab_views(include_3d=False)[view])
        ys, xs = np.nonzero(np.abs(rgb.astype(int) - (255, 0, 255)).max(axis=2) < 10)
        positions.append((ys.mean(), xs.mean(), rgb.shape))
    (y0, x0, shape), (y1, x1, _) = positions
    assert abs(y0 - y1) < 2 and abs(x0 - x1) < 2
    h, w = shape[:2]
    assert y0 < h / 2, "superior/anterior must be up"
    if view == "sagittal":
        assert x0 < w / 2, "anterior must be on the left of a sagittal view"
    else:
        assert x0 > w / 2, "patient left must be on screen right (radiological)"


def test_click_in_axial_moves_the_other_views(viewer, abdomen, qtbot):
    _load(viewer, abdomen)
    viewer.set_crosshair((20, 48, 56))
    canvas = viewer.slice_views["axial"].canvas
    target = (20, 30, 80)
    with qtbot.waitSignal(viewer.cursor_info) as info:
        qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=canvas.screen_pos(target).toPoint())
    assert viewer.slice_index("coronal") == 30 and viewer.slice_index("sagittal") == 80
    assert viewer.slice_index("axial") == 20 and viewer.crosshair() == target
    voxel, value, label, name = info.args
    assert tuple(voxel) == target and value == pytest.approx(float(abdomen[0][target]))
    assert label == int(abdomen[1][target]) and name == DEMO_NAMES.get(label, "")


def test_cursor_info_under_a_known_pixel(viewer, abdomen, qtbot):
    _load(viewer, abdomen)
    ct, labels = abdomen
    liver = tuple(int(v) for v in np.argwhere(labels == 1)[len(np.argwhere(labels == 1)) // 2])
    viewer.set_crosshair(liver)
    canvas = viewer.slice_views["coronal"].canvas
    with qtbot.waitSignal(viewer.cursor_info) as info:
        _send_mouse(canvas, QMouseEvent.Type.MouseMove, canvas.screen_pos(liver), Qt.MouseButton.NoButton)
    voxel, value, label, name = info.args
    assert tuple(voxel) == liver and value == pytest.approx(float(ct[liver]))
    assert (label, name) == (1, "liver")


def test_window_presets_change_pixel_values(viewer, qtbot):
    flat = np.full((10, 40, 40), 40.0, np.float32)
    viewer.set_volume(flat, modality="CT")
    viewer.add_presets({"dicom_1": (80.0, 0.0)})
    expected = {"lung": 225, "bone": 35, "soft_tissue": 127, "dicom_1": 255}
    for preset, grey in expected.items():
        with qtbot.waitSignal(viewer.window_changed) as changed:
            viewer.set_preset(preset)
        assert tuple(changed.args) == viewer.presets()[preset]
        rgb = _array(viewer.grab_views(include_3d=False)["axial"])
        h, w = rgb.shape[:2]
        assert abs(int(rgb[h // 2, w // 2 + 20, 0]) - grey) <= 2, preset
    with pytest.raises(KeyError):
        viewer.set_preset("nope")


def test_shift_drag_adjusts_window_and_level(viewer, abdomen):
    _load(viewer, abdomen)
    canvas = viewer.slice_views["axial"].canvas
    width, level = viewer.window()
    start, end = QPointF(300, 200), QPointF(360, 160)
    left, shift = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier
    _send_mouse(canvas, QMouseEvent.Type.MouseButtonPress, start, left, shift)
    _send_mouse(canvas, QMouseEvent.Type.MouseMove, end, left, shift)
    _send_mouse(canvas, QMouseEvent.Type.MouseButtonRelease, end, left, shift)
    new_width, new_level = viewer.window()
    assert new_width > width and new_level > level  # right widens, up raises the level
    assert viewer.crosshair() == (20, 48, 56)  # the drag did not move the crosshair


def test_wheel_and_keys_scroll_slices(viewer, abdomen, qtbot):
    _load(viewer, abdomen)
    axial = viewer.slice_views["axial"].canvas
    start = viewer.slice_index("axial")
    with qtbot.waitSignal(viewer.slice_changed) as changed:
        _send_wheel(axial, 1)
    assert changed.args == ["axial", start + 1]
    qtbot.keyClick(axial, Qt.Key.Key_PageDown)
    qtbot.keyClick(axial, Qt.Key.Key_PageDown)
    assert viewer.slice_index("axial") == start - 1
    zoom = axial.zoom
    _send_wheel(axial, 2, Qt.KeyboardModifier.ControlModifier)
    assert axial.zoom > zoom and viewer.slice_index("axial") == start - 1


def test_anisotropic_spacing_keeps_physical_aspect(viewer, abdomen):
    _load(viewer, abdomen)
    rect = viewer.slice_views["coronal"].canvas.image_rect()
    nz, _, nx = abdomen[0].shape
    assert rect.height() / rect.width() == pytest.approx(nz * SPACING[2] / (nx * SPACING[0]), rel=1e-3)


def test_structure_visibility_and_difference_overlay(viewer, abdomen):
    _load(viewer, abdomen)
    viewer.set_crosshair((20, 48, 56))
    assert _count_color(_array(viewer.grab_views(include_3d=False)["axial"]), DEMO_COLORS[1]) > 200
    viewer.set_structure_visible(1, False)
    assert _count_color(_array(viewer.grab_views(include_3d=False)["axial"]), DEMO_COLORS[1]) < 10
    viewer.set_structure_visible(1, True)

    from lorkd_studio.viewer.colormaps import DIFF_COLORS, DIFF_ONLY_A, DIFF_ONLY_B

    labels = abdomen[1]
    other = labels.copy()
    other[:, :, :40] = 0  # expert B misses the right part of the liver
    other[:, 5:15, 40:70] = 2  # and adds a spurious block
    viewer.set_difference(labels, other, names=("teacher", "expert"))
    rgb = _array(viewer.grab_views(include_3d=False)["axial"])
    assert (
        _count_color(rgb, DIFF_COLORS[DIFF_ONLY_A]) > 100
        and _count_color(rgb, DIFF_COLORS[DIFF_ONLY_B]) > 100
    )
    assert _count_color(rgb, DEMO_COLORS[1]) < 10
    viewer.set_difference(None, None)
    assert _count_color(_array(viewer.grab_views(include_3d=False)["axial"]), DEMO_COLORS[1]) > 200


def test_layout_switch_and_double_click_maximise(viewer, abdomen, qtbot):
    _load(viewer, abdomen)
    canvas = viewer.slice_views["sagittal"].canvas
    qtbot.mouseDClick(canvas, Qt.MouseButton.LeftButton, pos=QPoint(50, 50))
    assert viewer.layout_name() == "sagittal"
    assert not viewer.slice_views["axial"].isVisible() and canvas.isVisible()
    viewer.set_layout("2x2")
    assert all(v.isVisible() for v in viewer.slice_views.values())
    with pytest.raises(ValueError):
        viewer.set_layout("3x3")


def test_close_finalises_vtk_and_leaks_no_vtk_objects(qtbot, abdomen):
    import pyvistaqt  # noqa: F401  (objects pyvista creates at import are not leaks)

    gc.collect()
    before = _vtk_object_ids()
    widget = ViewerWidget()
    qtbot.addWidget(widget)
    widget.resize(600, 500)
    widget.show()
    qtbot.waitExposed(widget)
    _load(widget, abdomen)
    widget.show_surfaces(True)
    images = widget.grab_views()
    scene = widget.volume_view.scene
    assert widget.volume_view.available == (scene is not None) and not images["axial"].isNull()
    widget.close()
    widget.close()  # twice is harmless
    assert widget.volume_view.scene is None and not widget.volume_view._render_timer.isActive()
    if scene is not None:
        assert scene.plotter._closed
    del scene, images
    widget.deleteLater()
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
    leaked = _vtk_object_ids() - before
    kinds = sorted({type(o).__name__ for o in gc.get_objects() if id(o) in leaked})
    assert not leaked, f"{len(leaked)} VTK objects outlived the viewer: {kinds}"


def test_importing_the_viewer_loads_neither_torch_nor_pyvista():
    code = (
        "import sys, lorkd_studio.viewer\n"
        "print(','.join(sorted(m for m in ('torch', 'pyvista', 'pyvistaqt', 'lorkd_core') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_the_viewer_preloads_3d_but_leaves_the_garbage_collector_alone():
    """gc.freeze() is process-wide, so only the application decides it (app/runtime_policy.py), never the widget."""
    code = (
        "import gc, sys\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from lorkd_studio.viewer import ViewerWidget\n"
        "from lorkd_studio.viewer.volume_view import preload_3d\n"
        "w = ViewerWidget()\n"
        "preload_3d().join(240)\n"
        "print('pyvista' in sys.modules, gc.get_freeze_count())\n"
        "w.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-2:] == ["True", "0"]


def test_3d_mouse_rotates_and_zooms_the_camera(viewer, abdomen):
    _load(viewer, abdomen)
    if viewer.volume_view.screenshot() is None:
        pytest.skip(f"no OpenGL context for the offscreen 3D scene: {viewer.volume_view.error}")
    camera = viewer.volume_view.scene.camera
    position = camera.GetPosition()
    canvas = viewer.volume_view.canvas
    left = Qt.MouseButton.LeftButton
    _send_mouse(canvas, QMouseEvent.Type.MouseButtonPress, QPointF(100, 100), left)
    _send_mouse(canvas, QMouseEvent.Type.MouseMove, QPointF(160, 110), left)
    _send_mouse(canvas, QMouseEvent.Type.MouseButtonRelease, QPointF(160, 110), left)
    assert np.linalg.norm(np.subtract(camera.GetPosition(), position)) > 1.0
    distance = camera.GetDistance()
    _send_wheel(canvas, 2)
    assert camera.GetDistance() < distance
    viewer.reset_views()
    assert camera.GetPosition() == pytest.approx(position)
