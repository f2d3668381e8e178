"""Acquisition simulation: slice sensitivity profile, reconstruction-kernel blur, correlated noise, HU bias.

* Slice thickness: the reconstructed slice averages the object over its thickness (partial volume along z),
  modelled as a box profile of the slice thickness resampled on the slice grid.
* Kernel: a separable point-spread function whose MTF is Gaussian with the profile's MTF50, plus an
  overshoot (unsharp mask) for sharp lung kernels — the bright rims sharp kernels put on edges.
* Noise: filtered back-projection noise has a ramp-shaped noise power spectrum rolled off by the kernel,
  NPS(f) ∝ f·exp(-(f/fp)²): coarse blotchy grain for soft kernels, fine grain for sharp ones. Its level
  scales with 1/sqrt(dose) and grows with the patient's water-equivalent diameter (less so with tube
  current modulation); inside a slice it is higher in the centre of the body.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy import ndimage as ndi

from inference.synth.profiles import ScannerProfile


def slice_profile_weights(thickness: float, spacing: float) -> np.ndarray:
    """Weights over neighbouring slices of a box slice profile ``thickness`` wide (linear interpolation)."""
    u = np.linspace(-thickness / 2, thickness / 2, 201) / spacing
    half = int(np.ceil(np.abs(u).max())) + 1
    taps = np.arange(-half, half + 1)
    w = np.clip(1.0 - np.abs(u[:, None] - taps[None, :]), 0, None).mean(axis=0)
    w = w[w > 1e-4] if w[0] < 1e-4 else w
    return (w / w.sum()).astype(np.float32)


def apply_slice_profile(hu: np.ndarray, thickness: float, spacing: float) -> np.ndarray:
    """Average along z over the slice thickness (in place when possible)."""
    w = slice_profile_weights(thickness, spacing)
    if len(w) <= 1:
        return hu
    return ndi.correlate1d(hu, w, axis=0, mode="nearest", output=np.empty_like(hu))


def kernel_taps(profile: ScannerProfile, pixel_mm: float, n: int = 2) -> np.ndarray:
    """1-D point-spread taps (2n+1) at the pixel spacing for the profile's kernel."""
    f50 = profile.mtf50_lpcm / 10.0  # cycles/mm
    f = np.linspace(0, 0.5 / pixel_mm, 256)
    mtf = np.exp(-np.log(2) * (f / f50) ** 2)
    if profile.edge_gain:
        mtf = mtf * (1.0 + profile.edge_gain * (f / f50) ** 2 * np.exp(-((f / (1.4 * f50)) ** 2)))
    x = np.arange(-n, n + 1) * pixel_mm
    psf = (mtf[None, :] * np.cos(2 * np.pi * f[None, :] * x[:, None])).sum(axis=1)
    return (psf / psf.sum()).astype(np.float32)


def apply_kernel(hu: np.ndarray, profile: ScannerProfile, pixel_mm: float, chunk: int = 16) -> np.ndarray:
    """Separable in-plane reconstruction-kernel blur (and overshoot for sharp kernels), in place.

    Processed in blocks of slices so no full-size temporary is needed.
    """
    taps = kernel_taps(profile, pixel_mm)
    tmp = np.empty((min(chunk, hu.shape[0]), *hu.shape[1:]), np.float32)
    for k0 in range(0, hu.shape[0], chunk):
        blk = hu[k0 : k0 + chunk]
        t = tmp[: len(blk)]
        ndi.correlate1d(blk, taps, axis=2, mode="nearest", output=t)
        ndi.correlate1d(t, taps, axis=1, mode="nearest", output=blk)
    return hu


def quantise(hu: np.ndarray, chunk: int = 32) -> np.ndarray:
    """Round to int16 HU clipped to the CT range -1024..3071 (blockwise)."""
    out = np.empty(hu.shape, np.int16)
    for k0 in range(0, hu.shape[0], chunk):
        blk = hu[k0 : k0 + chunk]
        np.clip(blk, -1024, 3071, out=blk)
        np.rint(blk, out=blk)
        out[k0 : k0 + chunk] = blk
    return out


def noise_bank(shape2d: tuple[int, int], profile: ScannerProfile, pixel_mm: float, rng: np.random.Generator,
               n: int = 6) -> np.ndarray:
    """``n`` unit-SD noise slices with the profile's noise power spectrum."""
    ny, nx = shape2d
    fy = sfft.fftfreq(ny, d=pixel_mm)[:, None]
    fx = sfft.rfftfreq(nx, d=pixel_mm)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    fp = profile.nps_peak_mm * np.sqrt(2.0)
    nps = (f + 0.03) * np.exp(-((f / fp) ** 2))
    white = rng.standard_normal((n, ny, nx), dtype=np.float32)
    out = sfft.irfft2(sfft.rfft2(white, workers=-1) * np.sqrt(nps).astype(np.float32), s=(ny, nx), workers=-1)
    out /= out.std(axis=(1, 2), keepdims=True)
    return out.astype(np.float32)


