"""`mtt train` on a tiny learnable toy (conftest's `make_toy`): teacher, students, resnet,
resume after SIGKILL."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TOY_TAGS, make_toy, read_history, train_args
from mtt.checkpoint import load_checkpoint
from mtt.cli import main


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def teacher(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher")
    assert main(train_args(toy, out, "--max-epochs", "6", "--patience", "50")) == 0
    return out


@pytest.mark.slow
def test_teacher_learns_the_toy_and_writes_its_outputs(teacher):
    history = read_history(teacher)
    assert [int(r["epoch"]) for r in history] == list(range(1, 7))
    assert list(history[0]) == ["epoch", "train_loss", "valid_loss", "valid_roc_auc",
                                "valid_pr_auc", "lr", "seconds"]
    train_loss = [float(r["train_loss"]) for r in history]
    valid_loss = [float(r["valid_loss"]) for r in history]
    assert train_loss[-1] < 0.85 * train_loss[0]
    assert min(valid_loss) < valid_loss[0]
    assert float(history[-1]["valid_roc_auc"]) > 0.75
    model, info = load_checkpoint(teacher / "best.ckpt")
    assert info["tags"] == TOY_TAGS and info["config"]["width"] == 16
    best_epoch = int(np.argmin(valid_loss)) + 1
    assert info["meta"]["best_epoch"] == best_epoch
    assert len(info["meta"]["history"]) == 6 and "max-epochs" in info["meta"]["stopped"]
    assert info["meta"]["training"]["crop_frames"] == 44
    assert (teacher / "last.ckpt").exists()


@pytest.mark.slow
def test_finished_run_is_left_alone(toy, teacher):
    before = {p.name: p.stat().st_mtime_ns for p in teacher.iterdir()}
    assert main(train_args(toy, teacher, "--max-epochs", "6", "--patience", "50")) == 0
    assert {p.name: p.stat().st_mtime_ns for p in teacher.iterdir()} == before


@pytest.mark.slow
def test_raising_the_epoch_limit_continues_a_finished_run(toy, teacher, tmp_path):
    out = tmp_path / "more"
    out.mkdir()
    for name in ("best.ckpt", "last.ckpt", "history.csv"):
        (out / name).write_bytes((teacher / name).read_bytes())
    assert main(train_args(toy, out, "--max-epochs", "7", "--patience", "50")) == 0
    assert len(read_history(out)) == 7


@pytest.mark.slow
def test_a_last_checkpoint_from_before_newer_options_still_resumes(toy, teacher, tmp_path):
    """last.ckpt files written before --lr-decay / --label-blend existed ran with their
    defaults, so they resume as runs of the same settings (their scheduler: a LambdaLR's state,
    without decay counters)."""
    out = tmp_path / "older"
    out.mkdir()
    for name in ("best.ckpt", "history.csv"):
        (out / name).write_bytes((teacher / name).read_bytes())
    payload = torch.load(teacher / "last.ckpt", weights_only=False)
    for key in ("lr_decay", "lr_patience", "label_blend", "ema_decay"):
        del payload["identity"][key]
    payload["scheduler"] = _lambda_lr_state(payload["scheduler"])
    torch.save(payload, out / "last.ckpt")
    assert main(train_args(toy, out, "--max-epochs", "7", "--patience", "50")) == 0
    assert len(read_history(out)) == 7


def _lambda_lr_state(scheduler: dict) -> dict:
    """A `WarmupPlateauLR` state as the LambdaLR of earlier versions saved it."""
    older = {k: v for k, v in scheduler.items()
             if k not in ("warmup", "decay", "patience", "scale", "plateau")}
    return {**older, "lr_lambdas": [None]}


@pytest.mark.slow
def test_a_last_checkpoint_with_the_decay_in_its_run_state_resumes_the_same_run(toy, tmp_path):
    """last.ckpt files of earlier versions kept the plateau decay in the run state (`lr_scale`,
    `plateau`) beside a LambdaLR's state; resumed, they end as the uninterrupted run."""
    options = ["--patience", "50", "--steps-per-epoch", "2", "--lr", "0.03", "--lr-decay", "0.5",
               "--lr-patience", "1", "--warmup-steps", "3"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(train_args(toy, straight, "--max-epochs", "5", *options)) == 0
    assert main(train_args(toy, resumed, "--max-epochs", "3", *options)) == 0
    payload = torch.load(resumed / "last.ckpt", weights_only=False)
    scheduler = payload["scheduler"]
    assert scheduler["scale"] < 1, "no decay in 3 epochs; the test needs a run with one"
    payload["state"].update(lr_scale=scheduler["scale"], plateau=scheduler["plateau"])
    payload["scheduler"] = _lambda_lr_state(scheduler)
    torch.save(payload, resumed / "last.ckpt")
    assert main(train_args(toy, resumed, "--max-epochs", "5", *options)) == 0
    columns = ("train_loss", "valid_loss", "lr")
    assert ([[row[c] for c in columns] for row in read_history(resumed)]
            == [[row[c] for c in columns] for row in read_history(straight)])
    a, b = (torch.load(p / "best.ckpt", weights_only=True)["state_dict"]
            for p in (straight, resumed))
    assert all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.slow
def test_fresh_unless_interrupted_resumes_only_an_unfinished_run(toy, tmp_path, capsys):
    """The workflow's mode: resume an interrupted run; start over after a finished one or when
    an input file changed (on its own copy of the toy, whose training split it rewrites)."""
    own = tmp_path / "toy"
    shutil.copytree(toy, own)
    out = tmp_path / "workflow"
    flag = "--fresh-unless-interrupted"
    assert main(train_args(own, out, flag, "--max-epochs", "1", "--patience", "50")) == 0
    first_epoch = read_history(out)[0]
    capsys.readouterr()
    # 1 epoch done, limit 2: unfinished, so it resumes
    assert main(train_args(own, out, flag, "--max-epochs", "2", "--patience", "50")) == 0
    assert len(read_history(out)) == 2
    assert "starting over" not in capsys.readouterr().err
    # finished at 2: a rerun (Snakemake's --forcerun) trains again from epoch 1
    assert main(train_args(own, out, flag, "--max-epochs", "1", "--patience", "50")) == 0
    assert "left by a finished run" in capsys.readouterr().err
    history = read_history(out)
    assert len(history) == 1
    assert history[0]["train_loss"] == first_epoch["train_loss"]
    # unfinished (1 of 2) but the training split was rewritten: starts over
    split = own / "train.tsv"
    split.write_bytes(split.read_bytes())
    os.utime(split, ns=(split.stat().st_atime_ns, split.stat().st_mtime_ns + 10**9))
    assert main(train_args(own, out, flag, "--max-epochs", "2", "--patience", "50")) == 0
    assert "left by a run on other input files" in capsys.readouterr().err
    assert len(read_history(out)) == 2


@pytest.mark.slow
def test_outputs_deleted_after_a_finished_run_are_restored(toy, teacher, tmp_path):
    """A workflow manager may delete best.ckpt / history.csv (e.g. after a failed job); the
    resumable state in last.ckpt brings them back without retraining."""
    out = tmp_path / "restored"
    out.mkdir()
    (out / "last.ckpt").write_bytes((teacher / "last.ckpt").read_bytes())
    assert main(train_args(toy, out, "--max-epochs", "6", "--patience", "50")) == 0
    assert read_history(out) == read_history(teacher)
    restored, original = (torch.load(p / "best.ckpt", weights_only=True)
                          for p in (out, teacher))
    assert restored["meta"]["best_epoch"] == original["meta"]["best_epoch"]
    for key, value in original["state_dict"].items():
        assert torch.equal(restored["state_dict"][key], value), key


@pytest.mark.slow
def test_other_settings_in_the_same_folder_are_refused(toy, teacher, capsys):
    assert main(train_args(toy, teacher, "--max-epochs", "8", "--seed", "5")) == 2
    assert "seed" in capsys.readouterr().err


@pytest.mark.slow
def test_early_stopping_counts_epochs_without_improvement(toy, tmp_path):
    """Training stops after --patience epochs in a row without a lower validation loss, and
    best.ckpt keeps the best epoch. With lr 0 the parameters never change, but the validation
    loss still may: BatchNorm's running statistics (buffers) move with every training batch."""
    out = tmp_path / "stop"
    patience = 2
    assert main(train_args(toy, out, "--lr", "0", "--max-epochs", "20", "--patience",
                           str(patience), "--steps-per-epoch", "1")) == 0
    losses = [float(row["valid_loss"]) for row in read_history(out)]
    best_model, info = load_checkpoint(out / "best.ckpt")
    best = info["meta"]["best_epoch"]
    assert "early stop" in info["meta"]["stopped"]
    assert len(losses) == best + patience < 20
    assert losses[best - 1] == min(losses)  # no later epoch was better
    # lr 0: every parameter of the last epoch is that of the best one; buffers have moved
    last = torch.load(out / "last.ckpt", weights_only=True)["model"]
    kept = best_model.state_dict()
    parameters = {name for name, _ in best_model.named_parameters()}
    buffers = last.keys() - parameters
    assert parameters <= last.keys() == kept.keys()
    for name in parameters:
        assert torch.equal(last[name], kept[name]), name
    assert any(not torch.equal(last[name], kept[name]) for name in buffers)


@pytest.mark.slow
@pytest.mark.parametrize("select_by", ["valid_roc_auc", "valid_pr_auc", "valid_auc"])
def test_select_by_keeps_the_epoch_of_the_best_validation_score(toy, tmp_path, select_by):
    out = tmp_path / select_by
    assert main(train_args(toy, out, "--max-epochs", "5", "--patience", "2",
                           "--steps-per-epoch", "2", "--select-by", select_by)) == 0
    history = read_history(out)
    score = {"valid_roc_auc": lambda r: float(r["valid_roc_auc"]),
             "valid_pr_auc": lambda r: float(r["valid_pr_auc"]),
             "valid_auc": lambda r: float(r["valid_roc_auc"]) + float(r["valid_pr_auc"])}[select_by]
    best = max(history, key=lambda r: (score(r), -int(r["epoch"])))  # the first of equal ones
    _, info = load_checkpoint(out / "best.ckpt")
    assert info["meta"]["best_epoch"] == int(best["epoch"])
    assert info["meta"]["select_by"] == select_by
    stopped = info["meta"]["stopped"]
    assert ("early stop: no higher" in stopped) == (len(history) - int(best["epoch"]) >= 2)
    # the kept weights are the ones of that epoch: re-validating them gives its score
    assert info["meta"]["best_valid_loss"] == pytest.approx(float(best["valid_loss"]), abs=1e-5)


@pytest.fixture(scope="module")
def pseudo_labels(toy, teacher, tmp_path_factory):
    out = tmp_path_factory.mktemp("pl") / "unlabeled.labels.h5"
    assert main(["pseudo-label", "--checkpoint", str(teacher / "best.ckpt"), "--mels",
                 str(toy / "unlabeled.h5"), "--out", str(out), "--chunks", "2",
                 "--device", "cpu"]) == 0
    return out


@pytest.mark.slow
def test_learning_rate_decays_after_epochs_without_progress(toy, tmp_path):
    """--lr-decay F --lr-patience N: the rate is multiplied by F once N epochs in a row (counted
    from the best epoch or the last decay) brought no lower validation loss."""
    out = tmp_path / "decay"
    assert main(train_args(toy, out, "--max-epochs", "10", "--patience", "50",
                           "--steps-per-epoch", "2", "--lr", "0.03", "--lr-decay", "0.5",
                           "--lr-patience", "1")) == 0
    history = read_history(out)
    lr = [float(r["lr"]) for r in history]
    best, expected, decays = float("inf"), 0.03, 0
    for row, used in zip(history, lr):
        assert used == pytest.approx(expected)
        if float(row["valid_loss"]) < best:
            best = float(row["valid_loss"])
        else:  # patience 1: every epoch without progress halves the rate for the next one
            expected *= 0.5
            decays += 1
    assert decays >= 1, "the toy run never stalled; the test needs a run that does"


@pytest.mark.parametrize("mode, threshold", [("soft", "0.5"), ("hard", "0.5"),
                                             ("threshold", "0.7")])
@pytest.mark.slow
def test_noisy_student_trains_on_labeled_and_pseudo_labeled_songs(toy, pseudo_labels, tmp_path,
                                                                  mode, threshold, capsys):
    out = tmp_path / f"student_{mode}"
    args = train_args(toy, out, "--max-epochs", "2", "--steps-per-epoch", "3",
                      "--pseudo-labels", str(pseudo_labels),
                      "--unlabeled-mels", str(toy / "unlabeled.h5"),
                      "--pseudo-mode", mode, "--pseudo-threshold", threshold,
                      "--drop-path", "0.1", "--noise-prob", "0.5")
    assert main(args) == 0
    assert "4 labeled + 4 pseudo-labeled" in capsys.readouterr().err
    _, info = load_checkpoint(out / "best.ckpt")
    assert info["meta"]["role"] == "student"
    assert info["meta"]["training"]["noise"] == ["specaugment", "gain", "mixup", "shift"]
    assert info["config"]["drop_path"] == 0.1
    assert len(read_history(out)) == 2


@pytest.mark.slow
def test_pseudo_tag_weights_follow_the_teachers_validation_roc_auc(toy, teacher, pseudo_labels,
                                                                  tmp_path, capsys):
    """--pseudo-tag-weights teacher_valid_auc: each tag's pseudo-label loss is weighted by
    clip(2 * ROC-AUC - 1, 0, 1) of the teacher on the validation songs; the weights are the
    ones computed by hand from the teacher's validation predictions."""
    from sklearn.metrics import roc_auc_score
    from mtt.formats.split_folder import read_split
    from mtt.formats.mel_store import MelStore
    from mtt.inference.songs import checkpoint_frames, predict_songs
    from mtt.training.teacher_trust import teacher_tag_weights
    out = tmp_path / "trusting"
    checkpoint = teacher / "best.ckpt"
    args = train_args(toy, out, "--max-epochs", "1", "--steps-per-epoch", "2",
                      "--pseudo-labels", str(pseudo_labels),
                      "--unlabeled-mels", str(toy / "unlabeled.h5"),
                      "--pseudo-tag-weights", "teacher_valid_auc")
    assert main(args) == 2
    assert "--teacher-checkpoint" in capsys.readouterr().err
    assert main([*args, "--teacher-checkpoint", str(checkpoint)]) == 0
    assert "pseudo-label tag weights" in capsys.readouterr().err
    _, info = load_checkpoint(out / "best.ckpt")
    assert info["meta"]["training"]["pseudo_tag_weights"] == "teacher_valid_auc"

    tags = info["tags"]
    ids, labels = read_split(toy / "valid.tsv", tags)
    store = MelStore([toy / "labeled.h5"])
    cpu = torch.device("cpu")
    weights = teacher_tag_weights(checkpoint, tags, store, ids, labels, cpu, 2)
    model, teacher_info = load_checkpoint(checkpoint)
    probs = predict_songs(model, store, ids, cpu, chunks=2,
                          frames=checkpoint_frames(model, teacher_info))
    for j in range(len(tags)):
        positives = labels[:, j] > 0.5
        expected = (min(1.0, max(0.0, 2 * roc_auc_score(positives, probs[:, j]) - 1))
                    if 0 < positives.sum() < len(positives) else 1.0)
        assert weights[j] == pytest.approx(expected, abs=1e-6)
    assert weights.min() >= 0 and weights.max() <= 1


def test_tag_trust_weights_are_the_teachers_clipped_validation_roc_auc(toy, tmp_path):
    """mtt.training.teacher_trust alone, on an untrained tiny teacher: w = clip(2 * ROC-AUC - 1, 0, 1) of each
    tag on the validation songs (1 for a tag without positives or negatives)."""
    from sklearn.metrics import roc_auc_score
    from mtt.checkpoint import save_checkpoint
    from mtt.formats.split_folder import read_split
    from mtt.formats.mel_store import MelStore
    from mtt.models import build_model
    from mtt.inference.songs import checkpoint_frames, predict_songs
    from mtt.training.teacher_trust import teacher_tag_weights
    torch.manual_seed(0)
    checkpoint = tmp_path / "teacher.ckpt"
    save_checkpoint(checkpoint, build_model("transformer", len(TOY_TAGS), conv_channels=4,
                                            width=16, layers=1, heads=2).eval(), TOY_TAGS,
                    meta={"training": {"crop_frames": 44}})
    ids, labels = read_split(toy / "valid.tsv", TOY_TAGS)
    store = MelStore([toy / "labeled.h5"])
    cpu = torch.device("cpu")
    weights = teacher_tag_weights(checkpoint, TOY_TAGS, store, ids, labels, cpu, 2)
    model, info = load_checkpoint(checkpoint)
    probs = predict_songs(model, store, ids, cpu, chunks=2, frames=checkpoint_frames(model, info))
    for j in range(len(TOY_TAGS)):
        positives = labels[:, j] > 0.5
        expected = (min(1.0, max(0.0, 2 * roc_auc_score(positives, probs[:, j]) - 1))
                    if 0 < positives.sum() < len(positives) else 1.0)
        assert weights[j] == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError, match="tags differ"):
        teacher_tag_weights(checkpoint, TOY_TAGS[::-1], store, ids, labels, cpu, 2)
    # the teacher predicts in the run's precision (bf16 here; fp32 above)
    import mtt.training.teacher_trust
    seen = []

    def spy(*args, precision, **kwargs):
        seen.append(precision)
        return predict_songs(*args, precision=precision, **kwargs)

    mtt.training.teacher_trust.predict_songs, saved = spy, mtt.training.teacher_trust.predict_songs
    try:
        bf16 = teacher_tag_weights(checkpoint, TOY_TAGS, store, ids, labels, cpu, 2,
                                   precision="bf16")
    finally:
        mtt.training.teacher_trust.predict_songs = saved
    assert seen == ["bf16"] and np.allclose(bf16, weights, atol=0.1)


