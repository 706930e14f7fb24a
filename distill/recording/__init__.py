"""Stage 2, recording: follow a teacher and store what a student learns from.

:mod:`~distill.recording.writer` makes recordings (frames, teacher logits, projected input gradients) and resumes
them; :mod:`~distill.recording.schema` is the one place that knows what a valid recording is and reads it;
:mod:`~distill.recording.repair` clears HDF5's consistency flags after a crash; :mod:`~distill.recording.lives`
adds the per-state lives counts to recordings made before they were stored.
"""
