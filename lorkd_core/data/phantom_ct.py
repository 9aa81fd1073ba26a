"""From a tissue map to a CT image: parenchymal texture, partial volume, noise, reconstruction FOV.

Partial volume is a Gaussian standing in for voxel integration plus the scanner PSF; noise is white
noise filtered to the fine-grained, correlated texture of filtered back projection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lorkd_core.data.phantom_tissues import T

F = np.float32


@dataclass(frozen=True)
class Scanner:
    noise_std: float  # HU, after correlation
    noise_grain_mm: float  # correlation length of the noise
    psf_fwhm_mm: float  # in-plane resolution
    fov_circle: bool  # pad outside the reconstruction circle with -1024
    lung_gradient: float  # HU per 100 mm towards posterior (gravity-dependent lung density)
    slice_ratio: float  # slice thickness / slice increment (overlapping reconstructions > 1)


def sample_scanner(rng: np.random.Generator, patient_width: float, realism: int = 1) -> Scanner:
    """``patient_width``: half-width (mm) of the body in the scan; ``realism`` >= 2 adds 15% noise."""
    # Larger cross-sections attenuate more: noisier images at the same dose (heads and limbs are quiet).
    base = rng.uniform(4.0, 15.0) * (patient_width / 160.0) ** 1.5
    if realism >= 2:
        base *= 1.15
    return Scanner(
        noise_std=float(np.clip(base, 2.5, 24.0 if realism < 2 else 30.0)),
        noise_grain_mm=float(rng.uniform(0.6, 1.4)),
        psf_fwhm_mm=float(rng.uniform(0.7, 1.6)),
        fov_circle=bool(rng.uniform() < 0.35),
        lung_gradient=float(rng.uniform(20.0, 70.0)),
        slice_ratio=float(rng.uniform(0.8, 1.6)),
    )


def _sigma(mm: float, spacing_zyx: np.ndarray) -> tuple[float, ...]:
    return tuple(float(mm / s) for s in spacing_zyx)


def render_ct(tissue: np.ndarray, hu: np.ndarray, texture: np.ndarray, y_anat: np.ndarray,
              spacing_xyz, scanner: Scanner, rng: np.random.Generator) -> np.ndarray:
    """HU image (float32, z,y,x) for a tissue map with per-tissue mean ``hu`` and ``texture`` std."""
    sp = np.asarray(spacing_xyz, float)[::-1]
    img = hu[tissue]
    # Parenchymal texture: smooth noise (about 3 mm grain) scaled per tissue.
    tex = ndimage.gaussian_filter(rng.standard_normal(tissue.shape, dtype=F),
                                  sigma=[max(0.7, 3.0 / s) for s in sp], mode="reflect")
    tex *= F(1.0 / max(float(tex.std()), 1e-6))
    img += texture[tissue] * tex
    lung = tissue == T.LUNG
    if lung.any():
        img[lung] += F(scanner.lung_gradient / 100.0) * (y_anat[lung] - F(60.0))
    # Partial volume: box integration over the voxel (std 0.29 voxel) plus the PSF / slice profile.
    psf = scanner.psf_fwhm_mm / 2.355
    sig = [np.sqrt(0.29**2 + (psf / s) ** 2) for s in sp[1:]]
    sig_z = np.sqrt(0.29**2 + (scanner.slice_ratio / 2.355) ** 2)
    img = ndimage.gaussian_filter(img, sigma=[sig_z, *sig], mode="nearest", truncate=3.0)
    grain = [max(0.35, scanner.noise_grain_mm / s) for s in sp]
    grain[0] = min(grain[0], 0.5)
    noise = ndimage.gaussian_filter(rng.standard_normal(tissue.shape, dtype=F), sigma=grain, mode="wrap")
    noise *= F(scanner.noise_std / max(float(noise.std()), 1e-6))
    img += noise
    return img


def apply_fov_circle(img: np.ndarray, spacing_xyz, diameter_mm: float) -> None:
    """Set voxels outside the reconstruction circle to -1024, as many scanners store them."""
    ny, nx = img.shape[1:]
    sx, sy = float(spacing_xyz[0]), float(spacing_xyz[1])
    yy = (np.arange(ny) - (ny - 1) / 2) * sy
    xx = (np.arange(nx) - (nx - 1) / 2) * sx
    outside = (yy[:, None] ** 2 + xx[None, :] ** 2) > (diameter_mm / 2) ** 2
    img[:, outside] = F(-1024)