@pytest.mark.slow
def test_student_needs_the_unlabeled_mels(toy, pseudo_labels, tmp_path, capsys):
    args = train_args(toy, tmp_path / "s", "--pseudo-labels", str(pseudo_labels))
    assert main(args) == 2
    assert "--unlabeled-mels" in capsys.readouterr().err


@pytest.mark.slow
def test_label_blend_mixes_labels_with_the_teachers_predictions(toy, teacher, tmp_path, capsys):
    """--label-blend B: a labeled song's target is (1 - B) * its labels + B * the teacher's
    prediction for it, read by track ID; a training song without a prediction is an error."""
    from mtt.formats.pseudo_label_shard import read_pseudo_labels
    from mtt.formats.split_folder import read_split
    from mtt.training.data import teacher_predictions
    predictions = tmp_path / "train.labels.h5"
    assert main(["pseudo-label", "--checkpoint", str(teacher / "best.ckpt"), "--mels",
                 str(toy / "labeled.h5"), "--out", str(predictions), "--chunks", "2",
                 "--device", "cpu"]) == 0
    ids, _ = read_split(toy / "train.tsv", TOY_TAGS)
    stored_ids, stored = read_pseudo_labels([predictions], TOY_TAGS)
    wanted = ids[::-1][:5]
    got = teacher_predictions([predictions], TOY_TAGS, wanted)
    assert np.array_equal(got, stored[[stored_ids.index(t) for t in wanted]])
    with pytest.raises(ValueError, match="1 of 2 training songs"):
        teacher_predictions([predictions], TOY_TAGS, [ids[0], "not-a-song"])

    out = tmp_path / "blended"
    args = train_args(toy, out, "--labeled-pseudo-labels", str(predictions), "--label-blend",
                      "0.5", "--max-epochs", "1", "--steps-per-epoch", "2")
    assert main(args) == 0
    assert len(read_history(out)) == 1
    assert main(train_args(toy, tmp_path / "x", "--label-blend", "0.5")) == 2
    assert "--labeled-pseudo-labels" in capsys.readouterr().err


