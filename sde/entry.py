"""The ``sde`` console script's entry point (``sde.cli:main`` behind a Ctrl-C guard).

pip's console script imports its entry module, then runs a regex of its own, then calls it; the
import of ``sde.cli`` (click and sde's modules: ~0.1-0.3 s) came before ``sde.cli.main`` could
handle a Ctrl-C, which then showed a KeyboardInterrupt traceback. This module, cheap to import,
makes a Ctrl-C from its import until ``sde.cli`` is imported say "interrupted" and exit 130.

A Ctrl-C (or SIGTERM) handler runs between any two bytecodes, also inside a weakref callback or a
``__del__`` (importlib's module locks have such a callback, run at every import), where Python
cannot propagate its exception: it printed "Exception ignored in: <function
_ModuleLock.__init__.<locals>.cb ...> ... KeyboardInterrupt" and the command carried on (seen in
CI). :func:`_swallowed_stop` raises such an exception again where it can unwind.
"""

from __future__ import annotations

# _signal, not signal: the same functions without signal.py's enums (~0.7 ms, more under load), a
# time in which a Ctrl-C showed a traceback because no handler of sde's was installed yet; and no
# typing either, for the same reason
import _signal
import _thread
import errno
import io
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType, ModuleType
    from typing import NoReturn

_previous_unraisablehook = sys.unraisablehook
_MAIN_THREAD = _thread.get_ident()  # the console script imports this module in the main thread


def _interrupted(_signum: int, _frame: object) -> None:
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)  # a second Ctrl-C must not interrupt the exit
    sys.stderr.write("interrupted\n")
    sys.stderr.flush()
    # SystemExit, not KeyboardInterrupt: it unwinds any import quietly, with no traceback
    raise SystemExit(130)


def _swallowed_stop(unraisable: sys.UnraisableHookArgs) -> None:
    """``sys.unraisablehook``: a KeyboardInterrupt or SystemExit (sde's handlers of Ctrl-C and
    SIGTERM raise them) that Python had to swallow is raised again at the main thread's next call
    or return, once the callback that swallowed it has returned; it then ends the command as it
    would have (its message, once, and exit code 130 or 143). Any other exception goes to the hook
    that was there. A profile function, not a signal sent again: a handler run by the signal would
    run inside this hook, where its exception would be swallowed in turn."""
    stop = unraisable.exc_value
    if not isinstance(stop, (KeyboardInterrupt, SystemExit)) or _thread.get_ident() != _MAIN_THREAD:
        _previous_unraisablehook(unraisable)
        return

    def raise_again(frame: FrameType, _event: str, _arg: object) -> None:
        if frame.f_code is _swallowed_stop.__code__:  # this hook's own return
            return
        sys.setprofile(None)
        raise stop.with_traceback(None)

    sys.setprofile(raise_again)


# at import: pip's script runs re.sub (compiling a regex) between this import and main()
_signal.signal(_signal.SIGINT, _interrupted)
sys.unraisablehook = _swallowed_stop


class _Output(io.TextIOWrapper):
    """``sys.stdout``, whose failed write ends sde with one line: to a full disk (``> /dev/full``)
    it printed a traceback, or the build's "no space left" advice about the cache, and Python's
    own "Exception ignored" at exit; to a closed pipe (``| head``) it ends quietly, as Unix tools
    do. A SystemExit, not an OSError: the commands' handlers of OSErrors let it through."""

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except OSError as e:
            _output_failed(e)

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as e:
            _output_failed(e)


def _output_failed(e: OSError) -> NoReturn:
    try:
        where = os.readlink(f"/proc/self/fd/{sys.stdout.fileno()}")
    except (OSError, ValueError):
        where = ""
    # the unwritten rest goes nowhere: the flushes at exit would fail again, each with a traceback
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    if e.errno == errno.EPIPE:
        raise SystemExit(128 + _signal.SIGPIPE)  # as a shell reports a tool killed by SIGPIPE
    target = f" ({where})" if where.startswith("/") else ""
    sys.stderr.write(f"sde: could not write the output: {e.strerror or e}{target}\n")
    sys.stderr.flush()
    raise SystemExit(1)


def _checked_stdout() -> None:
    out = sys.stdout
    if type(out) is not io.TextIOWrapper:  # None (no fd 1), or a stream someone else installed
        return
    out.flush()
    sys.stdout = _Output(out.buffer, encoding=out.encoding, errors=out.errors,
                         newline=None if os.name == "nt" else "\n", line_buffering=out.line_buffering,
                         write_through=out.write_through)


def _address_space_limit(resource: ModuleType | None) -> int | None:
    """RLIMIT_AS (``ulimit -v``) in bytes, None when there is none."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY else soft


def _out_of_memory(e: BaseException | None) -> bool:
    """Whether ``e`` or an exception it came from is the process short of memory: a MemoryError
    (pyarrow's too), DuckDB's "Out of Memory Error", a thread that cannot start (its stack is
    memory), a library that cannot be mapped (an import)."""
    seen = 0
    while e is not None and seen < 20:
        text = str(e)
        if (isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryException"
                or "can't start new thread" in text or "failed to map segment" in text
                or "cannot allocate memory" in text.lower() or getattr(e, "errno", None) == errno.ENOMEM):
            return True
        e, seen = e.__cause__ or e.__context__, seen + 1
    return False


def _exit_out_of_memory(limit: int) -> NoReturn:
    mb = limit // 2**20
    if mb < 2048:
        fix = "raise it to 2 GB or more (ulimit -v 2000000): sde's libraries alone take about 1.5 GB of address space"
    else:
        fix = f"raise it, or pass --memory-limit {mb // 2}MB so that sde's engine stays within it"
    sys.stderr.write(f"sde ran out of memory under a limit of {mb} MB (ulimit -v): {fix}\n")
    sys.stderr.flush()
    raise SystemExit(1)


def main() -> None:
    from sde.startup_gc import pause_full_collections

    pause_full_collections()
    _checked_stdout()
    try:  # now: short of memory, after sde's imports failed, importing it failed as well
        import resource
    except ImportError:  # none on Windows
        resource = None
    try:
        _run()
    except Exception as e:  # past the commands' handlers, which name what the data and the disk did
        limit = _address_space_limit(resource)
        if limit is not None and _out_of_memory(e):  # sde.cli's imports included
            _exit_out_of_memory(limit)
        raise


def _run() -> None:
    from sde.cli import _exit_interrupted, main as cli_main

    # from here sde.cli's own handling: Ctrl-C as KeyboardInterrupt, "interrupted" and 130
    _signal.signal(_signal.SIGINT, _signal.default_int_handler)
    try:
        cli_main()
    except KeyboardInterrupt:  # in the instants before cli.main's own handling starts
        _exit_interrupted()


if __name__ == "__main__":
    main()
