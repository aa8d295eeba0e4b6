"""`mtt pseudo-label`: one shard in, the teacher's song-level soft labels out."""
import json

import h5py
import numpy as np
import pytest
import torch

from conftest import TOY_TAGS, make_toy
from mtt.checkpoint import load_checkpoint, save_checkpoint
from mtt.cli import main
from mtt.formats.mel_store import MelStore
from mtt.models import build_model
from mtt.inference.songs import predict_songs


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy(tmp_path_factory.mktemp("toy"), n_train=2, n_valid=2, n_test=2,
                    n_unlabeled=37)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    model = build_model("transformer", len(TOY_TAGS), conv_channels=4, width=16, layers=1, heads=2)
    path = tmp_path_factory.mktemp("ckpt") / "teacher.ckpt"
    save_checkpoint(path, model, TOY_TAGS, meta={"training": {"crop_frames": 44}})
    return path


def label(toy, checkpoint, out, *extra):
    return main(["pseudo-label", "--checkpoint", str(checkpoint), "--mels",
                 str(toy / "unlabeled.h5"), "--out", str(out), "--device", "cpu",
                 "--batch-size", "16", *extra])


def test_shard_has_every_track_and_the_teacher_probabilities(toy, checkpoint, tmp_path):
    out = tmp_path / "labels.h5"
    assert label(toy, checkpoint, out, "--chunks", "4") == 0
    store = MelStore([toy / "unlabeled.h5"])
    with h5py.File(out) as f:
        track_ids = list(f["track_id"].asstr()[()])
        probs = f["probs"][()]
        assert json.loads(f.attrs["tags"]) == TOY_TAGS
        assert f.attrs["checkpoint"] == str(checkpoint)
    assert track_ids == store.track_ids and len(track_ids) == 37
    assert probs.dtype == np.float16 and probs.shape == (37, len(TOY_TAGS))
    model, _ = load_checkpoint(checkpoint)
    expected = predict_songs(model, store, track_ids, torch.device("cpu"), chunks=4, frames=44)
    np.testing.assert_allclose(probs, expected, atol=1e-3)  # float16 storage
    assert ((probs >= 0) & (probs <= 1)).all()


def test_existing_output_is_skipped(toy, checkpoint, tmp_path):
    out = tmp_path / "labels.h5"
    out.write_bytes(b"already here")
    assert label(toy, checkpoint, out) == 0
    assert out.read_bytes() == b"already here"


def test_failure_leaves_no_output(toy, tmp_path, capsys):
    out = tmp_path / "labels.h5"
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    assert label(toy, broken, out) == 2
    assert str(broken) in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [broken]
