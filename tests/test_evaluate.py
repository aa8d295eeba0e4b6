"""`mtt evaluate`: predictions are the chunk mean (or one whole-song pass), metrics are sklearn's."""
import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from conftest import TOY_TAGS, make_toy, toy_song, write_shard, write_split
from mtt.cli import main
from mtt.formats.split_folder import read_split
from mtt.formats.mel_store import MelStore
from mtt.models import build_model
from mtt.inference.songs import chunk_starts, predict_songs, whole_song_plan


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = make_toy(tmp_path_factory.mktemp("toy"), n_train=4, n_valid=4, n_test=30,
                    n_unlabeled=0)
    # give the last tag no positive in the test split, so it must be excluded from the macro
    ids, labels = read_split(root / "test.tsv", TOY_TAGS)
    labels[:, 3] = 0
    write_split(root / "test.tsv", list(zip(ids, labels.astype(bool))))
    return root


def evaluate(toy, checkpoint, out, *extra):
    return main(["evaluate", "--checkpoint", str(checkpoint), "--tracks", str(toy / "test.tsv"),
                 "--tags", str(toy / "tags.txt"), "--mels", str(toy / "labeled.h5"),
                 "--out", str(out), "--bootstrap", "200", "--device", "cpu", *extra])


def test_metrics_equal_sklearn_on_the_saved_predictions(toy, checkpoint, tmp_path, capsys):
    assert evaluate(toy, checkpoint, tmp_path, "--chunks", "3") == 0
    err = capsys.readouterr().err.rstrip()
    assert err.endswith(f"1 of 4 tags left out of the macro averages, {toy / 'test.tsv'} has "
                        "no positive song for pulse")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    with h5py.File(tmp_path / "predictions.h5") as f:
        track_ids = list(f["track_id"].asstr()[()])
        probs, labels = f["probs"][()], f["labels"][()]
        assert json.loads(f.attrs["tags"]) == TOY_TAGS
    ids, expected_labels = read_split(toy / "test.tsv", TOY_TAGS)
    assert track_ids == ids and np.array_equal(labels, expected_labels)
    assert metrics["excluded_tags"] == ["pulse"]
    assert (metrics["n_tags"], metrics["n_tags_evaluated"]) == (4, 3)
    assert metrics["n_songs"] == 30
    kept = [0, 1, 2]
    assert metrics["roc_auc"]["macro"] == pytest.approx(
        np.mean([roc_auc_score(labels[:, t], probs[:, t]) for t in kept]))
    assert metrics["pr_auc"]["macro"] == pytest.approx(
        np.mean([average_precision_score(labels[:, t], probs[:, t]) for t in kept]))
    for name in ("roc_auc", "pr_auc"):
        assert metrics[name]["ci_low"] <= metrics[name]["macro"] <= metrics[name]["ci_high"]
    per_tag = pd.read_csv(tmp_path / "per_tag.tsv", sep="\t")
    assert list(per_tag["tag"]) == TOY_TAGS
    assert per_tag["roc_auc"].isna().tolist() == [False, False, False, True]
    assert per_tag.loc[0, "roc_auc"] == pytest.approx(roc_auc_score(labels[:, 0], probs[:, 0]),
                                                      abs=1e-6)


def test_song_prediction_is_the_mean_over_evenly_spaced_chunks(toy, checkpoint):
    from mtt.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    store = MelStore([toy / "labeled.h5"])
    ids = ["test000", "test001", "test002"]
    probs = predict_songs(model, store, ids, torch.device("cpu"), chunks=3, frames=44,
                          batch_size=4, precision="fp32")  # 1 song per batch: batching must not matter
    with torch.no_grad():
        for i, track_id in enumerate(ids):
            chunks = torch.from_numpy(store.read_chunks(track_id, chunk_starts(store.num_frames(track_id), 44, 3), 44))
            expected = torch.sigmoid(model(chunks)).mean(0).numpy()
            np.testing.assert_allclose(probs[i], expected, rtol=1e-5, atol=1e-6)
    whole = predict_songs(model, store, ids, torch.device("cpu"), whole_song=True, precision="fp32")
    with torch.no_grad():
        for i, track_id in enumerate(ids):
            song = torch.from_numpy(store.read_song(track_id))[None]
            np.testing.assert_allclose(whole[i], torch.sigmoid(model(song))[0].numpy(),
                                       rtol=1e-5, atol=1e-6)


