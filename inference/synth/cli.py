"""``triage synth``: write synthetic chest CT studies (DICOM + ground truth) — a thin wrapper."""

from __future__ import annotations

import argparse
import sys

from inference.synth.profiles import PROFILES
from inference.synth.study import SIZES


def _splits(text: str) -> tuple[float, float, float]:
    parts = [float(p) for p in text.split(",")]
    if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0:
        raise argparse.ArgumentTypeError("expected three fractions TRAIN,VAL,TEST such as 0.7,0.15,0.15")
    return parts[0], parts[1], parts[2]


def register(subparsers) -> None:
    """Add the ``synth`` sub-command."""
    p = subparsers.add_parser(
        "synth",
        help="write synthetic chest CT studies with ground truth",
        description="Write N synthetic chest CT studies (DICOM series, ground_truth.json, labels.npz, "
        "preview.png per case) and a manifest. Deterministic for a seed.",
    )
    p.add_argument("out", help="output folder")
    p.add_argument("--n", type=int, default=1, help="number of studies (default 1)")
    p.add_argument("--seed", type=int, default=0, help="run seed (default 0)")
    p.add_argument("--profile", choices=sorted(PROFILES), default=None,
                   help="scanner profile (default: a random one per case)")
    p.add_argument("--contrast", choices=("none", "ctpa", "mixed"), default="mixed",
                   help="non-contrast, CT pulmonary angiography, or a random mix (default)")
    p.add_argument("--lesions", choices=("auto", "none", "nodule", "embolism", "both"), default="auto",
                   help="which lesions to insert (emboli only in CTPA; default auto = random, may be none)")
    p.add_argument("--size", choices=sorted(SIZES), default="full",
                   help="full: 512x512 at the profile's spacing; small/medium: coarse grids for training")
    p.add_argument("--dataset", type=_splits, nargs="?", const=(0.7, 0.15, 0.15), default=None,
                   metavar="TRAIN,VAL,TEST", help="write train/val/test splits (default fractions 0.7,0.15,0.15)")
    p.add_argument("--hold-out-profile", choices=sorted(PROFILES), default=None,
                   help="dataset mode: this profile appears only in the test split")
    p.add_argument("--anatomy", choices=("real", "legacy"), default="real",
                   help="real (default): lung shapes from a real CT, lobar vessel/airway trees, fissures; "
                   "legacy: the analytic lungs and short straight vessels of earlier versions")
    p.add_argument("--no-dicom", action="store_true", help="skip the DICOM series (labels, truth, preview only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the studies; exit code 0, or 2 for invalid arguments."""
    from inference.synth.dataset import generate_many

    if args.n < 1:
        print("--n must be at least 1", file=sys.stderr)
        return 2
    if args.hold_out_profile and not args.dataset:
        print("--hold-out-profile needs --dataset", file=sys.stderr)
        return 2
    rows = generate_many(
        args.out, args.n, args.seed, profile=args.profile, contrast=args.contrast, lesions=args.lesions,
        size=args.size, splits=args.dataset, hold_out_profile=args.hold_out_profile, dicom=not args.no_dicom,
        anatomy=args.anatomy,
    )
    for r in rows:
        print(f"{r['path']}\t{r['profile']}\t{r['contrast']}\tnodules={r['n_nodules']}\temboli={r['n_emboli']}")
    return 0
