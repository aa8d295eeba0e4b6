"""Shared test fixtures and helpers. Real material lives in ../shared (read-only).

Helpers used by more than one test file live here (test files import them with
`from conftest import ...`), never in another test file:

- paths: `REPO`, `SHARED`, `SNAKEFILE`, `TINY`, `TINY_RESNET`, `VENV_BIN`;
- the workflow: `snakemake()` (one Snakemake run on this project), `snakemake_env()`,
  `planned_jobs()` (the job counts of a dry run);
- a learnable toy dataset for `mtt train` and friends: `make_toy()`, `TOY_TAGS`, `train_args()`,
  `write_split()`, `write_shard()`, `read_history()`;
- audio: `REAL_CLIPS` (the clips in ../shared/audio), `sine()`, `write_bad_files()`;
- `mtt_tag()`: `mtt tag` in a subprocess.

Tiers: `pytest -m "not slow"` is the inner loop (under 2 minutes on 2 cores), with a fast test
for every module; plain `pytest` runs every tier (what CI runs). `slow` marks what takes longer:
the workflow end to end, torchrun, SLURM (also `slurm`), trainings of several epochs, real clips
through `mtt tag` and the fidelity runs on the reference clip, and all but one or two cases of
each kind of dry-run check (`slow_case`).
"""
import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from mtt.checkpoint import save_checkpoint
from mtt.formats.mel_shard import ShardWriter, shard_attributes
from mtt.frontend import SAMPLE_RATE
from mtt.models import build_model

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SNAKEFILE = REPO / "Snakefile"
TINY = REPO / "tests" / "tiny.yaml"
TINY_RESNET = REPO / "tests" / "tiny_resnet.yaml"  # with tiny.yaml: the ResNet family on too
VENV_BIN = Path(sys.executable).parent


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


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny untrained transformer checkpoint over TOY_TAGS, trained on 44-frame crops."""
    torch.manual_seed(0)
    model = build_model("transformer", len(TOY_TAGS), conv_channels=4, width=16, layers=1, heads=2)
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    save_checkpoint(path, model, TOY_TAGS, meta={"training": {"crop_frames": 44}})
    return path


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error" in line.lower()]


def assert_one_clear_line(err: str, *names):
    """A refusal as users should see it: no traceback, one error line, naming each of `names`."""
    assert "Traceback" not in err, err
    errors = error_lines(err)
    assert len(errors) == 1, err
    for name in names:
        assert str(name) in errors[0], errors[0]
    return errors[0]


def slow_case(*values):
    """A parametrize case for the slow tier only: the cases left in the fast tier keep each kind
    of check there, the others run with the full suite."""
    return pytest.param(*values, marks=pytest.mark.slow)


# ---- the workflow ------------------------------------------------------------------------

def snakemake_env():
    """The environment the workflow's jobs need: this interpreter's `python` first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def snakemake(*args, workdir, timeout=900, check=True):
    command = [str(VENV_BIN / "snakemake"), "-s", str(SNAKEFILE), "--directory", str(workdir),
               *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, env=snakemake_env(),
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


# ---- a real one-node SLURM (tests/test_slurm.py, tests/test_slurm_ddp.py) ------------------

SLURM_SCRIPTS = REPO / "tests" / "slurm"


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """munged, slurmctld and slurmd started for one test module (tests/slurm/start_slurm.sh
    installs slurm-wlm and munge with apt-get when missing; needs root), stopped after it."""
    if os.geteuid() != 0:
        pytest.skip("starting SLURM daemons and writing /etc/slurm needs root")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and there is no apt-get to install it")
    state = tmp_path_factory.mktemp("slurm_state")
    # finished jobs stay visible for an hour, so the test can read every job's request
    env = {**os.environ, "MTT_SLURM_MIN_JOB_AGE": "3600"}
    start = subprocess.run(["bash", str(SLURM_SCRIPTS / "start_slurm.sh"), str(state)],
                           capture_output=True, text=True, timeout=900, env=env)
    try:
        assert start.returncode == 0, f"SLURM did not start:\n{start.stdout}\n{start.stderr}"
        yield state
    finally:
        subprocess.run(["bash", str(SLURM_SCRIPTS / "stop_slurm.sh"), str(state)], timeout=120)


def snakemake_through_slurm(workdir, limit_s, configfiles, *extra):
    """The workflow as a user types it in the repository root, `snakemake --profile slurm`, on
    the test cluster, bounded by `limit_s` (a broken status check would otherwise wait forever);
    its exit code is checked."""
    command = [
        "timeout", "-k", "30", str(limit_s),
        str(VENV_BIN / "snakemake"), "--profile", "slurm", "--directory", str(workdir),
        "--configfile", *map(str, configfiles),
        # test-cluster overrides: no accounting (squeue + MinJobAge), quick status checks
        "--slurm-status-command", "squeue",
        "--slurm-init-seconds-before-status-checks", "2",
        "--seconds-between-status-checks", "2",
        "--slurm-keep-successful-logs",
        "--latency-wait", "5",
        "--jobs", "4",
        *extra,
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=snakemake_env(),
                            timeout=limit_s + 60, cwd=REPO)
    log = result.stdout + result.stderr
    assert result.returncode == 0, f"exit {result.returncode}:\n{log[-8000:]}"
    return log


def slurm_jobs() -> dict:
    """rule -> the `scontrol show job` records of its jobs on the test cluster."""
    lines = subprocess.run(["scontrol", "show", "job", "--oneliner"], capture_output=True,
                           text=True, check=True).stdout.splitlines()
    jobs = {}
    for line in lines:
        rule = re.search(r"Comment=rule_(\w+?)(_wildcards_\S*)?(\s|$)", line)
        if rule:
            jobs.setdefault(rule.group(1), []).append(line)
    return jobs


def planned_jobs(output: str) -> dict:
    """The 'Job stats' table of a dry run: rule -> number of jobs."""
    match = re.search(r"^job\s+count\n-+\s+-+\n(.*?)^total\s+\d+", output, re.M | re.S)
    if match is None:
        return {}
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", match.group(1),
                                                           re.M)}


