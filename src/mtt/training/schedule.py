"""The learning rate: a linear warm-up over --warmup-steps steps, times the decay that
validation plateaus have brought (--lr-decay after --lr-patience epochs without a better
--select-by score, counted from the best epoch or the last decay), times a linear annealing to 0
over --lr-anneal-epochs epochs' steps after the warm-up (budgeted training: a run that must end
at a fixed epoch does best with a rate that reaches 0 there, Li et al., ICLR 2020).

Not torch's LinearLR + ReduceLROnPlateau: they compute the rate step by step from the last one
(LinearLR's recursive form, ReduceLROnPlateau's lr * factor), where runs so far computed it from
the base rate, lr * warm-up * decay so far. The rates differ in the last bits (measured: with a
1000-step warm-up 5989 of 6000 steps' rates, the first at step 3; with --lr-decay 0.3 and no
warm-up, decayed every 10 steps, 5958 of 6000, the first after the fourth decay), so their runs
would not reproduce earlier ones.
"""
from torch.optim.lr_scheduler import LRScheduler


class WarmupPlateauLR(LRScheduler):
    """Stepped after every optimizer step; `end_epoch` after every validation."""

    def __init__(self, optimizer, warmup_steps: int, decay: float, patience: int,
                 anneal_steps: int = 0):
        self.warmup, self.decay, self.patience = max(0, warmup_steps), decay, patience
        self.anneal = max(0, anneal_steps)
        self.scale = 1.0  # the decay so far
        self.plateau = 0  # epochs without a better score since the best one or the last decay
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        factor = (min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0) * self.scale
        if self.anneal:  # step s after the warm-up runs at 1 - s / anneal: the last one near 0
            factor *= max(0.0, 1.0 - max(0, step - self.warmup) / self.anneal)
        return factor

    def get_lr(self) -> list:
        return [base_lr * self.factor(self.last_epoch) for base_lr in self.base_lrs]

    def end_epoch(self, improved: bool) -> bool:
        """Count a plateau epoch or end the plateau; decay the rate (from the next step on)
        after `patience` of them. Returns whether it decayed."""
        self.plateau = 0 if improved else self.plateau + 1
        if self.decay == 1 or self.plateau < self.patience:
            return False
        self.scale *= self.decay
        self.plateau = 0
        for group in self.optimizer.param_groups:
            group["lr"] *= self.decay
        return True
