"""Measure lung anatomy the same way on synthetic and real CT: vessel branching, calibre, density.

Every volume goes through the same steps, so synthetic and real numbers compare like with like:

1. lung mask from HU (air below -320 HU inside the body, the two largest components, closed so that vessels
   belong to it);
2. parenchyma statistics on native voxels: HU percentiles and the fraction of lung volume above -500 HU;
3. resampling to an isotropic measurement grid (1.5 mm, linear), vessels = lung voxels above -500 HU,
   skeleton (``skimage.morphology.skeletonize``), branch points = skeleton voxels with three or more
   skeleton neighbours (adjacent ones merged), local radius = distance to the vessel surface at the
   skeleton;
4. the hilum of each lung = centroid of its thickest skeleton voxels (top 3 % by radius); vessel radius is
   then binned by distance from the hilum, and the vessel fraction is compared between the outer 15 mm of
   the lung (under the pleura) and the rest.

``python -m inference.synth.measure`` prints the table for synthetic studies (the legacy and the current
generator) and the real scans in ``../shared/data`` (lung1, the LIDC slabs, the CTA crop; never lung2, which
is kept for validation). The real-data loaders need ``pynrrd`` (``[dev]``/``[train]`` extras) for lung1.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from inference.volume import Volume

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MEASURE_MM = 1.5
VESSEL_HU = -500.0
DIST_BINS = (0.0, 30.0, 60.0, 90.0, 1e9)
PLEURA_MM = 15.0


def lung_mask(hu: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Both lungs (vessels included) from HU.

    Air below -320 HU, minus the air outside the body (components touching the in-plane border whose median
    is below -950 HU: room air; lungs cut by a cropped field of view are denser and stay), minus small
    mid-line air (trachea), then per-slice hole filling so that vessels belong to the lung.
    """
    air = hu < -320
    lab, n = ndi.label(air)
    if n == 0:
        return air
    edge = np.unique(np.r_[lab[:, 0, :].ravel(), lab[:, -1, :].ravel(), lab[:, :, 0].ravel(), lab[:, :, -1].ravel()])
    idx = np.arange(1, n + 1)
    sizes = ndi.sum_labels(np.ones_like(lab, np.uint8), lab, index=idx)
    med = ndi.median(hu, lab, index=idx) if n < 2000 else np.full(n, -900.0)
    vox_l = float(np.prod(spacing)) / 1e6
    keep = [i for i in idx if sizes[i - 1] * vox_l > 0.02 and not (i in edge and med[i - 1] < -950)]
    keep = sorted(keep, key=lambda i: -sizes[i - 1])[:2]
    inner = np.isin(lab, keep)
    nx = hu.shape[2]
    out = np.zeros_like(inner)
    for k, sl in enumerate(inner):
        sl = ndi.binary_fill_holes(sl)
        lab2, n2 = ndi.label(sl)
        if n2 > 1:  # the trachea: a small component near the middle of the field of view
            area = ndi.sum_labels(sl, lab2, np.arange(1, n2 + 1)) * spacing[1] * spacing[2]
            cx = ndi.center_of_mass(sl, lab2, np.arange(1, n2 + 1))
            drop = [i + 1 for i in range(n2) if area[i] < 600 and abs(cx[i][1] - nx / 2) * spacing[2] < 30]
            sl = sl & ~np.isin(lab2, drop)
        out[k] = sl
    return out


def _resample(arr: np.ndarray, spacing: tuple[float, float, float], order: int, mm: float) -> np.ndarray:
    zoom = [s / mm for s in spacing]
    return ndi.zoom(arr.astype(np.float32), zoom, order=order, prefilter=False)


