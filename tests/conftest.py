"""Shared test fixtures. Real material lives in ../shared (read-only)."""
from pathlib import Path

import pytest

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
