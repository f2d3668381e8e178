"""Synthetic chest CT studies with ground truth, and lesion insertion into real CT (numpy/scipy only).

Public API (stable): ``generate_study``, ``SynthStudy``, ``LesionRequest``, ``PROFILES``, ``insert_nodule``,
``insert_embolus``, ``write_study``, ``generate_many``, ``render_study``. See ``README.md``.
"""

from inference.synth.dataset import case_seed, generate_many
from inference.synth.insert import insert_embolus, insert_nodule, load_dicom_folder, load_nifti
from inference.synth.output import write_study
from inference.synth.profiles import PROFILES, ScannerProfile, get_profile
from inference.synth.render import render_study
from inference.synth.study import LesionRequest, SynthStudy, generate_study

__all__ = [
    "PROFILES", "LesionRequest", "ScannerProfile", "SynthStudy", "case_seed", "generate_many", "generate_study",
    "get_profile", "insert_embolus", "insert_nodule", "load_dicom_folder", "load_nifti", "render_study",
    "write_study",
]
