"""Stage 4, evaluation: how well a trained student matches its teacher.

:mod:`~distill.evaluation.heldout` (action error and KL on a run's held-out episodes),
:mod:`~distill.evaluation.rollout` (game scores by playing), :mod:`~distill.evaluation.scores` (confidence intervals
of score ratios) and :mod:`~distill.evaluation.video` (a GIF of one episode).
"""
