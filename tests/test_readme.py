"""The README stays short and true: its commands use flags the tools have, and its API example runs."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _commands() -> list[str]:
    """Every command of the README's bash blocks (one per line, `&&` chains split), comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            for part in line.split(" # ")[0].split("&&"):
                if part.strip():
                    commands.append(part.strip())
    return commands


def _help(tool: str) -> str:
    """The --help text of a console script (from pyproject) or of a script under scripts/."""
    if tool.startswith("scripts/"):
        out = subprocess.run([sys.executable, tool, "--help"], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert out.returncode == 0, out.stderr
        return out.stdout
    entry = re.search(rf'^{re.escape(tool)} = "([\w.]+):main"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert entry, f"{tool} is not a console script in pyproject.toml"
    module = importlib.import_module(entry.group(1))
    return module.build_parser().format_help()


def test_readme_is_short():
    assert len(README.splitlines()) <= 250


def test_readme_commands_use_flags_the_tools_have():
    checked = 0
    helps: dict[str, str] = {}
    for command in _commands():
        words = command.split()
        if words[0].startswith("distill-"):
            tool = words[0]
        elif words[:2] == ["python", words[1]] and words[1].startswith("scripts/"):
            tool = words[1]
        else:
            continue  # pip, cp, ...
        if tool not in helps:
            helps[tool] = _help(tool)
        for flag in (w.split("=")[0] for w in words if w.startswith("--")):
            assert re.search(rf"{re.escape(flag)}\b", helps[tool]), f"README: `{command}`: {tool} has no {flag}"
            checked += 1
    assert checked > 20  # the tour is there and was read


def test_readme_api_example_runs(tmp_path):
    """The example exactly as printed, in a fresh folder (it writes data/ there)."""
    example = re.search(r"<!-- api-example.*?-->\n```python\n(.*?)```", README, flags=re.S).group(1)
    assert "record(" in example and "train(" in example and "evaluate(" in example
    out = subprocess.run([sys.executable, "-c", example], capture_output=True, text=True, cwd=tmp_path, timeout=900,
                         env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    kl = {float(m.group(1)): float(m.group(3)) for m in
          (re.match(r"alpha ([\d.]+): action error ([\d.]+), KL ([\d.]+)", line) for line in lines) if m}
    assert set(kl) == {0.0, 1.0} and all(v > 0 for v in kl.values())
    assert (tmp_path / "data/runs/a1/metrics.json").exists()
    held_out_kl, student_score, teacher_score = map(float, lines[-1].split())
    assert abs(held_out_kl - kl[1.0]) < 5e-4 and teacher_score > 0  # the same run, printed to 3 decimals
