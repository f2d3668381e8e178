"""The ``triage`` command line: thin argparse wrappers over plain functions.

Each sub-command module exposes ``register(subparsers)``; this file only wires them together, so a
missing optional part (the training extra, say) never breaks the rest of the CLI.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules that add sub-commands. Each defines ``register(subparsers) -> None``; the parser it adds sets
# ``func`` (called with the parsed namespace, returns an exit code).
COMMAND_MODULES = (
    "inference.commands",
    "inference.peers.cli",
    "inference.synth.cli",
    "inference.training.cli",
    "inference.demo",
    "db.cli",
    "dashboard.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="triage",
        description="Chest CT triage (research software, not a medical device).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # that part of the system is not installed / not written yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from inference.private import restrict_umask

    restrict_umask()  # everything the service writes (data dir, database, queue, results) is private: 0700/0600
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("highdicom", "pydicom", "pynetdicom", "huey"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
