"""``triage train|evaluate|export FAMILY [options]``: dispatch to the model families' own entry points.

This module imports no torch: each family module is imported only when its command runs, and a missing
``[train]`` extra gives a plain message instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# family -> module exposing ``main(command: str, argv: list[str]) -> int``
FAMILIES = {
    "nodule": "inference.training.nodule.cli",
    "pe": "inference.training.pe.cli",
}
COMMANDS = {
    "train": "train a model family on synthetic (+ inserted real-background) data",
    "evaluate": "evaluate a model family's exported ONNX model on held-out data; writes numbers to its card",
    "export": "export a trained checkpoint to ONNX (+ compressed variants) and write the model card",
}


def _run(args: argparse.Namespace) -> int:
    try:
        module = importlib.import_module(FAMILIES[args.family])
    except ModuleNotFoundError as exc:
        if exc.name in ("torch", "monai", "onnx", "onnxscript"):
            print(
                f"error: `triage {args.command}` needs the training extra ({exc.name} is missing): "
                "pip install -e '.[train]'",
                file=sys.stderr,
            )
            return 2
        raise
    return int(module.main(args.command, list(args.rest)) or 0)


def register(sub: argparse._SubParsersAction) -> None:
    for command, help_text in COMMANDS.items():
        p = sub.add_parser(command, help=f"{help_text} (needs the [train] extra)", description=help_text)
        p.add_argument("family", choices=sorted(FAMILIES), help="model family")
        p.add_argument("rest", nargs=argparse.REMAINDER, help="options of the family (see FAMILY --help)")
        p.set_defaults(func=_run, command=command)
