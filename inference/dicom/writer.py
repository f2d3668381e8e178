"""DICOM outputs of an analysis (highdicom): a SEG of the lesion masks and a TID 1500 measurement report.

Kinds, their coded concepts and whether they are segmented come from ``inference.findings``.

* ``write_seg``: one segment per segmented finding (nodule, mass), referencing the analysed source series.
  None → no SEG (the SR says so).
* ``write_sr``: a Comprehensive 3D SR (TID 1500): per segmented finding a volumetric ROI group that
  references its SEG segment, with long-axis diameter, volume, mean attenuation, model probability, texture
  and the suggested Lung-RADS category; per other finding (embolism) a measurement group with probability and
  location; the algorithm (model names and versions) on every group. After a comparison with a prior study
  (``rewrite_sr_with_comparison``), a compared nodule also carries its change, prior volume and diameter,
  volume change and VDT, the prior Study Instance UID, and a paired nodule keeps the prior report's tracking
  UID (the same lesion, the same UID in both studies).
* ``send_to_pacs``: C-STORE of both to a destination (``AE@host:port``); the worker delivers through
  ``inference.peers.delivery`` instead (every result peer, C-STORE or STOW-RS, retried with backoff).

Codes from SNOMED CT / DICOM / UCUM where a standard one exists; the rest use the local scheme
``99TRIAGE`` (a private coding scheme, as the standard allows).
"""

from __future__ import annotations

import logging
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from inference.compare import SIZED_BASES
from inference.dicom.ct_writer import TYPE2_DEFAULTS
from inference.dicom.scan import scan
from inference.findings import KINDS, get_kind
from inference.results import CaseResult, Finding
from inference.volume import Volume

log = logging.getLogger(__name__)

MANUFACTURER = "chest-ct-triage (research software, not a medical device)"
MODEL_NAME = "chest-ct-triage"
SOFTWARE_VERSION = "0.1.0"
LOCAL = "99TRIAGE"

LUNG = hd.sr.CodedConcept("39607008", "SCT", "Lung")
CT_CHEST = hd.sr.CodedConcept("24627-2", "LN", "CT Chest")
LONG_AXIS = hd.sr.CodedConcept("103339001", "SCT", "Long axis")
VOLUME = hd.sr.CodedConcept("118565006", "SCT", "Volume")
ATTENUATION = hd.sr.CodedConcept("112031", "DCM", "Attenuation Coefficient")
PROBABILITY = hd.sr.CodedConcept("PROB", LOCAL, "Model probability (calibrated)")
TEXTURE = hd.sr.CodedConcept("TEXTURE", LOCAL, "Nodule texture")
LUNG_RADS = hd.sr.CodedConcept("LUNGRADS", LOCAL, "Suggested Lung-RADS v2022 category")
LOCATION = hd.sr.CodedConcept("LOCATION", LOCAL, "Suggested location")
MM = hd.sr.CodedConcept("mm", "UCUM", "millimeter")
ML = hd.sr.CodedConcept("ml", "UCUM", "milliliter")
HU = hd.sr.CodedConcept("[hnsf'U]", "UCUM", "Hounsfield unit")
UNITLESS = hd.sr.CodedConcept("1", "UCUM", "no units")
# comparison with a prior study (#16)
CHANGE = hd.sr.CodedConcept("CHANGE", LOCAL, "Change since prior study")
PRIOR_STUDY = hd.sr.CodedConcept("PRIORSTUDY", LOCAL, "Prior study compared (Study Instance UID)")
PRIOR_VOLUME = hd.sr.CodedConcept("PRIORVOL", LOCAL, "Volume on the prior study")
PRIOR_DIAMETER = hd.sr.CodedConcept("PRIORDIAM", LOCAL, "Volume-equivalent diameter on the prior study")
VOLUME_CHANGE = hd.sr.CodedConcept("VOLCHANGE", LOCAL, "Volume change since the prior study")
VDT = hd.sr.CodedConcept("VDT", LOCAL, "Volume doubling time")
PERCENT = hd.sr.CodedConcept("%", "UCUM", "percent")
DAYS = hd.sr.CodedConcept("d", "UCUM", "day")
MM3 = hd.sr.CodedConcept("mm3", "UCUM", "cubic millimeter")
STUDY_SCORES = {
    "nodule": hd.sr.CodedConcept("NODSCORE", LOCAL, "Study nodule suspicion (calibrated)"),
    "embolism": hd.sr.CodedConcept("PESCORE", LOCAL, "Study pulmonary embolism probability (calibrated)"),
    "priority": hd.sr.CodedConcept("PRIORITY", LOCAL, "Worklist priority score"),
}


