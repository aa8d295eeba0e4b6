"""Training-step and inference throughput of our model against a published-style baseline.

Baseline, structured as the published code is: the waveform goes in, the mel spectrogram is
computed inside every step (torchaudio MelSpectrogram + AmplitudeToDB, as published), attention
is explicit einsum + softmax, float32 throughout.
Ours: precomputed log-mel in (training reads mels from HDF5), fused scaled-dot-product
attention, glibc malloc set to reuse freed memory (`mtt.malloc`, as every `mtt` command does; the
baseline runs with glibc's defaults) (+ optionally torch.compile), timed four times: in fp32 and
in bf16 autocast (`--precision bf16`, the same `mtt.inference.device` code path), each with the default
(contiguous) memory format and with channels-last convolutions (`mtt.models.to_channels_last`).
fp32 means true float32 for every variant (no TF32 convolutions on CUDA, as `--precision fp32`).
All use identical weights; each figure is the median of repeated timed steps after warm-up: on
CUDA 10 warm-up steps (clock ramp-up, lazy module loading, cuDNN's choices) and each timed
repetition a run of 5 steps between CUDA events, 10 repetitions with --quick (30 without); on the
CPU one warm-up step and single-step repetitions. `--cudnn-benchmark` and `--fused-adam` turn
those on for every variant (the optimizer is Adam, as `mtt train`'s), for the GPU check to
compare.
Without --quick, ours is also timed with glibc's default malloc, to show what that setting gives.
`--models` picks the models: the paper's `teacher` (C128/D256) and `compact_student` (C128/D64)
on 10 s crops, or the demo's (config.yaml) `demo_teacher` (C8/D64, also the KE student) and
`demo_kd` (C8/D32) on its 2 s training crops.

Last line, for the first model (the teacher by default): train_ratio_vs_reference=X
infer_ratio_vs_reference=Y (ours in fp32) train_bf16_ratio_vs_reference
infer_bf16_ratio_vs_reference (bf16), train_cl_ratio_vs_reference infer_cl_ratio_vs_reference
(fp32, channels-last), train_bf16_cl_ratio_vs_reference infer_bf16_cl_ratio_vs_reference.
"""
import argparse
import multiprocessing
import platform
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from mtt.frontend import POWER_FLOOR, SAMPLE_RATE, LogMel, seconds_to_frames
from mtt.malloc import keep_freed_memory
from mtt.models import build_model, to_channels_last
from mtt.models.transformer import Attention
from mtt.inference.device import autocast, cpu_has_amx, cpu_has_native_bf16, select_precision


class EinsumAttention(nn.Module):
    """The published attention: explicit scores, softmax and weighted sum."""

    def __init__(self, fused: Attention):
        super().__init__()
        self.heads, self.to_qkv, self.to_out = fused.heads, fused.to_qkv, fused.to_out

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, dim=-1))
        scores = torch.einsum("bhid,bhjd->bhij", q, k) * (d // self.heads) ** -0.5
        out = torch.einsum("bhij,bhjd->bhid", scores.softmax(dim=-1), v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, d))


class PublishedStyle(nn.Module):
    """Waveform in; torchaudio mel inside the forward pass; einsum attention."""

    def __init__(self, model):
        super().__init__()
        to_db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=None)
        to_db.amin = POWER_FLOOR
        self.logmel = nn.Sequential(LogMel().spec, to_db)
        self.model = model
        for residual, _ in model.transformer.layers:
            residual.fn.fn = EinsumAttention(residual.fn.fn)

    def forward(self, waveform):
        return self.model(self.logmel(waveform))


CUDA_WARMUP, CUDA_STEPS_PER_REP = 10, 5


