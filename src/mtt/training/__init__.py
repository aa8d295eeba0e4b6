"""`mtt train`: the command (`command`), its data (`data`, `batches`), the teacher's or the
noisy student's loss (`objective`), the student's input noise (`noise`) and its per-tag trust in
the teacher's pseudo-labels (`teacher_trust`), the learning-rate schedule (`schedule`), the epoch
loop (`loop`), the run's state (`state`), its output files (`outputs`), several processes
(`processes`), validation (`validation`) and resuming from last.ckpt (`resume`)."""
