"""Shared by the tests of scripts/: import a script as a module, and check its one-line errors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
DIAGNOSTICS = SCRIPTS / "diagnostics"
# the diagnostic scripts import their shared helper as a sibling module, as they do when run from their folder
sys.path.insert(0, str(DIAGNOSTICS))


def script_module(name: str):
    """scripts/<name>.py or scripts/diagnostics/<name>.py, imported as a module (the scripts are not a package)."""
    path = SCRIPTS / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path if path.exists() else DIAGNOSTICS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def one_line_error(main, argv: list[str], capsys) -> str:
    """Runs a CLI's main on bad input; asserts the one-line error and exit code 2 and returns the message."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
    return err
