"""Tests on real LIDC-IDRI slices: geometry and HU against the radiologists' own contours."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pydicom

from inference.dicom import read_volume

NS = {"l": "http://www.nih.gov"}


def _largest_nodule_points(xml_path):
    """(z_mm, x_px, y_px) contour points of the nodule outlined on the most slices (all readers)."""
    root = ET.parse(xml_path).getroot()
    best: list[list[tuple[float, float, float]]] = []
    for nod in root.iter("{http://www.nih.gov}unblindedReadNodule"):
        pts = []
        for roi in nod.findall("l:roi", NS):
            if roi.findtext("l:inclusion", namespaces=NS).strip() != "TRUE":
                continue
            z = float(roi.findtext("l:imageZposition", namespaces=NS))
            for e in roi.findall("l:edgeMap", NS):
                pts.append(
                    (z, float(e.findtext("l:xCoord", namespaces=NS)), float(e.findtext("l:yCoord", namespaces=NS)))
                )
        if len(pts) > 30:
            best.append(pts)
    return np.array([p for nod in best for p in nod if -126 <= p[0] <= -104])


def test_lidc_0001_nodule_centroid_maps_into_bright_nodule(shared_data):
    """Test that the readers' contour centroid for LIDC-IDRI-0001, mapped through Volume, lands in the nodule."""
    case = shared_data / "lidc-idri-slices" / "LIDC-IDRI-0001"
    vol = read_volume(case)
    pts = _largest_nodule_points(shared_data / "lidc-idri-slices" / "xml" / "LIDC-IDRI-0001_69.xml")
    assert len(pts) > 100
    z_mm, col, row = pts.mean(axis=0)
    # pixel (col, row) -> patient mm using the DICOM header of a slice, independently of our reader
    any_file = next(case.rglob("*.dcm"))
    ds = pydicom.dcmread(any_file, stop_before_pixels=True)
    x_mm = float(ds.ImagePositionPatient[0]) + col * float(ds.PixelSpacing[1])
    y_mm = float(ds.ImagePositionPatient[1]) + row * float(ds.PixelSpacing[0])
    k, j, i = vol.patient_to_voxel((x_mm, y_mm, z_mm))
    np.testing.assert_allclose([j, i], [row, col], atol=1e-3)  # axis order and origin are right
    assert 0 <= k < vol.shape[0]
    kk, jj, ii = (int(round(v)) for v in (k, j, i))
    patch = vol.hu[max(kk - 1, 0) : kk + 2, jj - 3 : jj + 4, ii - 3 : ii + 4]
    assert patch.mean() > -300, f"mean HU at the nodule centroid is {patch.mean():.0f}"
    # and the slice around it is mostly lung and air, so the test is not trivially true
    assert np.median(vol.hu[kk]) < -500


def test_lidc_slices_sorted_by_position_not_file_name(shared_data):
    """Test that the real series comes back ordered along z with the 2.5 mm spacing and HU of air and tissue."""
    vol = read_volume(shared_data / "lidc-idri-slices" / "LIDC-IDRI-0001")
    assert vol.shape == (16, 512, 512)
    zs = [vol.voxel_to_patient((k, 0, 0))[2] for k in range(vol.shape[0])]
    np.testing.assert_allclose(np.diff(zs), 2.5)
    np.testing.assert_allclose([zs[0], zs[-1]], [-132.5, -95.0])
    assert vol.hu[:, :20, :20].mean() < -900  # outside the body
    assert vol.warnings and vol.warnings[0]["code"] == "partial_coverage"
