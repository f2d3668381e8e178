"""The real LIDC-IDRI reader outlines (XML) as masks on a slice stack's grid (numpy only).

Each reader's nodule outlines (``unblindedReadNodule`` / ``roi`` / ``edgeMap``) are rasterised on the slices
of the stack whose z matches ``imageZposition``; outlines of different readers within 15 mm are one nodule.
The consensus mask holds voxels outlined by at least half of that nodule's readers (pylidc's ``clevel=0.5``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from skimage.draw import polygon

from inference.volume import Volume

NS = "{http://www.nih.gov}"
LIDC = {"LIDC-IDRI-0001": "LIDC-IDRI-0001_69.xml", "LIDC-IDRI-0002": "LIDC-IDRI-0002_71.xml",
        "LIDC-IDRI-0003": "LIDC-IDRI-0003_72.xml"}  # the slabs of ../shared/data/lidc-idri-slices and their XML


def reader_masks(xml_path: Path, volume: Volume) -> list[np.ndarray]:
    """One boolean mask per (reader, nodule) outline that touches the stack (identity direction assumed)."""
    root = ET.parse(xml_path).getroot()
    zs = volume.origin_mm[2] + np.arange(volume.shape[0]) * volume.spacing_mm[0] * np.sign(volume.direction[2, 2])
    out = []
    for session in root.iter(f"{NS}readingSession"):
        for nod in session.iter(f"{NS}unblindedReadNodule"):
            m = np.zeros(volume.shape, bool)
            for roi in nod.iter(f"{NS}roi"):
                z = float(roi.find(f"{NS}imageZposition").text)
                inc = roi.find(f"{NS}inclusion").text.strip().upper() == "TRUE"
                k = int(np.argmin(np.abs(zs - z)))
                if abs(zs[k] - z) > 0.1:
                    continue
                pts = [(float(e.find(f"{NS}yCoord").text), float(e.find(f"{NS}xCoord").text))
                       for e in roi.iter(f"{NS}edgeMap")]
                if len(pts) < 3:
                    continue
                yy, xx = np.asarray(pts).T
                rr, cc = polygon(yy, xx, volume.shape[1:])
                m[k, rr, cc] = inc
                m[k, yy.astype(int).clip(0, volume.shape[1] - 1), xx.astype(int).clip(0, volume.shape[2] - 1)] = inc
            if m.sum() >= 5:
                out.append(m)
    return out


def nodules(xml_path: Path, volume: Volume, cluster_mm: float = 15.0) -> list[dict]:
    """Reader outlines grouped into nodules: ``consensus`` mask, ``readers`` masks, ``center_voxel``,
    ``inter_reader_iou`` (mean pairwise IoU)."""
    masks = reader_masks(xml_path, volume)
    sp = np.asarray(volume.spacing_mm)
    cents = [np.argwhere(m).mean(0) * sp for m in masks]
    groups: list[list[int]] = []
    for i, c in enumerate(cents):
        for g in groups:
            if np.linalg.norm(cents[g[0]] - c) < cluster_mm:
                g.append(i)
                break
        else:
            groups.append([i])
    out = []
    for g in groups:
        stack = np.stack([masks[i] for i in g])
        cons = stack.sum(0) >= 0.5 * len(g)
        if cons.sum() < 5:
            continue
        pair = [_iou(stack[a], stack[b]) for a in range(len(g)) for b in range(a + 1, len(g))]
        out.append({"consensus": cons, "n_readers": len(g), "center_voxel": np.argwhere(cons).mean(0),
                    "inter_reader_iou": float(np.mean(pair)) if pair else float("nan")})
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = (a | b).sum()
    return float((a & b).sum() / u) if u else 1.0
