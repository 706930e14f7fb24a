"""One exception type for bad user input, so every CLI can print one line and exit 2."""

from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable[..., int | None])


class UserError(Exception):
    """Bad input from the user: the message names the problem and the fix."""


def cli_entry(func: F) -> F:
    """Wrap a CLI ``main`` so a :class:`UserError` becomes ``error: ...`` on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted: progress so far is saved; rerun with --resume to continue", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper  # type: ignore[return-value]
