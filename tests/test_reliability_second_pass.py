"""Reliability and security, second pass (issue 33): no small file claims large memory, no HDF5
indirection is followed, no unusable split or shard is accepted, and every argument is checked
before any work. docs/RELIABILITY.md lists each case with the test here that checks it; the
workflow's classes (shell quoting, replanning) are in tests/test_workflow_safety.py."""
import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import REPO, TOY_TAGS, assert_one_clear_line, make_toy, train_args, write_shard
from mtt.checkpoint import load_checkpoint
from mtt.cli import main
from mtt.formats.evaluation_folder import read_predictions
from mtt.formats.mel_shard import read_index
from mtt.formats.pseudo_label_shard import read_pseudo_labels, write_pseudo_labels

CLIP = REPO.parent / "shared" / "audio" / "gtzan_country00000.wav"


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy(tmp_path_factory.mktemp("toy"), n_train=8, n_valid=8, n_test=8,
                    n_unlabeled=4)


# ------------------------------------------------- class 3: small files that claim large memory

def _claims(path, how, checkpoint):
    """A checkpoint of a few KB whose config (or layout) claims a large model."""
    payload = torch.load(checkpoint, weights_only=True)
    if how == "width 2048, 12 layers":
        payload["config"].update(width=2048, layers=12, heads=8)
    elif how == "a million layers":
        payload["config"].update(layers=1_000_000)
    elif how == "conv channels 60000":
        payload["config"].update(conv_channels=60_000)
    elif how == "a crop of 10^9 frames":
        payload["meta"] = {"training": {"crop_frames": 10 ** 9}}
    elif how == "published: width 2048, 12 layers":
        state = {f"network.{k}": v for k, v in payload["state_dict"].items()}
        state["network.cls_token"] = torch.zeros(2048)  # 8 KB; the model it implies is 2.4 GB
        state["network.transformer.layers.11.0.fn.norm.weight"] = torch.zeros(1)
        payload = state
    torch.save(payload, path)
    assert path.stat().st_size < 100_000


CLAIMS = ["width 2048, 12 layers", "a million layers", "conv channels 60000",
          "a crop of 10^9 frames", "published: width 2048, 12 layers"]


