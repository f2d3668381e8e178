"""Assemble one synthetic chest CT study with its ground truth (in memory; see ``output.py`` for files).

``generate_study(seed, ...)`` is the public entry point used by training, tests, the CLI and the demo. The
same arguments always give the same voxels (one ``numpy`` generator drives every random choice).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference.synth import acquisition as acq
from inference.synth import anatomy as anat
from inference.synth import chest, lobes, vessels
from inference.synth.grid import Grid, capsule_occupancy, paint, paint_max
from inference.synth.nodules import load_library
from inference.synth.placement import place_emboli, place_mimics, place_nodules
from inference.synth.profiles import ScannerProfile, get_profile
from inference.volume import Volume

# the real anatomy's parenchyma is less dense than the legacy one: measured median -862..-879 HU on lung1 and
# the LIDC slabs (``python -m inference.synth.measure``) against -822 before this shift
REAL_LUNG_HU_SHIFT = 40.0
LABEL_NODULE = 1
LABEL_EMBOLISM = 2

SIZES: dict[str, tuple[tuple[int, int, int] | None, tuple[float, float, float] | None]] = {
    "full": (None, None),  # 512 x 512, profile spacing and thickness, whole chest
    "bench": ((300, 512, 512), None),
    "medium": ((128, 256, 256), (2.5, 1.45, 1.45)),
    "small": ((120, 160, 160), (2.5, 2.2, 2.2)),
}


@dataclass
class LesionRequest:
    """One lesion to place; ``None`` fields are drawn at random.

    kind: ``nodule`` or ``embolism``. Nodules: ``texture`` (solid, part-solid, ground-glass),
    ``morphology`` (round, lobulated, spiculated), ``location`` (isolated, juxtapleural, juxtavascular,
    perifissural: real anatomy only),
    ``diameter_mm`` (3..30). Emboli: ``level`` (central, lobar, segmental), ``occlusive`` (bool).
    """

    kind: str
    texture: str | None = None
    morphology: str | None = None
    location: str | None = None
    diameter_mm: float | None = None
    level: str | None = None
    occlusive: bool | None = None


@dataclass
class SynthStudy:
    """A synthetic study: HU volume, voxel labels (0 background, 1 nodule, 2 embolism), masks, truth."""

    volume: Volume
    labels: np.ndarray
    lung: np.ndarray
    arteries: np.ndarray
    lesions: list[dict[str, Any]]
    mimics: list[dict[str, Any]]
    profile: ScannerProfile
    contrast: str
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)

    def ground_truth(self) -> dict[str, Any]:
        """JSON-ready ground truth: geometry, acquisition, lesions (labelled) and mimics (unlabelled)."""
        return {
            "synthetic": True,
            "seed": self.seed,
            "contrast": self.contrast,
            "profile": self.profile.to_dict(),
            "study_uid": self.volume.study_uid,
            "series_uid": self.volume.series_uid,
            "geometry": self.volume.summary(),
            "label_values": {"0": "background", "1": "nodule", "2": "embolism"},
            "lesions": self.lesions,
            "mimics": self.mimics,
            "acquisition": self.extra.get("acquisition", {}),
        }


def _requests(lesions_arg, contrast: str, rng: np.random.Generator) -> list[LesionRequest]:
    if isinstance(lesions_arg, (list, tuple)):
        return [r if isinstance(r, LesionRequest) else LesionRequest(**r) for r in lesions_arg]
    want = lesions_arg or "none"
    out: list[LesionRequest] = []
    if want in ("auto", "nodule", "both"):
        n = int(rng.choice([0, 1, 1, 2, 3])) if want == "auto" else int(rng.integers(1, 4))
        out += [LesionRequest("nodule") for _ in range(n)]
    if want in ("auto", "embolism", "both") and contrast == "ctpa":
        n = int(rng.choice([0, 0, 1, 2, 3])) if want == "auto" else int(rng.integers(1, 4))
        out += [LesionRequest("embolism") for _ in range(n)]
    return out


def _geometry(p: anat.Patient, prof: ScannerProfile, size, shape, spacing, rng) -> Grid:
    shp, spc = SIZES[size] if size else (None, None)
    shape, spacing = shape or shp, spacing or spc
    thick = float(rng.choice(prof.slice_thickness_mm))
    if spacing is None:
        lo, hi = prof.pixel_spacing_mm
        px = float(np.clip((2 * p.body_a + 30.0) / 512, lo, hi))
        spacing = (thick, px, px)
    else:
        thick = float(spacing[0])
    if shape is None:
        shape = (int(round(float(rng.uniform(290, 350)) / spacing[0])), 512, 512)
    nz, ny, nx = shape
    sz, sy, sx = spacing
    cov = (nz - 1) * sz
    z_top = min(p.z_apex + float(rng.uniform(8, 30)), -35.0 + cov / 2) if cov < 330 else p.z_apex + 25.0
    origin = (-(nx - 1) * sx / 2 + float(rng.normal(0, 6)), -(ny - 1) * sy / 2 + 12.0 + float(rng.normal(0, 6)),
              z_top - cov)
    return Grid((nz, ny, nx), (sz, sy, sx), origin, thick)


def _coarse(grid: Grid) -> tuple[Grid, int, int]:
    """The grid the smooth background is rendered on: ×2 coarser in plane below 1.1 mm pixels and along
    z below 1.3 mm slices (fine detail is drawn at full resolution afterwards)."""
    fxy = 2 if min(grid.spacing[1:]) < 1.1 else 1
    fz = 2 if grid.spacing[0] < 1.3 else 1
    nz, ny, nx = grid.shape
    sz, sy, sx = grid.spacing
    shape = ((nz + fz - 1) // fz, (ny + fxy - 1) // fxy, (nx + fxy - 1) // fxy)
    return Grid(shape, (sz * fz, sy * fxy, sx * fxy), grid.origin, grid.thickness), fz, fxy


def _parenchyma_texture(hu_c: np.ndarray, lung_c: np.ndarray, rng: np.random.Generator) -> None:
    nz, ny, nx = hu_c.shape
    small = rng.standard_normal((nz, (ny + 1) // 2, (nx + 1) // 2), dtype=np.float32)
    tex = acq.upsample2(small, ny, nx)
    tex += np.roll(tex, 1, axis=0)
    hu_c += lung_c * tex * np.float32(9.0)


def generate_study(
    seed: int,
    *,
    profile: str | ScannerProfile | None = None,
    contrast: str = "mixed",
    size: str | None = "full",
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
    lesions: str | list = "auto",
    mimics: bool = True,
    case_number: int = 1,
    anatomy: str = "legacy",
) -> SynthStudy:
    """Generate one synthetic chest CT in memory.

    Args:
        seed: Drives every random choice (same arguments → same voxels).
        profile: Scanner profile name (see ``profiles.PROFILES``) or ``None``/``"random"``.
        contrast: ``none`` (non-contrast), ``ctpa`` (pulmonary angiography) or ``mixed`` (random).
        size: Preset of ``SIZES`` (``full`` 512² with the profile's spacing; ``small``/``medium`` for
            training); ``shape`` (nz, ny, nx) and ``spacing`` (sz, sy, sx) mm override it.
        lesions: ``auto``, ``none``, ``nodule``, ``embolism``, ``both`` or a list of ``LesionRequest``/dicts.
        mimics: Add label-free mimics (calcified granulomas, scars).
        case_number: Used in identifiers only.
        anatomy: ``real`` (lung shapes from a real CT, lobar vessel and airway trees, fissures) or
            ``legacy`` (the analytic lungs and straight-segment trees of earlier versions). The API default
            stays ``legacy`` until the committed models are retrained on ``real`` (their tests use the
            anatomy they were trained on); ``triage synth`` defaults to ``real``.

    Returns:
        A ``SynthStudy``; ``volume.hu`` is int16 HU, ``labels`` uint8.
    """
    if anatomy not in ("real", "legacy"):
        raise ValueError(f"anatomy must be real or legacy, not {anatomy!r}")
    rng = np.random.default_rng(seed)
    prof = get_profile(profile, rng)
    if contrast == "mixed":
        contrast = "ctpa" if rng.random() < 0.5 else "none"
    if contrast not in ("none", "ctpa"):
        raise ValueError(f"contrast must be none, ctpa or mixed, not {contrast!r}")
    pat = anat.sample_patient(rng)
    if anatomy == "real":
        pat.lung_hu -= REAL_LUNG_HU_SHIFT
    table = anat.hu_table(pat, contrast, prof.iodine_gain, rng)
    grid = _geometry(pat, prof, size, shape, spacing, rng)
    cgrid, fz, f = _coarse(grid)

    real = anatomy == "real"
    lung_fn = chest.lung_sd_fn(pat, rng) if real else None
    hu_c, lung_c, body_c = anat.render_background(cgrid, pat, table, rng, lung_fn=lung_fn, fissures=not real)
    _parenchyma_texture(hu_c, lung_c, rng)
    if real:
        chest.lobular_texture(hu_c, lung_c, cgrid, rng)
    if fz == 1:
        hu_c = acq.apply_slice_profile(hu_c, grid.thickness, grid.spacing[0])
    nz, ny, nx = grid.shape
    hu = acq.upsample(hu_c, grid.shape, fz, f)
    lung = acq.upsample_mask(lung_c >= 0.5, grid.shape, fz, f)
    mid = body_c[len(body_c) // 2]
    area = 4.0 * cgrid.spacing[1] * cgrid.spacing[2]  # every other coarse pixel
    dw = np.array([acq.water_equivalent_diameter(sl, area) for sl in hu_c[:, ::2, ::2]])
    dw = np.repeat(dw, fz)[:nz]
    del hu_c

    arteries = np.zeros(grid.shape, np.uint8)
    fis = None
    if real:
        fis = lobes.sample_fissures(lung_c, cgrid, rng)
        lobes.render_fissures(hu, grid, lung, fis)
        art_trees = chest.bronchovascular(hu, grid, cgrid, pat, table, lung_c, arteries, rng, fis)
        art_trees["fissures"] = fis
    else:
        art_trees = _bronchovascular(hu, grid, cgrid, pat, table, lung_c, arteries, rng)
    del lung_c

    labels = np.zeros(grid.shape, np.uint8)
    found: list[dict[str, Any]] = []
    placed: list[tuple[dict, tuple, np.ndarray]] = []
    lib = load_library()
    reqs = _requests(lesions, contrast, rng)
    placed += place_nodules(hu, labels, lung, grid, [r for r in reqs if r.kind == "nodule"], art_trees, lib, rng)
    if contrast == "ctpa":
        placed += place_emboli(hu, labels, arteries, grid, [r for r in reqs if r.kind == "embolism"],
                               art_trees, rng)
    mims = place_mimics(hu, lung, grid, rng) if mimics else []

    # acquisition: kernel, noise, bias, quantisation
    pixel = 0.5 * (grid.spacing[1] + grid.spacing[2])
    acq.apply_kernel(hu, prof, pixel)
    dose = float(rng.uniform(0.6, 1.4))
    sig = acq.noise_sigmas(dw, prof, dose)
    bank = acq.noise_bank((ny, nx), prof, pixel, rng)
    spatial = _noise_map(mid, ny, nx, f)
    acq.add_noise(hu, sig, spatial, bank, rng)
    hu += np.float32(prof.hu_bias + rng.normal(0, 1.5))
    hu_i = acq.quantise(hu)
    del hu

    from pydicom.uid import generate_uid

    study_uid = generate_uid(entropy_srcs=["synth-study", str(seed), str(case_number)])
    series_uid = generate_uid(entropy_srcs=["synth-series", str(seed), str(case_number)])
    z_shift = float(rng.uniform(-220.0, 120.0))
    ox, oy, oz = grid.origin
    vol = Volume(
        hu=hu_i, spacing_mm=grid.spacing, origin_mm=(ox, oy, oz + z_shift), study_uid=study_uid,
        series_uid=series_uid,
        meta={"manufacturer": prof.manufacturer, "model": prof.model, "kernel": prof.kernel, "kvp": prof.kvp,
              "slice_thickness": grid.thickness, "contrast": contrast, "synthetic": True, "profile": prof.name},
    )
    for info, box, mask in placed:
        found.append(_describe(info, box, mask, vol))
    for m in mims:
        c = np.asarray(m.pop("center_mm_body")) + np.array([0.0, 0.0, z_shift])
        m["center_mm"] = [round(float(v), 3) for v in c]
        m["center_voxel"] = [round(float(v), 3) for v in vol.patient_to_voxel(c)]
    return SynthStudy(
        volume=vol, labels=labels, lung=lung, arteries=arteries >= 128, lesions=found, mimics=mims,
        profile=prof, contrast=contrast, seed=seed,
        extra={"acquisition": {"dose_factor": round(dose, 3), "noise_sd_hu_mid": round(float(sig[nz // 2]), 1),
                               "slice_thickness_mm": grid.thickness},
               "patient": pat, "hu_table": table, "body_to_patient_mm": (0.0, 0.0, z_shift),
               "anatomy": anatomy, "trees": art_trees, "fissures": fis},
    )


def _noise_map(body_mid: np.ndarray | None, ny: int, nx: int, f: int) -> np.ndarray:
    """In-plane noise non-stationarity: ~25 % higher in the centre of the body than at its edge."""
    if body_mid is None:
        return np.ones((ny, nx), np.float32)
    b = acq.upsample2(body_mid[None].astype(np.float32), ny, nx)[0] if f == 2 else body_mid
    yy, xx = np.nonzero(b > 0.5)
    if len(yy) == 0:
        return np.ones((ny, nx), np.float32)
    cy, cx = yy.mean(), xx.mean()
    ry, rx = yy.std() * 2 + 1, xx.std() * 2 + 1
    Y, X = np.ogrid[:ny, :nx]
    q = ((Y - cy) / ry) ** 2 + ((X - cx) / rx) ** 2
    return (0.85 + 0.3 * np.exp(-q) * b + 0.0 * (1 - b)).astype(np.float32)


def _bronchovascular(hu, grid: Grid, cgrid: Grid, p: anat.Patient, t: dict, lung_c, arteries, rng):
    """Trachea, bronchi, pulmonary trunk and arteries (into ``arteries``), pulmonary veins."""
    s = p.scale
    h = 0.5 * (grid.spacing[1] + grid.spacing[2])
    r_leaf = max(0.55, 0.3 * h)
    carina = np.array([0.0, 16.0, 0.0]) * s
    roots = {-1: np.array([-30.0, 20.0, -20.0]) * s, 1: np.array([36.0, 24.0, -24.0]) * s}
    wall_hu = 30.0
    # trachea and main bronchi: wall then lumen
    central = [(np.array([0, 10.0, p.z_apex + 60]), carina, 9.5 * s),
               (carina, roots[-1], 7.0 * s),
               (carina, np.array([22.0, 20.0, -10.0]) * s, 6.2 * s),
               (np.array([22.0, 20.0, -10.0]) * s, roots[1], 6.0 * s)]
    for val, extra in ((wall_hu, 1.0), (-1000.0, 0.0)):
        for a, b, r in central:
            res = capsule_occupancy(grid, a, b, r * 0.8 + extra * 2.0, r * 0.8 + extra * 2.0)
            if res:
                paint(hu, res[0], res[1], val)
    # pulmonary trunk and main arteries
    bif = np.array([8.0, -4.0, -12.0]) * s
    trunk = [(np.array([16.0, -42.0, -52.0]) * s, np.array([14.0, -22.0, -24.0]) * s, 14.0 * s),
             (np.array([14.0, -22.0, -24.0]) * s, bif, 13.5 * s)]
    trees = []
    for side in (-1, 1):
        n_art = int(2 * (8.0 * s / r_leaf) ** 2.6)
        pts = vessels.territory_points(lung_c, cgrid, side, min(n_art, 3000), rng)
        if len(pts) < 8:
            continue
        first = roots[side] - carina
        tree = vessels.grow_tree(roots[side], first, pts, 9.0 * s, rng, n_leaf=2, murray=2.4)
        r_air = 0.75
        gap = tree.radius * (r_air * 1.25 + 1.0) + 0.6
        art = vessels.offset_tree(tree, gap, np.array([0.0, 0.0, 1.0]) * side)
        vessels.render_tree(hu, grid, tree, wall_hu, radius_scale=r_air * 1.25, min_radius=1.1 + 0.3 * h)
        vessels.render_tree(hu, grid, tree, -1000.0, radius_scale=r_air, min_radius=0.8 + 0.3 * h)
        hilum = art.start[0]
        mid = np.array([-12.0, 4.0, -14.0]) * s if side < 0 else np.array([30.0, 4.0, -4.0]) * s
        trunk += [(bif, mid, 12.0 * s), (mid, hilum, 10.5 * s)]
        vessels.render_tree(hu, grid, art, t["pa"], mask=arteries, taper_leaf=0.5)
        trees.append(art)
        # veins: own territory samples, draining to the left atrium
        vpts = vessels.territory_points(lung_c, cgrid, side, min(int(n_art * 0.8), 2400), rng)
        vroot = p.heart_c + (np.array([-50.0, 48.0, 28.0]) if side < 0 else np.array([18.0, 56.0, 32.0])) * s
        vt = vessels.grow_tree(vroot, np.array([side * 1.0, 0.2, 0.0]), vpts, 8.0 * s, rng, n_leaf=2, murray=2.4)
        vessels.render_tree(hu, grid, vt, t["vein"], taper_leaf=0.5)
    for a, b, r in trunk:
        res = capsule_occupancy(grid, a, b, r, r)
        if res:
            paint(hu, res[0], res[1], t["pa"])
            paint_max(arteries, res[0], res[1])
    central_tree = vessels.Tree(np.array([a for a, _, _ in trunk]), np.array([b for _, b, _ in trunk]),
                                np.array([r for _, _, r in trunk]), np.r_[-1, 0, 1, 2, 1, 4][: len(trunk)],
                                np.zeros(len(trunk), int), np.zeros(len(trunk), bool))
    return {"central": central_tree, "peripheral": trees}


def _describe(info: dict, box: tuple, mask: np.ndarray, vol: Volume) -> dict[str, Any]:
    """Ground-truth record of one lesion from its mask (centre of mass, size, mean HU)."""
    kji = np.argwhere(mask) + np.array([b.start for b in box])
    if len(kji) == 0:
        return {**info, "empty": True}
    c = kji.mean(axis=0)
    sz, sy, sx = vol.spacing_mm
    vox_ml = sz * sy * sx / 1000.0
    ext = (kji.max(axis=0) - kji.min(axis=0) + 1) * np.array([sz, sy, sx])
    n = len(kji)
    hu_vals = vol.hu[tuple(kji.T)]
    return {
        **info,
        "center_mm": [round(float(v), 3) for v in vol.voxel_to_patient(c)],
        "center_voxel": [round(float(v), 3) for v in c],
        "diameter_mm": round(float(2 * (3 * n * vox_ml * 1000 / (4 * np.pi)) ** (1 / 3)), 2),
        "long_axis_mm": round(_long_axis(kji, (sy, sx)) if info.get("kind") == "nodule" else float(ext.max()), 2),
        "volume_ml": round(float(n * vox_ml), 4),
        "mean_hu": round(float(hu_vals.mean()), 1),
        "n_voxels": int(n),
    }


def _long_axis(kji: np.ndarray, pixel: tuple[float, float]) -> float:
    """Longest in-plane diameter (mm) on the axial slice where the lesion is largest."""
    ks, counts = np.unique(kji[:, 0], return_counts=True)
    pts = kji[kji[:, 0] == ks[np.argmax(counts)], 1:] * np.asarray(pixel)
    if len(pts) > 1500:
        pts = pts[:: len(pts) // 1500 + 1]
    d = np.sqrt(((pts[:, None, :] - pts[None, :, :]) ** 2).sum(-1)).max() if len(pts) > 1 else 0.0
    return float(d + 0.5 * (pixel[0] + pixel[1]))