def source_datasets(study_dir: Path, volume: Volume) -> list[pydicom.Dataset]:
    """Headers of the analysed series' files, in the volume's slice order (k = 0 first)."""
    result = scan([study_dir])
    study = result.studies.get(volume.study_uid)
    if study is None or volume.series_uid not in study.series:
        raise FileNotFoundError(f"series {volume.series_uid} not found under {study_dir}")
    series = study.series[volume.series_uid]
    normal = volume.direction[:, 2]
    datasets: list[pydicom.Dataset] = []
    for inst in series.instances:
        with inst.source.open() as fp:
            ds = pydicom.dcmread(fp, stop_before_pixels=True)
        for keyword, value in TYPE2_DEFAULTS.items():  # real files sometimes omit type 2 attributes
            if keyword not in ds:
                setattr(ds, keyword, value)
        datasets.append(ds)
    datasets.sort(key=lambda ds: float(np.dot(np.asarray(ds.ImagePositionPatient, float), normal)))
    if len(datasets) != volume.shape[0]:
        raise ValueError(f"{len(datasets)} source files for a volume of {volume.shape[0]} slices")
    return datasets


def finding_type(kind: str) -> hd.sr.CodedConcept:
    """The SR finding type of a kind (``inference.findings``: its coded concept)."""
    value, scheme, meaning = get_kind(kind).concept
    return hd.sr.CodedConcept(value, scheme, meaning)


def segmented_findings(result: CaseResult) -> list[Finding]:
    """The findings that have their own segment in the label mask (``segmented`` kinds with a label)."""
    return [f for f in result.findings if KINDS[f.kind].segmented and f.label]


def _algorithm(result: CaseResult, family: str) -> hd.AlgorithmIdentificationSequence:
    versions = ", ".join(f"{k} {v}" for k, v in sorted(result.model_versions.items())) or "unknown"
    return hd.AlgorithmIdentificationSequence(
        name=MODEL_NAME, family=codes.cid7162.ArtificialIntelligence, version=versions[:64], source=family
    )


def write_seg(out_dir: Path, sources: list[pydicom.Dataset], mask: np.ndarray, result: CaseResult) -> Path | None:
    """Write the label mask of the segmented findings (nodules, masses) as a binary DICOM SEG; returns its path
    (None without such findings). Segment n is the n-th segmented finding."""
    lesions = segmented_findings(result)
    if not lesions or mask is None or not np.any(mask):
        return None
    labels = np.zeros(mask.shape, dtype=np.uint8)
    descriptions = []
    for n, f in enumerate(lesions, start=1):
        labels[np.asarray(mask) == f.label] = n
        name = get_kind(f.kind).label.capitalize()
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=n,
                segment_label=f"{name} {n} (p={f.probability:.2f})",
                segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
                segmented_property_type=finding_type(f.kind),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=_algorithm(result, f.kind),
                tracking_uid=generate_uid(entropy_srcs=[result.study_uid, result.series_uid, f.kind, str(n)]),
                tracking_id=f"{name} {n}",
            )
        )
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=labels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=generate_uid(),
        series_number=9001,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER[:64],
        manufacturer_model_name=MODEL_NAME,
        software_versions=SOFTWARE_VERSION,
        device_serial_number="0",
        series_description="AI nodule segmentation (research)",
    )
    path = Path(out_dir) / "nodules_seg.dcm"
    seg.save_as(path)
    return path


def _tracking(result: CaseResult, kind: str, n: int, prior: dict | None = None) -> hd.sr.TrackingIdentifier:
    """Tracking identifier of finding ``n``; a nodule paired with a prior one keeps the prior's tracking UID, so
    the same lesion carries the same UID in both studies' reports."""
    if prior and prior.get("prior_tracking_uid"):
        return hd.sr.TrackingIdentifier(
            uid=prior["prior_tracking_uid"], identifier=f"{kind.capitalize()} {n} (prior {prior['prior_tracking_id']})"
        )
    return hd.sr.TrackingIdentifier(
        uid=generate_uid(entropy_srcs=[result.study_uid, result.series_uid, kind, str(n)]),
        identifier=f"{kind.capitalize()} {n}",
    )


