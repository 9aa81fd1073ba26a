"""The 3D view: pyvistaqt QtInteractor with smoothed label surfaces, the volume outline, the three
slice planes as coloured frames and an L/R/A/P/S/I orientation cube, in LPS world millimetres.

pyvista/pyvistaqt are imported only when the interactor is first created (they cost ~2 s of
imports), so the main window can appear before the 3D view is ready. Surfaces are built on a worker
thread and cached per label map; every render goes through the interactor's signal-backed render(),
coalesced by a short timer so crosshair drags do not queue one 3D render per mouse event.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from PySide6.QtCore import QCoreApplication, QEventLoop, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QSurfaceFormat
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from .header import ViewHeader
from .model import VIEWS, ViewerModel

LOG = logging.getLogger(__name__)


class VolumeView(QWidget):
    surfaces_ready = Signal()
    _built = Signal(int, object)  # (labels version, {id: PolyData}) from the worker thread

    def __init__(self, model: ViewerModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.plotter = None
        # Without a real windowing system there is no OpenGL context to give VTK (and it would abort).
        self.available = QGuiApplication.platformName() not in ("offscreen", "minimal")
        if self.available:
            preload_3d()
            # The interactor is created later, but the top-level window picks its GL format when it is
            # first shown; without a desktop-GL 3.2 core default, Qt's compositor shaders fail (llvmpipe).
            QSurfaceFormat.setDefaultFormat(_gl_format())
        self.surfaces_enabled = False
        self.hidden_structures: set[int] = set()
        self.hidden_surfaces: set[int] = set()
        self._surfaces: dict[int, object] = {}
        self._surface_version = -1
        self._pending: Future | None = None
        self._cancel = threading.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._frames: dict[str, object] = {}
        self._closed = False
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(30)
        self._render_timer.timeout.connect(self._render_now)
        self._built.connect(self._on_built)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(0)
        self.header = ViewHeader("3D", "#8fa3c8", self)
        self.header.insert(QWidget(self.header), 1)
        self.header.add_button("↺", "Reset the 3D camera (anterior view)").clicked.connect(self.reset_camera)
        self._layout.addWidget(self.header)
        text = "3D view loading\u2026" if self.available else "3D view unavailable (no OpenGL display)"
        self._placeholder = _Placeholder(text, self)
        self._placeholder.painted.connect(self._placeholder_painted, Qt.ConnectionType.QueuedConnection)
        self._placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._placeholder.setStyleSheet("color:#6b7280; background:#0d1016;")
        self._layout.addWidget(self._placeholder)

    # --- lifecycle ----------------------------------------------------------------------------------
    def _placeholder_painted(self) -> None:
        # Creating the GL widget while the window is still being exposed crashes Qt's compositor
        # (llvmpipe); once the placeholder has painted, the window is up and the switch is safe.
        QTimer.singleShot(0, self.ensure_plotter)

    def ensure_plotter(self) -> bool:
        """Create the interactor on first use; False when 3D cannot run here."""
        if self.plotter is not None or not self.available or self._closed:
            return self.plotter is not None
        from pyvistaqt import QtInteractor

        # No MSAA: on llvmpipe four samples triple the cost of every 3D frame, and frames must stay
        # well under the UI's 150 ms budget while inference runs.
        self.plotter = QtInteractor(self, auto_update=False, multi_samples=0)
        self.plotter.set_background("#0d1016", top="#2a3040")
        # No FXAA either: pyvista's enable_anti_aliasing() crashes an unrealized widget and the renderer
        # flag renders black through pyvistaqt's FBO blit on llvmpipe.
        self._layout.removeWidget(self._placeholder)
        self._placeholder.deleteLater()
        self._layout.addWidget(self.plotter)
        self._add_orientation_cube()
        self.set_scene()
        if self.isVisible():
            # Pay the GL context and shader compilation (~0.5 s on llvmpipe) now, in one block, rather
            # than in a later paint that could land in the middle of the user's next action.
            self.plotter.grabFramebuffer()
        return True

    def close_view(self) -> None:
        """Stop timers and the worker, then finalize VTK (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._render_timer.stop()
        self._cancel.set()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._surfaces.clear()
        self._frames.clear()
        if self.plotter is not None:
            self.plotter.close()
            self.plotter.deleteLater()
            self.plotter = None

    # --- scene --------------------------------------------------------------------------------------
    def set_scene(self) -> None:
        """A new volume: outline, slice frames and an anterior camera; labels are set separately."""
        if self.plotter is None or self.model.volume is None:
            return
        import pyvista as pv

        self.plotter.clear_actors()
        self._frames.clear()
        bounds = self._bounds()
        self.plotter.add_mesh(
            pv.Box(bounds).extract_all_edges(), color="#8b93a7", line_width=1, name="outline"
        )
        for name, spec in VIEWS.items():
            frame = pv.PolyData(self._frame_points(spec.axis), lines=np.array([5, 0, 1, 2, 3, 0]))
            self._frames[name] = frame
            self.plotter.add_mesh(frame, color=spec.color, line_width=2, name=f"frame-{name}")
        self._surface_version = -1
        self._surfaces = {}
        self.update_labels()
        self.reset_camera()

    def reset_camera(self) -> None:
        if self.plotter is None or self.model.volume is None:
            return
        b = self._bounds()
        centre = np.array([(b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2])
        # Looking from anterior (LPS -y) with superior up: patient left lands on screen right.
        self.plotter.camera_position = [tuple(centre - (0, 1000, 0)), tuple(centre), (0, 0, 1)]
        self.plotter.camera.azimuth = -25
        self.plotter.camera.elevation = 12
        self.plotter.reset_camera()
        self.plotter.camera.zoom(1.15)  # reset_camera leaves room for a bounding sphere; the box fills more
        self.request_render()

    def _bounds(self) -> tuple[float, ...]:
        reo, shape = self.model.reo, self.model.volume.shape  # type: ignore[union-attr]
        lo = np.asarray(reo.origin)  # type: ignore[union-attr]
        hi = lo + (np.array(shape[::-1]) - 1) * np.asarray(reo.spacing)  # type: ignore[union-attr]
        return (lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])

    def _frame_points(self, display_axis: int) -> np.ndarray:
        b = np.asarray(self._bounds()).reshape(3, 2)  # rows: x, y, z
        world = 2 - display_axis
        pos = (
            self.model.reo.origin[world] + self.model.crosshair[display_axis] * self.model.reo.spacing[world]
        )  # type: ignore[union-attr]
        u, v = [a for a in range(3) if a != world]
        corners = [(0, 0), (1, 0), (1, 1), (0, 1)]
        points = np.zeros((4, 3))
        for i, (cu, cv) in enumerate(corners):
            points[i, world], points[i, u], points[i, v] = pos, b[u, cu], b[v, cv]
        return points

    def update_crosshair(self) -> None:
        if self.plotter is None or not self._frames:
            return
        for name, frame in self._frames.items():
            frame.points = self._frame_points(VIEWS[name].axis)
        self.request_render()

    def _add_orientation_cube(self) -> None:
        from vtkmodules.vtkRenderingAnnotation import vtkAnnotatedCubeActor

        cube = vtkAnnotatedCubeActor()
        for face, text in zip(("XPlus", "XMinus", "YPlus", "YMinus", "ZPlus", "ZMinus"), "LRPASI"):
            getattr(cube, f"Set{face}FaceText")(text)
        cube.SetFaceTextScale(0.6)
        cube.SetScale(0.8)  # the marker renderer fits the unrotated cube; leave room for rotated corners
        cube.GetCubeProperty().SetColor(0.22, 0.25, 0.32)
        cube.GetTextEdgesProperty().SetColor(0.85, 0.87, 0.9)
        for prop in (cube.GetXPlusFaceProperty(), cube.GetXMinusFaceProperty()):
            prop.SetColor(0.95, 0.55, 0.5)
        for prop in (cube.GetYPlusFaceProperty(), cube.GetYMinusFaceProperty()):
            prop.SetColor(0.55, 0.85, 0.5)
        for prop in (cube.GetZPlusFaceProperty(), cube.GetZMinusFaceProperty()):
            prop.SetColor(0.95, 0.85, 0.45)
        self.plotter.add_orientation_widget(cube, interactive=False, viewport=(0.02, 0.02, 0.2, 0.2))

    # --- surfaces -----------------------------------------------------------------------------------
    def set_surfaces_enabled(self, enabled: bool) -> None:
        self.surfaces_enabled = enabled
        self.update_labels()

    def update_labels(self) -> None:
        """Re-sync surfaces with the model: rebuild on new voxels, else only colours and visibility."""
        if self.plotter is None:
            return
        version = self.model.labels_version
        if self.surfaces_enabled and self.model.labels is not None and self._surface_version != version:
            self._start_build(version)
        self._sync_actors()

    def _start_build(self, version: int) -> None:
        if self._pending is not None and getattr(self._pending, "version", None) == version:
            return
        self._cancel.set()
        self._cancel = cancel = threading.Event()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lorkd-surfaces")
        reo = self.model.reo
        # The label view goes as is (copying 512^3 voxels here would stall the UI); callers replace,
        # never mutate, label maps, and a superseded build is cancelled before its result is used.
        future = self._executor.submit(_build, self.model.labels, reo.spacing, reo.origin, cancel)  # type: ignore[union-attr]
        future.version = version  # type: ignore[attr-defined]
        self._pending = future
        future.add_done_callback(lambda f: self._deliver(version, f, cancel))

    def _deliver(self, version: int, future: Future, cancel: threading.Event) -> None:
        if cancel.is_set() or future.cancelled():
            return
        if future.exception() is not None:
            LOG.error("building 3D surfaces failed: %s", future.exception())
            return
        try:
            self._built.emit(version, future.result())  # queued to the GUI thread
        except RuntimeError:  # the widget was deleted while building
            pass

    def _on_built(self, version: int, surfaces: dict) -> None:
        if self._closed or version != self.model.labels_version:
            return
        self._pending = None
        self._surfaces, self._surface_version = surfaces, version
        self._sync_actors(rebuild=True)
        self.surfaces_ready.emit()

    def _sync_actors(self, rebuild: bool = False) -> None:
        plotter = self.plotter
        if plotter is None:
            return
        current = self._surface_version == self.model.labels_version and self.model.labels is not None
        for name in [n for n in plotter.actors if n.startswith("surface-")]:
            label_id = int(name.split("-")[1])
            if rebuild or not current or label_id not in self._surfaces:
                plotter.remove_actor(name, render=False)
        if current:
            for label_id, mesh in self._surfaces.items():
                name = f"surface-{label_id}"
                if name not in plotter.actors:
                    color = np.asarray(self.model.color_of(label_id)) / 255.0
                    plotter.add_mesh(
                        mesh, color=color, smooth_shading=True, specular=0.25, name=name, render=False
                    )
                visible = (
                    self.surfaces_enabled and label_id not in self.hidden_structures | self.hidden_surfaces
                )
                plotter.actors[name].SetVisibility(visible)
        self.request_render()

    def wait_for_surfaces(self, timeout: float = 30.0) -> bool:
        """Spin the event loop until a pending build lands (tests, screenshots); True when surfaces are current."""
        self.ensure_plotter()
        deadline = time.monotonic() + timeout
        while self._pending is not None and time.monotonic() < deadline:
            if self._pending.done() and (self._pending.cancelled() or self._pending.exception() is not None):
                self._pending = None
                break
            QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            time.sleep(0.002)
        return self._surface_version == self.model.labels_version

    # --- rendering ----------------------------------------------------------------------------------
    def request_render(self) -> None:
        if self.plotter is not None and not self._render_timer.isActive():
            self._render_timer.start()

    def _render_now(self) -> None:
        if self.plotter is not None and self.isVisible():
            self.plotter.render()

    def render_now(self) -> None:
        self._render_timer.stop()
        self._render_now()

    def screenshot(self) -> np.ndarray | None:
        """(h, w, 3) uint8 of the 3D scene, rendered now; None when 3D is unavailable."""
        if not self.ensure_plotter():
            return None
        self.plotter.render()
        return np.asarray(self.plotter.screenshot(return_img=True))


_preload: threading.Thread | None = None


def preload_3d() -> None:
    """Import pyvista, pyvistaqt and the surface code on a daemon thread (seconds of imports) so the
    3D view and the first surfaces do not stall the UI thread when they are first needed."""
    global _preload
    if _preload is None:
        _preload = threading.Thread(target=_import_3d, name="lorkd-3d-preload", daemon=True)
        _preload.start()


def _import_3d() -> None:
    try:
        import pyvistaqt  # noqa: F401

        from . import surfaces  # noqa: F401
    except Exception:  # noqa: BLE001 - the UI thread's own import will report the problem
        LOG.debug("preloading the 3D modules failed", exc_info=True)


def _build(labels: np.ndarray, spacing: tuple, origin: tuple, cancel: threading.Event) -> dict:
    from .surfaces import build_surfaces  # on the worker: scipy and pyvista imports stay off the UI thread

    return build_surfaces(labels, spacing, origin, cancel)


class _Placeholder(QLabel):
    painted = Signal()

    def paintEvent(self, event: object) -> None:  # noqa: N802
        super().paintEvent(event)  # type: ignore[arg-type]
        self.painted.emit()


def _gl_format() -> QSurfaceFormat:
    """Desktop OpenGL 3.2 core, the profile VTK's shaders need; multisampling stays inside VTK."""
    fmt = QSurfaceFormat()
    fmt.setRenderableType(QSurfaceFormat.RenderableType.OpenGL)
    fmt.setProfile(QSurfaceFormat.OpenGLContextProfile.CoreProfile)
    fmt.setVersion(3, 2)
    fmt.setDepthBufferSize(24)
    fmt.setAlphaBufferSize(8)
    fmt.setSamples(0)
    return fmt
