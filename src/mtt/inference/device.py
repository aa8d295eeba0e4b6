"""Device and precision for every inference and training command, and for `mtt.Tagger`.

One set of names: `--device` auto | cpu | cuda | cuda:N (`resolve_device`); `--precision`
auto | fp32 | bf16 (`PRECISIONS`, `select_precision`, `autocast`), auto being the default
everywhere; `--threads` (`set_threads`); model inputs per forward pass (`default_batch_size`);
and the channels-last copy of a model where that is faster (`inference_model`).
"""
import argparse
import contextlib
import copy
import functools

import torch

from ..checks import positive_int
from ..config import PRECISION_HELP, PRECISIONS
from ..models import to_channels_last

def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name}: not a device (auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


CPU_BATCH, CUDA_BATCH = 64, 256
TAG_CPU_BATCH = 4  # chunks per forward pass when tagging audio on the CPU: peak memory


def default_batch_size(device: torch.device) -> int:
    """Model inputs per inference batch when none is given: hundreds on a GPU, which a batch of
    64 leaves mostly idle; 64 on the CPU, where larger batches gain nothing."""
    return CUDA_BATCH if torch.device(device).type == "cuda" else CPU_BATCH


def default_tagging_batch_size(device: torch.device) -> int:
    """Chunks per forward pass when tagging audio (`mtt tag`, `mtt.Tagger`) when none is given:
    as `default_batch_size` on a GPU, 4 on the CPU, where the peak memory, not the files'
    length, is set by it (paper-size teacher: 0.9 / 1.1 / 1.4 GB at 1 / 2 / 4, batch 4 using
    0.7x the CPU time of batch 1)."""
    return default_batch_size(device) if torch.device(device).type == "cuda" else TAG_CPU_BATCH


def set_threads(threads: int | None) -> None:
    """Intra-op CPU threads; match the cores the job was given (e.g. Snakemake's {threads}):
    more threads than free cores makes small models much slower, not faster."""
    if threads is not None:
        if threads < 1:
            raise ValueError("--threads must be at least 1")
        torch.set_num_threads(threads)



@functools.cache
def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (bf16 matrix units): torch's check, else /proc/cpuinfo."""
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if check is not None:
        return bool(check())
    return _cpuinfo_flag("amx_bf16")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively: AMX tiles (Intel Xeon since Sapphire Rapids) or
    AVX512-BF16 dot products (AMD Zen 4 and later, Intel Cooper Lake). Without either, oneDNN
    emulates bf16 and it is slower than fp32."""
    if cpu_has_amx():
        return True
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    if check is not None:
        return bool(check())
    return _cpuinfo_flag("avx512_bf16")


def _cpuinfo_flag(flag: str) -> bool:
    try:
        return flag in open("/proc/cpuinfo").read().split()
    except OSError:
        return False


SMALL_CNN_CHANNELS = 16  # convolution channels up to which a model counts as a small CNN


def conv_channels(model) -> int | None:
    """The channels of a model's convolutions (transformer `conv_channels`, ResNet `channels`)."""
    config = getattr(model, "config", None) or {}
    return config.get("conv_channels", config.get("channels"))


def is_small_cnn(model) -> bool:
    """The demo's models (C8, C16), not the paper's (C128): see channels_last_faster."""
    channels = conv_channels(model)
    return channels is not None and channels <= SMALL_CNN_CHANNELS


def resolve_precision(precision: str, device: torch.device, *, native_bf16: bool | None = None,
                      cuda_bf16: bool | None = None, model=None) -> str:
    """`--precision` for `device`: "fp32" or "bf16". "auto" takes bf16 only where it is faster:
    CUDA with bf16 support, a CPU with native bf16 (AMX or AVX512-BF16, `cpu_has_native_bf16`);
    fp32 elsewhere (bf16 runs there, emulated and slower). Given the `model`, "auto" keeps fp32
    for a small CNN (`is_small_cnn`, the demo's models) on such a CPU too: fp32 with
    channels-last is faster for them, and exact (AMX Xeon, demo C8 models: fp32 + channels-last
    1.88-1.97x our fp32 step, bf16 1.28-1.35x; Zen 4 EPYC: training 1.32x the reference in fp32 +
    channels-last, 1.12x in bf16 + channels-last). The paper's models gain from bf16 on both
    (Zen 4 EPYC, teacher, bf16 + channels-last: training 2.1x and inference 2.4x our fp32;
    docs/OPTIMIZATION_LOG.md). `native_bf16` / `cuda_bf16` fake the device's capabilities (None: detect
    them)."""
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if device.type == "cuda" and precision != "fp32" and cuda_bf16 is None:
        cuda_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    if precision == "bf16" and device.type == "cuda" and not cuda_bf16:
        raise ValueError(f"--precision bf16: {device} has no bf16 support")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if cuda_bf16 else "fp32"
    if device.type == "cpu":
        if not (cpu_has_native_bf16() if native_bf16 is None else native_bf16):
            return "fp32"
        return "fp32" if model is not None and is_small_cnn(model) else "bf16"
    return "fp32"


def channels_last_faster(model, device: torch.device, precision: str, *,
                         native_bf16: bool | None = None) -> bool:
    """Whether the model runs faster in channels-last memory format. Measured on CPU
    (docs/OPTIMIZATION_LOG.md): for small CNNs in fp32 (demo C8/C16 models, 2-core AMD EPYC: 1.2-2.1x
    inference, 1.6-1.8x training; AMX Xeon: 1.9-2.0x inference); and for larger models in bf16 on
    a CPU with native bf16, where oneDNN's bf16 kernels want NHWC (the paper's teacher, bf16 +
    channels-last over our fp32: AMX Xeon 2.86x training and 3.67x inference, bf16 alone 1.51x /
    0.99x; Zen 4 EPYC 2.14x / 2.36x, bf16 alone 1.80x / 1.58x). Not chosen: the paper's C128
    models in fp32 (0.6-0.7x on the EPYC under load on 2026-12-04, 1.13-1.19x idle on
    2026-12-05: not a clear gain), CUDA (not measured). `native_bf16` fakes the CPU's native
    bf16 (None: detect it)."""
    if device.type != "cpu":
        return False
    if precision == "fp32":
        return is_small_cnn(model)
    return precision == "bf16" and (cpu_has_native_bf16() if native_bf16 is None
                                    else native_bf16) and not is_small_cnn(model)


def inference_model(model, device: torch.device, precision: str):
    """The model to run inference with: a channels-last copy where that is faster
    (`channels_last_faster`; the same numbers to float32 rounding), else `model` itself. The
    caller's model is never changed."""
    if channels_last_faster(model, device, precision):
        return to_channels_last(copy.deepcopy(model))
    return model


def select_precision(precision: str, device: torch.device, model=None) -> str:
    """resolve_precision, and fp32 on CUDA made true float32: cuDNN otherwise runs convolutions
    in TF32. For commands, once per process."""
    resolved = resolve_precision(precision, device, model=model)
    if device.type == "cuda" and resolved == "fp32":
        torch.backends.cudnn.allow_tf32 = False
    return resolved


def autocast(device: torch.device, precision: str = "auto"):
    """bf16 autocast where `precision` resolves to bf16 on `device`; nothing for fp32."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def add_device_arguments(parser, batch_help: str) -> None:
    """--device, --threads, --precision and --batch-size, with the same names and defaults for
    every inference command (`batch_help`: what the batch counts and its default)."""
    parser.add_argument("--device", default="auto",
                        help="auto (the default: cuda where available), cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=positive_int, help="CPU threads (default: torch's choice)")
    add_precision_argument(parser)
    parser.add_argument("--batch-size", type=batch_size_argument, default=None,
                        help=f"{batch_help}, or auto (the default)")


def batch_size_argument(text: str) -> int | None:
    """--batch-size: a positive count, or auto (None: the device's default)."""
    if text == "auto":
        return None
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 or auto, not {text}")
    return value


def add_precision_argument(parser) -> None:
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
