"""Implicit shapes for the procedural phantoms.

Every shape returns an approximate signed distance in mm (negative inside) for arrays of anatomy
coordinates, and its axis-aligned bounds so the canvas evaluates it only on the voxels it can touch.
Distances are exact for spheres and capsules and close enough elsewhere for shells a few mm thick
(cortical bone, organ walls, skin), which is all the painter uses them for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

F = np.float32
Bounds = tuple[np.ndarray, np.ndarray]
_EPS = F(1e-6)


def rotation(rx: float = 0.0, ry: float = 0.0, rz: float = 0.0) -> np.ndarray:
    """Rotation matrix Rz @ Ry @ Rx (radians) mapping local axes to anatomy axes."""
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    mx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    my = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    mz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return mz @ my @ mx


def _local(x, y, z, c, rot):
    dx, dy, dz = x - F(c[0]), y - F(c[1]), z - F(c[2])
    if rot is None:
        return dx, dy, dz
    r = rot.astype(F)
    return (
        r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz,
        r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz,
        r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz,
    )


def _rotated_extent(radii, rot) -> np.ndarray:
    radii = np.asarray(radii, float)
    if rot is None:
        return radii
    return np.sqrt(((rot * radii[None, :]) ** 2).sum(axis=1))


class Shape:
    def bounds(self) -> Bounds:
        raise NotImplementedError

    def sdf(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def pieces(self) -> Sequence[Shape]:
        """Parts painted one by one on their own boxes (a union without the cost of a global min)."""
        return (self,)


class Ellipsoid(Shape):
    """Ellipsoid with optional taper (radii in x/y shrink towards local +z) and bend (banana)."""

    def __init__(self, center, radii, rot=None, taper: float = 0.0, bend=(0.0, 0.0)) -> None:
        self.c = np.asarray(center, float)
        self.r = np.asarray(radii, float)
        self.rot = rot
        self.taper = float(taper)
        self.bend = (float(bend[0]), float(bend[1]))

    def bounds(self) -> Bounds:
        slack = 1.0 + abs(self.taper) + abs(self.bend[0]) + abs(self.bend[1])
        ext = _rotated_extent(self.r * slack, self.rot)
        return self.c - ext, self.c + ext

    def sdf(self, x, y, z):
        qx, qy, qz = _local(x, y, z, self.c, self.rot)
        rx, ry, rz = (F(v) for v in self.r)
        t = qz / rz
        if self.bend[0] or self.bend[1]:
            qx = qx - F(self.bend[0] * self.r[0]) * t * t
            qy = qy - F(self.bend[1] * self.r[1]) * t * t
        if self.taper:
            s = np.clip(F(1.0) + F(self.taper) * t, F(0.15), None)
            rxs, rys = rx * s, ry * s
        else:
            rxs, rys = rx, ry
        ux, uy, uz = qx / rxs, qy / rys, qz / rz
        k0 = np.sqrt(ux * ux + uy * uy + uz * uz)
        k1 = np.sqrt((ux / rxs) ** 2 + (uy / rys) ** 2 + (uz / rz) ** 2)
        return k0 * (k0 - F(1)) / (k1 + _EPS)


class Sphere(Ellipsoid):
    def __init__(self, center, radius: float) -> None:
        super().__init__(center, (radius, radius, radius))


class ZColumn(Shape):
    """A column along z with a superellipse cross-section whose centre and half-axes follow knot tables.

    ``ay_ant``/``ay_post`` are the half-depths in front of (y < cy) and behind the centre, so a body
    outline can be rounder in front than at the back.
    """

    def __init__(self, zs, cx, cy, ax, ay_ant, ay_post=None, n: float = 2.0) -> None:
        self.zs = np.asarray(zs, float)
        order = np.argsort(self.zs)
        self.zs = self.zs[order]
        k = len(self.zs)

        def arr(v):
            v = np.broadcast_to(np.asarray(v, float), (k,))
            return v[order].astype(float)

        self.cx, self.cy, self.ax, self.aya = arr(cx), arr(cy), arr(ax), arr(ay_ant)
        self.ayp = self.aya if ay_post is None else arr(ay_post)
        self.n = float(n)

    def bounds(self) -> Bounds:
        lo = np.array([(self.cx - self.ax).min(), (self.cy - self.aya).min(), self.zs[0]])
        hi = np.array([(self.cx + self.ax).max(), (self.cy + self.ayp).max(), self.zs[-1]])
        return lo, hi

    def _tables(self):
        if not hasattr(self, "_lut"):
            zq = np.arange(self.zs[0], self.zs[-1] + 0.5, 0.5)
            cols = [np.interp(zq, self.zs, v) for v in (self.cx, self.cy, self.ax, self.aya, self.ayp)]
            cols[2:] = [1.0 / c for c in cols[2:]]  # inverse half-axes: multiply, do not divide
            self._lut = np.stack(cols).astype(F)
        return self._lut

    def sdf(self, x, y, z):
        lut = self._tables()
        z0, z1 = F(self.zs[0]), F(self.zs[-1])
        zl = z
        if z.ndim == 3 and z.shape[1] * z.shape[2] > 64:
            # The profile varies slowly along z: look it up once per slice (at the slice centre)
            # rather than per voxel; only the end caps below use the exact z.
            h, w = z.shape[1] // 2, z.shape[2] // 2
            zl = z[:, h:h + 1, w:w + 1]
        idx = np.clip((zl - z0) * F(2.0) + F(0.5), F(0), F(lut.shape[1] - 1)).astype(np.int32)
        dx = x - lut[0][idx]
        dy = y - lut[1][idx]
        iay = np.where(dy < 0, lut[3][idx], lut[4][idx])
        dx2, dy2 = dx * dx, dy * dy
        iax = lut[2][idx]
        if self.n == 2.0:
            rho = np.sqrt(dx2 * (iax * iax) + dy2 * (iay * iay))
        else:
            n = F(self.n)
            rho = (np.abs(dx * iax) ** n + np.abs(dy * iay) ** n) ** (F(1) / n)
        # Distance along the ray from the axis: exact on circles, close for these mild ellipses.
        r = np.sqrt(dx2 + dy2)
        d = r - r / (rho + _EPS)
        if z.size and (float(z.min()) < z0 or float(z.max()) > z1):
            d = np.maximum(d, np.maximum(z0 - z, z - z1))
        return d


class Capsule(Shape):
    """Segment a-b with radius ra at a and rb at b (a cone with round ends)."""

    def __init__(self, a, b, ra: float, rb: float | None = None) -> None:
        self.a = np.asarray(a, float)
        self.b = np.asarray(b, float)
        self.ra = float(ra)
        self.rb = float(ra if rb is None else rb)

    def bounds(self) -> Bounds:
        r = max(self.ra, self.rb)
        return np.minimum(self.a, self.b) - r, np.maximum(self.a, self.b) + r

    def sdf(self, x, y, z):
        ba = (self.b - self.a).astype(F)
        px, py, pz = x - F(self.a[0]), y - F(self.a[1]), z - F(self.a[2])
        den = F(max(float(ba @ ba), 1e-9))
        t = np.clip((px * ba[0] + py * ba[1] + pz * ba[2]) / den, F(0), F(1))
        ex, ey, ez = px - t * ba[0], py - t * ba[1], pz - t * ba[2]
        return np.sqrt(ex * ex + ey * ey + ez * ez) - (F(self.ra) + t * F(self.rb - self.ra))


def catmull_rom(points, samples_per_segment: int = 6) -> np.ndarray:
    """Smooth curve through control points (centripetal-free uniform Catmull-Rom)."""
    p = np.asarray(points, float)
    if len(p) < 3:
        return p
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = []
    ts = np.linspace(0, 1, samples_per_segment, endpoint=False)[:, None]
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        out.append(
            0.5
            * (
                2 * p1
                + (-p0 + p2) * ts
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * ts**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * ts**3
            )
        )
    out.append(p[-1:])
    return np.vstack(out)


class Tube(Shape):
    """Union of capsules along a polyline (optionally smoothed); radii are per control point."""

    def __init__(self, points, radii, smooth: int = 0) -> None:
        pts = np.asarray(points, float)
        rad = np.broadcast_to(np.asarray(radii, float), (len(pts),)).copy()
        if smooth and len(pts) >= 3:
            dense = catmull_rom(pts, smooth)
            s_ctrl = np.linspace(0, 1, len(pts))
            rad = np.interp(np.linspace(0, 1, len(dense)), s_ctrl, rad)
            pts = dense
        self.points, self.radii = pts, rad
        self._caps = [Capsule(pts[i], pts[i + 1], rad[i], rad[i + 1]) for i in range(len(pts) - 1)]

    def bounds(self) -> Bounds:
        r = self.radii.max()
        return self.points.min(axis=0) - r, self.points.max(axis=0) + r

    def sdf(self, x, y, z):
        d = self._caps[0].sdf(x, y, z)
        for cap in self._caps[1:]:
            d = np.minimum(d, cap.sdf(x, y, z))
        return d

    def pieces(self) -> Sequence[Shape]:
        return self._caps


class Arc(Shape):
    """A flat band along an elliptical arc in a tilted plane: ribs and the iliac wings.

    The arc is ``c + rot @ (side*a*sin(t), b*cos(t), 0)`` for t in [t0, t1] (t = 0 points to local
    +y); ``thick`` is the half-thickness within the plane, ``height`` the half-height across it.
    """

    def __init__(self, center, a: float, b: float, t0: float, t1: float, thick: float, height: float,
                 rot=None, side: int = 1) -> None:
        self.c = np.asarray(center, float)
        self.a, self.b, self.t0, self.t1 = float(a), float(b), float(t0), float(t1)
        self.thick, self.height = float(thick), float(height)
        self.rot = rot
        self.side = 1 if side >= 0 else -1

    def point(self, t: float) -> np.ndarray:
        local = np.array([self.side * self.a * np.sin(t), self.b * np.cos(t), 0.0])
        return self.c + (local if self.rot is None else self.rot @ local)

    def bounds(self) -> Bounds:
        ts = np.linspace(self.t0, self.t1, 24)
        pts = np.array([self.point(t) for t in ts])
        r = max(self.thick, self.height)
        return pts.min(axis=0) - r, pts.max(axis=0) + r

    def sdf(self, x, y, z):
        qx, qy, qz = _local(x, y, z, self.c, self.rot)
        qx = qx * F(self.side)
        a, b = F(self.a), F(self.b)
        u, v = qx / a, qy / b
        rho = np.sqrt(u * u + v * v)
        grad = np.sqrt((u / a) ** 2 + (v / b) ** 2) / (rho + _EPS)
        d_in = (rho - F(1)) / (grad + _EPS)
        t = np.arctan2(u, v)
        inside = (t >= F(self.t0)) & (t <= F(self.t1))
        d = np.sqrt((d_in / F(self.thick)) ** 2 + (qz / F(self.height)) ** 2) - F(1)
        d = d * F(min(self.thick, self.height))
        # Beyond either end: distance to the end point, so the band has round tips.
        ends = []
        for te in (self.t0, self.t1):
            ex = F(self.a * np.sin(te))
            ey = F(self.b * np.cos(te))
            ends.append(np.sqrt((qx - ex) ** 2 + (qy - ey) ** 2 + qz**2) - F(min(self.thick, self.height)))
        return np.where(inside, d, np.minimum(ends[0], ends[1]))


class SweptArc(Shape):
    """A curved plate: an elliptical arc in the axial plane whose centre, half-axes, angular range and
    thickness change linearly from z0 to z1 (the iliac wings)."""

    def __init__(self, z0: float, z1: float, p0: dict, p1: dict, side: int = 1) -> None:
        self.z0, self.z1 = float(z0), float(z1)
        keys = ("cx", "cy", "a", "b", "t0", "t1", "thick")
        self.p0 = np.array([p0[k] for k in keys], float)
        self.p1 = np.array([p1[k] for k in keys], float)
        self.side = 1 if side >= 0 else -1

    def bounds(self) -> Bounds:
        lo, hi = [], []
        for prm, z in ((self.p0, self.z0), (self.p1, self.z1)):
            cx, cy, a, b, t0, t1, th = prm
            ts = np.linspace(t0, t1, 16)
            xs = cx + self.side * a * np.sin(ts)
            ys = cy + b * np.cos(ts)
            lo.append([xs.min() - th, ys.min() - th, z])
            hi.append([xs.max() + th, ys.max() + th, z])
        return np.min(lo, axis=0), np.max(hi, axis=0)

    def sdf(self, x, y, z):
        f = np.clip((z - F(self.z0)) / F(self.z1 - self.z0), F(0), F(1))
        cx, cy, a, b, t0, t1, th = (F(v0) + f * F(v1 - v0) for v0, v1 in zip(self.p0, self.p1))
        qx = (x - cx) * F(self.side)
        qy = y - cy
        u, v = qx / a, qy / b
        rho = np.sqrt(u * u + v * v)
        grad = np.sqrt((u / a) ** 2 + (v / b) ** 2) / (rho + _EPS)
        d = np.abs((rho - F(1)) / (grad + _EPS)) - th
        t = np.arctan2(u, v)
        r_mean = (a + b) * F(0.5)
        d_ang = np.maximum(t0 - t, t - t1) * r_mean
        d = np.maximum(d, d_ang)
        zlo, zhi = F(min(self.z0, self.z1)), F(max(self.z0, self.z1))
        return np.maximum(d, np.maximum(zlo - z, z - zhi))


class Box(Shape):
    def __init__(self, lo, hi, rot=None, center=None) -> None:
        self.lo, self.hi = np.asarray(lo, float), np.asarray(hi, float)
        self.rot = rot
        self.c = (self.lo + self.hi) / 2 if center is None else np.asarray(center, float)

    def bounds(self) -> Bounds:
        if self.rot is None:
            return self.lo, self.hi
        ext = _rotated_extent(np.maximum(np.abs(self.hi - self.c), np.abs(self.lo - self.c)), self.rot)
        return self.c - ext, self.c + ext

    def sdf(self, x, y, z):
        qx, qy, qz = _local(x, y, z, self.c, self.rot)
        lo, hi = (self.lo - self.c).astype(F), (self.hi - self.c).astype(F)
        dx = np.maximum(lo[0] - qx, qx - hi[0])
        dy = np.maximum(lo[1] - qy, qy - hi[1])
        dz = np.maximum(lo[2] - qz, qz - hi[2])
        return np.maximum(dx, np.maximum(dy, dz))


class Lambda(Shape):
    """A shape given by a function; used for surfaces such as the diaphragm."""

    def __init__(self, fn: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], lo, hi) -> None:
        self.fn = fn
        self.lo, self.hi = np.asarray(lo, float), np.asarray(hi, float)

    def bounds(self) -> Bounds:
        return self.lo, self.hi

    def sdf(self, x, y, z):
        return self.fn(x, y, z).astype(F, copy=False)


def _overlaps(bounds: Bounds, x, y, z, pad: float) -> bool:
    lo, hi = bounds
    for arr, a, b in ((x, lo[0], hi[0]), (y, lo[1], hi[1]), (z, lo[2], hi[2])):
        if arr.size == 0 or arr.min() > b + pad or arr.max() < a - pad:
            return False
    return True


class Union(Shape):
    """Minimum of the children, or a smooth minimum with blend radius ``k`` mm (for body outlines)."""

    def __init__(self, *shapes: Shape, k: float = 0.0) -> None:
        self.shapes = [s for s in shapes if s is not None]
        self.k = float(k)

    def bounds(self) -> Bounds:
        los, his = zip(*(s.bounds() for s in self.shapes))
        return np.min(los, axis=0), np.max(his, axis=0)

    def sdf(self, x, y, z):
        d = None
        for s in self.shapes:
            if not _overlaps(s.bounds(), x, y, z, self.k + 1.0):
                continue
            ds = s.sdf(x, y, z)
            if d is None:
                d = ds
            elif self.k > 0:
                k = F(self.k)
                h = np.clip(F(0.5) + F(0.5) * (ds - d) / k, F(0), F(1))
                d = ds * (F(1) - h) + d * h - k * h * (F(1) - h)
            else:
                d = np.minimum(d, ds)
        if d is None:
            return np.full(np.shape(x), F(1e4), F)
        return d


class Group(Shape):
    """Several shapes painted as one union, each on its own box."""

    def __init__(self, *shapes: Shape) -> None:
        self.shapes = [s for s in shapes if s is not None]

    def bounds(self) -> Bounds:
        los, his = zip(*(s.bounds() for s in self.shapes))
        return np.min(los, axis=0), np.max(his, axis=0)

    def sdf(self, x, y, z):
        d = self.shapes[0].sdf(x, y, z)
        for s in self.shapes[1:]:
            d = np.minimum(d, s.sdf(x, y, z))
        return d

    def pieces(self) -> Sequence[Shape]:
        return [p for s in self.shapes for p in s.pieces()]


class Intersect(Shape):
    def __init__(self, *shapes: Shape) -> None:
        self.shapes = list(shapes)

    def bounds(self) -> Bounds:
        los, his = zip(*(s.bounds() for s in self.shapes))
        return np.max(los, axis=0), np.min(his, axis=0)

    def sdf(self, x, y, z):
        d = self.shapes[0].sdf(x, y, z)
        for s in self.shapes[1:]:
            d = np.maximum(d, s.sdf(x, y, z))
        return d

    def pieces(self) -> Sequence[Shape]:
        # max(min_i a_i, b) == min_i max(a_i, b): each piece of the first shape on its own box.
        parts = self.shapes[0].pieces()
        if len(parts) == 1:
            return (self,)
        return [Intersect(p, *self.shapes[1:]) for p in parts]


class Subtract(Shape):
    def __init__(self, base: Shape, *cut: Shape) -> None:
        self.base, self.cut = base, list(cut)

    def bounds(self) -> Bounds:
        return self.base.bounds()

    def sdf(self, x, y, z):
        d = self.base.sdf(x, y, z)
        for s in self.cut:
            if _overlaps(s.bounds(), x, y, z, 1.0):
                d = np.maximum(d, -s.sdf(x, y, z))
        return d

    def pieces(self) -> Sequence[Shape]:
        parts = self.base.pieces()
        if len(parts) == 1:
            return (self,)
        return [Subtract(p, *self.cut) for p in parts]


class Offset(Shape):
    """Grow (d > 0) or shrink (d < 0) a shape by ``d`` mm."""

    def __init__(self, shape: Shape, d: float) -> None:
        self.shape, self.d = shape, float(d)

    def bounds(self) -> Bounds:
        lo, hi = self.shape.bounds()
        return lo - max(self.d, 0), hi + max(self.d, 0)

    def sdf(self, x, y, z):
        return self.shape.sdf(x, y, z) - F(self.d)

    def pieces(self) -> Sequence[Shape]:
        parts = self.shape.pieces()
        if len(parts) == 1:
            return (self,)
        return [Offset(p, self.d) for p in parts]
