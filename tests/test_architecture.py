"""The layout's rules (docs/architecture.md), checked on the source: lower stages never import higher ones, the
Sobolev core imports nothing of the project, ``teachers`` uses only the environment stage."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# stages in the order data flows; a module may import its own stage and the ones before it
STAGES = ["distill._version", "distill.sobolev", "distill.environment", "teachers", "distill.recording",
          "distill.training", "distill.evaluation", "distill.api", "distill.cli"]
# stages with a narrower rule than "anything before me"
ONLY = {
    "distill._version": set(),
    "distill.sobolev": set(),
    "distill.environment": {"distill.environment"},
    "teachers": {"distill._version", "distill.environment", "teachers"},
    "distill.benchmarks": {"distill.sobolev", "distill.benchmarks"},
}


def stage_of(module: str) -> str:
    """The stage a dotted module name belongs to (``distill`` itself is the API)."""
    if module == "distill":
        return "distill.api"
    for stage in (*STAGES, "distill.benchmarks"):
        if module == stage or module.startswith(stage + "."):
            return stage
    raise AssertionError(f"{module} belongs to no stage of docs/architecture.md")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> set[str]:
    """Every module of the project a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from distill import atari` imports distill.atari, `from distill.x import f` imports distill.x
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names if node.module == "distill"]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in ("distill", "teachers")}
    return found


def test_every_import_follows_the_stage_order():
    violations = []
    for path in sorted([*(ROOT / "distill").rglob("*.py"), *(ROOT / "teachers").rglob("*.py")]):
        importer = module_name(path)
        own = stage_of(importer)
        for imported in project_imports(path):
            target = stage_of(imported)
            if imported == "distill" and own != "distill.api":
                target = "distill.api"
            if own in ONLY:
                allowed = target in ONLY[own]
            else:
                allowed = target != "distill.benchmarks" and STAGES.index(target) <= STAGES.index(own)
            if not allowed and target != own:
                violations.append(f"{importer} ({own}) imports {imported} ({target})")
    assert not violations, "\n".join(violations)


def test_the_checker_sees_a_violation(tmp_path):
    """The rule is not vacuous: a recording module importing the training stage is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from distill.training.loop import train\n")
    assert project_imports(bad) == {"distill.training.loop"}
    assert STAGES.index(stage_of("distill.training.loop")) > STAGES.index(stage_of("distill.recording.writer"))


def test_sobolev_core_loads_no_atari_hdf5_or_rl_code():
    code = ("import sys, distill.sobolev; "
            "print(','.join(m for m in ('ale_py', 'gymnasium', 'h5py', 'stable_baselines3', 'distill.api', "
            "'distill.environment', 'teachers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"import distill.sobolev loaded: {out.stdout.strip()}"
