"""Sub-commands of the inference side: ``inspect`` and ``ingest`` (thin wrappers over the API)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from inference.config import get_settings
from inference.dicom.inbox import ingest_paths
from inference.dicom.load import StudyInspection, inspect_paths


def _fmt_vec(v, nd=2) -> str:
    return "(" + ", ".join(f"{x:.{nd}f}" for x in v) + ")"


def format_inspection(rep: StudyInspection) -> str:
    """Plain-text report of one study (no patient identifiers)."""
    lines = [f"Study {rep.study_uid}  ({len(rep.series)} series)"]
    for s in rep.series:
        mark = "*" if s["series_uid"] == rep.selected_series_uid else " "
        thick = f"{s['slice_thickness_mm']:g} mm" if s["slice_thickness_mm"] else "? mm"
        extra = f"skipped: {s['skip_reason']}" if s["skip_reason"] else "candidate"
        lines.append(
            f" {mark} series {s['series_uid']}  {s['modality'] or '?'}  '{s['description']}'  "
            f"{s['slices']} slices  {thick}  kernel {s['kernel'] or '?'}  [{extra}]"
        )
    if rep.selected_series_uid:
        lines.append(f"Selected: {rep.selected_series_uid}\n  why: {rep.selection_reason}")
    v = rep.volume
    if v is not None:
        z0 = v.voxel_to_patient((0, 0, 0))[2]
        z1 = v.voxel_to_patient((v.shape[0] - 1, 0, 0))[2]
        lines += [
            f"Volume: {v.shape[0]} x {v.shape[1]} x {v.shape[2]} voxels (slices x rows x columns), "
            f"spacing z/y/x {_fmt_vec(v.spacing_mm, 3)} mm",
            f"  origin (LPS mm) {_fmt_vec(v.origin_mm)}, slice normal {_fmt_vec(v.direction[:, 2], 3)}",
            f"  coverage z {min(z0, z1):.2f} .. {max(z0, z1):.2f} mm ({v.extent_mm()[0]:.1f} mm), "
            f"HU range {int(v.hu.min())} .. {int(v.hu.max())}",
            f"  scanner {v.meta.get('manufacturer') or '?'} {v.meta.get('model') or ''}, "
            f"kVp {v.meta.get('kvp') or '?'}, contrast {'yes' if v.meta.get('contrast') else 'no'}",
        ]
    errors = [i for i in rep.issues if i.severity == "error"]
    warnings = [i for i in rep.issues if i.severity == "warning"]
    if rep.ok:
        lines.append("Verdict: USABLE" + (" with warnings:" if warnings else ""))
    else:
        lines.append("Verdict: NOT USABLE:")
    for i in warnings if rep.ok else errors + warnings:
        lines.append(f"  - [{i.severity}] {i}")
    return "\n".join(lines)


def cmd_inspect(args: argparse.Namespace) -> int:
    try:
        scan_result, reports = inspect_paths(args.paths)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ok = bool(reports) and all(r.ok for r in reports)
    unreadable = [{"file": s.label, "reason": why} for s, why in scan_result.unreadable]
    if args.json:
        out = {"ok": ok, "studies": [r.to_dict() for r in reports], "unreadable": unreadable}
        print(json.dumps(out, indent=2))
    else:
        for rep in reports:
            print(format_inspection(rep))
            print()
        if unreadable:
            print(
                f"{len(unreadable)} file(s) are not readable DICOM, e.g. {unreadable[0]['file']}: "
                f"{unreadable[0]['reason']}"
            )
    if not reports:
        print(f"error: no DICOM study found in {', '.join(map(str, args.paths))}", file=sys.stderr)
    for rep in reports:
        if not rep.ok:
            for i in rep.issues:
                if i.severity == "error":
                    print(f"error: study {rep.study_uid}: {i}", file=sys.stderr)
    return 0 if ok else 2


def cmd_ingest(args: argparse.Namespace) -> int:
    settings = get_settings()
    try:
        report = ingest_paths(args.paths, settings=settings)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from inference.intake import register_ingested  # late: needs the database

    queued = register_ingested(report, settings=settings)
    summary = report.to_dict()
    summary["queued"] = queued
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"stored {summary['stored']} file(s), {summary['duplicates']} already present, "
            f"{summary['replaced']} replaced, {len(summary['quarantined'])} quarantined, "
            f"{len(summary['refused'])} refused; {len(summary['studies'])} study(ies); "
            f"{len(queued)} queued for analysis"
        )
        for q in summary["quarantined"]:
            print(f"  quarantined {q['file']}: {q['reason']}")
        for q in summary["refused"]:
            print(f"  refused {q['file']}: {q['reason']}")
        print(f"inbox: {settings.inbox_dir}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "inspect",
        help="studies and series found, the series selected and why, geometry, quality verdict",
        description="Inspect DICOM files, folders or zips. Exit 0 when every study is usable, 2 when not.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "ingest",
        help="import DICOM files/folders/zips into the inbox and queue the studies",
        description="Files are stored as inbox/<study>/<series>/<sop>.dcm; unparseable files go to quarantine/.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_ingest)
    register_service_commands(sub)
    register_analyze(sub)


def cmd_worker(args: argparse.Namespace) -> int:
    from db.migrate import SchemaError
    from inference.worker import run_worker

    settings = get_settings()
    try:
        run_worker(settings, workers=args.workers, max_seconds=args.max_seconds)
    except SchemaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_receive(args: argparse.Namespace) -> int:
    from inference.dicom.receiver import run_receiver

    overrides = {}
    if args.port is not None:
        overrides["receiver_port"] = args.port
    if args.ae_title:
        overrides["receiver_ae_title"] = args.ae_title
    if args.host:
        overrides["receiver_host"] = args.host
    if args.quiet_period is not None:
        overrides["study_quiet_period_s"] = args.quiet_period
    settings = get_settings().model_copy(update=overrides)
    unsafe = [r for r in settings.unsafe_reasons() if "receiver" in r]
    if unsafe and not settings.demo_mode:
        print(f"error: refusing to start: {unsafe[0]}", file=sys.stderr)
        return 2
    try:
        run_receiver(settings)
    except OSError as exc:
        print(f"error: cannot listen on {settings.receiver_host}:{settings.receiver_port}: {exc}", file=sys.stderr)
        return 2
    return 0


def register_service_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run the analysis queue worker", description="Process queued studies.")
    p.add_argument("--workers", type=int, default=1, help="worker threads (default 1)")
    p.add_argument("--max-seconds", type=float, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "receive",
        help="run the DICOM C-STORE receiver",
        description="DICOM C-STORE SCP: studies pushed here are kept in the inbox and queued after a quiet period.",
    )
    p.add_argument("--port", type=int, default=None, help="TCP port (default TRIAGE_RECEIVER_PORT, 11112)")
    p.add_argument("--ae-title", default=None, help="AE title (default TRIAGE_RECEIVER_AE_TITLE, TRIAGE)")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--quiet-period", type=float, default=None, help="seconds without new files = study complete")
    p.set_defaults(func=cmd_receive)


def cmd_analyze(args: argparse.Namespace) -> int:
    from inference.config import ModelDirMissing
    from inference.dicom.quality import UnusableStudy
    from inference.engine import ModelIntegrityError, ModelMissingError
    from inference.findings import get_kind
    from inference.model_card import CardError
    from inference.triage import analyze_study_dir

    settings = get_settings()
    try:
        if args.prior is not None:
            from inference.priors import compare_dirs
            from inference.registration import RegistrationUnavailable

            try:
                outcome, _ = compare_dirs(args.path, args.prior, settings=settings, save=args.save)
            except RegistrationUnavailable as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 3
        else:
            outcome = analyze_study_dir(args.path, settings=settings, save=args.save, outputs=args.save)
    except ModelDirMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except UnusableStudy as exc:
        if args.json:
            print(json.dumps({"study_uid": None, "quality": {"ok": False, "reasons": exc.reasons}}, indent=2))
        for issue in exc.issues:
            print(f"error: unusable input: {issue}", file=sys.stderr)
        return 2
    except (ModelMissingError, ModelIntegrityError, CardError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    result = outcome.result
    if args.json:  # with ``--prior``, the result's ``comparison`` block is part of it
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    s = result.scores
    pe = "not assessed (not a CTPA)" if s.get("embolism") is None else f"{s['embolism']:.2f}"
    print(f"Study {result.study_uid}\n  series {result.series_uid}")
    print(
        f"  scores: nodule {s['nodule']:.2f}, embolism {pe}, priority {s['priority']:.2f}"
        + ("  ** CRITICAL **" if result.critical else "")
    )
    for f in result.findings:
        where = ", ".join(f"{c:.1f}" for c in f.center_mm)
        size = (
            f", {f.diameter_mm:.1f} mm, {f.volume_ml:.3f} ml, {f.texture}, Lung-RADS {f.lung_rads} (suggested)"
            if get_kind(f.kind).segmented
            else f", {f.location or 'location unknown'}"
        )
        change = f" [{f.extra['change']}]" if f.extra.get("change") else ""
        print(f"  - {f.kind} p={f.probability:.2f} at LPS ({where}) mm, voxel {list(f.center_voxel)}{size}{change}")
    if result.comparison is not None:
        from inference.priors import format_comparison

        print(format_comparison(result.comparison))
    for r in result.quality.reasons:
        print(f"  [{r.severity}] {r.code}: {r.message}")
    print(f"  provider {result.provider}; total {result.timings_ms.get('total', 0) / 1000:.1f} s")
    if outcome.folder:
        print(f"  saved to {outcome.folder}")
    return 0


def register_analyze(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze",
        help="run the pipeline on one study directly and print the result",
        description="Analyse one study (folder or zip). Exit 0 when analysed, 2 for unusable input.",
    )
    p.add_argument("path", type=Path, metavar="PATH")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.add_argument("--save", action="store_true", help="also save arrays, DICOM SEG and SR under the data dir")
    p.add_argument(
        "--prior",
        type=Path,
        default=None,
        metavar="PRIOR",
        help="an earlier study of the same patient (folder or zip): pair the nodules, report growth, VDT, "
        "new/resolved and Lung-RADS with comparison (JSON: a `comparison` block)",
    )
    p.set_defaults(func=cmd_analyze)
