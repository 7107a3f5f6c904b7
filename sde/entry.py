"""The ``sde`` console script's entry point (``sde.cli:main`` behind a Ctrl-C guard).

pip's console script imports its entry module, then runs a regex of its own, then calls it; the
import of ``sde.cli`` (click and sde's modules: ~0.1-0.3 s) came before ``sde.cli.main`` could
handle a Ctrl-C, which then showed a KeyboardInterrupt traceback. This module, cheap to import,
makes a Ctrl-C from its import until ``sde.cli`` is imported say "interrupted" and exit 130.
"""

import signal
import sys


def _interrupted(_signum: int, _frame: object) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the exit
    sys.stderr.write("interrupted\n")
    sys.stderr.flush()
    # SystemExit, not KeyboardInterrupt: it unwinds any import quietly, with no traceback
    raise SystemExit(130)


# at import: pip's script runs re.sub (compiling a regex) between this import and main()
signal.signal(signal.SIGINT, _interrupted)


def main() -> None:
    from sde.cli import _exit_interrupted, main as cli_main

    # from here sde.cli's own handling: Ctrl-C as KeyboardInterrupt, "interrupted" and 130
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        cli_main()
    except KeyboardInterrupt:  # in the instants before cli.main's own handling starts
        _exit_interrupted()


if __name__ == "__main__":
    main()
