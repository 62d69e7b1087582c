"""DVC stage entry points: read params, call the library, write outputs. No algorithm code.

Ctrl-C while a stage is still importing its libraries (torch takes seconds) ends it with one
line and status 130, like an interrupt later on (dnas.errors.run_main), not a traceback:
nothing has been written yet."""

import signal
import sys


def _interrupted_while_starting(signum, frame):
    print("interrupted while starting; nothing was written", file=sys.stderr)
    raise SystemExit(130)


signal.signal(signal.SIGINT, _interrupted_while_starting)
