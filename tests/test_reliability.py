"""Reliability and security (issue 18): no crafted file runs code, no race or kill publishes a
wrong output, every bad input gets one clear line. docs/RELIABILITY.md lists each case with the
test here that checks it."""
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import REAL_CLIPS, TOY_TAGS, assert_one_clear_line, make_toy, train_args
from mtt.cli import main
from mtt.formats.pseudo_label_shard import read_pseudo_labels


class CodeRunner:
    """Unpickling this writes `marker`: what a crafted file would do instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code ran')",))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy(tmp_path_factory.mktemp("toy"), n_train=8, n_valid=8, n_test=8,
                    n_unlabeled=0)


# ------------------------------------------------------------------ no crafted file runs code

def test_planted_last_ckpt_does_not_run_code(toy, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "marker"
    torch.save({"identity": CodeRunner(marker), "state": {}, "model": {}, "rng": {}},
               out / "last.ckpt")
    assert main(train_args(toy, out, "--max-epochs", "1")) == 2
    line = assert_one_clear_line(capsys.readouterr().err, out / "last.ckpt")
    assert "not a resumable checkpoint" in line and "\n" not in line
    assert not marker.exists()


def test_planted_last_ckpt_is_stale_for_the_workflow(toy, tmp_path, capsys):
    """--fresh-unless-interrupted (the workflow path): the file is removed, training starts
    over, and the code never runs."""
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "marker"
    torch.save({"identity": CodeRunner(marker)}, out / "last.ckpt")
    assert main(train_args(toy, out, "--max-epochs", "1", "--fresh-unless-interrupted")) == 0
    err = capsys.readouterr().err
    assert "not a resumable checkpoint" in err and "starting over" in err
    assert not marker.exists()
    payload = torch.load(out / "last.ckpt", weights_only=True)  # what it writes loads safely
    assert payload["state"]["epoch"] == 1


def test_planted_best_ckpt_does_not_run_code(toy, tmp_path, capsys):
    marker = tmp_path / "marker"
    planted = tmp_path / "best.ckpt"
    torch.save({"format": "mtt-checkpoint", "state_dict": CodeRunner(marker)}, planted)
    code = main(["evaluate", "--checkpoint", str(planted), "--tracks", str(toy / "test.tsv"),
                 "--tags", str(toy / "tags.txt"), "--mels", str(toy / "labeled.h5"),
                 "--out", str(tmp_path / "eval"), "--device", "cpu"])
    assert code == 2
    line = assert_one_clear_line(capsys.readouterr().err, planted)
    assert "Weights only" not in line
    assert not marker.exists()


def test_planted_split_ids_do_not_run_code(tmp_path, capsys):
    marker = tmp_path / "marker"
    published = tmp_path / "published"
    published.mkdir()
    for name in ("train", "valid", "test"):
        np.save(published / f"{name}_ids.npy", np.array([f"TR{name}AAAAAAAAAA"]))
    planted = published / "student_ids.npy"
    np.save(planted, np.array([CodeRunner(marker), "TRBBBBB128F1234567"], dtype=object),
            allow_pickle=True)
    assert main(["split", "--published", str(published), "--out", str(tmp_path / "s")]) == 2
    line = assert_one_clear_line(capsys.readouterr().err, planted)
    assert "refused" in line
    assert not marker.exists()
    assert not (tmp_path / "s" / "train.tsv").exists()


def test_object_array_of_ids_still_imports(tmp_path):
    """A published split saved as an object array of strings loads, without unpickling any
    callable beyond numpy's array rebuilding."""
    published = tmp_path / "published"
    published.mkdir()
    for name in ("train", "valid", "test"):
        np.save(published / f"{name}_ids.npy", np.array([f"TR{name}AAAAAAAAAA", f"TR{name}B"],
                                                        dtype=object), allow_pickle=True)
    assert main(["split", "--published", str(published), "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "train.tsv").read_text().count("\n") == 3


@pytest.mark.parametrize("planted_as", ["pickle", "torch"])
def test_planted_pseudo_labels_and_predictions_do_not_run_code(tmp_path, planted_as):
    """Pseudo-label and prediction files are HDF5, read with h5py: a pickle in their place is
    not a readable file, and nothing in it runs."""
    marker = tmp_path / "marker"
    planted = tmp_path / "pseudo.h5"
    if planted_as == "pickle":
        planted.write_bytes(pickle.dumps(CodeRunner(marker)))
    else:
        torch.save(CodeRunner(marker), planted)
    with pytest.raises(ValueError, match="not a pseudo-label shard"):
        read_pseudo_labels([planted], TOY_TAGS)
    from mtt.formats.evaluation_folder import read_predictions
    with pytest.raises(ValueError, match="not a predictions file"):
        read_predictions(planted)
    assert not marker.exists()


def test_every_numpy_and_torch_load_refuses_pickles():
    """Source check: no reader can fall back to unpickling."""
    src = Path(__file__).resolve().parents[1] / "src" / "mtt"
    for path in src.rglob("*.py"):
        text = path.read_text()
        assert "allow_pickle=True" not in text, path
        assert "weights_only=False" not in text, path
        for call in ("np.load(", "torch.load("):
            start = 0
            while (at := text.find(call, start)) >= 0:
                end = text.find(")", at)
                keyword = "allow_pickle=False" if call == "np.load(" else "weights_only=True"
                assert keyword in text[at:end + 40], f"{path}: {text[at:end + 1]}"
                start = at + 1


# ------------------------------------------------- outputs published whole, by their writer

def _write_many(path, byte, rounds, size):
    from mtt.atomic import atomic_path
    for _ in range(rounds):
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                for _ in range(size // 4096):
                    f.write(bytes([byte]) * 4096)


def test_two_concurrent_writers_never_publish_a_mixed_file(tmp_path):
    import multiprocessing
    path = tmp_path / "shard.h5"
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_write_many, args=(path, b, 30, 1 << 18)) for b in (1, 2)]
    for w in writers:
        w.start()
    seen = 0
    while any(w.is_alive() for w in writers):
        if path.exists():
            data = path.read_bytes()
            assert len(data) == 1 << 18 and len(set(data)) == 1, "a mixed or partial file"
            seen += 1
    for w in writers:
        w.join()
        assert w.exitcode == 0
    data = path.read_bytes()
    assert len(data) == 1 << 18 and len(set(data)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["shard.h5"]  # no temporary left
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_the_writer_creates_its_temporary_and_an_empty_write_publishes_an_empty_file(tmp_path):
    """The temporary's name is reserved but the file is the writer's to create: a file opened
    with truncation is flushed to disk on close by ext4 (~35 ms a shard)."""
    from mtt.atomic import atomic_path
    path = tmp_path / "out.h5"
    with atomic_path(path) as tmp:
        assert not tmp.exists() and tmp.parent == tmp_path
    assert path.read_bytes() == b""
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    assert [p.name for p in tmp_path.iterdir()] == ["out.h5"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_folder(out, tag, rounds, stop_at=None):
    from mtt.atomic import atomic_dir
    for i in range(rounds):
        with atomic_dir(out) as tmp:
            for name in ("train", "valid", "test"):
                (tmp / f"{name}.tsv").write_text(f"{tag}\n" * 2000)
                if stop_at is not None and i == stop_at and name == "valid":
                    os.kill(os.getpid(), 9)  # kill -9 halfway through the folder


def _folder_tags(out):
    return {(out / f"{n}.tsv").read_text().split("\n", 1)[0] for n in ("train", "valid", "test")}


def _write_and_die(path):
    from mtt.atomic import atomic_path
    with atomic_path(path) as tmp:
        tmp.write_text("killed")
        os.kill(os.getpid(), 9)


def _write_when_told(path, ready, go):
    from mtt.atomic import atomic_path
    with atomic_path(path) as tmp:
        tmp.write_text("live")
        ready.set()
        go.wait(30)


def test_a_rerun_removes_a_killed_writers_temporary_but_no_live_writers(tmp_path):
    import multiprocessing
    from mtt.atomic import atomic_path
    path = tmp_path / "shard.h5"
    context = multiprocessing.get_context("fork")
    killed = context.Process(target=_write_and_die, args=(path,))
    killed.start()
    killed.join()
    assert killed.exitcode == -9
    stale = set(tmp_path.glob(f".shard.h5.{killed.pid}@*.partial"))
    assert len(stale) == 1  # the killed writer's, named with its PID and host
    name = next(iter(stale)).name
    host = name.split("@", 1)[1].split(".", 1)[0]
    # not this output's, another host's (its PID means nothing here), an older mtt's (no PID)
    kept = {tmp_path / name.replace(".shard.h5.", ".other.h5."),
            tmp_path / name.replace(f"@{host}.", "@elsewhere."),
            tmp_path / ".shard.h5.abcd1234.partial"}
    for p in kept:
        p.write_text("x")
    ready, go = context.Event(), context.Event()
    live = context.Process(target=_write_when_told, args=(path, ready, go))
    live.start()
    assert ready.wait(30)
    live_tmp = set(tmp_path.glob(f".shard.h5.{live.pid}@*.partial"))

    with atomic_path(path) as tmp:  # the rerun
        tmp.write_text("rerun")
    assert path.read_text() == "rerun"
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept | live_tmp)
    go.set()
    live.join()
    assert live.exitcode == 0 and path.read_text() == "live"  # its file was left alone
    assert set(tmp_path.iterdir()) == kept | {path}


def test_a_rerun_removes_a_killed_writers_temporary_folder(tmp_path):
    import multiprocessing
    out = tmp_path / "split"
    _write_folder(out, "old", 1)
    killed = multiprocessing.get_context("fork").Process(target=_write_folder,
                                                          args=(out, "new", 1, 0))
    killed.start()
    killed.join()
    assert killed.exitcode == -9
    assert len(list(tmp_path.glob(f".split.{killed.pid}@*.partial"))) == 1
    _write_folder(out, "rerun", 1)
    assert _folder_tags(out) == {"rerun"}
    assert [p.name for p in tmp_path.iterdir()] == ["split"]


def test_split_folder_is_replaced_as_one_unit_by_concurrent_writers(tmp_path):
    import multiprocessing
    out = tmp_path / "split"
    (out).mkdir()
    (out / "notes.txt").write_text("mine")
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_write_folder, args=(out, tag, 20)) for tag in ("a", "b")]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert len(_folder_tags(out)) == 1
    assert (out / "notes.txt").read_text() == "mine"  # a file the writer did not write stays
    assert [p.name for p in tmp_path.iterdir()] == ["split"]