def test_ema_weights_are_the_ones_validated_and_kept(toy, tmp_path):
    """--ema-decay: best.ckpt holds the moving average of the weights (the model that was
    validated), not the raw weights of the last step; the average resumes from last.ckpt."""
    out = tmp_path / "ema"
    assert main(train_args(toy, out, "--max-epochs", "1", "--steps-per-epoch", "3",
                           "--ema-decay", "0.5")) == 0
    last = torch.load(out / "last.ckpt", weights_only=False)
    best = torch.load(out / "best.ckpt", weights_only=True)["state_dict"]
    assert int(last["ema"]["n_averaged"]) == 3
    averaged = {k.removeprefix("module."): v for k, v in last["ema"].items() if k != "n_averaged"}
    assert averaged.keys() == best.keys() == last["model"].keys()
    assert all(torch.equal(best[k], averaged[k]) for k in best)
    weights = [k for k, v in best.items() if v.is_floating_point() and "running" not in k]
    assert any(not torch.equal(best[k], last["model"][k]) for k in weights)
    assert main(train_args(toy, out, "--max-epochs", "1", "--steps-per-epoch", "3")) == 2


@pytest.mark.slow
def test_resnet_trains_a_few_steps(toy, tmp_path):
    out = tmp_path / "resnet"
    args = ["train", "--train", str(toy / "train.tsv"), "--valid", str(toy / "valid.tsv"),
            "--tags", str(toy / "tags.txt"), "--mels", str(toy / "labeled.h5"), "--out", str(out),
            "--model", "resnet", "--conv-channels", "4", "--crop-seconds", "1.5",
            "--batch-size", "4", "--max-epochs", "1", "--steps-per-epoch", "2",
            "--valid-chunks", "1", "--device", "cpu"]
    assert main(args) == 0
    _, info = load_checkpoint(out / "best.ckpt")
    assert info["kind"] == "resnet" and info["config"]["channels"] == 4


