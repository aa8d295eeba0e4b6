"""Shared test fixtures. Real material lives in ../shared (read-only)."""
from pathlib import Path

import pytest
import torch

from mtt.checkpoint import save_checkpoint
from mtt.models import build_model

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def audio_dir() -> Path:
    """Real music clips: MP3 (22,050 Hz stereo, 16 kHz mono), WAV, Ogg Vorbis."""
    return SHARED / "audio"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Published-model fidelity material (see shared/reference/README.md)."""
    return SHARED / "reference"


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    """A tiny untrained transformer checkpoint (4 tags) for tests of tagging, not of quality."""
    torch.manual_seed(0)
    model = build_model("transformer", 4, conv_channels=8, width=32, layers=1)
    path = tmp_path_factory.mktemp("ckpt") / "small.ckpt"
    save_checkpoint(path, model.eval(), ["rock", "jazz", "calm", "piano"])
    return path
