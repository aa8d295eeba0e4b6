"""The named choices of a run's options, declared once for `mtt train`, the modules that act on
them (training.noise, inference.device, training.teacher_trust, formats.split_folder) and the workflow's config checks."""

# The sets of a split folder (mtt.formats.split_folder), one `mtt preprocess` job group each.
SPLIT_SETS = ("train", "valid", "test", "student", "none")

# --noise: input noise kinds (mtt.training.noise)
NOISE_KINDS = ("specaugment", "gain", "mixup", "shift")  # `all`, and `auto` for a student
PAPER = "paper"  # the published code's chain, each transform with its own probability
STRETCH = "stretch"  # a random resized crop along time, with the noise probability
EXTRA_KINDS = (STRETCH, PAPER)  # chosen by name only: never part of `all` / `auto`

# --precision of training, pseudo-labeling and evaluation (mtt.inference.device)
PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_HELP = ("fp32, bf16 autocast, or auto (default): bf16 where it is faster, on CUDA with "
                  "bf16 support or a CPU with AMX or AVX512-BF16 (fp32 for the demo's small CNNs "
                  "there); fp32 elsewhere")

# --pseudo-tag-weights (mtt.training.teacher_trust)
TAG_TRUST_MODES = ("none", "teacher_valid_auc")

# --select-by: the validation score that picks the kept epoch and counts the patience
SELECT_BY = {"valid_loss": "lowest validation loss",
             "valid_roc_auc": "highest validation macro ROC-AUC",
             "valid_pr_auc": "highest validation macro PR-AUC",
             "valid_auc": "highest mean of validation macro ROC-AUC and PR-AUC"}


def parse_noise_kinds(text: str | None) -> tuple[str, ...]:
    """'specaugment,gain' -> ('specaugment', 'gain'); '' or 'none' -> ()."""
    if text is None or text.strip().lower() in ("", "none"):
        return ()
    kinds = tuple(k.strip().lower() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in NOISE_KINDS + EXTRA_KINDS]
    if unknown:
        raise ValueError(f"unknown noise kind(s) {unknown}; choose from "
                         f"{', '.join(NOISE_KINDS + EXTRA_KINDS)}")
    return kinds
