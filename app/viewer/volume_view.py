"""The 3D view: an offscreen pyvista scene (scene.py) shown as an image in a plain QWidget.

Why not pyvistaqt's QtInteractor: it is a QOpenGLWidget, and one QOpenGLWidget switches the whole
top-level window to OpenGL composition. With software OpenGL (llvmpipe: Xvfb, CI, remote desktops)
every repaint of any widget in the window (a progress bar tick) then re-composites the window on
the CPU, and while a worker thread computes, the UI thread stalls for 0.3-2 s (measured with a bare
QOpenGLWidget and no VTK at all). Rendering offscreen keeps the window raster: a frame costs one
VTK render only when the 3D content changes, repaints just blit the last image, and grabs work.
The STYLE rules still hold: rendering happens only on the GUI thread (requests from the surface
worker arrive as queued signals, renders are coalesced by a timer) and close() finalises VTK.

pyvista is imported on first use (and preloaded on a thread), so the window appears before it.
"""

from __future__ import annotations

import logging
import threading

import numpy as np
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QVBoxLayout, QWidget

from .header import ViewHeader
from .model import VIEWS, ViewerModel
from .scene_canvas import SceneCanvas
from .surface_worker import SurfaceWorker

LOG = logging.getLogger(__name__)


class VolumeView(QWidget):
    surfaces_ready = Signal()

    def __init__(self, model: ViewerModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.scene = None  # scene.Scene, created on first render
        self.available = True  # becomes False when no OpenGL context can be made
        self.error = ""
        self.surfaces_enabled = False
        self.hidden_structures: set[int] = set()
        self.hidden_surfaces: set[int] = set()
        self._surfaces: dict[int, object] = {}
        self._surface_version = -1
        self._closed = False
        self._worker = SurfaceWorker(self)
        self._worker.built.connect(self._on_built)
        self._render_timer = QTimer(self)
        self._render_timer.setSingleShot(True)
        self._render_timer.setInterval(30)
        self._render_timer.timeout.connect(self._render_now)
        self.header = ViewHeader("3D", "#8fa3c8", self)
        self.header.insert(QWidget(self.header), 1)
        self.header.add_button("\u21ba", "Reset the 3D camera (anterior view)").clicked.connect(
            self.reset_camera
        )
        self.canvas = SceneCanvas(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.header)
        layout.addWidget(self.canvas, 1)
        preload_3d()

    # --- lifecycle ----------------------------------------------------------------------------------
    def ensure_scene(self) -> bool:
        """Create the offscreen scene on first use; False when 3D cannot run here."""
        if self.scene is not None or not self.available or self._closed:
            return self.scene is not None
        try:
            from .scene import Scene

            self.scene = Scene(self._render_size())
        except Exception as exc:  # noqa: BLE001 - no GL context: the slice views still work
            self.available, self.error = False, f"{type(exc).__name__}: {exc}"
            LOG.warning("3D view unavailable: %s", self.error)
            self.canvas.update()
            return False
        self.set_scene()
        return True

    def close_view(self) -> None:
        """Stop the timer and the surface worker, then finalise VTK (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._render_timer.stop()
        self._worker.shutdown()
        self._surfaces.clear()
        self.canvas.image = None
        if self.scene is not None:
            self.scene.close()
            self.scene = None

    # --- scene --------------------------------------------------------------------------------------
    def set_scene(self) -> None:
        """A new volume: outline, slice frames, anterior camera; surfaces follow the labels."""
        if self.scene is None or self.model.volume is None:
            return
        self.scene.set_volume(self._bounds(), self._frames(), {n: s.color for n, s in VIEWS.items()})
        self._surface_version = -1
        self._surfaces = {}
        self.update_labels()

    def reset_camera(self) -> None:
        if self.scene is not None:
            self.scene.reset_camera()
            self.request_render()

    def _bounds(self) -> tuple[float, ...]:
        reo, shape = self.model.reo, self.model.volume.shape  # type: ignore[union-attr]
        lo = np.asarray(reo.origin)  # type: ignore[union-attr]
        hi = lo + (np.array(shape[::-1]) - 1) * np.asarray(reo.spacing)  # type: ignore[union-attr]
        return (lo[0], hi[0], lo[1], hi[1], lo[2], hi[2])

    def _frames(self) -> dict[str, np.ndarray]:
        """Corner points of each slice plane at the crosshair, in world millimetres."""
        b = np.asarray(self._bounds()).reshape(3, 2)  # rows: x, y, z
        reo = self.model.reo
        frames = {}
        for name, spec in VIEWS.items():
            world = 2 - spec.axis
            position = reo.origin[world] + self.model.crosshair[spec.axis] * reo.spacing[world]  # type: ignore[union-attr]
            u, v = [a for a in range(3) if a != world]
            points = np.zeros((4, 3))
            for i, (cu, cv) in enumerate(((0, 0), (1, 0), (1, 1), (0, 1))):
                points[i, world], points[i, u], points[i, v] = position, b[u, cu], b[v, cv]
            frames[name] = points
        return frames

    def update_crosshair(self) -> None:
        if self.scene is not None and self.model.volume is not None:
            self.scene.move_frames(self._frames())
            self.request_render()

    # --- surfaces -----------------------------------------------------------------------------------
    def set_surfaces_enabled(self, enabled: bool) -> None:
        self.surfaces_enabled = enabled
        self.update_labels()

    def update_labels(self) -> None:
        """Re-sync surfaces with the model: rebuild on new voxels, else only visibility."""
        if self.scene is None:
            return
        version = self.model.labels_version
        if self.surfaces_enabled and self.model.labels is not None and self._surface_version != version:
            reo = self.model.reo
            self._worker.submit(version, self.model.labels, reo.spacing, reo.origin)  # type: ignore[union-attr]
        current = self._surface_version == version and self.model.labels is not None
        if not current and self.scene.surface_ids:
            self.scene.set_surfaces({}, {})
        if current:
            hidden = self.hidden_structures | self.hidden_surfaces
            self.scene.set_surface_visibility(
                set() if not self.surfaces_enabled else set(self._surfaces) - hidden
            )
        self.request_render()

    def _on_built(self, version: int, surfaces: dict) -> None:
        if self._closed or version != self.model.labels_version or self.scene is None:
            return
        self._worker.mark_delivered()
        self._surfaces, self._surface_version = surfaces, version
        self.scene.set_surfaces(surfaces, {i: self.model.color_of(i) for i in surfaces})
        self.update_labels()
        self.surfaces_ready.emit()

    def wait_for_surfaces(self, timeout: float = 30.0) -> bool:
        """Spin the event loop until a pending build lands (tests, screenshots); True when surfaces are current."""
        self.ensure_scene()
        self._worker.wait(timeout)
        return self._surface_version == self.model.labels_version

    # --- rendering ----------------------------------------------------------------------------------
    def request_render(self) -> None:
        if not self._closed and not self._render_timer.isActive():
            self._render_timer.start()

    def _render_size(self) -> tuple[int, int]:
        ratio = self.canvas.devicePixelRatioF()
        return max(int(self.canvas.width() * ratio), 64), max(int(self.canvas.height() * ratio), 64)

    def _render_now(self) -> None:
        if self.isVisible() and self.model.volume is not None:
            self.render_now()

    def render_now(self) -> np.ndarray | None:
        """Render the scene at the canvas size and show it; None when 3D is unavailable."""
        self._render_timer.stop()
        if self.model.volume is None or not self.ensure_scene():
            return None
        pixels = self.scene.render(self._render_size())
        self.canvas.set_pixels(pixels)
        return pixels

    def screenshot(self) -> np.ndarray | None:
        """(h, w, 3) uint8 of the 3D scene rendered now; None when 3D is unavailable."""
        pixels = self.render_now()
        return None if pixels is None else pixels.copy()

    def showEvent(self, event: object) -> None:  # noqa: N802
        super().showEvent(event)  # type: ignore[arg-type]
        self.request_render()


_preload: threading.Thread | None = None


def preload_3d() -> threading.Thread:
    """Import pyvista and the surface code on a daemon thread (seconds of imports) so the first 3D
    frame and the first surfaces do not stall the UI thread. Started once; returns that thread (an
    application can wait for it, e.g. to tune the garbage collector afterwards: see app/main.py)."""
    global _preload
    if _preload is None:
        _preload = threading.Thread(target=_import_3d, name="lorkd-3d-preload", daemon=True)
        _preload.start()
    return _preload


def _import_3d() -> None:
    try:
        from . import scene, surfaces  # noqa: F401
    except Exception:  # noqa: BLE001 - the GUI thread's own import reports the problem
        LOG.debug("preloading the 3D modules failed", exc_info=True)
