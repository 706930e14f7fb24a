"""The fault matrix's judges: what counts as a clean error, and how orphaned processes are found."""

from __future__ import annotations

import sys

from script_helpers import script_module

fault_matrix = script_module("fault_matrix")


def test_classify_tells_clean_errors_from_tracebacks_and_silent_exits():
    bar = "record Breakout:  42%|####      | 508/1.20k\r"
    assert fault_matrix.classify(0, bar) == ("ok", "")
    assert fault_matrix.classify(2, bar + "\nerror: --seed must be 0 or more, got -1\n") == (
        "clean error", "error: --seed must be 0 or more, got -1")
    argparse_error = "usage: distill-train [-h]\ndistill-train: error: argument --steps: invalid int value: 'x'\n"
    assert fault_matrix.classify(2, argparse_error)[0] == "clean error"
    traceback = "Traceback (most recent call last):\n  File \"x.py\", line 1\nOSError: Unable to open file\n"
    assert fault_matrix.classify(1, traceback) == ("traceback", "OSError: Unable to open file")
    assert fault_matrix.classify(2, "error: one\nerror: two\n")[0] == "traceback"  # not one line
    assert fault_matrix.classify(-11, "error: disk full\n")[0] == "traceback"  # a crash after the message


def test_kill_at_counts_children_that_outlive_their_parent(tmp_path):
    parent = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']);"
              " time.sleep(30)")
    was_running, orphans = fault_matrix.kill_at([sys.executable, "-c", parent], 1.5, tmp_path / "log")
    assert was_running and orphans == 1  # a plain child has no parent-death signal: it is an orphan
    finished, orphans = fault_matrix.kill_at([sys.executable, "-c", "pass"], 3.0, tmp_path / "log")
    assert not finished and orphans == 0
