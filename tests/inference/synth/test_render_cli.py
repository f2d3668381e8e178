"""Renderings per scanner profile (test artifacts), the CLI and dataset mode."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from inference.cli import main
from inference.synth.profiles import PROFILES
from inference.synth.render import render_study
from inference.synth.study import generate_study


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_render_each_profile(name, artifacts_dir):
    """Test that axial/coronal/sagittal renderings per profile are written and show a chest."""
    s = generate_study(21, profile=name, contrast="ctpa" if "lung" not in name else "none", size="small",
                       lesions="both")
    path = render_study(s, artifacts_dir / f"{name}.png")
    img = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert img.shape[1] == 3 * 384 and img.std() > 40
    assert (img > 200).mean() > 0.02 and (img < 30).mean() > 0.05  # bright tissue, dark lungs/air


def test_profiles_differ_in_noise_and_sharpness():
    """Test that sharp low-dose profiles are noisier than soft standard ones (same anatomy seed)."""
    soft = generate_study(4, profile="siemens_flash_b30f", contrast="none", size="small", lesions="none")
    sharp = generate_study(4, profile="siemens_force_br64_lowdose", contrast="none", size="small", lesions="none")
    def air_sd(s):
        return float(s.volume.hu[:, :6, :6].std())
    assert air_sd(sharp) > 1.5 * air_sd(soft)
    assert soft.volume.meta["kernel"] != sharp.volume.meta["kernel"]


def test_cli_dataset_mode(tmp_path, capsys):
    """Test that `triage synth --dataset` writes splits, truth, labels and a manifest with profiles."""
    out = tmp_path / "ds"
    rc = main(["synth", str(out), "--n", "5", "--seed", "2", "--size", "small", "--dataset", "0.6,0.2,0.2",
               "--hold-out-profile", "ge_vct_lung", "--no-dicom"])
    assert rc == 0
    man = json.loads((out / "manifest.json").read_text())
    rows = man["cases"]
    assert len(rows) == 5 and {r["split"] for r in rows} == {"train", "val", "test"}
    assert all(r["profile"] != "ge_vct_lung" for r in rows if r["split"] != "test")
    with open(out / "manifest.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 5
    for r in rows:
        case = out / r["split"] / r["case"]
        assert (case / "ground_truth.json").is_file() and (case / "labels.npz").is_file()


def test_cli_writes_inspectable_dicom(tmp_path):
    """Test that `triage synth` writes DICOM that `triage inspect` accepts."""
    out = tmp_path / "s"
    assert main(["synth", str(out), "--n", "1", "--seed", "9", "--size", "small", "--contrast", "ctpa"]) == 0
    assert main(["inspect", str(out / "case0001" / "dicom")]) == 0
