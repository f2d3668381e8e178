#!/usr/bin/env bash
# GPU check (run on a machine with an NVIDIA GPU, from the project root, after `make install`):
#   1. which ONNX Runtime providers load each committed model for real (TensorRT, CUDA, CPU);
#   2. the time of one full study (synthetic 512x512x300 chest CT) per provider, after a warm-up.
# Target: <= 3 s per study on one H100. Prints figures; exits non-zero only if no GPU provider loads.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi not found"
"$PY" - <<'PYEOF'
import os, sys, time, tempfile
import numpy as np
import onnxruntime as ort
from inference.config import Settings
from inference.engine import Engine
from inference.synth.study import generate_study
from inference.triage import analyze

print("onnxruntime", ort.__version__, "available:", ort.get_available_providers())
study = generate_study(4242, contrast="ctpa", size="bench", lesions="both")
vol = study.volume
print("study", vol.shape, vol.spacing_mm)
gpu_ok = False
for chain in (["TensorrtExecutionProvider"], ["CUDAExecutionProvider"], ["CPUExecutionProvider"]):
    engine = Engine(Settings().resolved_model_dir, chain)
    try:
        providers = {n: engine.provider_of(n) for n in engine.cards}
    except Exception as exc:
        print(f"{chain[0]}: failed to load: {exc}")
        continue
    print(f"{chain[0]}: models run on {sorted(set(providers.values()))}")
    if chain[0] != "CPUExecutionProvider" and set(providers.values()) == {chain[0]}:
        gpu_ok = True
    analyze(vol, engine=engine)  # warm-up (TensorRT builds engines here)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        res = analyze(vol, engine=engine).result
        times.append(time.perf_counter() - t)
    print(f"{chain[0]}: study {np.median(times):.2f} s median of 3 (target 3 s: {3.0 / np.median(times):.2f}x); "
          f"scores {res.scores}")
sys.exit(0 if gpu_ok else 1)
PYEOF
