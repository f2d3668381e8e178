"""Test that the committed JPEG-LS sample studies decode to exactly the real LIDC pixels they came from."""

from __future__ import annotations

import numpy as np
import pytest

from inference.dicom import read_volume
from tests.conftest import PROJECT_ROOT


@pytest.mark.parametrize("case", ["LIDC-IDRI-0001", "LIDC-IDRI-0002", "LIDC-IDRI-0003"])
def test_sample_zip_is_lossless_copy_of_shared_case(shared_data, case):
    """Test that assets/samples/lidc/<case>.zip reads to the same HU and geometry as the shared original."""
    sample = read_volume(PROJECT_ROOT / "assets" / "samples" / "lidc" / f"{case}.zip")
    original = read_volume(shared_data / "lidc-idri-slices" / case)
    assert sample.meta["transfer_syntax"] == "1.2.840.10008.1.2.4.80"
    assert sample.series_uid == original.series_uid
    np.testing.assert_array_equal(sample.hu, original.hu)
    np.testing.assert_allclose(sample.origin_mm, original.origin_mm)