def test_whole_song_batches_bucket_songs_by_length_and_keep_each_songs_result(tmp_path):
    """Whole-song mode batches songs of equal length wherever they are in the list, and the
    chunks of songs longer than the positional table across songs: each song's probabilities
    are those of its own pass (or its chunks' mean), as one song per batch gave."""
    rng = np.random.default_rng(0)
    lengths = [50, 60, 50, 200, 60, 150, 50, 30, 300, 80]  # max_frames 67: the last 4 chunked
    songs = [(f"s{i}", toy_song(rng, rng.random(4) < 0.5, n)) for i, n in enumerate(lengths)]
    write_shard(tmp_path / "songs.h5", songs)
    store = MelStore([tmp_path / "songs.h5"])
    torch.manual_seed(0)
    model = build_model("transformer", 4, conv_channels=4, width=16, layers=1, heads=2,
                        max_len=16).eval()
    assert model.max_frames == 67
    ids = [t for t, _ in songs]
    plan = whole_song_plan(lengths, model.max_frames, 64)
    assert sorted(i for batch in plan for i, _ in batch) == list(range(len(ids)))
    assert plan == [[(7, 1)], [(0, 1), (2, 1), (6, 1)], [(1, 1), (4, 1)],  # 30, 50, 60 frames
                    [(3, 3), (5, 3), (8, 5), (9, 2)]]  # the long songs' chunks of 67 frames
    small = whole_song_plan(lengths, model.max_frames, 4)  # a song's chunks stay together
    assert small[-4:] == [[(3, 3)], [(5, 3)], [(8, 5)], [(9, 2)]]
    for batch_size in (64, 4):
        probs = predict_songs(model, store, ids, torch.device("cpu"), whole_song=True,
                              batch_size=batch_size, precision="fp32")
        with torch.no_grad():
            for i, (track_id, length) in enumerate(zip(ids, lengths)):
                if length > model.max_frames:
                    n = -(-length // model.max_frames)
                    starts = chunk_starts(length, model.max_frames, n)
                    x = torch.from_numpy(store.read_chunks(track_id, starts, model.max_frames))
                else:
                    x = torch.from_numpy(store.read_song(track_id))[None]
                expected = torch.sigmoid(model(x)).mean(0).numpy()
                np.testing.assert_allclose(probs[i], expected, rtol=1e-5, atol=1e-6)


def test_inference_batches_are_sized_for_the_device():
    from mtt.inference.device import default_batch_size
    assert default_batch_size(torch.device("cpu")) == 64
    assert default_batch_size(torch.device("cuda")) >= 256


def test_batch_size_auto_is_the_devices_and_equals_an_explicit_64_on_the_cpu(toy, checkpoint,
                                                                            tmp_path, capsys):
    assert evaluate(toy, checkpoint, tmp_path / "auto", "--batch-size", "auto") == 0
    assert evaluate(toy, checkpoint, tmp_path / "64", "--batch-size", "64") == 0
    with h5py.File(tmp_path / "auto" / "predictions.h5") as a, \
            h5py.File(tmp_path / "64" / "predictions.h5") as b:
        np.testing.assert_array_equal(a["probs"][:], b["probs"][:])
    with pytest.raises(SystemExit):
        evaluate(toy, checkpoint, tmp_path / "zero", "--batch-size", "0")
    assert "at least 1 or auto" in capsys.readouterr().err


def test_whole_song_mode_writes_metrics(toy, checkpoint, tmp_path):
    assert evaluate(toy, checkpoint, tmp_path, "--whole-song") == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["prediction"] == "whole song" and metrics["n_songs"] == 30


def test_tag_list_mismatch_is_refused(toy, checkpoint, tmp_path, capsys):
    other = tmp_path / "tags.txt"
    other.write_text("\n".join(reversed(TOY_TAGS)) + "\n")
    args = ["evaluate", "--checkpoint", str(checkpoint), "--tracks", str(toy / "test.tsv"),
            "--tags", str(other), "--mels", str(toy / "labeled.h5"), "--out", str(tmp_path / "o"),
            "--device", "cpu"]
    assert main(args) == 2
    assert "tags differ" in capsys.readouterr().err
    assert not (tmp_path / "o" / "metrics.json").exists()


@pytest.mark.parametrize("chunking", [[], ["--chunks", "3"]])
def test_mtt_tag_and_mtt_evaluate_give_the_same_probabilities_for_the_same_song(
        tmp_path, audio_dir, small_checkpoint, capsys, chunking):
    """One inference path: real clips preprocessed into a mel shard and evaluated, and the same
    files tagged, with the same chunking (the default, covering the song, or N evenly spaced),
    device and precision: the same song probabilities, up to the shard's float16 mels (another
    chunking of these clips moves them by 1e-4 to 9e-3)."""
    clips = sorted(p.name for p in audio_dir.iterdir())
    tags = ["rock", "jazz", "calm", "piano"]  # small_checkpoint's; each positive for some clips
    table = pd.DataFrame({"track_id": [f"T{i}" for i in range(len(clips))], "path": clips,
                          "tags": [tags[i % len(tags)] for i in range(len(clips))]})
    table.to_csv(tmp_path / "test.tsv", sep="\t", index=False)
    (tmp_path / "tags.txt").write_text("".join(f"{t}\n" for t in tags))
    assert main(["preprocess", "--audio-root", str(audio_dir), "--tracks", str(tmp_path / "test.tsv"),
                 "--out", str(tmp_path / "mels.h5"), "--failures", str(tmp_path / "failed.tsv")]) == 0
    settings = ["--checkpoint", str(small_checkpoint), "--device", "cpu", "--precision", "fp32",
                *chunking]
    assert main(["evaluate", *settings, "--tracks", str(tmp_path / "test.tsv"), "--tags",
                 str(tmp_path / "tags.txt"), "--mels", str(tmp_path / "mels.h5"),
                 "--out", str(tmp_path / "eval"), "--bootstrap", "0"]) == 0
    with h5py.File(tmp_path / "eval" / "predictions.h5") as f:
        evaluated = dict(zip(f["track_id"].asstr()[()], f["probs"][()]))
    capsys.readouterr()
    assert main(["tag", *[str(audio_dir / c) for c in clips], *settings, "--format", "json",
                 "--all-tags"]) == 0
    tagged = json.loads(capsys.readouterr().out)
    gaps = [abs(tagged[str(audio_dir / clip)][tag] - evaluated[track_id][t])
            for track_id, clip in zip(table["track_id"], clips) for t, tag in enumerate(tags)]
    assert max(gaps) <= 1e-5, max(gaps)  # 6-digit JSON and float16 mels: 8e-7 on 2026-12-07