def _comparison_items(entry: dict | None) -> tuple[list[hd.sr.Measurement], list[hd.sr.QualitativeEvaluation]]:
    """Prior measurements, growth and VDT of a compared nodule (a pair or a new nodule's entry)."""
    if entry is None:
        return [], []
    change = entry.get("status", "new")
    evals = [hd.sr.QualitativeEvaluation(CHANGE, hd.sr.CodedConcept(change[:16], LOCAL, change))]
    meas = []
    prior = entry.get("prior") or {}
    if prior.get("volume_mm3") and entry.get("basis", "volumetry") in SIZED_BASES:  # a refused volumetry: no sizes
        meas.append(hd.sr.Measurement(name=PRIOR_VOLUME, value=float(prior["volume_mm3"]), unit=MM3))
        meas.append(hd.sr.Measurement(name=PRIOR_DIAMETER, value=float(prior["diameter_mm"]), unit=MM))
        meas.append(hd.sr.Measurement(name=VOLUME_CHANGE, value=float(entry["volume_change_pct"]), unit=PERCENT))
    if entry.get("vdt_days"):
        meas.append(hd.sr.Measurement(name=VDT, value=float(entry["vdt_days"]), unit=DAYS))
    return meas, evals


def _with_prior_study(group, prior_study_uid: str | None):
    """Append the prior study's UID to a measurement group (CONTAINS, UIDREF): the link between the studies."""
    if prior_study_uid:
        group[0].ContentSequence.append(
            hd.sr.UIDRefContentItem(
                name=PRIOR_STUDY, value=prior_study_uid, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
            )
        )
    return group


def _measurements(f: Finding) -> list[hd.sr.Measurement]:
    out = [hd.sr.Measurement(name=PROBABILITY, value=float(f.probability), unit=UNITLESS)]
    if f.diameter_mm is not None:
        out.append(hd.sr.Measurement(name=LONG_AXIS, value=float(f.diameter_mm), unit=MM))
    if f.volume_ml is not None:
        out.append(hd.sr.Measurement(name=VOLUME, value=float(f.volume_ml), unit=ML))
    if f.mean_hu is not None:
        out.append(hd.sr.Measurement(name=ATTENUATION, value=float(f.mean_hu), unit=HU))
    return out


def _text_evaluations(f: Finding) -> list[hd.sr.QualitativeEvaluation]:
    out = []
    for name, value in ((TEXTURE, f.texture), (LUNG_RADS, f.lung_rads), (LOCATION, f.location)):
        if value:
            out.append(hd.sr.QualitativeEvaluation(name, hd.sr.CodedConcept(str(value)[:16], LOCAL, str(value))))
    return out