def water_equivalent_diameter(hu_slice: np.ndarray, pixel_area_mm2: float) -> float:
    """AAPM TG-220 water-equivalent diameter (mm) of one axial slice."""
    att = np.clip(hu_slice.astype(np.float32) + 1000.0, 0, None) / 1000.0
    att[hu_slice < -900] = 0.0
    return float(2.0 * np.sqrt(att.sum() * pixel_area_mm2 / np.pi))


def noise_sigmas(dw_mm: np.ndarray, profile: ScannerProfile, dose: float) -> np.ndarray:
    """Noise SD per slice from water-equivalent diameters and the relative dose."""
    halving = 250.0 if profile.tube_current_modulation else 85.0
    return profile.noise_hu / np.sqrt(dose) * 2.0 ** ((dw_mm - 300.0) / halving)


def add_noise(hu: np.ndarray, sigmas: np.ndarray, spatial: np.ndarray, bank: np.ndarray,
              rng: np.random.Generator) -> None:
    """Add correlated noise in place: a random shift/flip of a bank slice, times sigma and a 2-D map."""
    nz, ny, nx = hu.shape
    picks = rng.integers(0, len(bank), nz)
    shifts = rng.integers(0, [ny, nx], size=(nz, 2))
    flips = rng.integers(0, 4, nz)
    buf = np.empty((ny, nx), np.float32)
    for k in range(nz):
        src = bank[picks[k]]
        if flips[k] & 1:
            src = src[::-1]
        if flips[k] & 2:
            src = src[:, ::-1]
        dy, dx = shifts[k]
        # roll without allocation churn: four block copies
        buf[: ny - dy, : nx - dx] = src[dy:, dx:]
        buf[ny - dy :, : nx - dx] = src[:dy, dx:]
        buf[: ny - dy, nx - dx :] = src[dy:, :dx]
        buf[ny - dy :, nx - dx :] = src[:dy, :dx]
        buf *= spatial
        hu[k] += buf * np.float32(sigmas[k])


def upsample(coarse: np.ndarray, shape: tuple[int, int, int], fz: int, fxy: int, chunk: int = 16) -> np.ndarray:
    """Linear upsampling by 2 along z (``fz`` 2) and/or in plane (``fxy`` 2) to ``shape`` (blockwise)."""
    nz, ny, nx = shape
    if fz == 1 and fxy == 1:
        return np.ascontiguousarray(coarse, dtype=np.float32)
    out = np.empty(shape, np.float32)
    cz = coarse.shape[0]
    for k0 in range(0, nz, chunk):
        ks = np.arange(k0, min(nz, k0 + chunk))
        if fz == 2:
            lo = ks // 2
            hi = np.minimum(lo + (ks % 2), cz - 1)
            blk = 0.5 * (coarse[lo] + coarse[hi])
        else:
            blk = coarse[ks]
        if fxy == 2:
            upsample2(blk, ny, nx, out=out[k0 : k0 + len(ks)])
        else:
            out[k0 : k0 + len(ks)] = blk
    return out


def upsample_mask(coarse: np.ndarray, shape: tuple[int, int, int], fz: int, fxy: int) -> np.ndarray:
    """Nearest-neighbour upsampling of a boolean mask (coarse sample m covers fine 2m and 2m+1)."""
    out = np.empty(shape, bool)
    for dz in range(fz):
        for dy in range(fxy):
            for dx in range(fxy):
                o = out[dz::fz, dy::fxy, dx::fxy]
                o[...] = coarse[: o.shape[0], : o.shape[1], : o.shape[2]]
    return out


def upsample2(coarse: np.ndarray, ny: int, nx: int, out: np.ndarray | None = None) -> np.ndarray:
    """Linear 2× in-plane upsampling: coarse sample ``m`` sits on fine index ``2m``."""
    nz, cy, cx = coarse.shape
    tmp = np.empty((nz, ny, cx), np.float32)
    tmp[:, 0::2] = coarse[:, : (ny + 1) // 2]
    odd = ny // 2
    hi = np.minimum(np.arange(odd) + 1, cy - 1)
    tmp[:, 1::2] = 0.5 * (coarse[:, :odd] + coarse[:, hi])
    out = np.empty((nz, ny, nx), np.float32) if out is None else out
    out[:, :, 0::2] = tmp[:, :, : (nx + 1) // 2]
    odd = nx // 2
    hi = np.minimum(np.arange(odd) + 1, cx - 1)
    out[:, :, 1::2] = 0.5 * (tmp[:, :, :odd] + tmp[:, :, hi])
    return out
