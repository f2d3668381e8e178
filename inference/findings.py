"""The finding-kind registry: one place that declares every kind of AI finding.

Storage (the DB check constraint), the DICOM SEG/SR writers, the worklist, the viewer, analytics and the
simulator read ``KINDS`` instead of naming kinds. Adding a kind means one entry here, a detector module
that emits ``Finding(kind=NAME, ...)`` (listed in ``inference.triage.DETECTORS``) and, because the database
constrains ``finding.kind``, an Alembic migration that widens the constraint.

Pure Python on purpose (no numpy, no highdicom): ``db`` imports it for its constraint.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FindingKind:
    """How one kind of finding is named, coded, drawn, scored and thresholded.

    Attributes:
        name: the stored value (``finding.kind``, ``Finding.kind``, JSON ``kind``).
        label: what a reader sees ("PE", "nodule", "mass").
        concept: SR finding type as ``(code value, coding scheme, meaning)`` (SNOMED CT).
        mask: the case array its outline lives in (``nodule_mask``: label volume, value = ``Finding.label``;
            ``pe_mask``: a 0/1 region).
        colour: overlay and marker colour (RGB 0..255).
        score_key: the study score it counts towards (``scores[score_key]``, ``study.<score_key>_score``).
        model: the model card whose ``thresholds`` hold this kind's operating points (``OPERATING_POINTS``
            of its ``score_key`` names them: ``report`` lists a finding, ``suspected`` / ``critical`` flag the
            study).
        segmented: each finding has its own segment in the label mask (a SEG segment and a volumetric ROI in
            the SR); otherwise the SR holds a plain measurement group.
    """

    name: str
    label: str
    concept: tuple[str, str, str]
    mask: str
    colour: tuple[int, int, int]
    score_key: str
    model: str
    segmented: bool = False


_SCT = "SCT"  # SNOMED CT
KINDS: dict[str, FindingKind] = {
    k.name: k
    for k in (
        # name, label, SR concept, mask, colour, study score, card of its operating points
        FindingKind("nodule", "nodule", ("27925004", _SCT, "Nodule"), "nodule_mask", (255, 196, 0), "nodule",
                    "nodule_cls", segmented=True),
        # a mass counts towards the study's lung-lesion score (an actionable nodule or any mass)
        FindingKind("mass", "mass", ("4147007", _SCT, "Mass"), "nodule_mask", (255, 120, 0), "nodule",
                    "nodule_cls", segmented=True),
        FindingKind("embolism", "PE", ("59282003", _SCT, "Pulmonary embolism"), "pe_mask", (230, 40, 60),
                    "embolism", "pe_cnnlstm"),
    )
}  # fmt: skip
#: Every kind name, in display order.
KIND_NAMES: tuple[str, ...] = tuple(KINDS)
#: The study scores (``CaseResult.scores`` keys besides ``priority``; ``study.<key>_score`` columns).
SCORE_KEYS: tuple[str, ...] = tuple(dict.fromkeys(k.score_key for k in KINDS.values()))
#: The operating points of each study score: the model card that holds them and their names there. Each
#: analysis stores these values (``CaseResult.thresholds``); ``suspected`` / ``critical`` flag the study.
OPERATING_POINTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "nodule": ("nodule_cls", ("report", "suspected")),
    "embolism": ("pe_cnnlstm", ("report", "critical")),
}


def get_kind(name: str) -> FindingKind:
    """The registry entry of ``name``.

    Raises:
        ValueError: ``name`` is not a registered kind.
    """
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"finding kind must be one of {', '.join(KIND_NAMES)}; got {name!r}") from None


def kind_label(name: str) -> str:
    """A kind's display label (the name itself for an unknown kind)."""
    return KINDS[name].label if name in KINDS else name


def kind_check_sql(column: str = "kind") -> str:
    """The SQL check-constraint text that allows exactly the registered kinds."""
    return f"{column} IN ({', '.join(repr(n) for n in KIND_NAMES)})"