# ---- a tiny learnable toy dataset for `mtt train`, `mtt evaluate`, `mtt pseudo-label` ------

TOY_TAGS = ["low", "mid", "high", "pulse"]
TINY_MODEL = ["--conv-channels", "4", "--width", "16", "--layers", "1", "--heads", "2",
              "--crop-seconds", "1"]  # 1 s = 44 frames


def toy_song(rng, tags_on, frames):
    """Noise around -60 dB; tag 0/1/2 raise a band, tag 3 adds a 4-frame on/off pulse."""
    mel = rng.normal(-60.0, 6.0, size=(frames, 128)).astype(np.float32)
    for tag, (lo, hi) in enumerate([(5, 25), (50, 70), (100, 120)]):
        if tags_on[tag]:
            mel[:, lo:hi] += 30.0
    if tags_on[3]:
        mel[(np.arange(frames) // 4) % 2 == 0, :] += 15.0
    return mel


def write_shard(path, songs):
    """songs: list of (track_id, (frames, 128) mel) -> a real mel shard via the shard writer."""
    writer = ShardWriter(Path(path), shard_attributes(1.0, "toy"))
    for track_id, mel in songs:
        writer.add(track_id, mel.astype(np.float16), mel.shape[0] * 512)
    writer.close()


def write_split(path, rows, tags=TOY_TAGS):
    with open(path, "w") as f:
        f.write("track_id\tartist_id\tpath\ttags\n")
        for track_id, labels in rows:
            joined = ";".join(t for t, on in zip(tags, labels) if on)
            f.write(f"{track_id}\tA{track_id}\t{track_id}.mp3\t{joined}\n")


def make_toy(root: Path, n_train=48, n_valid=24, n_test=24, n_unlabeled=48, seed=0):
    """A toy dataset folder: tags.txt, {train,valid,test}.tsv, labeled.h5, unlabeled.h5."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "tags.txt").write_text("\n".join(TOY_TAGS) + "\n")
    songs, unlabeled = [], []
    counts = {"train": n_train, "valid": n_valid, "test": n_test}
    for split, count in counts.items():
        rows = []
        for i in range(count):
            labels = rng.random(len(TOY_TAGS)) < 0.4
            track_id = f"{split}{i:03d}"
            songs.append((track_id, toy_song(rng, labels, int(rng.integers(30, 140)))))
            rows.append((track_id, labels))
        write_split(root / f"{split}.tsv", rows)
    for i in range(n_unlabeled):
        labels = rng.random(len(TOY_TAGS)) < 0.4
        unlabeled.append((f"unl{i:03d}", toy_song(rng, labels, int(rng.integers(30, 140)))))
    write_shard(root / "labeled.h5", songs)
    write_shard(root / "unlabeled.h5", unlabeled)
    return root


def train_args(toy: Path, out: Path, *extra):
    return ["train", "--train", str(toy / "train.tsv"), "--valid", str(toy / "valid.tsv"),
            "--tags", str(toy / "tags.txt"), "--mels", str(toy / "labeled.h5"),
            "--out", str(out), "--batch-size", "8", "--lr", "3e-3", "--valid-chunks", "2",
            "--device", "cpu", *TINY_MODEL, *extra]


def read_history(folder: Path):
    with open(folder / "history.csv") as f:
        return list(csv.DictReader(f))


# ---- audio -------------------------------------------------------------------------------

# real clips in shared/audio and their approximate duration in seconds
REAL_CLIPS = {
    "TRWJAZW128F42760DD_test.mp3": 29.9,
    "mtat_joram-moments_of_clarity-08-solipsism-59-88.mp3": 29.1,
    "gtzan_country00000.wav": 30.0,
    "brahms_hungarian_dance_5.ogg": 45.8,
    "karissa_hobbs_lets_go_fishin.ogg": 133.0,
}


def sine(freq, rate, seconds, channels=1):
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.repeat(wave[:, None], channels, axis=1) if channels > 1 else wave


def write_bad_files(folder, audio_dir):
    """Files that are not usable audio, with a word their failure reason must contain."""
    mp3 = (audio_dir / "TRWJAZW128F42760DD_test.mp3").read_bytes()
    wav = (audio_dir / "gtzan_country00000.wav").read_bytes()
    (folder / "text.mp3").write_text("this is not an MP3 file\n" * 50)
    (folder / "garbage.ogg").write_bytes(np.random.default_rng(0).bytes(20_000))
    (folder / "truncated.mp3").write_bytes(mp3[:300])
    (folder / "truncated.wav").write_bytes(wav[:30])
    (folder / "empty.wav").write_bytes(b"")
    soundfile.write(folder / "nan.wav", np.array([0.1, np.nan, -0.1] * 5000, np.float32),
                    SAMPLE_RATE, subtype="FLOAT")
    soundfile.write(folder / "inf.wav", np.array([0.1, np.inf] * 20000, np.float32),
                    SAMPLE_RATE, subtype="FLOAT")
    (folder / "a_folder.wav").mkdir()
    return {
        "text.mp3": "not readable", "garbage.ogg": "not readable", "truncated.mp3": "not readable",
        "truncated.wav": "not readable", "empty.wav": "not readable", "nan.wav": "non-finite",
        "inf.wav": "non-finite", "a_folder.wav": "not a regular file", "missing.mp3": "not found",
    }


def mtt_tag(*args):
    """`mtt tag ARGS` in a subprocess (its stdout, stderr and exit code)."""
    return subprocess.run([sys.executable, "-m", "mtt.cli", "tag", *map(str, args)],
                          capture_output=True, text=True, timeout=300)
