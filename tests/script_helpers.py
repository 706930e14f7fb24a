"""Shared by the tests of scripts/: import a script as a module, and check its one-line errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def script_module(name: str):
    """scripts/<name>.py, imported as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
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