def timed(fn, reps, device):
    """Median seconds of one fn() call: on CUDA timed with events over runs of
    CUDA_STEPS_PER_REP calls (launch gaps included, no host sync inside a run)."""
    times = []
    for _ in range(reps):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(CUDA_STEPS_PER_REP):
                fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000 / CUDA_STEPS_PER_REP)
            continue
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(model, make_input, batch, device, reps, precision="fp32", fused_adam=False):
    """(train samples/s, inference samples/s) for a model fed by make_input()."""
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, **(
        {"fused": True} if fused_adam else {}))
    target = torch.rand(batch, 50, device=device).round()
    x = make_input()
    precision = select_precision(precision, torch.device(device))

    def ctx():
        return autocast(torch.device(device), precision)

    def train_step():
        model.train()
        with ctx():
            loss = F.binary_cross_entropy_with_logits(model(x).float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    @torch.inference_mode()
    def infer_step():
        model.eval()
        with ctx():
            model(x)

    for _ in range(CUDA_WARMUP if device == "cuda" else 1):  # warm-up (and compilation)
        train_step(), infer_step()
    train = timed(train_step, reps, device)
    infer = timed(infer_step, reps, device)
    return batch / train, batch / infer


# name: (build_model keyword arguments, crop seconds)
MODELS = {
    "teacher": (dict(preset="teacher"), 10.0),
    "compact_student": (dict(preset="compact_student"), 10.0),
    "demo_teacher": (dict(conv_channels=8, width=64, heads=4), 2.0),  # config.yaml; KE alike
    "demo_kd": (dict(conv_channels=8, width=32, heads=4), 2.0),
}
# our variants: (precision, channels-last)
OURS = {"ours": ("fp32", False), "ours_bf16": ("bf16", False), "ours_cl": ("fp32", True),
        "ours_bf16_cl": ("bf16", True), "ours_default_malloc": ("fp32", False)}


def measure_variant(variant, model_name, batch, device, reps, compile_model, threads,
                    cudnn_benchmark=False, fused_adam=False):
    """(train, inference) samples/s of one variant, in a fresh process (see run_pair)."""
    torch.set_num_threads(threads)
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.manual_seed(0)
    config, seconds = MODELS[model_name]
    model = build_model("transformer", 50, **config)  # identical weights in every process
    waveform = torch.randn(batch, int(seconds * SAMPLE_RATE), device=device) * 0.1
    if variant == "baseline":
        return measure(PublishedStyle(model), lambda: waveform, batch, device, reps,
                       fused_adam=fused_adam)
    if variant != "ours_default_malloc":
        keep_freed_memory()
    mel = LogMel().to(device)(waveform)
    assert mel.shape[-1] == seconds_to_frames(seconds)
    precision, channels_last = OURS[variant]
    if channels_last:
        model = to_channels_last(model)
    run = torch.compile(model) if compile_model else model
    return measure(run, lambda: mel, batch, device, reps, precision=precision,
                   fused_adam=fused_adam)


def run_pair(model_name, batch, device, reps, compile_model, attribution, rounds,
             cudnn_benchmark=False, fused_adam=False):
    """{variant: (train, inference) samples/s}: the baseline and our variants (OURS; with
    attribution also ours with glibc's default malloc), each timed in a fresh process: the
    malloc setting is process-wide and glibc's default adapts to the allocations it has seen,
    so only a new process gives the baseline its true default. The variants take turns for
    `rounds` rounds (processes differ by a few percent: page placement, huge pages); each
    figure is the median over rounds."""
    variants = ["baseline", "ours", "ours_bf16", "ours_cl", "ours_bf16_cl"]
    variants += ["ours_default_malloc"] if attribution else []
    runs = {variant: [] for variant in variants}
    for _ in range(rounds):
        for variant in variants:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                runs[variant].append(pool.submit(
                    measure_variant, variant, model_name, batch, device, reps, compile_model,
                    torch.get_num_threads(), cudnn_benchmark, fused_adam).result())
    return {variant: tuple(statistics.median(r[i] for r in results) for i in (0, 1))
            for variant, results in runs.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batch, few repetitions (< 2 min on 2 cores)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None,
                        help="fresh processes per variant, taking turns (default 2 quick, 3)")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model (CUDA)")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="torch.backends.cudnn.benchmark on (every variant)")
    parser.add_argument("--fused-adam", action="store_true", help="fused Adam (every variant)")
    parser.add_argument("--models", default=None,
                        help=f"comma-separated, of {', '.join(MODELS)} (default: teacher with "
                             "--quick, else teacher,compact_student)")
    args = parser.parse_args()
    device = args.device
    models = (args.models or ("teacher" if args.quick else "teacher,compact_student")).split(",")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    demo = all(m.startswith("demo_") for m in models)
    batch = args.batch or (32 if device == "cuda" else 16 if demo else (2 if args.quick else 8))
    if device == "cuda":  # short steps: enough repetitions for a stable median
        reps = args.reps or (10 if args.quick else 30)
    else:
        reps = args.reps or ((10 if args.quick else 20) if demo else (3 if args.quick else 5))
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
    if device == "cpu":
        name += (f", capability {torch.backends.cpu.get_cpu_capability()}, "
                 f"AMX {'yes' if cpu_has_amx() else 'no'}, "
                 f"native bf16 {'yes' if cpu_has_native_bf16() else 'no'}")
    print(f"device={device} ({name}) threads={torch.get_num_threads()} batch={batch} reps={reps} "
          f"torch={torch.__version__} cudnn_benchmark={int(args.cudnn_benchmark)} "
          f"fused_adam={int(args.fused_adam)}")
    ratios = {}
    for model_name in models:
        rates = run_pair(model_name, batch, device, reps, args.compile,
                         attribution=not args.quick, rounds=args.rounds or (2 if args.quick else 3),
                         cudnn_benchmark=args.cudnn_benchmark, fused_adam=args.fused_adam)
        ref_train, ref_infer = rates["baseline"]
        ratios[model_name] = {variant: (train / ref_train, infer / ref_infer)
                              for variant, (train, infer) in rates.items()}
        for column, name in ((0, "train"), (1, "inference")):
            print(f"{model_name}: {name} samples/s baseline={rates['baseline'][column]:.2f} "
                  + " ".join(f"{variant}={rates[variant][column]:.2f} "
                             f"(ratio {ratios[model_name][variant][column]:.2f})"
                             for variant in rates if variant != "baseline"), flush=True)
    first = ratios[models[0]]
    print(" ".join(f"train{suffix}_ratio_vs_reference={first[variant][0]:.2f} "
                   f"infer{suffix}_ratio_vs_reference={first[variant][1]:.2f}"
                   for variant, suffix in (("ours", ""), ("ours_bf16", "_bf16"),
                                           ("ours_cl", "_cl"), ("ours_bf16_cl", "_bf16_cl")))
          + f" model={models[0]}")


if __name__ == "__main__":
    main()