def write_sr(
    out_dir: Path,
    sources: list[pydicom.Dataset],
    result: CaseResult,
    seg_path: Path | None,
    comparison: dict | None = None,
) -> Path:
    """Write the TID 1500 measurement report of the findings; returns its path.

    With ``comparison`` (the block of ``inference.compare``), each compared nodule also carries its change
    since the prior, the prior volume and diameter, the volume change and the VDT, the prior study's UID, and
    (when paired) the prior nodule's tracking UID.
    """
    entries: dict[int, dict] = {}
    if comparison:
        entries = {p["current_index"]: p for p in comparison.get("pairs", [])}
        entries.update({n["current_index"]: {**n, "status": "new"} for n in comparison.get("new", [])})
    prior_uid = comparison.get("prior_study_uid") if comparison else None
    seg = pydicom.dcmread(seg_path) if seg_path else None
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=[MODEL_NAME]), name=MODEL_NAME, manufacturer_name=MANUFACTURER[:64]
        ),
    )
    context = hd.sr.ObservationContext(observer_device_context=observer)
    algo = hd.sr.AlgorithmIdentification(
        name=MODEL_NAME,
        version=", ".join(f"{k} {v}" for k, v in sorted(result.model_versions.items()))[:64] or SOFTWARE_VERSION,
    )
    groups: list[hd.sr.MeasurementsAndQualitativeEvaluations | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations]
    groups = []
    segmented = segmented_findings(result)
    indexed = [(i, f) for i, f in enumerate(result.findings) if any(f is g for g in segmented)]
    for n, (index, f) in enumerate(indexed, start=1):
        entry = entries.get(index)  # this finding's comparison with the prior, if any
        extra_meas, extra_evals = _comparison_items(entry)
        ref = None
        if seg is not None:
            ref = hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID,
                sop_instance_uid=seg.SOPInstanceUID,
                segment_number=n,
                source_series=hd.sr.SourceSeriesForSegmentation(result.series_uid),
            )
        group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking(result, f.kind, n, entry),
            referenced_segment=ref,
            finding_type=finding_type(f.kind),
            algorithm_id=algo,
            finding_sites=[hd.sr.FindingSite(LUNG)],
            measurements=_measurements(f) + extra_meas,
            qualitative_evaluations=(_text_evaluations(f) + extra_evals) or None,
        )
        groups.append(_with_prior_study(group, prior_uid if entry else None))
    plain = [f for f in result.findings if not KINDS[f.kind].segmented]
    for n, f in enumerate(plain, start=1):
        groups.append(
            hd.sr.MeasurementsAndQualitativeEvaluations(
                tracking_identifier=_tracking(result, f.kind, n),
                finding_type=finding_type(f.kind),
                algorithm_id=algo,
                measurements=_measurements(f),
                qualitative_evaluations=_text_evaluations(f) or None,
            )
        )
    groups.append(  # study-level scores, always present (also when nothing was found)
        hd.sr.MeasurementsAndQualitativeEvaluations(
            tracking_identifier=_tracking(result, "study", 0),
            algorithm_id=algo,
            measurements=[
                hd.sr.Measurement(name=STUDY_SCORES[key], value=float(value), unit=UNITLESS)
                for key, value in sorted(result.scores.items())
                if key in STUDY_SCORES and value is not None
            ],
        )
    )
    report = hd.sr.MeasurementReport(
        observation_context=context, procedure_reported=CT_CHEST, imaging_measurements=groups
    )
    evidence = list(sources) + ([seg] if seg is not None else [])
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=generate_uid(),
        series_number=9002,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=MANUFACTURER[:64],
        series_description="AI findings report (research, not a medical device)",
    )
    path = Path(out_dir) / "findings_sr.dcm"
    sr.save_as(path)
    return path


def write_outputs(
    out_dir: Path, study_dir: Path, volume: Volume, result: CaseResult, nodule_mask: np.ndarray | None
) -> dict[str, Path | None]:
    """SEG (if any nodule) and SR for one analysed study, written into ``out_dir``."""
    sources = source_datasets(study_dir, volume)
    seg = write_seg(out_dir, sources, nodule_mask, result) if nodule_mask is not None else None
    sr = write_sr(out_dir, sources, result, seg)
    return {"seg": seg, "sr": sr}


def rewrite_sr_with_comparison(
    out_dir: Path, study_dir: Path, volume: Volume, result: CaseResult, comparison: dict
) -> Path:
    """Replace a saved case's SR by one that carries the comparison with the prior (SEG unchanged)."""
    sources = source_datasets(study_dir, volume)
    seg = Path(out_dir) / "nodules_seg.dcm"
    return write_sr(out_dir, sources, result, seg if seg.exists() else None, comparison)


def send_to_pacs(paths: list[Path], destination: str, *, calling_ae: str = "TRIAGE") -> list[int]:
    """C-STORE ``paths`` to ``destination`` (``AE@host:port``); returns the DIMSE status of each.

    Raises:
        ConnectionError: the destination refused or could not be reached.
    """
    from pynetdicom import AE

    try:
        ae_title, hostport = destination.split("@", 1)
        host, port = hostport.rsplit(":", 1)
    except ValueError as exc:
        raise ValueError(f"PACS destination must look like AE@host:port, got {destination!r}") from exc
    datasets = [pydicom.dcmread(p) for p in paths]
    ae = AE(ae_title=calling_ae)
    for ds in datasets:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate(host, int(port), ae_title=ae_title)
    if not assoc.is_established:
        raise ConnectionError(f"PACS {destination} did not accept the association")
    try:
        statuses = []
        for ds in datasets:
            status = assoc.send_c_store(ds)
            statuses.append(int(getattr(status, "Status", 0xFFFF)))
    finally:
        assoc.release()
    return statuses
