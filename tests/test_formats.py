"""The format modules (`mtt.formats`, `mtt.formats.tsv_dialect`): each reader reads back what its writer wrote,
and refuses, naming the file, what is not its format. The commands that write and read these
files are tested in their own files; this is the fast check of the modules themselves."""
import json

import numpy as np
import pytest

from mtt.datasets import DatasetError
from mtt.formats import evaluation_folder, mel_shard, pseudo_label_shard, split_folder
from mtt.formats.tsv_dialect import TsvError, read_tsv, read_tsv_chunks, tsv_lines

TAGS = ["rock", "NA", "00s"]  # tags that look like a missing value or a number stay text


def test_tsv_chunks_and_lines_follow_the_one_dialect(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("a\tb\r\n1\t2\n\n3\t\n4\tNA\n5\t6")
    whole = read_tsv(path)
    assert whole.to_dict("list") == {"a": ["1", "3", "4", "5"], "b": ["2", "", "NA", "6"]}
    chunks = list(read_tsv_chunks(path, 3))
    assert [len(c) for c in chunks] == [3, 1]
    assert [row for c in chunks for row in c.to_numpy().tolist()] == whole.to_numpy().tolist()
    path.write_text("a\tb\n1\t2\textra tag\n")
    assert list(tsv_lines(path)) == [(1, ["a", "b"]), (2, ["1", "2", "extra tag"])]
    with pytest.raises(TsvError, match="t.tsv: line 2 has 3 fields, the header has 2"):
        list(read_tsv_chunks(path, 10))
    path.write_bytes("a\tb\n\u00e9\tx\n".encode("latin-1"))
    with pytest.raises(TsvError, match=r"t.tsv: not UTF-8 text \(.* in position 4"):
        read_tsv(path)


def test_split_folder_round_trip(tmp_path):
    sets = {name: [np.array([], dtype=object)] * 4 for name in split_folder.SETS}
    sets["train"] = [np.array(["TR1", "TR2"], dtype=object), np.array(["A1", ""], dtype=object),
                     np.array(["a/1.mp3", "b/2.mp3"], dtype=object),
                     np.array(["rock;00s", "NA"], dtype=object)]
    split_folder.write_split_folder(tmp_path / "s", sets, TAGS, {"seed": 0})
    assert split_folder.read_tag_list(tmp_path / "s" / "tags.txt") == TAGS
    assert json.loads((tmp_path / "s" / "report.json").read_text()) == {"seed": 0}
    table = split_folder.read_split_table(tmp_path / "s" / "train.tsv")
    assert list(table.columns) == split_folder.COLUMNS and table["artist_id"].tolist() == ["A1", ""]
    ids, labels = split_folder.read_split(tmp_path / "s" / "train.tsv", TAGS)
    assert ids == ["TR1", "TR2"] and labels.tolist() == [[1, 0, 1], [0, 1, 0]]
    assert split_folder.read_split_table(tmp_path / "s" / "none.tsv").empty
    sets["test"] = [np.array(["TR3"], dtype=object), np.array(["A3"], dtype=object),
                    np.array(["c\t3.mp3"], dtype=object), np.array([""], dtype=object)]
    with pytest.raises(DatasetError, match="path: value 'c\\\\t3.mp3' contains a tab"):
        split_folder.write_split_folder(tmp_path / "s", sets, TAGS, {})
    assert split_folder.read_split_table(tmp_path / "s" / "test.tsv").empty  # the old folder


def test_mel_shard_round_trip_and_fingerprint(tmp_path):
    path = tmp_path / "shard.h5"
    writer = mel_shard.ShardWriter(path, mel_shard.shard_attributes(1.0, "abc"))
    songs = {"TR1": np.full((300, 128), -100.0), "TR2": np.arange(128.0)[None].repeat(5, 0)}
    for track_id, mel in songs.items():
        writer.add(track_id, mel, len(mel) * 512)
    writer.close()
    ids, offsets = mel_shard.read_index(str(path))
    assert ids == ["TR1", "TR2"] and offsets.tolist() == [0, 300, 305]
    assert mel_shard.stored_fingerprint(path) == "abc"
    mel = mel_shard.open_mel(str(path))
    assert mel.dtype == np.float16 and mel.chunks == (mel_shard.CHUNK_FRAMES, 128)
    assert (mel[300:305] == songs["TR2"]).all()
    mel.file.close()
    # the source_sha256 of earlier shards: a rerun on the same input finds them up to date
    assert mel_shard.source_fingerprint(["TRA", "TRB"], ["a/x.mp3", "b/y.mp3"], 1.0) == \
        "8f49bd264e6f83713d3c3862788c6cb217ff75cd91541d1fc4be580fde9aa0d8"
    assert mel_shard.stored_fingerprint(tmp_path / "missing.h5") is None
    mel_shard.write_failures(tmp_path / "f.tsv", [(0, "TR3", "c.mp3", "too\tshort:\n 0.1 s")])
    assert (tmp_path / "f.tsv").read_text() == "track_id\tpath\treason\nTR3\tc.mp3\ttoo short: 0.1 s\n"


def test_pseudo_labels_round_trip(tmp_path):
    path = tmp_path / "labels.h5"
    probs = np.array([[0.1, 0.5, 0.9], [1.0, 0.0, 0.25]])
    pseudo_label_shard.write_pseudo_labels(path, ["TR1", "TR2"], probs, TAGS, "teacher.ckpt", "bf16")
    ids, read = pseudo_label_shard.read_pseudo_labels([path], TAGS)
    assert ids == ["TR1", "TR2"] and read.dtype == np.float32
    assert np.allclose(read, probs, atol=1e-3)
    with pytest.raises(ValueError, match="labels.h5: its tags differ from the tag list in use"):
        pseudo_label_shard.read_pseudo_labels([path], TAGS[::-1])
    with pytest.raises(ValueError, match="repeat a track ID"):
        pseudo_label_shard.read_pseudo_labels([path, path], TAGS)


def test_evaluation_round_trip(tmp_path):
    report = {"roc_auc": {"macro": 0.75}, "pr_auc": {"macro": 0.5}, "checkpoint": "best.ckpt",
              "per_tag": {"rock": {"roc_auc": 0.75, "pr_auc": 0.5, "positives": 2},
                          "NA": {"roc_auc": None, "pr_auc": None, "positives": 0},
                          "00s": {"roc_auc": 0.125, "pr_auc": 1 / 3, "positives": 4}}}
    probs = np.array([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]], dtype=np.float32)
    labels = np.array([[1, 0, 1], [0, 0, 1]], dtype=bool)
    out = tmp_path / "eval"
    evaluation_folder.write_evaluation(out, report, ["TR1", "TR2"], probs, labels, TAGS)
    assert evaluation_folder.read_metrics(out / "metrics.json") == report
    per_tag = evaluation_folder.read_per_tag(out / "per_tag.tsv")
    assert per_tag["tag"].tolist() == TAGS and per_tag["positives"].tolist() == [2, 0, 4]
    assert np.allclose(per_tag["pr_auc"], [0.5, np.nan, 0.333333], equal_nan=True)
    predictions = evaluation_folder.read_predictions(out / "predictions.h5")
    assert predictions["tracks"] == ["TR1", "TR2"] and (predictions["probs"] == probs).all()
    assert predictions["labels"].dtype == np.uint8 and (predictions["labels"] == labels).all()
    (out / "metrics.json").write_text(json.dumps({"roc_auc": {"macro": 0.5}}))
    with pytest.raises(ValueError, match="metrics.json: no macro pr_auc"):
        evaluation_folder.read_metrics(out / "metrics.json")
    with pytest.raises(ValueError, match="per_tag.tsv: not a predictions file"):
        evaluation_folder.read_predictions(out / "per_tag.tsv")
