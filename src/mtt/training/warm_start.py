"""`--init-from-teacher frontend`: a student whose CNN front end starts from its teacher's.

Every front-end tensor (the family's `frontend_prefixes`) whose name and shape match the
teacher's is copied, buffers (batch-norm statistics) included; the rest of the student keeps its
fresh initialisation. A narrower or wider transformer keeps the teacher's convolutions but not
its projection to the transformer's width.
"""
import torch

from ..checkpoint import load_checkpoint


def copy_teacher_frontend(student: torch.nn.Module, teacher_checkpoint) -> list:
    """Copy the matching front-end tensors of `teacher_checkpoint` into `student` in place;
    the names copied. ValueError naming the file when none match."""
    teacher, _ = load_checkpoint(teacher_checkpoint)
    source = teacher.state_dict()
    copied = []
    with torch.no_grad():
        for name, tensor in student.state_dict().items():
            if (name.startswith(type(student).frontend_prefixes) and name in source
                    and source[name].shape == tensor.shape):
                tensor.copy_(source[name])  # in place: keeps the student's memory format
                copied.append(name)
    if not any(n.endswith("weight") for n in copied):
        raise ValueError(f"{teacher_checkpoint}: no front-end weight matches the student's "
                         f"(teacher {teacher.kind}, student {type(student).kind})")
    return copied
