"""Training-step and inference throughput of our model against a published-style baseline.

Baseline, structured as the published code is: the waveform goes in, the mel spectrogram is
computed inside every step (torchaudio MelSpectrogram + AmplitudeToDB, as published), attention
is explicit einsum + softmax, float32 throughout.
Ours: precomputed log-mel in (training reads mels from HDF5), fused scaled-dot-product
attention, glibc malloc set to reuse freed memory (`mtt.malloc`, as every `mtt` command does; the
baseline runs with glibc's defaults) (+ optionally torch.compile), timed twice: in fp32 and in
bf16 autocast (`--precision bf16`, the same `mtt.predict` code path). fp32 means true float32 for
every variant (no TF32 convolutions on CUDA, as `--precision fp32`). All use identical weights;
each figure is the median of repeated timed steps after warm-up. Without --quick, ours is also
timed with glibc's default malloc, to show what that setting gives.

Last line: train_ratio_vs_reference=X infer_ratio_vs_reference=Y (ours in fp32)
train_bf16_ratio_vs_reference=X infer_bf16_ratio_vs_reference=Y (ours in bf16), teacher.
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
from mtt.models import build_model
from mtt.models.transformer import Attention
from mtt.predict import autocast, cpu_has_amx, select_precision


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


def timed(fn, reps, device):
    times = []
    for _ in range(reps):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(model, make_input, batch, device, reps, precision="fp32"):
    """(train samples/s, inference samples/s) for a model fed by make_input()."""
    model = model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
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

    train_step(), infer_step()  # warm-up (and compilation)
    train = timed(train_step, reps, device)
    infer = timed(infer_step, reps, device)
    return batch / train, batch / infer


def measure_variant(variant, preset, batch, device, reps, compile_model, threads):
    """(train, inference) samples/s of one variant, in a fresh process (see run_pair)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model("transformer", 50, preset=preset)  # identical weights in every process
    waveform = torch.randn(batch, int(10 * SAMPLE_RATE), device=device) * 0.1
    if variant == "baseline":
        return measure(PublishedStyle(model), lambda: waveform, batch, device, reps)
    if variant in ("ours", "ours_bf16"):
        keep_freed_memory()
    mel = LogMel().to(device)(waveform)
    assert mel.shape[-1] == seconds_to_frames(10)
    run = torch.compile(model) if compile_model else model
    precision = "bf16" if variant == "ours_bf16" else "fp32"
    return measure(run, lambda: mel, batch, device, reps, precision=precision)


def run_pair(preset, batch, device, reps, compile_model, attribution, rounds):
    """Baseline, ours (fp32), ours in bf16 and (with attribution) ours with glibc's default
    malloc, each timed in a
    fresh process: the malloc setting is process-wide and glibc's default adapts to the
    allocations it has seen, so only a new process gives the baseline its true default. The
    variants take turns for `rounds` rounds (processes differ by a few percent: page placement,
    huge pages); each figure is the median over rounds."""
    variants = ["baseline", "ours", "ours_bf16"] + (["ours_default_malloc"] if attribution else [])
    runs = {variant: [] for variant in variants}
    for _ in range(rounds):
        for variant in variants:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                runs[variant].append(pool.submit(
                    measure_variant, variant, preset, batch, device, reps, compile_model,
                    torch.get_num_threads()).result())
    medians = {variant: tuple(statistics.median(r[i] for r in results) for i in (0, 1))
               for variant, results in runs.items()}
    return (medians["baseline"], medians["ours"], medians["ours_bf16"],
            medians.get("ours_default_malloc"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batch, few repetitions (< 2 min on 2 cores)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None,
                        help="fresh processes per variant, taking turns (default 2 quick, 3)")
    parser.add_argument("--compile", action="store_true", help="torch.compile our model (CUDA)")
    args = parser.parse_args()
    device = args.device
    batch = args.batch or (32 if device == "cuda" else (2 if args.quick else 8))
    reps = args.reps or (3 if args.quick else 5)
    name = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()
    if device == "cpu":
        name += (f", capability {torch.backends.cpu.get_cpu_capability()}, "
                 f"AMX {'yes' if cpu_has_amx() else 'no'}")
    print(f"device={device} ({name}) threads={torch.get_num_threads()} batch={batch} reps={reps} "
          f"torch={torch.__version__}")
    ratios = {}
    presets = ["teacher"] if args.quick else ["teacher", "compact_student"]
    for preset in presets:
        (ref_train, ref_infer), (our_train, our_infer), (bf16_train, bf16_infer), default_malloc = \
            run_pair(preset, batch, device, reps, args.compile, attribution=not args.quick,
                     rounds=args.rounds or (2 if args.quick else 3))
        ratios[preset] = (our_train / ref_train, our_infer / ref_infer,
                          bf16_train / ref_train, bf16_infer / ref_infer)
        print(f"{preset}: train samples/s baseline={ref_train:.2f} ours={our_train:.2f} "
              f"ratio={ratios[preset][0]:.2f} bf16={bf16_train:.2f} ratio={ratios[preset][2]:.2f} "
              f"| inference samples/s baseline={ref_infer:.2f} ours={our_infer:.2f} "
              f"ratio={ratios[preset][1]:.2f} bf16={bf16_infer:.2f} ratio={ratios[preset][3]:.2f}")
        if default_malloc:
            print(f"{preset}: ours with glibc's default malloc: train samples/s="
                  f"{default_malloc[0]:.2f} (ratio {default_malloc[0] / ref_train:.2f}), "
                  f"inference samples/s={default_malloc[1]:.2f} "
                  f"(ratio {default_malloc[1] / ref_infer:.2f})")
    train, infer, bf16_train, bf16_infer = ratios["teacher"]
    print(f"train_ratio_vs_reference={train:.2f} infer_ratio_vs_reference={infer:.2f} "
          f"train_bf16_ratio_vs_reference={bf16_train:.2f} "
          f"infer_bf16_ratio_vs_reference={bf16_infer:.2f}")


if __name__ == "__main__":
    main()