def test_resnet_refuses_transformer_options(toy, tmp_path, capsys):
    args = train_args(toy, tmp_path / "r", "--model", "resnet")
    assert main(args) == 2
    assert "does not apply to the resnet" in capsys.readouterr().err


def test_bad_split_file_is_named(toy, tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\tlabels\nx\ty\n")
    args = train_args(toy, tmp_path / "o")
    args[args.index("--train") + 1] = str(bad)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "track_id" in err


def _final_weights(folder: Path):
    return torch.load(folder / "last.ckpt", weights_only=False)


@pytest.mark.slow
def test_resume_after_sigkill_reaches_the_same_weights(toy, pseudo_labels, tmp_path):
    """A student run killed with SIGKILL and rerun ends with exactly the weights of an
    uninterrupted run (noise, dropout, stochastic depth and data order all restored)."""
    student = ["--pseudo-labels", str(pseudo_labels), "--unlabeled-mels", str(toy / "unlabeled.h5"),
               "--drop-path", "0.1", "--max-epochs", "4", "--patience", "50",
               "--steps-per-epoch", "6", "--lr-decay", "0.5", "--lr-patience", "1",
               "--ema-decay", "0.9"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mtt.cli"]
    straight = tmp_path / "straight"
    subprocess.run(command + train_args(toy, straight, *student, "--workers", "1"), env=env,
                   check=True, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(command + train_args(toy, killed, *student), env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        if (killed / "history.csv").exists() and len(read_history(killed)) >= 2:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    epochs_done = len(read_history(killed))
    assert 2 <= epochs_done < 4
    subprocess.run(command + train_args(toy, killed, *student), env=env, check=True,
                   capture_output=True)

    assert len(read_history(killed)) == 4
    for part in ("model", "ema"):
        a, b = _final_weights(straight)[part], _final_weights(killed)[part]
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (part, key)
    assert read_history(straight)[-1]["valid_loss"] == read_history(killed)[-1]["valid_loss"]


@pytest.mark.slow
def test_two_processes_with_torchrun(toy, tmp_path):
    """DDP on CPU (gloo): two ranks share the epoch's batches, rank 0 writes the outputs."""
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp"
    result = subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "mtt.cli",
         *train_args(toy, out, "--max-epochs", "2", "--steps-per-epoch", "4")],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 steps/epoch" in result.stderr
    assert len(read_history(out)) == 2
    load_checkpoint(out / "best.ckpt")
    # the workflow's mode on a finished run: every rank agrees to start over, rank 0 deletes
    again = subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "mtt.cli",
         *train_args(toy, out, "--max-epochs", "2", "--steps-per-epoch", "4",
                     "--fresh-unless-interrupted")],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "starting over" in again.stderr
    assert len(read_history(out)) == 2


def test_loader_workers_stay_within_the_jobs_threads():
    from mtt.training.data import loader_workers
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert loader_workers(None, cpu, 8) == 0
    assert loader_workers(None, cuda, None) == 4
    assert [loader_workers(None, cuda, t) for t in (1, 2, 3, 8)] == [0, 1, 2, 4]
    assert loader_workers(6, cuda, 2) == 6  # --workers as given


def test_sharpened_pseudo_labels_keep_their_order_and_move_away_from_one_half():
    from mtt.training.objective import pseudo_targets
    probs = torch.tensor([[0.05, 0.3, 0.5, 0.7, 0.99]])
    same, weights = pseudo_targets(probs, "soft", 0.5, temperature=1.0)
    assert torch.equal(same, probs) and torch.equal(weights, torch.ones_like(probs))
    sharp, _ = pseudo_targets(probs, "soft", 0.5, temperature=0.5)
    assert torch.all(sharp[0, 1:] > sharp[0, :-1])
    assert torch.all((sharp - 0.5).abs() >= (probs - 0.5).abs() - 1e-6)
    # T = 0.5 squares the odds
    odds = probs / (1 - probs)
    assert torch.allclose(sharp / (1 - sharp), odds ** 2, rtol=1e-3)


@pytest.mark.slow
def test_crop_targets_are_the_teacher_on_the_same_clean_crop(toy, teacher, pseudo_labels,
                                                             tmp_path, monkeypatch):
    """--pseudo-targets crop: a pseudo-labeled crop's target is the teacher's sigmoid output on
    that crop before the student's noise, not the song-level pseudo-label."""
    import argparse
    import torch.nn.functional as F
    from mtt.config import TrainConfig
    from mtt.training import objective
    from mtt.training.command import TrainFiles, Trainer, add_arguments
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(train_args(
        toy, tmp_path / "s", "--max-epochs", "1", "--steps-per-epoch", "1", "--noise", "none",
        "--pseudo-labels", str(pseudo_labels), "--unlabeled-mels", str(toy / "unlabeled.h5"),
        "--pseudo-targets", "crop", "--teacher-checkpoint", str(teacher / "best.ckpt"),
        "--precision", "fp32")[1:])
    trainer = Trainer(TrainConfig.from_args(args), TrainFiles.from_args(args))
    mels, targets, sources = next(iter(trainer.data.loader))
    seen = []
    real_bce = F.binary_cross_entropy_with_logits
    monkeypatch.setattr(objective.F, "binary_cross_entropy_with_logits",
                        lambda logits, target, **kw: seen.append(target) or real_bce(logits, target, **kw))
    trainer.step(mels, targets, sources)
    teacher_model, _ = load_checkpoint(teacher / "best.ckpt")
    pseudo = sources == 1
    with torch.no_grad():
        expected = torch.sigmoid(teacher_model(mels[pseudo]))
    assert torch.allclose(seen[1], expected, atol=1e-6)
    assert not torch.allclose(seen[1], targets[pseudo], atol=1e-3)  # not the song's label
    assert torch.equal(seen[0], targets[~pseudo])


def test_crop_targets_need_the_teacher(toy, tmp_path, capsys):
    args = train_args(toy, tmp_path / "s", "--pseudo-labels", str(tmp_path / "x.h5"),
                      "--pseudo-targets", "crop")
    assert main(args) == 2
    assert "--pseudo-targets crop needs --pseudo-labels and --teacher-checkpoint" in \
        capsys.readouterr().err


@pytest.mark.slow
def test_a_student_from_its_teachers_front_end_starts_with_its_convolutions(
        toy, teacher, pseudo_labels, tmp_path, capsys):
    """--init-from-teacher frontend: the student's first step starts from the teacher's
    convolutions and batch-norm statistics; the run records the option and finishes."""
    import argparse
    from mtt.config import TrainConfig
    from mtt.training.command import TrainFiles, Trainer, add_arguments
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = train_args(toy, tmp_path / "s", "--max-epochs", "1", "--steps-per-epoch", "1",
                      "--pseudo-labels", str(pseudo_labels), "--unlabeled-mels",
                      str(toy / "unlabeled.h5"), "--init-from-teacher", "frontend",
                      "--teacher-checkpoint", str(teacher / "best.ckpt"))
    parsed = parser.parse_args(args[1:])
    trainer = Trainer(TrainConfig.from_args(parsed), TrainFiles.from_args(parsed))
    teacher_model, _ = load_checkpoint(teacher / "best.ckpt")
    source, student = teacher_model.state_dict(), trainer.model.state_dict()
    for name in ("frontend.layer1.conv_1.weight", "frontend.layer3.bn_2.running_var"):
        assert torch.equal(student[name], source[name]), name
    assert "front end from" in capsys.readouterr().err
    assert main(args) == 0
    last = torch.load(tmp_path / "s" / "last.ckpt", weights_only=True)
    assert last["identity"]["init_from_teacher"] == "frontend"


def test_annealing_takes_the_rate_linearly_to_zero_after_the_warm_up():
    """--lr-anneal-epochs: after a warm-up of 2 steps, a rate annealed over 4 steps falls by a
    quarter per step and stays at 0; without it, the rate is the warm-up's alone."""
    from mtt.training.schedule import WarmupPlateauLR

    def rates(anneal_steps):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        scheduler = WarmupPlateauLR(optimizer, 2, 1.0, 3, anneal_steps)
        out = []
        for _ in range(8):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return out

    assert rates(4) == pytest.approx([0.05, 0.1, 0.1, 0.075, 0.05, 0.025, 0.0, 0.0])
    assert rates(0) == [0.05, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]


@pytest.mark.slow
def test_an_annealed_run_ends_near_rate_zero_and_resumes_on_its_schedule(toy, tmp_path):
    """--lr-anneal-epochs 3 over 3 epochs of 4 steps: after epoch e the rate is 1 - 4e / 12 of
    --lr (the history's lr: the rate the next step takes), 0 at the end; a run stopped after 2
    epochs and resumed matches it."""
    options = ["--patience", "50", "--steps-per-epoch", "4", "--lr", "0.01",
               "--lr-anneal-epochs", "3"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(train_args(toy, straight, "--max-epochs", "3", *options)) == 0
    lr = [float(r["lr"]) for r in read_history(straight)]
    assert lr == pytest.approx([0.01 * (1 - 4 * e / 12) for e in (1, 2, 3)], rel=1e-5)  # csv
    assert main(train_args(toy, resumed, "--max-epochs", "2", *options)) == 0
    assert main(train_args(toy, resumed, "--max-epochs", "3", *options)) == 0
    columns = ("train_loss", "valid_loss", "lr")
    assert ([[row[c] for c in columns] for row in read_history(resumed)]
            == [[row[c] for c in columns] for row in read_history(straight)])
