"""Teacher policies: A3C-style training with stable-baselines3, loading from the formats people share, shipped teachers.

Loading never unpickles or runs code from a file by default: stable-baselines3 zips are rebuilt from their readable
settings and every state dict is read with ``torch.load(weights_only=True)``. ``trust_checkpoint=True``
(``--trust-checkpoint``) opts in to SB3's own loader, which runs code stored in the file.
"""

from teachers.load import load_teacher, shipped_teacher_path
from teachers.teacher import Teacher

__all__ = ["Teacher", "load_teacher", "shipped_teacher_path"]