def measure_volume(hu: np.ndarray, spacing: tuple[float, float, float], lung: np.ndarray | None = None, *,
                   measure_mm: float = MEASURE_MM) -> dict[str, Any]:
    """Lung measurements of one HU volume (k, j, i) with ``spacing`` (sz, sy, sx) mm.

    ``measure_mm`` is the isotropic grid of the vessel measurements (1.5 mm for the table; coarser in tests).

    Returns:
        A dict of scalars (see the module docstring); radius bins as ``r_med_d{lo}`` keys (mm).
    """
    hu = np.asarray(hu)
    if lung is None:
        lung = lung_mask(hu, spacing)
    vals = hu[lung].astype(np.float32)
    vox_l = float(np.prod(spacing)) / 1e6
    out: dict[str, Any] = {"lung_l": round(float(lung.sum() * vox_l), 3)}
    if len(vals) < 100:
        return out
    for q in (5, 25, 50, 75, 95):
        out[f"hu_p{q}"] = round(float(np.percentile(vals, q)), 1)
    out["frac_gt_-500"] = round(float((vals > VESSEL_HU).mean()), 4)

    from skimage.morphology import skeletonize

    hu_r = _resample(hu, spacing, 1, measure_mm)
    lung_r = _resample(lung, spacing, 1, measure_mm) > 0.5
    vessel = lung_r & (hu_r > VESSEL_HU)
    vessel = ndi.binary_opening(vessel, structure=ndi.generate_binary_structure(3, 1)) | (
        vessel & ndi.binary_erosion(lung_r, iterations=1))
    skel = skeletonize(vessel) > 0
    n_skel = int(skel.sum())
    lung_lr = float(lung_r.sum()) * measure_mm**3 / 1e6
    nb = ndi.convolve(skel.astype(np.uint8), np.ones((3, 3, 3), np.uint8), mode="constant") - 1
    branch = skel & (nb >= 3)
    _, n_branch = ndi.label(branch, structure=np.ones((3, 3, 3)))
    out["skeleton_mm_per_ml"] = round(n_skel * measure_mm / max(lung_lr * 1000, 1e-6), 3)
    out["branch_per_l"] = round(n_branch / max(lung_lr, 1e-6), 1)
    if n_skel < 20:
        return out
    radius = ndi.distance_transform_edt(vessel, sampling=measure_mm)[skel]
    kji = np.argwhere(skel)
    xyz = kji * measure_mm
    # hilum per lung component: centroid of its thickest skeleton points; distances of skeleton and vessel
    # voxels from it. Mean radius per distance bin = sqrt(vessel volume / (pi * centreline length)).
    lab, n = ndi.label(lung_r)
    comp, vk = lab[skel], np.argwhere(vessel)
    vcomp = lab[vessel]
    dist, vdist = np.full(len(kji), np.nan), np.full(len(vk), np.nan)
    for c in range(1, n + 1):
        sel = comp == c
        if sel.sum() < 20:
            continue
        hil = xyz[sel & (radius >= np.percentile(radius[sel], 97))].mean(axis=0)
        dist[sel] = np.linalg.norm(xyz[sel] - hil, axis=1)
        vs = vcomp == c
        vdist[vs] = np.linalg.norm(vk[vs] * measure_mm - hil, axis=1)
    for lo, hi in zip(DIST_BINS[:-1], DIST_BINS[1:]):
        length = ((dist >= lo) & (dist < hi)).sum() * measure_mm
        vol = ((vdist >= lo) & (vdist < hi)).sum() * measure_mm**3
        out[f"r_d{int(lo)}"] = round(float(np.sqrt(vol / (np.pi * length))), 2) if length > 30 else None
    # reach to the pleura: vessel fraction in the outer shell vs the inner lung
    pleura = ndi.distance_transform_edt(lung_r, sampling=measure_mm)
    shell = lung_r & (pleura < PLEURA_MM) & (pleura > 3.0)
    core = lung_r & (pleura >= PLEURA_MM)
    if shell.any() and core.any():
        out["vessel_shell_vs_core"] = round(float(vessel[shell].mean() / max(vessel[core].mean(), 1e-6)), 3)
    return out


