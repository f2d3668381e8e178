"""Test data for the peer tests: small factory studies in the inbox, an analysis's SEG + SR, peer settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inference.config import Peer, Settings
from inference.dicom import read_volume
from inference.dicom.inbox import ingest_paths
from inference.dicom.writer import write_outputs
from inference.intake import register_and_queue
from inference.results import CaseResult, Finding
from tests.factories import make_volume, write_study
from tests.inference.peers.orthanc import OrthancServer


def peer_of(orthanc: OrthancServer, name: str = "pacs", **kw: Any) -> Peer:
    """A ``Peer`` for a test Orthanc (DICOM address and DICOMweb URL, credentials if it has them)."""
    values: dict[str, Any] = {
        "name": name,
        "ae_title": orthanc.aet,
        "host": "127.0.0.1",
        "port": orthanc.dicom_port,
        "dicomweb_url": orthanc.dicomweb_url,
        "username": orthanc.username,
        "password": orthanc.password,
    }
    return Peer(**(values | kw))


def with_peers(settings: Settings, *peers: Peer, **kw: Any) -> Settings:
    return settings.model_copy(update={"peers": list(peers), **kw})


def make_series(out: Path, *, tag: str, seed: int = 0, shape=(12, 48, 40), **headers: Any) -> tuple[Any, list[Path]]:
    """A factory chest CT series (study UID derived from ``tag``) with extra header values."""
    vol = make_volume(shape=shape, seed=seed, uid_tag=tag)
    return write_study(out, vol, headers=headers)


def receive_locally(files_dir: Path, settings: Settings) -> str:
    """Put a study into the inbox and the database (as the receiver would), without queueing it."""
    report = ingest_paths([files_dir], settings=settings)
    (uid,) = report.studies
    register_and_queue([uid], settings=settings, queue=False)
    return uid


def analysis_outputs(study_dir: Path, settings: Settings) -> dict[str, Path | None]:
    """SEG + SR of a made-up analysis (one nodule on the factory sphere), written under the results folder."""
    vol = read_volume(study_dir)
    c = (
        np.round(vol.meta.get("sphere_kji", (7, 19, 22))).astype(int)
        if "sphere_kji" in vol.meta
        else np.array((7, 19, 22))
    )
    mask = np.zeros(vol.shape, np.uint8)
    mask[c[0] - 1 : c[0] + 2, c[1] - 2 : c[1] + 3, c[2] - 2 : c[2] + 3] = 1
    nodule = Finding(kind="nodule", probability=0.9, center_mm=tuple(vol.voxel_to_patient(c)),
                     center_voxel=tuple(int(x) for x in c), diameter_mm=6.0, volume_ml=0.1, mean_hu=600.0,
                     texture="solid", lung_rads="3", label=1)  # fmt: skip
    result = CaseResult(study_uid=vol.study_uid, series_uid=vol.series_uid,
                        scores={"nodule": 0.9, "embolism": None, "priority": 0.9}, findings=[nodule],
                        model_versions={"nodule_seg": "test"})  # fmt: skip
    out = settings.data_dir / "results" / vol.study_uid / "run1"
    out.mkdir(parents=True, exist_ok=True)
    return write_outputs(out, study_dir, vol, result, mask)
