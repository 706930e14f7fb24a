"""Teacher policies: A3C-style training with stable-baselines3, checkpoint loading, shipped teachers.

Loading a stable-baselines3 ``.zip`` unpickles objects stored in it (cloudpickle), which can run
code: load only checkpoints you trust. The toolkit only ever loads files you name or the
teachers shipped in this package.
"""

from teachers.load import Teacher, load_teacher, shipped_teacher_path

__all__ = ["Teacher", "load_teacher", "shipped_teacher_path"]