# --- real scans (development data; lung2 is validation only and never read here) ------------------------
def load_real(name: str, data: Path = DATA) -> Volume:
    """One real scan by name: ``lung1``, ``lidc1``..``lidc3`` or ``cta``.

    Raises:
        ValueError: for ``lung2`` (validation only) or an unknown name.
        FileNotFoundError: when the shared data folder lacks the scan.
    """
    if name == "lung2":
        raise ValueError("lung2 is kept for validation only and is never measured or templated here")
    if name == "lung1":
        import nrrd

        arr, hdr = nrrd.read(str(data / "pyradiomics-lung" / "lung1_image.nrrd"))
        sp = np.abs(np.diag(np.asarray(hdr["space directions"], float)))
        return Volume(hu=np.transpose(arr, (2, 1, 0)).astype(np.int16), spacing_mm=(sp[2], sp[1], sp[0]),
                      origin_mm=tuple(float(v) for v in hdr["space origin"]))
    if name.startswith("lidc"):
        from inference.synth.insert import load_dicom_folder

        return load_dicom_folder(data / "lidc-idri-slices" / f"LIDC-IDRI-000{name[-1]}")
    if name == "cta":
        from inference.synth.insert import load_nifti

        return load_nifti(data / "real-cta-crop" / "aorta_report_ct_cropped.nii.gz")[0]
    raise ValueError(f"unknown real scan {name!r}")


def synthetic(seed: int, anatomy: str, like: str = "lung1") -> Volume:
    """A non-contrast synthetic study on a real scan's geometry (``lung1``: 0.7 mm pixels, 5 mm slices;
    ``thin``: 0.7 mm pixels, 1.25 mm slices), without lesions or mimics."""
    from inference.synth.study import generate_study

    shape, spacing = {"lung1": ((60, 512, 512), (5.0, 0.7, 0.7)), "thin": ((240, 512, 512), (1.25, 0.7, 0.7))}[like]
    return generate_study(seed, profile="siemens_flash_b30f", contrast="none", size=None, shape=shape,
                          spacing=spacing, lesions="none", mimics=False, anatomy=anatomy).volume


COLUMNS = ("lung_l", "hu_p5", "hu_p50", "hu_p95", "frac_gt_-500", "branch_per_l", "skeleton_mm_per_ml",
           "r_d0", "r_d30", "r_d60", "r_d90", "vessel_shell_vs_core", "seconds")


