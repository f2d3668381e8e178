"""Benchmark: one 512 x 512 x 300 synthetic chest CT study, generated in memory.

Prints the seconds per study, the ratio to the 10 s target (< 1 meets it) and a stage breakdown via
cProfile totals when ``--profile`` is given. Usage: ``python bench/bench_synth.py [--seed S] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import time

TARGET_S = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1, help="studies to generate (the first one is reported "
                        "separately: it also pays for imports and the first touch of memory)")
    parser.add_argument("--contrast", default="ctpa")
    args = parser.parse_args()

    from inference.synth.nodules import load_library
    from inference.synth.study import generate_study

    load_library()
    times = []
    for r in range(args.repeat):
        t0 = time.perf_counter()
        s = generate_study(args.seed + r, size="bench", contrast=args.contrast, lesions="both")
        times.append(time.perf_counter() - t0)
        print(f"study {r + 1}: {s.volume.shape} spacing {tuple(round(v, 3) for v in s.volume.spacing_mm)} "
              f"{s.profile.name} {s.contrast}: {times[-1]:.2f} s", flush=True)
    best = min(times)
    print(f"synth 512x512x300: first {times[0]:.2f} s, best {best:.2f} s, target {TARGET_S:.0f} s, "
          f"ratio {best / TARGET_S:.2f}")


if __name__ == "__main__":
    main()
