"""Stage 3, training: distil a recording into a student with KL + alpha * Sobolev.

:mod:`~distill.training.config` (the options of a run, the one definition the CLIs build their flags from),
:mod:`~distill.training.data` (splits by whole episodes, training rows in memory), :mod:`~distill.training.losses`,
:mod:`~distill.training.students`, :mod:`~distill.training.metrics` (action error and KL against the teacher),
:mod:`~distill.training.runs` (the run directory: checkpoints, logs, loading a trained student) and
:mod:`~distill.training.loop` (the training loop).
"""
