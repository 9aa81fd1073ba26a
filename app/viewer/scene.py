"""The 3D scene, rendered offscreen with pyvista/VTK into numpy images (no Qt here).

Contents, in LPS world millimetres: the volume outline, the three slice planes as coloured frames,
smoothed label surfaces and an L/R/A/P/S/I orientation cube in a corner viewport whose camera follows
the main one. Camera moves mirror VTK's trackball-camera style so the view handles like Slicer's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pyvista as pv
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkRenderingAnnotation import vtkAnnotatedCubeActor
from vtkmodules.vtkRenderingCore import vtkRenderer, vtkWindowToImageFilter

VIEW_ORDER = ("axial", "coronal", "sagittal")


class Scene:
    def __init__(self, size: tuple[int, int] = (400, 300)) -> None:
        self.plotter = pv.Plotter(off_screen=True, window_size=list(size))
        # No MSAA: with software OpenGL four samples triple the cost of every frame.
        self.plotter.ren_win.SetMultiSamples(0)
        self.plotter.set_background("#0d1016", top="#2a3040")
        self.marker = self._orientation_marker()
        self.frames: dict[str, pv.PolyData] = {}
        self.surface_ids: set[int] = set()
        self.bounds: tuple[float, ...] | None = None

    def close(self) -> None:
        if self.marker is not None:
            self.marker.RemoveAllViewProps()
            self.plotter.ren_win.RemoveRenderer(self.marker)
            self.marker = None
        self.frames.clear()
        self.plotter.close()

    # --- content -----------------------------------------------------------------------------------
    def set_volume(
        self, bounds: Sequence[float], frames: Mapping[str, np.ndarray], colors: Mapping[str, str]
    ) -> None:
        """A new volume: outline box and slice frames (4 corner points each); surfaces are dropped."""
        self.plotter.clear_actors()
        self.surface_ids.clear()
        self.frames.clear()
        self.bounds = tuple(float(b) for b in bounds)
        self.plotter.add_mesh(
            pv.Box(self.bounds).extract_all_edges(), color="#8b93a7", line_width=1, name="outline"
        )
        for name, points in frames.items():
            frame = pv.PolyData(np.asarray(points, dtype=float), lines=np.array([5, 0, 1, 2, 3, 0]))
            self.frames[name] = frame
            self.plotter.add_mesh(frame, color=colors[name], line_width=2, name=f"frame-{name}")
        self.reset_camera()

    def move_frames(self, frames: Mapping[str, np.ndarray]) -> None:
        for name, points in frames.items():
            if name in self.frames:
                self.frames[name].points = np.asarray(points, dtype=float)

    def set_surfaces(self, meshes: Mapping[int, pv.PolyData], colors: Mapping[int, Sequence[int]]) -> None:
        for label_id in self.surface_ids:
            self.plotter.remove_actor(f"surface-{label_id}", render=False)
        self.surface_ids = set(meshes)
        for label_id, mesh in meshes.items():
            color = np.asarray(colors[label_id], dtype=float) / 255.0
            self.plotter.add_mesh(
                mesh,
                color=color,
                smooth_shading=True,
                specular=0.25,
                name=f"surface-{label_id}",
                render=False,
            )

    def set_surface_visibility(self, visible: set[int]) -> None:
        for label_id in self.surface_ids:
            self.plotter.actors[f"surface-{label_id}"].SetVisibility(label_id in visible)

    # --- camera -------------------------------------------------------------------------------------
    @property
    def camera(self) -> object:
        return self.plotter.renderer.GetActiveCamera()

    def reset_camera(self) -> None:
        if self.bounds is None:
            return
        b = self.bounds
        centre = np.array([(b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2])
        # From anterior (LPS -y) with superior up, so patient left lands on screen right, then turned a
        # little for depth cues.
        self.plotter.camera_position = [tuple(centre - (0, 1000, 0)), tuple(centre), (0, 0, 1)]
        self.camera.Azimuth(-25)
        self.camera.Elevation(12)
        self.camera.OrthogonalizeViewUp()
        self.plotter.renderer.ResetCamera(*self.bounds)
        self.camera.Zoom(1.15)

    def rotate(self, dx: float, dy: float) -> None:
        """Trackball rotation by a mouse move of (dx, dy) pixels (Qt coordinates, y down)."""
        w, h = self.plotter.window_size
        self.camera.Azimuth(-200.0 * dx / max(w, 1))
        self.camera.Elevation(200.0 * dy / max(h, 1))
        self.camera.OrthogonalizeViewUp()
        self.plotter.renderer.ResetCameraClippingRange()

    def pan(self, dx: float, dy: float) -> None:
        cam = self.camera
        position, focal = np.array(cam.GetPosition()), np.array(cam.GetFocalPoint())
        direction = focal - position
        distance = np.linalg.norm(direction)
        up = np.array(cam.GetViewUp())
        right = np.cross(direction / distance, up)
        mm_per_pixel = (
            2.0 * distance * np.tan(np.radians(cam.GetViewAngle()) / 2) / max(self.plotter.window_size[1], 1)
        )
        shift = (-dx * right + dy * up) * mm_per_pixel
        cam.SetPosition(*(position + shift))
        cam.SetFocalPoint(*(focal + shift))

    def zoom(self, factor: float) -> None:
        self.camera.Dolly(factor)
        self.plotter.renderer.ResetCameraClippingRange()

    # --- pixels -------------------------------------------------------------------------------------
    def render(self, size: tuple[int, int]) -> np.ndarray:
        """Render at (width, height) and return the frame as (h, w, 3) uint8, top row first."""
        size = (max(int(size[0]), 16), max(int(size[1]), 16))
        if tuple(self.plotter.window_size) != size:
            self.plotter.window_size = list(size)
        self._place_marker(size)
        self.plotter.renderer.ResetCameraClippingRange()
        window = self.plotter.ren_win
        window.Render()
        grab = vtkWindowToImageFilter()
        grab.SetInput(window)
        grab.SetInputBufferTypeToRGB()
        grab.ReadFrontBufferOff()
        grab.ShouldRerenderOff()
        grab.Update()
        image = grab.GetOutput()
        w, h, _ = image.GetDimensions()
        pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, 3)
        return np.ascontiguousarray(pixels[::-1])

    def _orientation_marker(self) -> vtkRenderer:
        cube = vtkAnnotatedCubeActor()
        for face, text in zip(("XPlus", "XMinus", "YPlus", "YMinus", "ZPlus", "ZMinus"), "LRPASI"):
            getattr(cube, f"Set{face}FaceText")(text)
        cube.SetFaceTextScale(0.6)
        cube.GetCubeProperty().SetColor(0.22, 0.25, 0.32)
        cube.GetTextEdgesProperty().SetColor(0.85, 0.87, 0.9)
        for faces, rgb in (("X", (0.95, 0.55, 0.5)), ("Y", (0.55, 0.85, 0.5)), ("Z", (0.95, 0.85, 0.45))):
            for sign in ("Plus", "Minus"):
                getattr(cube, f"Get{faces}{sign}FaceProperty")().SetColor(*rgb)
        marker = vtkRenderer()
        marker.SetLayer(1)
        marker.InteractiveOff()
        marker.AddActor(cube)
        self.plotter.ren_win.SetNumberOfLayers(2)
        self.plotter.ren_win.AddRenderer(marker)
        return marker

    def _place_marker(self, size: tuple[int, int]) -> None:
        side = min(size) * 0.2
        self.marker.SetViewport(0.01, 0.01, 0.01 + side / size[0], 0.01 + side / size[1])
        cam = self.camera
        direction = np.array(cam.GetPosition()) - np.array(cam.GetFocalPoint())
        direction /= np.linalg.norm(direction) or 1.0
        marker_cam = self.marker.GetActiveCamera()
        marker_cam.SetFocalPoint(0.0, 0.0, 0.0)
        marker_cam.SetPosition(*(direction * 5.0))
        marker_cam.SetViewUp(*cam.GetViewUp())
        self.marker.ResetCamera()
        marker_cam.Zoom(0.9)  # ResetCamera fits the cube itself; leave room for the rotated corners
