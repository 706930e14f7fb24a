"""Stage 1, environments: what every later stage runs on.

The Atari games and their preprocessing (:mod:`~distill.environment.atari`), the compute device
(:mod:`~distill.environment.device`) and the one error type for bad user input
(:mod:`~distill.environment.errors`). It imports nothing else of the project, so that ``teachers``
can build on it alone.
"""
