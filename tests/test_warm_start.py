"""--init-from-teacher frontend: what a student takes from its teacher's checkpoint."""
import pytest
import torch

from conftest import train_args
from mtt.checkpoint import save_checkpoint
from mtt.cli import main
from mtt.models import build_model, to_channels_last
from mtt.training.warm_start import copy_teacher_frontend

TAGS = ["a", "b", "c"]


def saved(tmp_path, kind, **config):
    torch.manual_seed(1)
    model = build_model(kind, len(TAGS), **config)
    with torch.no_grad():  # batch-norm statistics a fresh model would not have
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_()
    path = tmp_path / f"{kind}.ckpt"
    save_checkpoint(path, model, TAGS)
    return model, path


def test_a_student_takes_the_teachers_front_end_and_nothing_else(tmp_path):
    teacher, path = saved(tmp_path, "transformer", conv_channels=4, width=16, heads=2, layers=1)
    torch.manual_seed(2)
    student = build_model("transformer", len(TAGS), conv_channels=4, width=8, heads=2, layers=1)
    to_channels_last(student)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    copied = copy_teacher_frontend(student, path)
    source, after = teacher.state_dict(), student.state_dict()
    assert copied and all(name.startswith("frontend.layer") or name.startswith("frontend.input_bn")
                          for name in copied)
    assert "frontend.layer1.conv_1.weight" in copied
    assert "frontend.layer3.bn_2.running_mean" in copied  # statistics too
    for name in copied:
        assert torch.equal(after[name], source[name]), name
    # the projection to another width, and everything after it, keep their own initialisation
    for name in after:
        if name not in copied:
            assert torch.equal(after[name], before[name]), name
    assert "frontend.fc.weight" not in copied
    conv = student.frontend.layer1.conv_1.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)  # copied in place


def test_a_teacher_of_another_family_is_refused_naming_the_file(tmp_path):
    _, path = saved(tmp_path, "resnet", channels=4)
    student = build_model("transformer", len(TAGS), conv_channels=4, width=8, heads=2, layers=1)
    with pytest.raises(ValueError, match=rf"{path}: no front-end weight matches"):
        copy_teacher_frontend(student, path)


def test_init_from_teacher_needs_the_teachers_checkpoint(tmp_path, capsys):
    from conftest import make_toy
    toy = make_toy(tmp_path / "toy")
    args = train_args(toy, tmp_path / "s", "--pseudo-labels", str(tmp_path / "x.h5"),
                      "--init-from-teacher", "frontend")
    assert main(args) == 2
    assert "--init-from-teacher frontend needs --pseudo-labels and --teacher-checkpoint" in \
        capsys.readouterr().err
