"""The report draft that follows the reader's verdicts, and the contradictions that need a reason to sign.

Pure functions over plain values (no Streamlit, no SQL): the review page gives them the AI findings, this
reader's verdicts and added findings, and what the form holds.

* ``draft``: confirmed AI findings and the reader's added findings make the category ("Nodule: yes",
  "PE: yes"), the highest suggested Lung-RADS of the confirmed nodules and an impression draft, one line per
  finding. Rejected and unreviewed AI findings contribute nothing.
* ``contradictions``: what a report would deny that the reader has confirmed or added (a "no" next to a
  confirmed nodule or PE; no Lung-RADS category, or 1, next to a confirmed nodule). Signing such a report
  needs an explicit reason (audited with the signature).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Lung-RADS v2022 categories in increasing order of suspicion (``S`` is a modifier, ``0`` incomplete).
LUNG_RADS_ORDER = ["1", "2", "3", "4A", "4B", "4X"]
NODULE_KINDS = ("nodule", "mass")


@dataclass(frozen=True)
class Draft:
    """What the verdicts say the report should contain."""

    nodule: bool
    embolism: bool
    lung_rads: str | None
    impression: str
    sources: dict[str, list[str]] = field(default_factory=dict)  # "nodule"/"embolism" -> finding names


def _get(f: Any, name: str) -> Any:
    return f.get(name) if isinstance(f, Mapping) else getattr(f, name, None)


def highest_lung_rads(categories: Iterable[str | None]) -> str | None:
    """The most suspicious of the given Lung-RADS categories (None when there is none)."""
    ranked = [c for c in categories if c in LUNG_RADS_ORDER]
    return max(ranked, key=LUNG_RADS_ORDER.index) if ranked else None


def finding_line(f: Any, *, added: bool = False) -> str:
    """One impression line for an AI finding (or a reader-added one)."""
    kind = _get(f, "kind")
    parts: list[str] = []
    if kind == "embolism":
        parts.append("Pulmonary embolism")
    else:
        texture = _get(f, "texture")
        parts.append(f"{texture.capitalize()} {kind}" if texture else ("Mass" if kind == "mass" else "Nodule"))
    diameter = _get(f, "diameter_mm")
    if diameter:
        parts.append(f"{float(diameter):.0f} mm")
    location = _get(f, "location")
    if location:
        parts.append(str(location))
    if kind != "embolism" and _get(f, "lung_rads") and not added:
        parts.append(f"Lung-RADS {_get(f, 'lung_rads')}")
    line = ", ".join(parts)
    note = _get(f, "note") if added else None
    if note:
        line += f" ({note})"
    return line + (" [added by reader]." if added else ".")


def draft(findings: Iterable[Any], verdicts: Mapping[int, str], added: Iterable[Any] = ()) -> Draft:
    """The report the reader's verdicts imply.

    Args:
        findings: AI findings (objects or dicts with ``id``, ``kind``, ``texture``, ``diameter_mm``,
            ``location``, ``lung_rads``).
        verdicts: this reader's verdict per finding id (``confirmed`` / ``rejected``).
        added: the reader's own added findings (``kind``, ``diameter_mm``, ``note``).
    """
    confirmed = [f for f in findings if verdicts.get(_get(f, "id")) == "confirmed"]
    added = list(added)
    lines = [finding_line(f) for f in confirmed] + [finding_line(r, added=True) for r in added]
    sources: dict[str, list[str]] = {"nodule": [], "embolism": []}
    for f in confirmed:
        group = "embolism" if _get(f, "kind") == "embolism" else "nodule"
        sources[group].append(f"confirmed AI finding ({finding_line(f).rstrip('.')})")
    for r in added:
        group = "embolism" if _get(r, "kind") == "embolism" else "nodule"
        sources[group].append(f"your added finding ({finding_line(r, added=True).split(' [')[0]})")
    nodules = [f for f in confirmed if _get(f, "kind") in NODULE_KINDS]
    return Draft(
        nodule=bool(sources["nodule"]),
        embolism=bool(sources["embolism"]),
        lung_rads=highest_lung_rads(_get(f, "lung_rads") for f in nodules),
        impression="\n".join(lines),
        sources=sources,
    )


def contradictions(d: Draft, *, nodule: bool | None, embolism: bool | None, lung_rads: str | None) -> list[str]:
    """What the submitted report denies that the verdicts assert (empty: no contradiction)."""
    out = []
    if d.nodule and nodule is False:
        out.append("Nodule is “no”, but you have " + "; ".join(d.sources["nodule"]))
    if d.embolism and embolism is False:
        out.append("Pulmonary embolism is “no”, but you have " + "; ".join(d.sources["embolism"]))
    if d.lung_rads and nodule is not False and (lung_rads or "") in ("", "1"):
        out.append(f"Lung-RADS is “{lung_rads or 'none'}”, but a confirmed nodule suggests {d.lung_rads}")
    return out
