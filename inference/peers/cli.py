"""Sub-commands for PACS peers: ``peers list|check``, ``pull``, ``deliver``, ``priors`` (thin wrappers)."""

from __future__ import annotations

import argparse
import json
import sys

from inference.config import get_settings
from inference.peers import PeerError


def _err(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def cmd_peers_list(args: argparse.Namespace) -> int:
    peers = get_settings().all_peers()
    if args.json:
        print(json.dumps([p.model_dump(mode="json", exclude={"password"}) | {"password_set": bool(p.password)}
                          for p in peers], indent=2))  # fmt: skip
        return 0
    if not peers:
        print("no peers configured (set TRIAGE_PEERS, see inference/README.md)")
    for p in peers:
        roles = ", ".join([f"results by {'/'.join(p.send_results)}"] * bool(p.send_results)
                          + [f"query + {p.retrieve}"] * p.query) or "no role"  # fmt: skip
        print(f"{p.describe()}: {roles}")
    return 0


def cmd_peers_check(args: argparse.Namespace) -> int:
    from inference.peers.check import check_peers

    settings = get_settings()
    if not settings.all_peers():
        return _err("no peers configured (set TRIAGE_PEERS, see inference/README.md)")
    try:
        results = check_peers(settings, args.names or None)
    except KeyError as exc:
        return _err(exc.args[0])
    for r in results:
        print(r.line())
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"{len(failed)} of {len(results)} check(s) failed", file=sys.stderr)
        return 1
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from db.migrate import SchemaError
    from inference.peers.pull import pull

    settings = get_settings()
    name = args.peer or next((p.name for p in settings.all_peers() if p.query), None)
    if name is None:
        return _err("no peer to pull from: give --peer NAME or set query: true on a peer in TRIAGE_PEERS")
    body_part = None if args.body_part.lower() == "any" else args.body_part
    try:
        report = pull(settings, peer=name, since=args.since, until=args.until, modality=args.modality,
                      body_part=body_part, limit=args.limit)  # fmt: skip
    except (KeyError, ValueError) as exc:
        return _err(exc.args[0])
    except (PeerError, SchemaError) as exc:
        return _err(str(exc))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"{len(report.matched)} matching study(ies) on {name}: {len(report.fetched)} fetched "
              f"({sum(report.fetched.values())} instances), {len(report.present)} already present, "
              f"{len(report.failed)} failed; {len(report.queued)} queued")  # fmt: skip
        for uid, why in report.failed.items():
            print(f"  failed {uid}: {why}")
    return 1 if report.failed else 0


def cmd_deliver(args: argparse.Namespace) -> int:
    from db.peers import list_deliveries, retry_failed_deliveries
    from db.session import session_scope
    from inference.intake import open_database
    from inference.peers.delivery import deliver_due

    settings = get_settings()
    engine = open_database(settings)
    if args.retry_failed:
        with session_scope(engine) as session:
            print(f"{retry_failed_deliveries(session=session)} failed delivery(ies) due again")
    if args.list:
        with session_scope(engine) as session:
            rows = [
                {"id": d.id, "study_id": d.study_id, "peer": d.peer, "method": d.method, "status": d.status,
                 "attempts": d.attempts, "last_error": d.last_error,
                 "next_attempt_at": d.next_attempt_at.isoformat() if d.next_attempt_at else None}
                for d in list_deliveries(session=session)
            ]  # fmt: skip
        print(json.dumps(rows, indent=2))
        return 0
    tried = deliver_due(settings)
    for t in tried:
        print(
            f"delivery {t['id']} to {t['peer']} ({t['method']}): {t['status']}" + (f": {t['error']}" * bool(t["error"]))
        )
    if not tried:
        print("no delivery due")
    return 1 if any(t["error"] for t in tried) else 0


def cmd_priors(args: argparse.Namespace) -> int:
    from inference.peers.priors import fetch_priors, find_prior

    settings = get_settings()
    path = (
        fetch_priors(args.study_uid, settings=settings) if args.fetch else find_prior(args.study_uid, settings=settings)
    )
    if path is None:
        print("no prior study found")
        return 1
    print(path)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("peers", help="configured PACS peers: list, check", description="PACS peers (TRIAGE_PEERS).")
    psub = p.add_subparsers(dest="peers_command", metavar="ACTION")
    q = psub.add_parser("list", help="the configured peers and their roles (no secrets)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_peers_list)
    q = psub.add_parser("check", help="C-ECHO and HTTP check of each peer; exit 1 if any fails")
    q.add_argument("names", nargs="*", metavar="NAME")
    q.set_defaults(func=cmd_peers_check)

    p = sub.add_parser(
        "pull",
        help="query a PACS for chest CT studies and fetch the new ones",
        description="C-FIND + C-MOVE/C-GET, or QIDO-RS + WADO-RS (the peer's `retrieve`). Studies already "
        "present are not fetched again. Exit 1 if a retrieval failed.",
    )
    p.add_argument("--peer", help="peer name (default: the first peer with query: true)")
    p.add_argument("--since", help="first study date (YYYY-MM-DD, today, or 7d: seven days ago)")
    p.add_argument("--until", help="last study date")
    p.add_argument("--modality", default="CT", help="modality (default CT)")
    p.add_argument("--body-part", default="CHEST", help="BodyPartExamined of the series (default CHEST; 'any')")
    p.add_argument("--limit", type=int, default=None, help="fetch at most N studies")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser(
        "deliver",
        help="send due result deliveries now (the worker does this on its own); list or retry failed ones",
    )
    p.add_argument("--list", action="store_true", help="print every delivery and its state (JSON)")
    p.add_argument("--retry-failed", action="store_true", help="make failed deliveries due again")
    p.set_defaults(func=cmd_deliver)

    p = sub.add_parser("priors", help="the folder of a study's most recent prior study")
    p.add_argument("study_uid", metavar="STUDY_UID")
    p.add_argument("--fetch", action="store_true", help="look for it now (own database, then the query peers)")
    p.set_defaults(func=cmd_priors)
