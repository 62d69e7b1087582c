"""User-facing errors and the wrapper every stage and CLI command runs under.

A user who mistypes a param or points at a missing file should see one line that names what
to fix, never a traceback (DESIGN.md, "Errors and data safety"). Code raises `UserError` for
those cases; `run_main` prints it and exits with status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """A problem the user can fix: bad params, a missing or corrupt file, no network."""


def run_main(main: Callable[[], object]) -> None:
    """Run `main`; turn a `UserError` into one message on stderr and exit code 2."""
    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise SystemExit(130) from None
