"""The voxel canvas the anatomy is painted on.

The scanner grid has an identity direction (LPS: +x patient left, +y posterior, +z superior). Each
voxel gets anatomy coordinates once: a small rigid patient pose plus a smooth random warp, so every
organ shape comes out slightly rotated and deformed without per-shape resampling. Shapes are then
evaluated only on the index box their bounds map to, which keeps a 96^3 case well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lorkd_core.data.phantom_shapes import F, Intersect, Shape, Union


class Canvas:
    def __init__(self, shape_zyx: tuple[int, int, int], spacing_xyz, origin_xyz, matrix: np.ndarray,
                 pivot, warp: Sequence[Sequence[tuple[float, float, float]]] = ()) -> None:
        """Anatomy = matrix @ (scanner - pivot) + pivot + warp (a rotation times a patient-size
        scaling, so shapes are written once in reference-adult millimetres). ``warp[i]`` holds up to
        three (wave number 1/mm, amplitude mm, phase) terms along scanner x, y, z added to anatomy
        axis i."""
        self.shape = tuple(int(s) for s in shape_zyx)
        self.spacing = np.asarray(spacing_xyz, float)
        self.origin = np.asarray(origin_xyz, float)
        self.matrix = np.asarray(matrix, float)
        self.inverse = np.linalg.inv(self.matrix)
        self.pivot = np.asarray(pivot, float)
        nz, ny, nx = self.shape
        sx = (self.origin[0] + np.arange(nx) * self.spacing[0] - self.pivot[0]).astype(F)
        sy = (self.origin[1] + np.arange(ny) * self.spacing[1] - self.pivot[1]).astype(F)
        sz = (self.origin[2] + np.arange(nz) * self.spacing[2] - self.pivot[2]).astype(F)
        r = self.matrix.astype(F)
        # The warp is a sum of 1-D waves along the scanner axes: smooth, random, and cheap because
        # each term is computed on a line and broadcast.
        self.warp_max = 0.0
        coords = []
        for i in range(3):
            fx, fy, fz = r[i, 0] * sx, r[i, 1] * sy, r[i, 2] * sz + F(self.pivot[i])
            for axis_line, (k, amp, phase) in zip((sx, sy, sz), warp[i] if i < len(warp) else ()):
                wave = F(amp) * np.sin(F(k) * axis_line + F(phase))
                if axis_line is sx:
                    fx = fx + wave
                elif axis_line is sy:
                    fy = fy + wave
                else:
                    fz = fz + wave
                self.warp_max += abs(float(amp))
            c = fz[:, None, None] + fy[None, :, None]
            coords.append(np.ascontiguousarray(c + fx[None, None, :], dtype=F))
        self.X, self.Y, self.Z = coords
        self._inv = self.inverse.tolist()
        self._piv = self.pivot.tolist()
        self._org = self.origin.tolist()
        self._spc = self.spacing.tolist()
        self._n = [self.shape[2], self.shape[1], self.shape[0]]
        step = self.spacing * np.linalg.norm(self.matrix, axis=0)  # anatomy mm per voxel step
        self.min_shell = float(0.5 * step.min())
        self.tissue = np.zeros(self.shape, np.uint8)
        self.struct = np.zeros(self.shape, np.int16)
        self.names: dict[str, int] = {}

    # -- structures --------------------------------------------------------------------------------
    def sid(self, name: str | None) -> int:
        """Integer id of a named structure on this canvas (0 = unnamed tissue)."""
        if not name:
            return 0
        if name not in self.names:
            self.names[name] = len(self.names) + 1
        return self.names[name]

    # -- geometry ----------------------------------------------------------------------------------
    def scanner_axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scanner (patient-independent) x, y, z of the grid lines, in mm."""
        nz, ny, nx = self.shape
        return tuple(self.origin[i] + np.arange(n) * self.spacing[i] for i, n in enumerate((nx, ny, nz)))


    def extent(self) -> tuple[np.ndarray, np.ndarray]:
        """Anatomy-space bounds of the whole grid."""
        return (np.array([self.X.min(), self.Y.min(), self.Z.min()]),
                np.array([self.X.max(), self.Y.max(), self.Z.max()]))

    def box(self, lo, hi) -> tuple[slice, slice, slice] | None:
        """Index slices (z, y, x) covering the anatomy-space box [lo, hi], or None when outside."""
        lo0, lo1, lo2 = float(lo[0]), float(lo[1]), float(lo[2])
        hi0, hi1, hi2 = float(hi[0]), float(hi[1]), float(hi[2])
        if not (hi0 >= lo0 and hi1 >= lo1 and hi2 >= lo2) or max(abs(lo0), abs(hi2), abs(hi0), abs(lo2)) > 1e5:
            return None
        w = self.warp_max
        c0, c1, c2 = (lo0 + hi0) / 2 - self._piv[0], (lo1 + hi1) / 2 - self._piv[1], (lo2 + hi2) / 2 - self._piv[2]
        h0, h1, h2 = (hi0 - lo0) / 2 + w, (hi1 - lo1) / 2 + w, (hi2 - lo2) / 2 + w
        out = []
        for j in range(3):  # index axis j = scanner axis j (x, y, z)
            r0, r1, r2 = self._inv[j]
            cj = self._piv[j] + r0 * c0 + r1 * c1 + r2 * c2
            hj = abs(r0) * h0 + abs(r1) * h1 + abs(r2) * h2
            i0 = max(int((cj - hj - self._org[j]) / self._spc[j]) - 1, 0)
            i1 = min(int((cj + hj - self._org[j]) / self._spc[j]) + 2, self._n[j])
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return out[2], out[1], out[0]

    # -- painting ----------------------------------------------------------------------------------
    def paint(self, shape: Shape, tissue: int | Sequence[tuple[float, int]], struct: str | None = None, *,
              keep_struct: bool = False, only_tissue: Sequence[int] | None = None,
              only_struct: Sequence[str] | None = None, not_tissue: Sequence[int] | None = None,
              record: np.ndarray | None = None) -> int:
        """Paint ``tissue`` where ``shape`` is inside; return the number of voxels painted.

        ``tissue`` may be a list of (inset mm, tissue) layers, outer first (cortex then marrow).
        ``struct`` names the structure (None clears it unless ``keep_struct``); ``only_*`` restrict
        painting to voxels that already hold those tissues/structures; ``record`` ORs the mask in.
        """
        layers = [(0.0, int(tissue))] if np.isscalar(tissue) else [(float(a), int(b)) for a, b in tissue]
        sid = self.sid(struct)
        only_t = None if only_tissue is None else _lut(only_tissue, 256)
        not_t = None if not_tissue is None else ~_lut(not_tissue, 256)
        only_s = None if only_struct is None else _lut([self.names[n] for n in only_struct if n in self.names],
                                                      len(self.names) + 2)
        evaluated = []
        if isinstance(shape, Union) and shape.k > 0:
            hit = self._smooth_union(shape)
            if hit is not None:
                evaluated.append(hit)
        elif isinstance(shape, Intersect) and isinstance(shape.shapes[0], Union) and shape.shapes[0].k > 0:
            hit = self._smooth_union(shape.shapes[0])
            if hit is not None:
                box, d = hit
                x, y, z = self.X[box], self.Y[box], self.Z[box]
                for other in shape.shapes[1:]:
                    d = np.maximum(d, other.sdf(x, y, z))
                evaluated.append((box, d))
        else:
            for piece in shape.pieces():
                box = self.box(*piece.bounds())
                if box is None:
                    continue
                evaluated.append((box, piece.sdf(self.X[box], self.Y[box], self.Z[box])))
        count = 0
        for inset, tis in layers:
            for box, d in evaluated:
                m = d <= -F(inset)
                if only_t is not None:
                    m &= only_t[self.tissue[box]]
                if not_t is not None:
                    m &= not_t[self.tissue[box]]
                if only_s is not None:
                    m &= only_s[self.struct[box]]
                if not m.any():
                    continue
                self.tissue[box][m] = tis
                if not keep_struct:
                    self.struct[box][m] = sid
                if record is not None:
                    record[box] |= m
                count += int(m.sum())
        return count

    def _smooth_union(self, shape: Union):
        """A smooth union evaluated child by child on each child's own box (plus the blend radius)
        instead of every child on the whole union box."""
        lo, hi = shape.bounds()
        box = self.box(np.asarray(lo) - shape.k, np.asarray(hi) + shape.k)
        if box is None:
            return None
        d = np.full(tuple(b.stop - b.start for b in box), F(1e4), F)
        k = F(shape.k)
        for child in shape.shapes:
            lo, hi = child.bounds()
            cb = self.box(np.asarray(lo) - shape.k, np.asarray(hi) + shape.k)
            if cb is None:
                continue
            ds = child.sdf(self.X[cb], self.Y[cb], self.Z[cb])
            local = tuple(slice(c.start - b.start, c.stop - b.start) for c, b in zip(cb, box))
            cur = d[local]
            h = np.clip(F(0.5) + F(0.5) * (ds - cur) / k, F(0), F(1))
            d[local] = ds * (F(1) - h) + cur * h - k * h * (F(1) - h)
        return box, d

    def evaluate(self, shape: Shape) -> tuple[tuple[slice, slice, slice], np.ndarray] | None:
        """(box, sdf on the box) of a single-piece shape, or None when it misses the grid."""
        box = self.box(*shape.bounds())
        if box is None:
            return None
        return box, shape.sdf(self.X[box], self.Y[box], self.Z[box])

    def fill(self, box, mask: np.ndarray, tissue: int, struct: str | None = None) -> None:
        """Set ``tissue`` (and ``struct``) where ``mask`` is true inside ``box``."""
        self.tissue[box][mask] = tissue
        self.struct[box][mask] = self.sid(struct)

    def mask_of(self, *names: str) -> np.ndarray:
        ids = [self.names[n] for n in names if n in self.names]
        if not ids:
            return np.zeros(self.shape, bool)
        return np.isin(self.struct, ids)


def _lut(ids, size: int) -> np.ndarray:
    table = np.zeros(size, bool)
    table[[int(i) for i in ids]] = True
    return table