def format_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """Markdown table of measurement rows ``(name, measurements)``."""
    head = "| scan | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, m in rows:
        lines.append(f"| {name} | " + " | ".join("" if m.get(c) is None else str(m.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines)


def _tiles(vol: Volume, size: int = 256) -> list[np.ndarray]:
    """Axial (largest lung area) and coronal (through the hila, 45 % back from the lungs' front) tiles."""
    from PIL import Image

    from inference.synth.render import window

    lung = lung_mask(vol.hu, vol.spacing_mm)
    k = int(np.argmax(lung.sum(axis=(1, 2))))
    jj = np.nonzero(lung.any(axis=(0, 2)))[0]
    j = int(jj.min() + 0.45 * (jj.max() - jj.min())) if len(jj) else vol.shape[1] // 2
    sz, sy, sx = vol.spacing_mm
    out = []
    for img, (ph, pw) in ((vol.hu[k], (sy, sx)), (vol.hu[::-1, j, :], (sz, sx))):
        g = window(img, -600.0, 1500.0)
        h_mm, w_mm = g.shape[0] * ph, g.shape[1] * pw
        side = max(h_mm, w_mm)
        pil = Image.fromarray(g).resize((max(1, int(size * w_mm / side)), max(1, int(size * h_mm / side))),
                                        Image.BILINEAR)
        tile = np.zeros((size, size), np.uint8)
        a = np.asarray(pil)
        y0, x0 = (size - a.shape[0]) // 2, (size - a.shape[1]) // 2
        tile[y0 : y0 + a.shape[0], x0 : x0 + a.shape[1]] = a
        out.append(tile)
    return out


def figure(path: Path, vols: list[tuple[str, Volume]], size: int = 320) -> Path:
    """A PNG with one column per volume (axial over coronal, lung window) and its name on top."""
    from PIL import Image, ImageDraw

    cols = [np.concatenate([np.full((18, size), 0, np.uint8), *_tiles(v, size)], axis=0) for _, v in vols]
    img = Image.fromarray(np.concatenate(cols, axis=1))
    draw = ImageDraw.Draw(img)
    for n, (name, _) in enumerate(vols):
        draw.text((n * size + 4, 3), name, fill=255)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.quantize(colors=32).save(path, optimize=True)
    return path


def _speed(size: str, anatomies: list[str]) -> int:
    from inference.synth.lungshape import load_template
    from inference.synth.nodules import load_library
    from inference.synth.study import generate_study

    load_library()
    load_template()
    generate_study(0, size="small", lesions="none", anatomy="real")  # imports, first touch of memory
    for anatomy in anatomies:
        times = []
        for seed in (1, 2, 3):
            t0 = time.process_time()
            generate_study(seed, size=size, lesions="both", anatomy=anatomy)
            times.append(time.process_time() - t0)
        print(f"{anatomy} {size}: CPU s per study {np.round(times, 2).tolist()}, median {np.median(times):.2f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """CLI: print the measurement table (synthetic legacy/current and real scans)."""
    p = argparse.ArgumentParser(prog="python -m inference.synth.measure", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="1,2", help="synthetic seeds (comma list, default 1,2)")
    p.add_argument("--anatomy", default="legacy,real", help="synthetic generators to measure (default legacy,real)")
    p.add_argument("--like", default="lung1", choices=("lung1", "thin"), help="synthetic geometry (default lung1)")
    p.add_argument("--real", default="lung1,lidc1,lidc2,lidc3,cta", help="real scans (comma list; '' for none)")
    p.add_argument("--data", type=Path, default=DATA, help="the shared real-data folder")
    p.add_argument("--speed", default=None, metavar="SIZE",
                   help="only time generation: CPU seconds per study of each generator at a size preset "
                   "(small, medium, bench, full), lesions and mimics included, 3 seeds")
    p.add_argument("--figure", type=Path, default=None,
                   help="also write a side-by-side PNG (real lung1 | each synthetic generator, first seed)")
    args = p.parse_args(argv)
    if args.speed:
        return _speed(args.speed, [a for a in args.anatomy.split(",") if a])
    shown: list[tuple[str, Volume]] = []
    rows = []
    for anatomy in [a for a in args.anatomy.split(",") if a]:
        for seed in [int(s) for s in args.seeds.split(",") if s]:
            t0 = time.perf_counter()
            vol = synthetic(seed, anatomy, args.like)
            gen = time.perf_counter() - t0
            if not any(n.startswith(f"synthetic {anatomy}") for n, _ in shown):
                shown.append((f"synthetic {anatomy} (seed {seed})", vol))
            m = measure_volume(vol.hu, vol.spacing_mm)
            m["seconds"] = round(gen, 1)
            rows.append((f"synth {anatomy} seed {seed} ({args.like})", m))
            print(rows[-1], file=sys.stderr, flush=True)
    for name in [n for n in args.real.split(",") if n]:
        try:
            vol = load_real(name, args.data)
        except (FileNotFoundError, ImportError, ValueError) as exc:
            print(f"{name}: skipped ({exc})", file=sys.stderr)
            continue
        if name == "lung1":
            shown.insert(0, ("real lung1", vol))
        spacing = tuple(round(s, 2) for s in vol.spacing_mm)
        rows.append((f"real {name} {spacing}", measure_volume(vol.hu, vol.spacing_mm)))
        print(rows[-1], file=sys.stderr, flush=True)
    print(format_table(rows))
    if args.figure and shown:
        print(f"figure: {figure(args.figure, shown)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
