"""Several training processes (DDP) on the CPU with gloo: each rank's own random streams, saved
and restored per rank; validation shared across the ranks; resuming exactly, or with another
number of processes."""
import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from conftest import make_toy, read_history, train_args
from mtt.cli import main


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def pseudo_labels(toy, tmp_path_factory):
    teacher = tmp_path_factory.mktemp("teacher")
    assert main(train_args(toy, teacher, "--max-epochs", "2", "--patience", "50")) == 0
    out = tmp_path_factory.mktemp("pl") / "unlabeled.labels.h5"
    assert main(["pseudo-label", "--checkpoint", str(teacher / "best.ckpt"), "--mels",
                 str(toy / "unlabeled.h5"), "--out", str(out), "--chunks", "2",
                 "--device", "cpu"]) == 0
    return out


def _trainer(args):
    from mtt.config import TrainConfig
    from mtt.training.command import TrainFiles, Trainer, add_arguments
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    options = parser.parse_args(args[1:])
    return Trainer(TrainConfig.from_args(options), TrainFiles.from_args(options))


def _rank(rank, world, port, args, results):
    """One rank of a 2-process group: its validation scores and a training-mode forward pass
    (dropout) of the initial weights on a fixed input."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    trainer = _trainer(args)
    valid = trainer.validate()
    x = torch.from_numpy(np.random.default_rng(0).normal(-40, 10, (4, 128, 44)).astype("f4"))
    trainer.model.train()
    out = trainer.model(x).detach()
    torch.save({"valid": valid, "train_forward": out}, Path(results) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ranks_draw_their_own_dropout_masks_and_share_validation(toy, tmp_path):
    """Every rank starts from the same weights but draws its own dropout / drop-path masks; each
    rank validates a share of the songs and all get the scores of one process."""
    args = train_args(toy, tmp_path / "run", "--drop-path", "0.1")
    mp.spawn(_rank, args=(2, _free_port(), args, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert not torch.allclose(ranks[0]["train_forward"], ranks[1]["train_forward"])
    alone = _trainer(train_args(toy, tmp_path / "alone", "--drop-path", "0.1")).validate()
    for rank in ranks:
        assert rank["valid"].keys() == alone.keys()
        for key in alone:
            assert rank["valid"][key] == pytest.approx(alone[key], rel=1e-6, abs=1e-7), key


def test_validation_shares_cover_the_songs_once_in_order():
    from mtt.training.processes import validation_share
    for n in (0, 1, 5, 24):
        for world in (1, 2, 3, 4):
            shares = [validation_share(n, r, world) for r in range(world)]
            assert [i for share in shares for i in share] == list(range(n))
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


def _torchrun(*args, **kwargs):
    torchrun = Path(sys.executable).with_name("torchrun")
    return [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "mtt.cli", *args]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _children(pid: int) -> list:
    """The process ids whose parent is `pid` (from /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _weights(folder: Path, part: str) -> dict:
    return torch.load(folder / "last.ckpt", weights_only=False)[part]


def _history(folder: Path) -> list:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in read_history(folder)]


@pytest.mark.slow
def test_two_process_run_killed_and_resumed_equals_uninterrupted(toy, pseudo_labels, tmp_path):
    """torchrun with 2 gloo processes, a student with every noise, dropout and drop-path: killed
    (the whole process group, SIGKILL) after 2 of 4 epochs and rerun, it ends with the history
    and weights of an uninterrupted run, each rank's streams restored from last.ckpt; the
    finished run then goes on with 1 process, saying what it could not restore."""
    student = ["--pseudo-labels", str(pseudo_labels), "--unlabeled-mels",
               str(toy / "unlabeled.h5"), "--drop-path", "0.1", "--max-epochs", "4",
               "--patience", "50", "--steps-per-epoch", "8", "--ema-decay", "0.9",
               "--noise", "specaugment,gain,mixup,shift", "--noise-prob", "0.5"]
    straight = tmp_path / "straight"
    done = subprocess.run(_torchrun(*train_args(toy, straight, *student)), env=ENV,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    killed = tmp_path / "killed"
    process = subprocess.Popen(_torchrun(*train_args(toy, killed, *student)), env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            if (killed / "history.csv").exists() and len(read_history(killed)) >= 2:
                break
            time.sleep(0.02)
        assert process.poll() is None, "the run finished before it could be killed"
    finally:  # the ranks first (torchrun starts each in a session of its own), then torchrun
        for pid in _children(process.pid) + [process.pid]:
            os.kill(pid, signal.SIGKILL)
        process.wait()
    assert 2 <= len(read_history(killed)) < 4
    resumed = subprocess.run(_torchrun(*train_args(toy, killed, *student)), env=ENV,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr and "process(es)" not in resumed.stderr

    assert _history(killed) == _history(straight)
    for part in ("model", "ema"):
        a, b = _weights(straight, part), _weights(killed, part)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (part, key)
    states = torch.load(straight / "last.ckpt", weights_only=True)["rng"]["ranks"]
    assert len(states) == 2 and states[0]["noise"] != states[1]["noise"]
    assert not torch.equal(states[0]["torch"], states[1]["torch"])

    # another process count: one process resumes the 2-process run, and says so
    more = [a if a != "4" else "5" for a in student]
    alone = subprocess.run([sys.executable, "-m", "mtt.cli", *train_args(toy, straight, *more)],
                           env=ENV, capture_output=True, text=True, timeout=600)
    assert alone.returncode == 0, alone.stderr[-3000:]
    assert "saved by 2 process(es), resumed with 1" in alone.stderr
    assert len(read_history(straight)) == 5


def test_a_process_without_a_saved_state_starts_fresh_streams_and_says_so():
    """restore_rng: a rank the saved run did not have is seeded from (seed, rank, epoch); an
    older file's list of CUDA states is no IndexError on the CPU."""
    from mtt.training import resume
    from mtt.training.noise import MelNoise
    noise = MelNoise(seed=[0, 0])
    saved = {"ranks": [resume.rng_state(noise)]}
    other = MelNoise(seed=[0, 1])
    notes = resume.restore_rng(saved, noise=other, rank=1, world=2, seed=0, epoch=3)
    assert "saved by 1 process(es), resumed with 2" in notes[0]
    first = torch.rand(3)
    draw = other.rng.random()
    resume.restore_rng(saved, noise=other, rank=1, world=2, seed=0, epoch=3)
    assert torch.equal(torch.rand(3), first) and other.rng.random() == draw  # deterministic
    assert resume.restore_rng(saved, noise=other, rank=0, world=1) == []
    assert other.rng_state() == noise.rng_state()
    legacy = {**resume.rng_state(noise), "cuda": [torch.zeros(4, dtype=torch.uint8)]}
    assert resume.restore_rng(legacy, noise=other, rank=0, world=1) == []
