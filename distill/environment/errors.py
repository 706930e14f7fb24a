"""One exception type for bad user input, so every CLI can print one line and exit 2."""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable[..., int | None])


class UserError(Exception):
    """Bad input from the user: the message names the problem and the fix."""


class StateLostError(UserError):
    """A failure after which a library's state cannot be released (HDF5 after a failed write of a file's caches:
    closing it again, or the interpreter's exit, crashes in HDF5). A CLI ends the process right after the message."""


INTERRUPTED = "interrupted"
RESUME_HINT = "interrupted: progress so far is saved; rerun with --resume to continue"
RERUN_HINT = "interrupted: finished work is kept; run the same command again to continue"


def cli_entry(func: F | None = None, *, on_interrupt: str = INTERRUPTED):
    """Wrap a CLI ``main`` so a :class:`UserError` becomes ``error: ...`` on stderr and exit code 2, and a reader
    that stops early (``| head``) ends the command quietly instead of in a BrokenPipeError traceback. Ctrl-C prints
    ``on_interrupt``: commands that resume say how (:data:`RESUME_HINT`, :data:`RERUN_HINT`), the others only that
    they stopped. Use as ``@cli_entry`` or ``@cli_entry(on_interrupt=RESUME_HINT)``."""
    if func is None:
        return functools.partial(cli_entry, on_interrupt=on_interrupt)

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            result = func(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe shows here, inside the handler, not in Python's flush at exit
            return result
        except BrokenPipeError:
            # stdout goes to /dev/null so that the flush at exit does not raise again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(1) from None
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            if isinstance(exc, StateLostError):  # what is on disk is consistent; only this process's HDF5 is not
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(2)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print(on_interrupt, file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper  # type: ignore[return-value]
