"""The CLI wrapper: one-line errors with exit code 2, and an interrupt message that names --resume only where the
command has it."""

from __future__ import annotations

import pytest

from distill.environment.errors import RESUME_HINT, UserError, cli_entry


def _interrupted(argv=None):
    raise KeyboardInterrupt


def test_user_error_is_one_line_and_exit_2(capsys):
    @cli_entry
    def main(argv=None):
        raise UserError("--x must be positive, got -1")

    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2 and capsys.readouterr().err == "error: --x must be positive, got -1\n"


def test_interrupt_names_resume_only_for_resumable_commands(capsys):
    for wrapped, says_resume in ((cli_entry(_interrupted), False), (cli_entry(on_interrupt=RESUME_HINT)(_interrupted), True)):
        with pytest.raises(SystemExit) as exc:
            wrapped()
        err = capsys.readouterr().err
        assert exc.value.code == 130 and err.startswith("interrupted") and ("--resume" in err) == says_resume


def test_commands_without_resume_do_not_promise_it():
    from distill.cli import evaluate, inspect, record, train

    assert "--resume" in record.build_parser().format_help() and "--resume" in train.build_parser().format_help()
    assert "--resume" not in evaluate.build_parser().format_help()
    assert "--resume" not in inspect.build_parser().format_help()
