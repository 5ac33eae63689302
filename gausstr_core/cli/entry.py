"""What every console script shares: one-line user errors with exit code 2, tracebacks for bugs.

`console_script(prog)` wraps a `main(argv) -> int`: ValueError (UserError included) and OSError,
this package's bad-input and bad-path errors (gausstr_core.errors), end as `prog: error: ...` on
stderr and exit code 2; any other exception is a bug and propagates with its traceback. Set
GAUSSTR_TRACEBACK=1 to see the traceback of a user error too. `CliParser` makes argparse's own
errors (unknown option, bad value) one line as well.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable

USER_ERRORS = (ValueError, OSError)
EXIT_USER_ERROR = 2

Main = Callable[[list[str] | None], int]


class CliParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr (exit 2) instead of usage + error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def one_line(exc: BaseException) -> str:
    """The exception's message with all whitespace runs (newlines included) collapsed to one space."""
    return " ".join(str(exc).split()) or type(exc).__name__


def console_script(prog: str) -> Callable[[Main], Main]:
    """Decorator for a console script's main (see module docstring)."""

    def wrap(main: Main) -> Main:
        @functools.wraps(main)
        def wrapped(argv: list[str] | None = None) -> int:
            try:
                return main(argv)
            except USER_ERRORS as exc:
                if os.environ.get("GAUSSTR_TRACEBACK"):
                    raise
                print(f"{prog}: error: {one_line(exc).removeprefix(f'{prog}: ')}", file=sys.stderr)
                return EXIT_USER_ERROR

        return wrapped

    return wrap
