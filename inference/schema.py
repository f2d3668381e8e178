"""The result contract: ``CaseResult`` / ``Finding`` (pydantic, schema-versioned).

One typed object crosses every seam: the pipeline returns it (``inference.triage.analyze``), the worker hands
it to the database (``db.ingest.store_analysis``), ``result.json`` and ``triage analyze --json`` are its
JSON. Pure pydantic (no numpy), so ``db`` can import it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

from inference.findings import get_kind

#: Version of the ``CaseResult`` JSON shape (``result.json``, ``triage analyze --json``). 2: typed, with
#: ``thresholds`` (the operating points used) and structured quality reasons.
SCHEMA_VERSION = 2


class Finding(BaseModel):
    """One suspected lesion. Positions in LPS mm (patient) and voxel indices (k, j, i) of the analysed grid."""

    model_config = ConfigDict(extra="ignore")

    kind: str  # a registered kind (``inference.findings.KINDS``)
    probability: float  # calibrated 0..1
    center_mm: tuple[float, float, float]
    center_voxel: tuple[int, int, int]
    diameter_mm: float | None = None
    volume_ml: float | None = None
    mean_hu: float | None = None
    texture: str | None = None  # solid | part-solid | ground-glass (nodules)
    lung_rads: str | None = None  # suggested Lung-RADS v2022 category (a suggestion, not a read)
    location: str | None = None  # lobe / "central|lobar|segmental, right|left" (emboli)
    label: int | None = None  # value of this finding in its mask volume (``KINDS[kind].mask``)
    mask_path: str | None = None  # relative to the data directory (set when the case is saved)
    heatmap_path: str | None = None
    #: Anything else. The comparison with a prior (#16, ``inference.compare.annotate_findings``) writes
    #: ``change`` (new | growing | stable | shrinking | indeterminate), ``prior_diameter_mm``, ``prior_volume_mm3``,
    #: ``volume_change_pct`` (these three None when the volumetry was refused; ``change_note`` says why),
    #: ``vdt_days`` and ``match_confidence`` here; ``db.ingest`` stores them as columns.
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("kind")
    @classmethod
    def _registered(cls, value: str) -> str:
        return get_kind(value).name

    @field_serializer("center_mm")
    def _round_mm(self, value: tuple[float, float, float]) -> list[float]:
        return [round(float(c), 2) for c in value]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict of ``triage analyze --json`` (centre in mm rounded to 0.01)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls.model_validate(d)


class QualityReason(BaseModel):
    """One quality-gate note: what (``code``), how bad (``severity``), a plain message and advice."""

    model_config = ConfigDict(extra="ignore")

    code: str
    severity: str = "warning"  # error: study unusable; warning: analysed with a caveat
    message: str
    advice: str = ""
    series_uid: str | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}. {self.advice}".strip()


class Quality(BaseModel):
    """The quality verdict: ``ok`` (analysable) and every reason, structured."""

    ok: bool = True
    reasons: list[QualityReason] = Field(default_factory=list)

    @field_validator("reasons", mode="before")
    @classmethod
    def _plain_text(cls, value: Any) -> Any:
        """Accept a bare string reason (older results) as a reason with code ``note``."""
        return [{"code": "note", "message": r} if isinstance(r, str) else r for r in value or []]

    def summary(self) -> str:
        """All reasons on one line (for a study's ``attention_reason``)."""
        return "; ".join(str(r) for r in self.reasons)


class CaseResult(BaseModel):
    """Everything the pipeline concluded about one study: the one contract from the pipeline through the
    worker and the database to ``triage analyze --json``."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int = SCHEMA_VERSION
    study_uid: str
    series_uid: str
    scores: dict[str, float | None]  # one per ``inference.findings.SCORE_KEYS``, plus ``priority``
    critical: bool = False
    findings: list[Finding] = Field(default_factory=list)
    quality: Quality = Field(default_factory=Quality)
    model_versions: dict[str, str] = Field(default_factory=dict)
    #: Operating points used, per study score (``{"embolism": {"report": .., "critical": ..}, ...}``): the
    #: model cards' values, or a ``TRIAGE_THRESHOLD_OVERRIDES`` value where one is set.
    thresholds: dict[str, dict[str, float]] = Field(default_factory=dict)
    provider: str = ""
    timings_ms: dict[str, float] = Field(default_factory=dict)
    embedding: list[float] | None = None  # case embedding for the domain-shift picture
    more_findings: int = 0  # findings that passed the operating point beyond the display limit
    #: The comparison with the patient's prior study (#16, ``inference.priors.apply_comparison``): prior UID
    #: and date, alignment, pairs with growth and VDT, new / resolved findings, the priority change. None
    #: when no prior was compared. Stored as ``analysis_run.comparison`` (and ``prior_study_uid``).
    comparison: dict[str, Any] | None = None

    @field_serializer("scores")
    def _round_scores(self, value: dict[str, float | None]) -> dict[str, float | None]:
        return {k: None if v is None else round(float(v), 4) for k, v in value.items()}

    @field_serializer("timings_ms")
    def _round_timings(self, value: dict[str, float]) -> dict[str, float]:
        return {k: round(float(v), 1) for k, v in value.items()}

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict (``triage analyze --json``, ``result.json``)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CaseResult:
        return cls.model_validate(d)

    @model_validator(mode="after")
    def _critical_from_operating_point(self) -> CaseResult:
        """A PE score at or above the stored critical operating point makes the study critical."""
        score, point = self.scores.get("embolism"), self.operating_point("embolism", "critical")
        if score is not None and point is not None and score >= point:
            self.critical = True
        return self

    def operating_point(self, score_key: str, name: str) -> float | None:
        """The operating point ``thresholds[score_key][name]`` this analysis used, or None."""
        value = self.thresholds.get(score_key, {}).get(name)
        return None if value is None else float(value)
