"""Smoothed surface meshes of label structures (VTK only, no Qt; safe to run on a worker thread).

Per structure: crop to its bounding box (scipy.ndimage.find_objects, one pass for all labels), pad
by a voxel so border-touching structures still close, vtkDiscreteFlyingEdges3D, windowed-sinc
smoothing (Slicer's surface smoothing), then quadric decimation when the mesh is large. Cropping
keeps each structure's cost proportional to its own size; VTK releases the GIL inside filters, so
building on a thread leaves the UI responsive.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pyvista as pv
from scipy import ndimage
from vtkmodules.util.numpy_support import numpy_to_vtk
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkFiltersCore import vtkPolyDataNormals, vtkQuadricDecimation, vtkWindowedSincPolyDataFilter
from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D

# Triangle budget: software OpenGL (llvmpipe) redraws ~1M triangles/s on a busy 2-core machine, and a
# frame must stay far below the UI's 150 ms budget, so a scene gets ~150k and one structure at most 12k.
MAX_TRIANGLES = 12_000
SCENE_TRIANGLES = 150_000
MAX_CROP_VOXELS = 6_000_000  # above this a structure is contoured at half resolution


def _image(mask: np.ndarray, spacing: Sequence[float], origin: Sequence[float]) -> vtkImageData:
    image = vtkImageData()
    image.SetDimensions(mask.shape[2], mask.shape[1], mask.shape[0])
    image.SetSpacing(*spacing)
    image.SetOrigin(*origin)
    scalars = numpy_to_vtk(np.ascontiguousarray(mask).ravel(), deep=True)
    scalars.SetName("mask")
    image.GetPointData().SetScalars(scalars)
    return image


def structure_surface(
    mask: np.ndarray,
    spacing: Sequence[float],
    origin: Sequence[float],
    smoothing_iterations: int = 20,
    max_triangles: int = MAX_TRIANGLES,
) -> pv.PolyData:
    """Smoothed surface of a binary (z, y, x) mask on a grid with (x, y, z) spacing and origin."""
    contour = vtkDiscreteFlyingEdges3D()
    contour.SetInputData(_image(mask.astype(np.uint8, copy=False), spacing, origin))
    contour.SetValue(0, 1)
    contour.ComputeNormalsOff()
    contour.ComputeGradientsOff()
    contour.ComputeScalarsOff()
    smoother = vtkWindowedSincPolyDataFilter()
    smoother.SetInputConnection(contour.GetOutputPort())
    smoother.SetNumberOfIterations(smoothing_iterations)
    smoother.SetPassBand(0.01)
    smoother.BoundarySmoothingOff()
    smoother.FeatureEdgeSmoothingOff()
    smoother.NonManifoldSmoothingOn()
    smoother.NormalizeCoordinatesOn()
    smoother.Update()
    last = smoother
    triangles = smoother.GetOutput().GetNumberOfCells()
    if triangles > max_triangles:
        decimate = vtkQuadricDecimation()
        decimate.SetInputConnection(smoother.GetOutputPort())
        decimate.SetTargetReduction(1.0 - max_triangles / triangles)
        last = decimate
    normals = vtkPolyDataNormals()
    normals.SetInputConnection(last.GetOutputPort())
    normals.SplittingOff()
    normals.ConsistencyOn()
    normals.Update()
    return pv.PolyData(normals.GetOutput())


def build_surfaces(
    labels: np.ndarray,
    spacing: Sequence[float],
    origin: Sequence[float],
    cancel: threading.Event | None = None,
) -> dict[int, pv.PolyData]:
    """Surfaces of every id > 0 in a display-grid label map (axes S, P, L; spacing/origin in x, y, z)."""
    labels = np.asarray(labels)
    if labels.min(initial=0) < 0:
        labels = np.where(labels < 0, 0, labels)
    boxes = ndimage.find_objects(labels if labels.dtype.kind in "iu" else labels.astype(np.int32))
    spacing_np = np.asarray(spacing, dtype=float)
    surfaces: dict[int, pv.PolyData] = {}
    per_structure = max(
        1_000, min(MAX_TRIANGLES, SCENE_TRIANGLES // max(1, sum(b is not None for b in boxes)))
    )
    for index, box in enumerate(boxes):
        if box is None:
            continue
        if cancel is not None and cancel.is_set():
            break
        label_id = index + 1
        step = 2 if np.prod([s.stop - s.start for s in box]) > MAX_CROP_VOXELS else 1
        crop = labels[tuple(slice(s.start, s.stop, step) for s in box)] == label_id
        mask = np.pad(crop, 1)
        start_xyz = np.array([box[2].start, box[1].start, box[0].start], dtype=float)
        sub_spacing = spacing_np * step
        sub_origin = np.asarray(origin, dtype=float) + start_xyz * spacing_np - sub_spacing
        surface = structure_surface(mask, sub_spacing, sub_origin, max_triangles=per_structure)
        if surface.n_points:
            surfaces[label_id] = surface
    return surfaces