def _peak_rss_mb(args, limit_bytes):
    """`mtt ARGS` in a child under RLIMIT_AS: (exit code, stderr, the child's own peak RSS in
    MB)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    code = ("import resource, runpy, sys; "
            f"resource.setrlimit(resource.RLIMIT_AS, ({limit_bytes}, {limit_bytes})); "
            "sys.argv = ['mtt'] + sys.argv[1:]; "
            "from mtt.cli import main; rc = main(); "
            # VmHWM, not ru_maxrss: Linux carries ru_maxrss across execve (from pytest here)
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
            "print(int(hwm.split()[1]) // 1024, file=sys.stderr); "
            "sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                            text=True, env=env, timeout=300)
    lines = result.stderr.strip().splitlines()
    peak = int(lines[-1]) if lines and lines[-1].isdigit() else None
    return result.returncode, "\n".join(lines[:-1] if peak is not None else lines), peak


MEMORY_LIMIT = int(4.5 * 2 ** 30)  # address space: torch alone maps ~3.5 GB of it


@pytest.mark.slow
def test_a_small_checkpoint_claiming_a_large_model_is_refused_under_a_memory_limit(
        tmp_path, checkpoint):
    """Under a 4.5 GB address-space limit (the plain tagging run fits; the old code, building the
    claimed model first, failed to allocate and took 2.0 GB before refusing, 2.9 GB without the
    limit), each claim is refused with one line naming the file, for the reason of its claim,
    within 100 MB of the peak of tagging with the real tiny checkpoint."""
    code, err, baseline = _peak_rss_mb(["tag", CLIP, "--checkpoint", checkpoint, "--device", "cpu"],
                                      MEMORY_LIMIT)
    assert code == 0, f"a plain mtt tag must run under the limit: {err[-300:]}"
    for how in CLAIMS:
        path = tmp_path / f"{how.replace(' ', '_').replace(':', '')}.ckpt"
        _claims(path, how, checkpoint)
        code, err, peak = _peak_rss_mb(["tag", CLIP, "--checkpoint", path, "--device", "cpu"],
                                       MEMORY_LIMIT)
        assert code == 2, (how, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (how, err)
        assert str(path) in err and "allocate" not in err, (how, err)
        assert peak < baseline + 100, (how, peak, baseline)


@pytest.mark.parametrize("how, reason", [
    ("width 2048, 12 layers", "missing"), ("a million layers", "layers 1000000, outside"),
    ("conv channels 60000", "the config's model needs"),
    ("a crop of 10^9 frames", "a crop of 1000000000 frames"),
    ("published: width 2048, 12 layers", "missing")])
def test_a_checkpoint_claiming_a_large_model_is_refused_before_it_is_built(
        tmp_path, checkpoint, monkeypatch, how, reason):
    """The shapes are compared on the meta device: no real model of the claimed size is built
    (build_model is only ever called under torch.device('meta') for these files)."""
    import mtt.checkpoint as ckpt
    built = []
    real_build = ckpt.build_model

    def spy(kind, **config):
        model = real_build(kind, **config)
        built.append(next(model.parameters()).device.type)
        return model
    monkeypatch.setattr(ckpt, "build_model", spy)
    path = tmp_path / "claims.ckpt"
    _claims(path, how, checkpoint)
    with pytest.raises(ValueError, match=reason) as error:
        load_checkpoint(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)
    assert set(built) <= {"meta"}, built


def _unwritten(f, name, shape, dtype):
    """A chunked dataset that declares `shape` but stores nothing (no chunk written)."""
    chunks = tuple(min(64, n) for n in shape)
    f.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks)


def _claiming_shard(path, what):
    with h5py.File(path, "w") as f:
        from mtt.formats.mel_shard import shard_attributes
        for key, value in shard_attributes(1.0, "x").items():
            f.attrs[key] = value
        huge = 10 ** 9
        if what == "mel":
            _unwritten(f, "mel", (huge, 128), np.float16)  # 256 GB declared
            f["offset"] = np.array([0, huge], np.int64)
            f.create_dataset("track_id", data=np.array(["a"], dtype=object),
                             dtype=h5py.string_dtype())
        elif what == "offset":
            f.create_dataset("mel", data=np.zeros((4, 128), np.float16))
            _unwritten(f, "offset", (huge + 1,), np.int64)
            _unwritten(f, "track_id", (huge,), h5py.string_dtype())
        elif what == "gzip":
            f.create_dataset("mel", data=np.zeros((50_000, 128), np.float16), compression="gzip")
            f["offset"] = np.array([0, 50_000], np.int64)
            f.create_dataset("track_id", data=np.array(["a"], dtype=object),
                             dtype=h5py.string_dtype())


@pytest.mark.parametrize("what, reason", [
    ("mel", "declares .* but stores 0 bytes"), ("offset", "declares .* but stores 0 bytes"),
    ("gzip", "is filtered")])
def test_a_shard_claiming_more_than_it_stores_is_refused_before_reading(tmp_path, what, reason):
    path = tmp_path / "claims.h5"
    _claiming_shard(path, what)
    assert path.stat().st_size < 200_000
    with pytest.raises(ValueError, match=reason) as error:
        read_index(str(path))
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_pseudo_labels_and_predictions_claiming_more_than_they_store_are_refused(tmp_path):
    labels = tmp_path / "labels.h5"
    with h5py.File(labels, "w") as f:
        _unwritten(f, "track_id", (10 ** 9,), h5py.string_dtype())
        _unwritten(f, "probs", (10 ** 9, len(TOY_TAGS)), np.float16)
        f.attrs["tags"] = json.dumps(TOY_TAGS)
    with pytest.raises(ValueError, match="declares .* but stores") as error:
        read_pseudo_labels([labels], TOY_TAGS)
    assert str(error.value).startswith(str(labels))
    predictions = tmp_path / "predictions.h5"
    with h5py.File(predictions, "w") as f:
        f.create_dataset("track_id", data=np.array(["a"], dtype=object), dtype=h5py.string_dtype())
        _unwritten(f, "probs", (10 ** 9, 50), np.float32)
        _unwritten(f, "labels", (10 ** 9, 50), np.uint8)
    with pytest.raises(ValueError, match="declares .* but stores") as error:
        read_predictions(predictions)
    assert str(error.value).startswith(str(predictions))


@pytest.mark.parametrize("header", ["shape", "ndim"])
def test_split_ids_claiming_more_than_the_file_holds_are_refused(tmp_path, capsys, header):
    folder = tmp_path / "published"
    folder.mkdir()
    for name in ("train", "valid", "test"):
        np.save(folder / f"{name}_ids.npy", np.array([f"{name}1", f"{name}2"]))
    path = folder / "test_ids.npy"
    shape = (10 ** 9,) if header == "shape" else (2, 10 ** 6)
    with open(path, "wb") as f:  # a header claiming `shape`, two IDs of data
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.dtype("<U6").str, "fortran_order": False, "shape": shape})
        f.write(np.array(["test1", "test2"], dtype="<U6").tobytes())
    assert main(["split", "--published", str(folder), "--out", str(tmp_path / "s")]) == 2
    line = assert_one_clear_line(capsys.readouterr().err, path)
    assert ("declares" in line) if header == "shape" else ("1-D" in line)
    assert not (tmp_path / "s").exists()


def _wav(path, channels, rate, frames):
    """A 16-bit PCM WAV written by hand: any sample rate and channel count its header claims."""
    import struct
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    data = np.random.default_rng(0).integers(-3000, 3000, frames * channels, np.int16).tobytes()
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data"
            + struct.pack("<I", len(data)) + data)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def test_an_audio_header_claiming_a_tiny_rate_is_refused_and_many_channels_stay_bounded(
        tmp_path, checkpoint, capsys):
    """A 1 Hz WAV of 200 KB would resample to 2.2 billion samples (8.8 GB): refused, one line.
    A 1,024-channel WAV is decoded in blocks of at most 2^19 samples of all channels (was
    2^18 frames x 1,024 channels, 1 GB)."""
    from mtt.audio import AudioError, load_audio, stream_audio
    slow = _wav(tmp_path / "one_hz.wav", 1, 1, 100_000)
    for read in (load_audio, lambda p: list(stream_audio(p))):
        with pytest.raises(AudioError, match="sample rate 1 Hz") as error:
            read(slow)
        assert str(error.value).startswith(str(slow))
    assert main(["tag", str(slow), "--checkpoint", str(checkpoint)]) == 1
    assert_one_clear_line(capsys.readouterr().err, slow, "sample rate 1 Hz")
    wide = _wav(tmp_path / "wide.wav", 1024, 22050, 2048)
    blocks = list(stream_audio(wide))
    assert sum(len(b) for b in blocks) == 2048 and max(len(b) for b in blocks) <= 512


def test_an_mtat_official_split_file_claiming_more_than_it_holds_is_refused(tmp_path):
    from mtt.datasets import DatasetError
    from mtt.datasets.mtat import OFFICIAL_FILES, read_official_split
    for file in OFFICIAL_FILES.values():
        np.save(tmp_path / file, np.array(["0\tf/a.mp3"]) if file == "train.npy" else
                np.array([f"1\tf/{file}.mp3"]))
    path = tmp_path / "test.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": np.dtype("<U30").str, "fortran_order": False, "shape": (10 ** 9,)})
        f.write(np.array(["1\tf/x.mp3"], dtype="<U30").tobytes())
    with pytest.raises(DatasetError, match="declares") as error:
        read_official_split(tmp_path)
    assert str(error.value).startswith(str(path))


# ------------------------------------------------------------ class 4: HDF5 indirection

def _write_kind(path, kind, tmp_path, indirection):
    """A mel shard / pseudo-label shard / predictions file whose main dataset is reached
    through `indirection` (external raw storage on /etc/passwd, an external link, a virtual
    dataset)."""
    main_name = {"mel shard": "mel", "pseudo-labels": "probs", "predictions": "probs"}[kind]
    shape = (8, 128) if kind == "mel shard" else (1, len(TOY_TAGS))
    dtype = np.float16 if kind != "predictions" else np.float32
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("data", data=np.zeros(shape, dtype))
    with h5py.File(path, "w") as f:
        if kind == "mel shard":
            from mtt.formats.mel_shard import shard_attributes
            for key, value in shard_attributes(1.0, "x").items():
                f.attrs[key] = value
            f["offset"] = np.array([0, shape[0]], np.int64)
        else:
            f.attrs["tags"] = json.dumps(TOY_TAGS)
        f.create_dataset("track_id", data=np.array(["a"], dtype=object), dtype=h5py.string_dtype())
        if kind == "predictions":
            f.create_dataset("labels", data=np.zeros(shape, np.uint8))
        if indirection == "external raw storage":
            f.create_dataset(main_name, shape=shape, dtype=dtype,
                             external=[("/etc/passwd", 0, h5py.h5f.UNLIMITED)])
        elif indirection == "external link":
            f[main_name] = h5py.ExternalLink(str(other), "data")
        elif indirection == "virtual dataset":
            layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
            layout[:] = h5py.VirtualSource(str(other), "data", shape=shape)
            f.create_virtual_dataset(main_name, layout)


def _read_kind(kind, path):
    if kind == "mel shard":
        from mtt.formats.mel_store import MelStore
        MelStore([path]).read_song("a")
    elif kind == "pseudo-labels":
        read_pseudo_labels([path], TOY_TAGS)
    else:
        read_predictions(path)


@pytest.mark.parametrize("indirection, reason", [
    ("external raw storage", "external file \\(/etc/passwd\\)"),
    ("external link", "external link"), ("virtual dataset", "virtual dataset")])
@pytest.mark.parametrize("kind", ["mel shard", "pseudo-labels", "predictions"])
def test_hdf5_indirection_is_refused(tmp_path, kind, indirection, reason):
    path = tmp_path / "file.h5"
    _write_kind(path, kind, tmp_path, indirection)
    with pytest.raises(ValueError, match=reason) as error:
        _read_kind(kind, path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_a_shard_reading_etc_passwd_is_refused_by_mtt_evaluate(toy, tmp_path, checkpoint, capsys):
    shard = tmp_path / "passwd.h5"
    _write_kind(shard, "mel shard", tmp_path, "external raw storage")
    code = main(["evaluate", "--checkpoint", str(checkpoint), "--tracks", str(toy / "test.tsv"),
                 "--tags", str(toy / "tags.txt"), "--mels", str(shard),
                 "--out", str(tmp_path / "eval"), "--device", "cpu"])
    assert code == 2
    assert_one_clear_line(capsys.readouterr().err, shard, "/etc/passwd")
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_plain_files_still_read(toy, tmp_path):
    """The checks keep what our writers make: a shard, pseudo-labels, predictions."""
    read_index(str(toy / "labeled.h5"))
    write_pseudo_labels(tmp_path / "p.h5", ["a", "b"], np.full((2, 4), 0.5), TOY_TAGS, "x")
    assert read_pseudo_labels([tmp_path / "p.h5"], TOY_TAGS)[0] == ["a", "b"]
    from mtt.formats.evaluation_folder import write_evaluation
    from mtt.metrics import tagging_report
    labels = np.array([[1, 0, 1, 0], [0, 1, 0, 1]], np.uint8)
    probs = np.array([[0.9, 0.1, 0.8, 0.2], [0.2, 0.7, 0.3, 0.6]], np.float32)
    report = {**tagging_report(labels, probs, TOY_TAGS, n_bootstrap=0), "checkpoint": "x"}
    write_evaluation(tmp_path / "e", report, ["a", "b"], probs, labels, TOY_TAGS)
    assert read_predictions(tmp_path / "e" / "predictions.h5")["tracks"] == ["a", "b"]


# ---------------------------------------------- class 5: splits and shards that cannot be used

def _catalogue(path, rows):
    with open(path, "w") as f:
        f.write("track_id\tartist_id\tpath\ttags\n")
        for track_id, artist, tags in rows:
            f.write(f"{track_id}\t{artist}\t{track_id}.mp3\t{tags}\n")
    return path


def test_a_two_artist_catalogue_is_refused_naming_the_empty_sets(tmp_path, capsys):
    rows = [(f"t{i}", f"A{i % 2}", "rock;pop") for i in range(20)]
    catalogue = _catalogue(tmp_path / "cat.tsv", rows)
    out = tmp_path / "split"
    assert main(["split", "--format", "tsv", "--metadata", str(catalogue), "--out", str(out),
                 "--fractions", "0.5", "0.25", "0.25"]) == 2
    line = assert_one_clear_line(capsys.readouterr().err, catalogue)
    assert "no test" in line or "no valid" in line, line
    assert not out.exists()


def test_a_tag_without_a_positive_in_train_is_named_and_no_tag_with_one_is_refused(tmp_path,
                                                                                  capsys):
    """One artist holds every `rare` song; with train the smallest share it goes elsewhere: the
    split is written and `rare` named. A catalogue whose only tagged artist lands outside train
    has nothing to learn: refused."""
    rows = [(f"t{i}", f"A{i}", "rock" if i % 2 else "pop") for i in range(60)]
    rows += [("r1", "R", "rare;rock"), ("r2", "R", "rare;pop")]
    catalogue = _catalogue(tmp_path / "cat.tsv", rows)
    out = tmp_path / "split"
    assert main(["split", "--format", "tsv", "--metadata", str(catalogue), "--out", str(out),
                 "--fractions", "0.2", "0.4", "0.4"]) == 0
    assert "no positive song in train, so no model learns them: rare" in capsys.readouterr().err
    assert (out / "train.tsv").is_file()

    from mtt.datasets.table import TrackTable
    from mtt.prepare.split import check_usable
    ids = np.array([f"t{i}" for i in range(6)], dtype=object)
    labels = np.array([[0, 0], [0, 0], [1, 0], [0, 1], [1, 1], [0, 1]], np.uint8)
    table = TrackTable(ids, ids.copy(), ids.copy(), labels, ["rock", "pop"])
    sets = np.array(["train", "train", "valid", "valid", "test", "test"])  # train: no tag at all
    with pytest.raises(ValueError, match="no tag has a positive song in train"):
        check_usable(table, sets)


def test_mtt_pseudo_label_refuses_nan_mels_naming_the_shard(tmp_path, checkpoint, capsys):
    rng = np.random.default_rng(0)
    songs = [(f"s{i}", rng.normal(-60, 6, (60, 128)).astype(np.float32)) for i in range(3)]
    songs[1][1][10, 5] = np.nan
    shard = tmp_path / "nan.h5"
    write_shard(shard, songs)
    out = tmp_path / "labels.h5"
    assert main(["pseudo-label", "--checkpoint", str(checkpoint), "--mels", str(shard),
                 "--out", str(out), "--device", "cpu", "--chunks", "2"]) == 2
    assert_one_clear_line(capsys.readouterr().err, shard, "'s1'", "NaN")
    assert not out.exists()


def test_mtt_evaluate_names_the_shard_instead_of_input_contains_nan(toy, tmp_path, checkpoint,
                                                                   capsys):
    from mtt.formats.split_folder import read_split
    ids, _ = read_split(toy / "test.tsv", TOY_TAGS)
    rng = np.random.default_rng(0)
    songs = [(t, rng.normal(-60, 6, (60, 128)).astype(np.float32)) for t in ids]
    songs[0][1][:] = np.nan
    shard = tmp_path / "nan.h5"
    write_shard(shard, songs)
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--tracks", str(toy / "test.tsv"),
                 "--tags", str(toy / "tags.txt"), "--mels", str(shard), "--bootstrap", "0",
                 "--out", str(tmp_path / "eval"), "--device", "cpu"]) == 2
    line = assert_one_clear_line(capsys.readouterr().err, shard, ids[0])
    assert "Input contains NaN" not in line


@pytest.mark.parametrize("workers", ["0", "1"])
def test_mtt_train_names_the_shard_instead_of_input_contains_nan(tmp_path, capsys, workers):
    """A NaN mel (which no shard we write holds) is refused where it is read, naming the shard
    and the track, in one line also from a data-loader worker (was: sklearn's "Input contains
    NaN." at the first validation)."""
    toy = make_toy(tmp_path / "toy", n_train=8, n_valid=8, n_test=0, n_unlabeled=0)
    with h5py.File(toy / "labeled.h5", "r+") as f:
        f["mel"][0:200] = np.nan
    code = main(train_args(toy, tmp_path / "run", "--max-epochs", "1", "--workers", workers))
    assert code == 2
    line = assert_one_clear_line(capsys.readouterr().err, toy / "labeled.h5", "NaN or infinite")
    assert "Input contains NaN" not in line


BAD_LABELS = {
    "above 1": (["a", "b"], np.array([[0.5, 1.5, 0, 0], [0, 0, 0, 0]]), "range from 0 to 1.5"),
    "below 0": (["a", "b"], np.array([[0.5, -0.1, 0, 0], [0, 0, 0, 0]]), r"range from -0\.(1|0999)"),
    "NaN": (["a", "b"], np.array([[0.5, np.nan, 0, 0], [0, 0, 0, 0]]), "not finite"),
    "rows": (["a", "b", "c"], np.zeros((2, 4)), r"\(2, 4\) disagree with 3 track IDs"),
    "columns": (["a", "b"], np.zeros((2, 3)), r"\(2, 3\) disagree with 2 track IDs and 4 tags"),
}


@pytest.mark.parametrize("case", list(BAD_LABELS))
def test_a_bad_pseudo_label_shard_is_refused_at_write_and_at_read(tmp_path, case):
    ids, probs, reason = BAD_LABELS[case]
    path = tmp_path / "labels.h5"
    with pytest.raises(ValueError, match=reason) as error:
        write_pseudo_labels(path, ids, probs, TOY_TAGS, "teacher.ckpt")
    assert str(error.value).startswith(str(path)) and not path.exists()
    with h5py.File(path, "w") as f:  # the same content, written by someone else
        f.create_dataset("track_id", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("probs", data=probs.astype(np.float16))
        f.attrs["tags"] = json.dumps(TOY_TAGS)
    with pytest.raises(ValueError, match=reason) as error:
        read_pseudo_labels([path], TOY_TAGS)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_mtt_train_refuses_a_bad_pseudo_label_shard_with_one_line(toy, tmp_path, capsys):
    from mtt.formats.mel_shard import read_index as index
    ids, _ = index(str(toy / "unlabeled.h5"))
    path = tmp_path / "labels.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("track_id", data=np.array(ids, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("probs", data=np.full((len(ids), 4), 2.0, np.float16))
        f.attrs["tags"] = json.dumps(TOY_TAGS)
    code = main(train_args(toy, tmp_path / "run", "--max-epochs", "1", "--pseudo-labels",
                           str(path), "--unlabeled-mels", str(toy / "unlabeled.h5")))
    assert code == 2
    assert_one_clear_line(capsys.readouterr().err, path, "[0, 1]")


# ------------------------------------ class 6: arguments and outputs checked before any work

def _bad_arguments(tmp, toy, checkpoint):
    a_file = tmp / "a_file"
    if tmp.is_dir():
        a_file.write_text("")
    missing = a_file / "dir"  # a folder that cannot be made: a file is in the way
    tag = ["tag", str(CLIP), "--checkpoint", str(checkpoint)]
    evaluate = ["evaluate", "--checkpoint", str(checkpoint), "--tracks", str(toy / "test.tsv"),
                "--tags", str(toy / "tags.txt"), "--mels", str(toy / "labeled.h5"),
                "--device", "cpu"]
    pseudo = ["pseudo-label", "--checkpoint", str(checkpoint), "--mels",
              str(toy / "unlabeled.h5"), "--device", "cpu"]
    summarize = ["summarize", "--metrics", str(tmp / "m.json")]
    split = ["split", "--format", "tsv", "--metadata", str(tmp / "cat.tsv")]
    return {
        "tag --out below a file": (tag + ["--out", f"{missing}/x.txt"], "--out", missing),
        "tag --out a folder": (tag + ["--out", str(tmp)], "--out", "is a folder"),
        "tag --embeddings below a file": (tag + ["--embeddings", f"{missing}/e.npy"],
                                                 "--embeddings", missing),
        "tag --chunk-seconds -5": (tag + ["--chunk-seconds", "-5"], "--chunk-seconds", "-5"),
        "tag --chunk-seconds 0": (tag + ["--chunk-seconds", "0"], "--chunk-seconds", "above 0"),
        "tag --chunk-seconds nan": (tag + ["--chunk-seconds", "nan"], "--chunk-seconds", "finite"),
        "tag --batch-size 0": (tag + ["--batch-size", "0"], "--batch-size", "at least 1"),
        "tag --top-k 0": (tag + ["--top-k", "0"], "--top-k", "at least 1"),
        "tag --checkpoint missing": (["tag", str(CLIP), "--checkpoint", str(tmp / "no.ckpt")],
                                     "--checkpoint", "no such file"),
        "train --out an existing file": (train_args(toy, a_file), "--out", a_file),
        "train --out below a file": (train_args(toy, a_file / "run"), "--out", a_file),
        "evaluate --out an existing file": (evaluate + ["--out", str(a_file)], "--out", a_file),
        "evaluate --bootstrap -1": (evaluate + ["--out", str(tmp / "e"), "--bootstrap", "-1"],
                                    "--bootstrap", "at least 0"),
        "evaluate --chunks 0": (evaluate + ["--out", str(tmp / "e"), "--chunks", "0"],
                                "--chunks", "at least 1"),
        "evaluate --threads 0": (evaluate + ["--out", str(tmp / "e"), "--threads", "0"],
                                 "--threads", "at least 1"),
        "evaluate --batch-size -3": (evaluate + ["--out", str(tmp / "e"), "--batch-size", "-3"],
                                     "--batch-size", "at least 1"),
        "evaluate --seed -1": (evaluate + ["--out", str(tmp / "e"), "--seed", "-1"], "--seed",
                               "at least 0"),
        "split --seed -1": (split + ["--out", str(tmp / "s"), "--seed", "-1"], "--seed",
                            "at least 0"),
        "pseudo-label --out below a file": (pseudo + ["--out", f"{missing}/p.h5"], "--out",
                                                   missing),
        "split --out an existing file": (split + ["--out", str(a_file)], "--out", a_file),
        "split --top-tags 0": (split + ["--out", str(tmp / "s"), "--top-tags", "0"],
                               "--top-tags", "at least 1"),
        "split --fractions -0.1": (split + ["--out", str(tmp / "s"), "--fractions", "-0.1", "0.6",
                                            "0.5"], "--fractions", "at least 0"),
        "split --search-iterations -1": (split + ["--out", str(tmp / "s"),
                                                  "--search-iterations", "-1"],
                                         "--search-iterations", "at least 0"),
        "summarize --out below a file": (summarize + ["--out", f"{missing}/s.tsv"], "--out",
                                                missing),
        "summarize --html a folder": (summarize + ["--out", str(tmp / "s.tsv"), "--html", str(tmp)],
                                      "--html", "is a folder"),
        "summarize --bootstrap -1": (summarize + ["--out", str(tmp / "s.tsv"), "--bootstrap", "-1"],
                                     "--bootstrap", "at least 0"),
        "plots --out-dir an existing file": (["plots", "--per-tag", "x", "--predictions", "x",
                                              "--histories", "x", "--split-dir", str(tmp),
                                              "--out-dir", str(a_file)], "--out-dir", a_file),
        "export --onnx below a file": (["export", "--checkpoint", str(checkpoint), "--onnx",
                                               f"{missing}/m.onnx"], "--onnx", missing),
        "export --opset 0": (["export", "--checkpoint", str(checkpoint), "--onnx",
                              str(tmp / "m.onnx"), "--opset", "0"], "--opset", "at least 1"),
        "demo-data --songs 0": (["demo-data", "--out", str(tmp / "d"), "--songs", "0"], "--songs",
                                "at least 1"),
        "demo-data --seconds -1": (["demo-data", "--out", str(tmp / "d"), "--seconds", "-1"],
                                   "--seconds", "above 0"),
        "demo-data --workers 0": (["demo-data", "--out", str(tmp / "d"), "--workers", "0"],
                                  "--workers", "at least 1"),
        "demo-data --out an existing file": (["demo-data", "--out", str(a_file)], "--out", a_file),
    }


BAD_ARGUMENTS = list(_bad_arguments(Path("/nonexistent"), Path("/x"), Path("/x")))


@pytest.mark.parametrize("case", BAD_ARGUMENTS)
def test_a_bad_argument_is_one_line_before_any_work(toy, tmp_path, checkpoint, capsys,
                                                    monkeypatch, case):
    """argparse refuses it (exit 2, one line naming the option and the value or file): the
    command's run() is never called, so no work is done and nothing is written."""
    args, option, detail = _bad_arguments(tmp_path, toy, checkpoint)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2
    assert_one_clear_line(capsys.readouterr().err, f"argument {option}", detail)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_an_output_in_a_folder_that_can_be_made_is_written(tmp_path, checkpoint):
    """A missing folder that can be made is not a refusal: the commands make it."""
    out = tmp_path / "new" / "folder" / "tags.json"
    embeddings = tmp_path / "other" / "e.npy"
    assert main(["tag", str(CLIP), "--checkpoint", str(checkpoint), "--format", "json",
                 "--out", str(out), "--embeddings", str(embeddings)]) == 0
    assert str(CLIP) in json.loads(out.read_text()) and np.load(embeddings).shape[0] == 1


def _block_folder_when_called(monkeypatch, module, name, folder):
    """`module.name` first replaces `folder` by a file, then does its work: the command's output
    folder goes away while it works."""
    real = getattr(module, name)

    def block_then_call(*args, **kwargs):
        shutil.rmtree(folder)
        folder.write_text("in the way")
        return real(*args, **kwargs)
    monkeypatch.setattr(module, name, block_then_call)


def test_mtt_tag_keeps_its_results_when_out_cannot_be_written_at_the_end(
        tmp_path, checkpoint, capsys, monkeypatch):
    """The folder of --out is replaced by a file while tagging: the results are written to a
    temporary file, and one line says why and where; exit 1."""
    import mtt.inference.tag as tag
    folder = tmp_path / "out"
    folder.mkdir()
    _block_folder_when_called(monkeypatch, tag, "format_results", folder)
    assert main(["tag", str(CLIP), "--checkpoint", str(checkpoint),
                 "--out", str(folder / "tags.txt")]) == 1
    line = assert_one_clear_line(capsys.readouterr().err, folder / "tags.txt", "the results are in")
    fallback = Path(line.rsplit("the results are in ", 1)[1])
    assert str(CLIP) in fallback.read_text()
    fallback.unlink()


@pytest.mark.parametrize("command", ["evaluate", "pseudo-label"])
def test_an_output_that_fails_at_the_end_is_kept_where_it_can_be_found(
        toy, tmp_path, checkpoint, capsys, monkeypatch, command):
    """While the command works, the folder its output goes to is replaced by a file: what it
    computed is written to the temporary folder, and one line says why and where (exit 2)."""
    import mtt.inference.evaluate
    import mtt.inference.pseudo_label
    module = mtt.inference.evaluate if command == "evaluate" else mtt.inference.pseudo_label
    folder = tmp_path / "out"
    folder.mkdir()
    _block_folder_when_called(monkeypatch, module, "predict_songs", folder)
    if command == "evaluate":
        out = folder / "eval"
        args = ["evaluate", "--checkpoint", str(checkpoint), "--tracks", str(toy / "test.tsv"),
                "--tags", str(toy / "tags.txt"), "--mels", str(toy / "labeled.h5"),
                "--bootstrap", "0", "--out", str(out), "--device", "cpu"]
    else:
        out = folder / "labels.h5"
        args = ["pseudo-label", "--checkpoint", str(checkpoint), "--mels",
                str(toy / "unlabeled.h5"), "--out", str(out), "--device", "cpu"]
    assert main(args) == 2
    line = assert_one_clear_line(capsys.readouterr().err, f"cannot write {out}")
    kept = Path(line.rsplit(" in ", 1)[1])
    if command == "evaluate":
        assert json.loads((kept / "metrics.json").read_text())["n_songs"] == 8
        shutil.rmtree(kept)
    else:
        ids, probs = read_pseudo_labels([kept], TOY_TAGS)
        assert len(ids) == 4 and probs.shape == (4, 4)
        kept.unlink()
