"""Named scanner profiles: the acquisition parameters that differ between vendors, kernels and protocols.

A profile fixes the DICOM identity (manufacturer, model, kernel, kVp) and the physics knobs the acquisition
simulation uses: in-plane resolution of the kernel (``mtf50_lpcm``), edge enhancement of sharp kernels, the
noise level at a reference dose and patient size, the noise power spectrum peak, slice thickness choices and
a small HU calibration bias. Numbers are typical published values (AAPM CT protocols, vendor kernel MTFs,
LIDC headers), not measurements of any one scanner.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ScannerProfile:
    """One scanner + reconstruction protocol."""

    name: str
    manufacturer: str
    model: str
    kernel: str
    kvp: int
    sharp: bool
    mtf50_lpcm: float  # in-plane spatial frequency (line pairs/cm) where the kernel MTF falls to 50 %
    edge_gain: float  # overshoot of sharp kernels (0 = none)
    noise_hu: float  # noise SD in water at the reference size (300 mm water-equivalent) and dose
    nps_peak_mm: float  # spatial frequency (cycles/mm) where the noise power spectrum peaks
    tube_current_modulation: bool
    slice_thickness_mm: tuple[float, ...]
    pixel_spacing_mm: tuple[float, float]
    hu_bias: float  # calibration offset in HU
    iodine_gain: float  # iodine enhancement relative to 120 kVp (lower kVp makes iodine brighter)

    def to_dict(self) -> dict:
        """JSON-ready copy."""
        return asdict(self)


PROFILES: dict[str, ScannerProfile] = {
    p.name: p
    for p in (
        ScannerProfile(
            "ge_lightspeed16_standard", "GE MEDICAL SYSTEMS", "LightSpeed16", "STANDARD", 120, False,
            4.2, 0.0, 11.0, 0.22, False, (1.25, 2.5), (0.66, 0.86), 2.0, 1.0,
        ),
        ScannerProfile(
            "ge_vct_lung", "GE MEDICAL SYSTEMS", "LightSpeed VCT", "LUNG", 120, True,
            7.5, 0.35, 30.0, 0.45, True, (1.25, 0.625), (0.62, 0.82), -3.0, 1.0,
        ),
        ScannerProfile(
            "siemens_flash_b30f", "SIEMENS", "SOMATOM Definition Flash", "B30f", 120, False,
            3.6, 0.0, 10.0, 0.20, True, (1.0, 1.5, 2.0), (0.63, 0.84), 0.0, 1.0,
        ),
        ScannerProfile(
            "siemens_force_br64_lowdose", "SIEMENS", "SOMATOM Force", "Br64", 100, True,
            8.0, 0.45, 38.0, 0.50, True, (1.0, 0.75), (0.6, 0.78), 4.0, 1.22,
        ),
        ScannerProfile(
            "philips_ingenuity_b", "Philips", "Ingenuity CT", "B", 120, False,
            4.0, 0.05, 13.0, 0.24, True, (1.0, 2.0), (0.68, 0.9), -2.0, 1.0,
        ),
        ScannerProfile(
            "canon_aquilion_fc52", "TOSHIBA", "Aquilion ONE", "FC52", 100, True,
            6.8, 0.30, 26.0, 0.42, True, (1.0, 2.0), (0.65, 0.88), 1.0, 1.2,
        ),
    )
}
"""All profiles by name. Sharp ("lung") kernels: ``ge_vct_lung``, ``siemens_force_br64_lowdose``,
``canon_aquilion_fc52``; the others are soft-tissue kernels."""


def get_profile(profile: str | ScannerProfile | None, rng: np.random.Generator | None = None) -> ScannerProfile:
    """Resolve a profile by name; ``None`` or ``"random"`` draws one with ``rng``.

    Raises:
        KeyError: unknown profile name (the message lists the known ones).
    """
    if isinstance(profile, ScannerProfile):
        return profile
    if profile in (None, "random"):
        rng = rng or np.random.default_rng()
        names = sorted(PROFILES)
        return PROFILES[names[int(rng.integers(len(names)))]]
    if profile not in PROFILES:
        raise KeyError(f"unknown scanner profile {profile!r}; known: {', '.join(sorted(PROFILES))}")
    return PROFILES[profile]