def test_kill_during_split_leaves_the_old_folder(tmp_path):
    import multiprocessing
    out = tmp_path / "split"
    _write_folder(out, "old", 1)
    context = multiprocessing.get_context("fork")
    killed = context.Process(target=_write_folder, args=(out, "new", 1, 0))
    killed.start()
    killed.join()
    assert killed.exitcode == -9
    assert _folder_tags(out) == {"old"}


def test_mtt_split_killed_midway_keeps_the_previous_split(tmp_path, monkeypatch):
    """The real command: an error (or kill) after train.tsv is written publishes nothing."""
    from mtt.formats import split_folder as split_module
    published = tmp_path / "published"
    published.mkdir()
    for name in ("train", "valid", "test"):
        np.save(published / f"{name}_ids.npy", np.array([f"TR{name}AAAAAAAAAA"]))
    out = tmp_path / "s"
    assert main(["split", "--published", str(published), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    np.save(published / "train_ids.npy", np.array(["TRtrainBBBBBBBBBB"]))

    def fail(*args):
        raise KeyboardInterrupt  # stands in for the kill, after train.tsv is written
    monkeypatch.setattr(split_module, "_check_fields",
                        lambda columns, calls=[]: calls.append(1) or (fail() if len(calls) > 1
                                                                      else None))
    with pytest.raises(KeyboardInterrupt):
        main(["split", "--published", str(published), "--out", str(out)])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["published", "s"]


# ------------------------------------------------------------------- readers validate

def _tamper(path, how):
    with h5py.File(path, "r+") as f:
        mel = f["mel"][()]
        offset = f["offset"][()]
        if how == "int8":
            del f["mel"]
            f.create_dataset("mel", data=mel.astype(np.int8))
        elif how == "1-D":
            del f["mel"]
            f.create_dataset("mel", data=mel.reshape(-1))
        elif how == "unordered":
            offset[1], offset[2] = offset[2], offset[1]
            f["offset"][...] = offset
        elif how == "last":
            offset[-1] -= 3
            f["offset"][...] = offset
        elif how.startswith("no "):
            del f[how[3:]]


@pytest.mark.parametrize("how, reason", [
    ("int8", "'mel' is int8"), ("1-D", r"'mel' is float16 \(\d+,\)"), ("unordered", "not ascending"),
    ("last", "the last offset"), ("no mel", "no 'mel'"), ("no offset", "no 'offset'"),
    ("no track_id", "no 'track_id'")])
def test_a_bad_shard_is_refused_naming_the_file(toy, tmp_path, capsys, how, reason, checkpoint):
    from mtt.formats.mel_store import MelStore
    shard = tmp_path / "bad.h5"
    shard.write_bytes((toy / "labeled.h5").read_bytes())
    _tamper(shard, how)
    with pytest.raises(ValueError, match=reason) as error:
        MelStore([shard])
    assert str(error.value).startswith(str(shard)) and "\n" not in str(error.value)
    code = main(["evaluate", "--checkpoint", str(checkpoint), "--tracks", str(toy / "test.tsv"),
                 "--tags", str(toy / "tags.txt"), "--mels", str(shard),
                 "--out", str(tmp_path / "eval"), "--device", "cpu"])
    assert code == 2
    assert_one_clear_line(capsys.readouterr().err, shard)
    assert not (tmp_path / "eval" / "metrics.json").exists()


def _bad_checkpoint(path, how, checkpoint):
    payload = torch.load(checkpoint, weights_only=True)
    state = payload["state_dict"]
    if how == "shapes":
        state["mlp_head.1.weight"] = torch.zeros(3, 3)
    elif how == "missing layer":
        del state["mlp_head.1.weight"]
    elif how == "no state_dict":
        del payload["state_dict"]
    elif how == "fewer tags":
        payload["tags"] = payload["tags"][:2]
    elif how == "heads":
        payload["config"]["heads"] = 3
    elif how == "published missing layer":
        payload = {f"network.{k}": v for k, v in state.items() if "frontend" not in k}
    torch.save(payload, path)


@pytest.mark.parametrize("how, reason", [
    ("shapes", "mlp_head.1.weight"), ("missing layer", "missing"),
    ("no state_dict", "'state_dict'"), ("fewer tags", "2 tag names for a model with 4"),
    ("heads", "not divisible by heads 3"), ("published missing layer", "inconsistent")])
def test_a_bad_checkpoint_is_one_line_naming_the_file(tmp_path, checkpoint, how, reason):
    from mtt.checkpoint import load_checkpoint
    path = tmp_path / "bad.ckpt"
    _bad_checkpoint(path, how, checkpoint)
    with pytest.raises(ValueError, match=reason) as error:
        load_checkpoint(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)


def test_width_not_divisible_by_heads_is_refused_by_mtt_train(toy, tmp_path, capsys):
    args = train_args(toy, tmp_path / "run", "--max-epochs", "1")
    args[args.index("--heads") + 1] = "3"
    assert main(args) == 2
    assert "width 16 is not divisible by heads 3" in assert_one_clear_line(capsys.readouterr().err)


# ---------------------------------------------------------------------- strict TSVs

@pytest.mark.parametrize("row, fields", [("t1\tA\tx.mp3\trock\textra", 5), ("t1\tA\tx.mp3", 3)])
def test_a_row_with_the_wrong_number_of_fields_names_the_line(tmp_path, row, fields):
    from mtt.formats.split_folder import read_split
    from mtt.prepare.preprocess import UsageError, select_tracks
    tsv = tmp_path / "tracks.tsv"
    tsv.write_text(f"track_id\tartist_id\tpath\ttags\n{row}\nt2\tB\ty.mp3\tjazz\n")
    with pytest.raises(ValueError, match=f"tracks.tsv: line 2 has {fields} fields, the header has 4"):
        read_split(tsv, TOY_TAGS)
    with pytest.raises(UsageError, match=f"line 2 has {fields} fields"):
        select_tracks(tsv)


def test_a_well_formed_tsv_reads_as_text(tmp_path):
    from mtt.formats.split_folder import read_split
    from mtt.prepare.preprocess import select_tracks
    tsv = tmp_path / "tracks.tsv"
    tsv.write_text("track_id\tartist_id\tpath\ttags\nNA\tA\tx.mp3\t\r\n007\tB\ty.mp3\tlow;high\n\n")
    ids, labels = read_split(tsv, TOY_TAGS)
    assert ids == ["NA", "007"] and labels.tolist() == [[0, 0, 0, 0], [1, 0, 1, 0]]
    assert list(select_tracks(tsv)["path"]) == ["x.mp3", "y.mp3"]


# ------------------------------------------------------------------ preprocess faults

def _clip_tracks(tmp_path, audio_dir, copies):
    import pandas as pd
    rows = [(f"T{i}_{k}", name) for k in range(copies) for i, name in enumerate(sorted(REAL_CLIPS))]
    tracks = tmp_path / "tracks.tsv"
    pd.DataFrame(rows, columns=["track_id", "path"]).to_csv(tracks, sep="\t", index=False)
    return tracks


@pytest.fixture
def tiny_tmpfs(tmp_path):
    import subprocess
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


@pytest.mark.slow
def test_disk_full_during_preprocess_exits_1_with_one_line(tmp_path, audio_dir, tiny_tmpfs):
    import subprocess
    import sys
    tracks = _clip_tracks(tmp_path, audio_dir, 3)
    out = tiny_tmpfs / "shard.h5"
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "mtt.cli", "preprocess", "--audio-root",
                               str(audio_dir), "--tracks", str(tracks), "--out", str(out),
                               "--failures", str(tiny_tmpfs / "failed.tsv"), "--workers", "1"],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 1, done.stderr[-2000:]
        assert_one_clear_line(done.stderr, out)
        assert not out.exists()


def _children(pid):
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_killed_preprocess_leaves_no_worker_running(tmp_path, audio_dir, sig):
    import signal
    import subprocess
    import sys
    import time
    tracks = _clip_tracks(tmp_path, audio_dir, 40)
    process = subprocess.Popen([sys.executable, "-m", "mtt.cli", "preprocess", "--audio-root",
                                str(audio_dir), "--tracks", str(tracks),
                                "--out", str(tmp_path / "shard.h5"),
                                "--failures", str(tmp_path / "failed.tsv"), "--workers", "2"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    workers = []
    while time.time() < deadline and len(workers) < 2 and process.poll() is None:
        workers = _children(process.pid)
        time.sleep(0.05)
    assert len(workers) >= 2, "no workers started"
    process.send_signal(getattr(signal, sig))
    process.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        time.sleep(0.1)
    alive = [w for w in workers if Path(f"/proc/{w}").exists()
             and "Z" not in (Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[:1])]
    assert not alive, f"workers {alive} outlived the parent"
    assert not (tmp_path / "shard.h5").exists()


def _tracks_of(path, clips, copies):
    import pandas as pd
    rows = [(f"{path.stem}{k}_{i}", name) for k in range(copies) for i, name in enumerate(clips)]
    pd.DataFrame(rows, columns=["track_id", "path"]).to_csv(path, sep="\t", index=False)
    return path


@pytest.mark.slow
def test_two_concurrent_mtt_preprocess_runs_publish_one_whole_shard(tmp_path, audio_dir):
    """Two `mtt preprocess` on one --out at the same time, from different track lists (so the
    shards differ): both exit 0, and the shard in place is one run's complete shard, byte for
    byte, which MelStore opens and validates."""
    import subprocess
    import sys
    import time
    from mtt.formats.mel_store import MelStore
    clips = ["TRWJAZW128F42760DD_test.mp3", "gtzan_country00000.wav",
             "mtat_joram-moments_of_clarity-08-solipsism-59-88.mp3", "brahms_hungarian_dance_5.ogg"]
    tracks = [_tracks_of(tmp_path / "a.tsv", clips[:2], 10),
              _tracks_of(tmp_path / "b.tsv", clips[2:], 6)]
    whole = {}  # each run alone: the two shards the race may publish
    for tsv in tracks:
        shard = tsv.with_suffix(".h5")
        assert main(["preprocess", "--audio-root", str(audio_dir), "--tracks", str(tsv), "--out",
                     str(shard), "--failures", str(tsv.with_suffix(".failed")),
                     "--workers", "1"]) == 0
        whole[shard.read_bytes()] = len(MelStore(shard))
    out, failed = tmp_path / "race" / "shard.h5", tmp_path / "race" / "failed.tsv"
    out.parent.mkdir()
    for _attempt in range(3):  # until both runs were writing at once
        out.unlink(missing_ok=True)
        logs = [tmp_path / f"{tsv.stem}.log" for tsv in tracks]
        jobs = [subprocess.Popen([sys.executable, "-m", "mtt.cli", "preprocess", "--audio-root",
                                  str(audio_dir), "--tracks", str(tsv), "--out", str(out),
                                  "--failures", str(failed), "--workers", "1"],
                                 stderr=log.open("w"), env={**os.environ, "OMP_NUM_THREADS": "1"})
                for tsv, log in zip(tracks, logs)]
        writing_at_once = 0
        while any(job.poll() is None for job in jobs):
            writing_at_once = max(writing_at_once, len(list(out.parent.glob(".shard.h5.*"))))
            time.sleep(0.005)
        for job, log in zip(jobs, logs):
            assert job.wait() == 0, log.read_text()[-2000:]
            assert f"songs in {out}; 0 failures" in log.read_text()
        data = out.read_bytes()
        assert data in whole, "the published shard is neither run's complete shard"
        assert len(MelStore(out)) == whole[data]
        assert failed.read_text() == "track_id\tpath\treason\n"
        assert sorted(p.name for p in out.parent.iterdir()) == ["failed.tsv", "shard.h5"]
        if writing_at_once == 2:
            break
    else:
        pytest.fail("in three tries the two runs never wrote at the same time")


# ------------------------------------------------------------- config and CLI agree

@pytest.mark.parametrize("fractions", [["0.5", "0.2", "0.2"], ["0.7", "0.3", "0.3"]])
def test_fractions_that_do_not_sum_to_1_are_refused(tmp_path, capsys, fractions):
    catalogue = tmp_path / "catalogue.tsv"
    catalogue.write_text("track_id\tartist_id\tpath\ttags\n" + "".join(
        f"t{i}\ta{i % 7}\tx/t{i}.ogg\trock\n" for i in range(30)))
    assert main(["split", "--format", "tsv", "--metadata", str(catalogue), "--fractions",
                 *fractions, "--out", str(tmp_path / "s")]) == 2
    assert "they must sum to 1" in assert_one_clear_line(capsys.readouterr().err)
    assert not (tmp_path / "s").exists()


def test_threshold_mode_without_a_usable_threshold_fails_at_start(toy, tmp_path, capsys):
    args = train_args(toy, tmp_path / "run", "--pseudo-labels", str(tmp_path / "p.h5"),
                      "--unlabeled-mels", str(toy / "labeled.h5"), "--pseudo-mode", "threshold")
    assert main(args) == 2
    line = assert_one_clear_line(capsys.readouterr().err)
    assert "--pseudo-threshold in (0.5, 1), not 0.5" in line
    assert not (tmp_path / "run").exists()


def test_a_new_audio_root_rebuilds_the_shard(tmp_path, audio_dir, capsys):
    import shutil
    name = sorted(REAL_CLIPS)[0]
    tracks = tmp_path / "tracks.tsv"
    tracks.write_text(f"track_id\tpath\nT0\t{name}\n")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(audio_dir / name, other / name)
    command = ["preprocess", "--tracks", str(tracks), "--out", str(tmp_path / "s.h5"),
               "--failures", str(tmp_path / "f.tsv"), "--audio-root"]
    assert main(command + [str(audio_dir)]) == 0
    assert main(command + [str(audio_dir)]) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert main(command + [str(other)]) == 0
    assert "nothing to do" not in capsys.readouterr().err
