"""The voxel canvas the anatomy is painted on.

The scanner grid has an identity direction (LPS: +x patient left, +y posterior, +z superior). Each
voxel gets anatomy coordinates once: a small rigid patient pose plus a smooth random warp, so every
organ shape comes out slightly rotated and deformed without per-shape resampling. Shapes are then
evaluated only on the index box their bounds map to, which keeps a 96^3 case well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lorkd_core.data.phantom_shapes import F, Shape


class Canvas:
    def __init__(self, shape_zyx: tuple[int, int, int], spacing_xyz, origin_xyz, matrix: np.ndarray,
                 pivot, warp: Sequence[Sequence[tuple[np.ndarray, float, float]]] = ()) -> None:
        """Anatomy = matrix @ (scanner - pivot) + pivot (a rotation times a patient-size scaling, so
        shapes are written once in reference-adult millimetres); ``warp``: per-axis lists of
        (wave vector [1/mm], amplitude mm, phase) added to the anatomy coordinates."""
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
        gz, gy, gx = sz[:, None, None], sy[None, :, None], sx[None, None, :]
        r = self.matrix.astype(F)
        coords = []
        for i in range(3):
            c = r[i, 0] * gx + r[i, 1] * gy + r[i, 2] * gz + F(self.pivot[i])
            coords.append(np.ascontiguousarray(np.broadcast_to(c, self.shape), dtype=F))
        self.warp_max = 0.0
        for axis, terms in enumerate(warp):
            for k, amp, phase in terms:
                arg = F(k[0]) * coords[0] + F(k[1]) * coords[1] + F(k[2]) * coords[2] + F(phase)
                coords[axis] += F(amp) * np.sin(arg)
                self.warp_max = max(self.warp_max, abs(float(amp)))
        self.X, self.Y, self.Z = coords
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
    def extent(self) -> tuple[np.ndarray, np.ndarray]:
        """Anatomy-space bounds of the whole grid."""
        return (np.array([self.X.min(), self.Y.min(), self.Z.min()]),
                np.array([self.X.max(), self.Y.max(), self.Z.max()]))

    def box(self, lo, hi) -> tuple[slice, slice, slice] | None:
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))) or np.any(hi < lo):
            return None
        corners = np.array([[lo[0] if i & 1 == 0 else hi[0], lo[1] if i & 2 == 0 else hi[1],
                             lo[2] if i & 4 == 0 else hi[2]] for i in range(8)])
        scanner = (corners - self.pivot) @ self.inverse.T + self.pivot
        idx = (scanner - self.origin) / self.spacing
        pad = self.warp_max / self.spacing + 1.0
        i0 = np.floor(idx.min(axis=0) - pad).astype(int)
        i1 = np.ceil(idx.max(axis=0) + pad).astype(int) + 1
        nx, ny, nz = self.shape[2], self.shape[1], self.shape[0]
        i0 = np.maximum(i0, 0)
        i1 = np.minimum(i1, [nx, ny, nz])
        if np.any(i1 <= i0):
            return None
        return slice(i0[2], i1[2]), slice(i0[1], i1[1]), slice(i0[0], i1[0])

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
        only_t = None if only_tissue is None else np.asarray(list(only_tissue), np.uint8)
        not_t = None if not_tissue is None else np.asarray(list(not_tissue), np.uint8)
        only_s = None if only_struct is None else np.asarray([self.names.get(n, -1) for n in only_struct],
                                                             np.int16)
        evaluated = []
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
                    m &= np.isin(self.tissue[box], only_t)
                if not_t is not None:
                    m &= ~np.isin(self.tissue[box], not_t)
                if only_s is not None:
                    m &= np.isin(self.struct[box], only_s)
                if not m.any():
                    continue
                self.tissue[box][m] = tis
                if not keep_struct:
                    self.struct[box][m] = sid
                if record is not None:
                    record[box] |= m
                count += int(m.sum())
        return count

    def mask_of(self, *names: str) -> np.ndarray:
        ids = [self.names[n] for n in names if n in self.names]
        if not ids:
            return np.zeros(self.shape, bool)
        return np.isin(self.struct, ids)
