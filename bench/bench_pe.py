"""PE model benchmark: CPU latency per study of the fp32 CNN-LSTM vs the distilled student vs INT8 (QDQ/dynamic).

    .venv/bin/python bench/bench_pe.py [--repeats 5] [--threads 2] [--no-int8]

Times, on the real CTA crop (64 slices x 128 x 128 after the pulmonary-artery crop):

- the network alone (ONNX Runtime, CPUExecutionProvider) for each variant, median of ``--repeats``;
- the whole serving path ``analyze_pe`` (region search, resampling, network, heatmap back on the original grid);
- INT8: ``onnxruntime.quantization.quantize_dynamic`` of the fp32 model (written to a temporary folder, never
  committed), with its max |Δ study logit| against fp32.

Expect up to 2x jitter on this shared VM: compare within one run. Not a test: it prints figures and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference.engine import Engine  # noqa: E402
from inference.model_card import ModelCard  # noqa: E402
from inference.models.pe import analyze_pe, find_pa_region, prepare_input  # noqa: E402
from inference.training.pe.realcta import load_real_cta  # noqa: E402

MODELS = Path(__file__).resolve().parents[1] / "assets" / "models"


def _session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-int8", action="store_true")
    a = ap.parse_args()
    vol, _ = load_real_cta()
    teacher = ModelCard.load(MODELS / "pe_cnnlstm.json")
    x = prepare_input(vol, find_pa_region(vol, teacher.preprocessing), teacher.preprocessing).x
    print(f"input {tuple(x.shape)} (real CTA crop), {a.threads} threads, median of {a.repeats}")
    variants = {"fp32 teacher": MODELS / "pe_cnnlstm.onnx", "fp32 student": MODELS / "pe_cnnlstm_student.onnx"}
    tmp = Path(tempfile.mkdtemp())
    if not a.no_int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        q = tmp / "pe_cnnlstm_int8.onnx"
        quantize_dynamic(str(MODELS / "pe_cnnlstm.onnx"), str(q), weight_type=QuantType.QInt8)
        variants["int8 dynamic teacher"] = q
    net: dict[str, float] = {}
    ref = None
    for name, path in variants.items():
        s = _session(path, a.threads)
        out = s.run(None, {"slices": x})
        if ref is None:
            ref = out
        dz = float(np.abs(out[0] - ref[0]).max())
        net[name] = _time(lambda s=s: s.run(None, {"slices": x}), a.repeats)
        print(f"  network {name:22s} {net[name] * 1e3:8.1f} ms  size {path.stat().st_size / 1e6:5.2f} MB  "
              f"|Δ study logit| vs teacher {dz:.3g}")
    base = net["fp32 teacher"]
    for name, t in net.items():
        print(f"  ratio {name:24s} {t / base:5.2f}x of fp32 teacher")
    engine = Engine(MODELS, ["CPUExecutionProvider"], threads=a.threads, verify=False)
    full = {}
    for name in ("pe_cnnlstm", "pe_cnnlstm_student"):
        full[name] = _time(lambda n=name: analyze_pe(vol, engine=engine, model_name=n), a.repeats)
        print(f"  analyze_pe {name:20s} {full[name] * 1e3:8.1f} ms per study (region + resample + network + heatmap)")
    print(f"  ratio student/teacher end to end {full['pe_cnnlstm_student'] / full['pe_cnnlstm']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
