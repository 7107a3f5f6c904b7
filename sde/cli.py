"""`sde` — the one command-line entry point.

    sde SOURCE... [options]       serve the explorer on manifests (the default command)
    sde stats SOURCE... [--json]  print the dataset summary
    sde export SOURCE... -o OUT   write the kept lines (filter, rules, reviews) byte for byte

SOURCE: a manifest, several, globs (shards/*.json), NeMo shard patterns (manifest__OP_0..511_CL_.json,
manifest_{0..511}.json) and URLs (s3://bucket/m.json; --storage-options JSON for the store).
    sde demo                      serve the small dataset shipped with sde
    sde transcribe MANIFEST ...   write NeMo predictions for a manifest

Usage errors exit 2, data errors exit 1, each with a message that names the fix; no tracebacks.
"""

from __future__ import annotations

import atexit
import errno
import functools
import importlib
import json
import os
import re
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Sequence

import click

from sde import __version__
from sde.cluster_address import checked_address

if TYPE_CHECKING:  # pragma: no cover
    from sde.build.remeasure import MeasureCheck
    from sde.dataset import DatasetOptions
    from sde.sources import SourceSet

EXIT_DATA_ERROR = 1


class DefaultGroup(click.Group):
    """A group whose first argument, when it is not a subcommand, is the manifest to serve."""

    default_command = "serve"
    # Imported when run or listed: `sde transcribe` brings NeMo's side of sde (pandas, yaml), which
    # every other command would import at start-up, where a Ctrl-C can only show a traceback.
    lazy_commands = {"transcribe": "sde.nemo.command:transcribe_command"}

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if (args and args[0] not in self.commands and args[0] not in self.lazy_commands
                and args[0] not in ("--help", "-h", "--version")):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    # A Ctrl-C while click parses the command line (the options' checks, a lazy command's import)
    # would be click's "Aborted!" and exit code 1 (or a death by SIGINT): the command's own
    # handling (handle_data_errors) has not started yet. It is "interrupted" and 130 there too.
    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except KeyboardInterrupt:
            _exit_interrupted()

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # past the command's handling: only its parsing lets one through
            _exit_interrupted()

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        from sde.startup_gc import resume_full_collections

        name, command, rest = super().resolve_command(ctx, args)
        if name != self.default_command:  # paused for the imports (sde.startup_gc); a server resumes them once listening
            resume_full_collections()
        return name, command, rest

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy_commands and name not in self.commands:
            module, attribute = self.lazy_commands[name].split(":")
            try:
                command = getattr(importlib.import_module(module), attribute)
            except ImportError:  # the module never needs NeMo to import; this guards a broken install
                return None
            self.add_command(command, name)
        return super().get_command(ctx, name)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage("sde", "SOURCE... [OPTIONS] | COMMAND [ARGS]...")


class EnvOption(click.Option):
    """An option that can also be set by an environment variable: a bad value that came from the
    variable is blamed on the variable (its name, its value), not on an option the user never typed."""

    def __init__(self, *args: Any, secret: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.secret = secret  # SDE_AUTH holds a password: never echoed

    def process_value(self, ctx: click.Context, value: Any) -> Any:
        try:
            return super().process_value(ctx, value)
        except click.BadParameter as e:
            variable = from_environment(ctx, self.name)
            if variable is None:
                raise
            shown = "" if self.secret else f", set to {value!r}"
            e.param_hint = f"{variable} (an environment variable{shown})"
            e.message = (f"{e.message.rstrip('.')}; fix or unset {variable} "
                         f"({max(self.opts, key=len)} on the command line overrides it)")
            raise


def from_environment(ctx: click.Context | None, name: str | None) -> str | None:
    """The environment variable the value of option ``name`` came from, None where it did not."""
    if ctx is None or name is None or ctx.get_parameter_source(name) is not click.core.ParameterSource.ENVIRONMENT:
        return None
    param = next((p for p in ctx.command.params if p.name == name), None)
    return param.envvar if isinstance(param, click.Option) and isinstance(param.envvar, str) else None


def _is_url(value: str) -> bool:
    from sde.sources.remote import is_url

    return is_url(value)


def _augment_dir_noted(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A --noise-dir or --rir-dir with no audio file in it (a typo'd folder, files of another kind) is
    said at once: the preview would offer none and use its synthetic noise or room without a word."""
    if value is None:
        return value
    from sde.quality.augment import AUDIO_EXTENSIONS, AugmentSources

    kind = "noise" if param.name == "noise_dir" else "rir"
    if not AugmentSources(**{f"{kind}_dir": value}).files(kind):
        option, default = ("--noise-dir", "synthetic noise") if kind == "noise" else ("--rir-dir", "a synthetic room")
        click.echo(f"note: {option} {value} holds no audio file ({' '.join(AUDIO_EXTENSIONS)}, in it or its "
                   f"subfolders): the augmentation preview uses {default} until some are put there", err=True)
    return value


def _exists_checked(kind: str, fix: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """A callback that refuses a local file (``kind`` "file") or folder ("folder") that does not
    exist as the command line is read (exit 2), instead of after the dataset is read and scored;
    URLs are left to the store. ``fix``: what to give instead."""

    def check(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        # a blank value is left to the command's own check ("is empty; name a file")
        if value is None or not str(value).strip() or _is_url(str(value)):
            return value
        if not (os.path.isdir(value) if kind == "folder" else os.path.isfile(value)):
            where = "" if os.path.isabs(value) else f" (relative paths start from {os.getcwd()})"
            raise click.BadParameter(f"{value}: {kind} not found{where}; {fix}", ctx=ctx, param=param)
        return value

    return check


_predictions_exist = _exists_checked("file", "give a NeMo output manifest with pred_text (e.g. written by "
                                             "sde transcribe)")


def _predictions_files(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """--predictions' callback: every file, in the order given (each becomes a hypothesis of its
    own, named in that order: sde.manifest.hypotheses.predictions_fields), checked to exist. A file
    given twice, or two files of one name in different folders (their hypotheses would differ only
    by a number, pred_text_NAME and pred_text_NAME_2), are refused by name."""
    from sde.manifest.hypotheses import predictions_stem

    seen: set[str] = set()
    by_stem: dict[str, str] = {}
    for value in values:
        if not value.strip():  # `--predictions "$PREDS"` with PREDS unset
            raise click.BadParameter("is empty; name a file, e.g. --predictions preds.json", ctx=ctx, param=param)
        _predictions_exist(ctx, param, value)
        where = value if _is_url(value) else os.path.realpath(value)
        if where in seen:
            raise click.BadParameter(f"{value} is given twice; give each predictions file once", ctx=ctx, param=param)
        seen.add(where)
        stem = predictions_stem(value)
        if stem in by_stem:
            raise click.BadParameter(
                f"{by_stem[stem]} and {value} have one name, and each file's hypothesis is named after its file "
                f"(pred_text_{stem}): rename or copy one of them (e.g. to {Path(value).stem}_2{Path(value).suffix}) "
                "so that each model's scores say which file they are", ctx=ctx, param=param)
        by_stem[stem] = value
    return tuple(values)


def _cache_choice_checked(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """--cache-dir DIR with --no-cache: one of them would be ignored. Refused by whichever of the
    two is processed second (click processes them in the order they were typed)."""
    other = "no_cache" if param.name == "cache_dir" else "cache_dir"
    if value and ctx.params.get(other):
        raise click.UsageError(f"--cache-dir {ctx.params.get('cache_dir') or value} and --no-cache contradict each "
                               "other; give one: --cache-dir DIR to use the cache in DIR, or --no-cache to neither "
                               "read nor write a cache", ctx)
    if param.name == "cache_dir" and isinstance(value, str) and value.startswith("~"):
        # quoted in a job script ('~/sde-cache'): a literal "~" folder under the current one held
        # half of a build (its parts), the expanded home folder the other half
        value = os.path.expanduser(value)
    return value


def _cache_size_checked(ctx: click.Context, param: click.Parameter, no_cache: bool) -> bool:
    """--no-cache's callback: a command that uses the cache checks $SDE_CACHE_SIZE as its command
    line is read (a usage error, exit 2), not when a build stores its entry minutes later."""
    _cache_choice_checked(ctx, param, no_cache)
    if no_cache:
        return no_cache
    from sde.cache.limit import CacheSizeError, check_size_limit

    try:
        check_size_limit()
    except CacheSizeError as e:
        raise click.UsageError(str(e), ctx) from None
    return no_cache


def data_options(f: Callable) -> Callable:
    """Options shared by every command that builds a dataset."""
    decorators = [
        click.option("--audio-base-path", type=click.Path(file_okay=False), default=None,
                     callback=_exists_checked("folder", "give the folder that the manifest's relative audio paths "
                                              "start from (or an s3://... URL), or leave it out for the "
                                              "manifest's folder"),
                     help="Folder that relative audio paths are joined to (default: the manifest's folder)."),
        click.option("--vocab", type=click.Path(dir_okay=False), default=None,
                     callback=_exists_checked("file", "give a word list (one word per line, or a TSV whose first "
                                              "column is the word)"),
                     help="Word list (or TSV, first column = word); words outside it are marked OOV."),
        click.option("--pred-field", "pred_fields", multiple=True, metavar="F[=LABEL]",
                     help="Hypothesis field to score (repeatable). Default: pred_text and every pred_text_*."),
        click.option("--predictions", type=click.Path(dir_okay=False), multiple=True, metavar="FILE",
                     callback=_predictions_files,
                     help="A NeMo output manifest whose pred_text is merged by (audio_filepath, offset), and by "
                          "shard_id and audio_channel where the lines have them. Repeatable, one hypothesis per "
                          "file, to compare models: one file is scored as pred_text (where the manifest has "
                          "none), several each as pred_text_<file stem>, e.g. --predictions conformer.json "
                          "--predictions parakeet.json gives pred_text_conformer and pred_text_parakeet."),
        click.option("--normalize", default="", metavar="STEPS",
                     help="Also score normalised text: comma-separated lower,punct,numbers. Raw numbers stay."),
        click.option("--alphabet", default=None, metavar="CHARS",
                     help="Allowed characters (the space between words is always allowed); utterances with "
                          "others get an oov_chars column."),
        click.option("--estimate-audio-metrics", is_flag=True,
                     help="Read every audio file to measure sample rate, levels, clipping, bandwidth."),
        click.option("--strict", is_flag=True, help="Stop at the first bad manifest line instead of skipping it."),
        click.option("--cache-dir", type=click.Path(file_okay=False), default=None, callback=_cache_choice_checked,
                     help="Where built datasets are cached (default: the user cache dir, or $SDE_CACHE_DIR); "
                          "the least recently used are removed beyond 20 GiB ($SDE_CACHE_SIZE, e.g. 100GB; "
                          "at least 1MB); a read-only folder is read, nothing stored there."),
        click.option("--no-cache", is_flag=True, callback=_cache_size_checked,
                     help="Neither read nor write the cache."),
        click.option("--tarred-audio", default=None, metavar="PATTERN",
                     help="NeMo tarred audio: the tar shards, e.g. 'audio__OP_0..511_CL_.tar' (local or s3://); "
                          "lines name their shard_id and member."),
        click.option("--threads", type=int, default=None, metavar="N",
                     help="Processes that build the dataset and threads that query it (default: every core; "
                          "at most 4 per CPU this process may use)."),
        click.option("--memory-limit", default=None, metavar="SIZE",
                     help="Memory DuckDB may use to build and query, e.g. 2GB (default: 80% of RAM); "
                          "beyond it, it spills to the cache folder. The server also keeps up to half of it "
                          "for the word indexes of the transcripts (word searches read no line) and the "
                          "transcripts decompressed (default: a quarter of the machine's memory)."),
        click.option("--part-size", default=None, metavar="SIZE",
                     help="Build a big manifest part by part in parts of this size, in parallel and bounded "
                          "memory (default: 32MiB; at least 4KB). By default one local manifest of up to 128MiB "
                          "is built in one piece (faster), where that fits --memory-limit or an eighth of the "
                          "machine's memory; given, this is also the biggest built in one piece."),
        click.option("--storage-options", default=None, metavar="JSON",
                     help='Options of the object store for URL sources, e.g. \'{"endpoint_url": '
                          '"http://127.0.0.1:9000", "profile": "lab"}\' (credentials otherwise come the '
                          "usual way: environment, AWS profile)."),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def fail(message: str) -> None:
    click.echo(f"Error: {message}", err=True)
    sys.exit(EXIT_DATA_ERROR)


def _exit_interrupted() -> NoReturn:
    # A Ctrl-C that landed inside exec() of a string (dataclasses build their methods so, while
    # sde's modules import) leaves CPython marked as killed by an unhandled Ctrl-C, handled or not:
    # it would end by SIGINT instead of 130. exec() of a string clears that mark as it starts.
    exec("")
    click.echo("interrupted", err=True)
    sys.exit(130)


def _ctrl_c_in_duckdb(e: Exception) -> bool:
    """Whether ``e`` is a Ctrl-C that landed in a DuckDB query: DuckDB's Python client stops the
    query and raises this RuntimeError instead of KeyboardInterrupt (e.g. the build's vocabulary)."""
    return type(e) is RuntimeError and str(e).strip() == "Query interrupted"


def _storage_options_wrong(error: BaseException) -> bool:
    """Whether ``error`` came of a --storage-options value the store's client refused (its reader
    says so in its own error)."""
    from sde.error_chain import caused_by
    from sde.sources.remote import StorageOptionsError

    return caused_by(error, StorageOptionsError)


def handle_data_errors(f: Callable) -> Callable:
    """Turn every error the data can cause into a one-line message and exit code 1, and Ctrl-C
    into "interrupted" and exit code 130 (the imports happen inside the try: a Ctrl-C can land
    while pandas is still loading)."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except KeyboardInterrupt:
            _exit_interrupted()
        except Exception as e:
            from sde.dataset import DatasetError
            from sde.manifest import ManifestError

            if isinstance(e, (ManifestError, DatasetError)):
                if _storage_options_wrong(e):  # the option's value, not the data: a usage error
                    raise click.UsageError(str(e)) from None
                fail(str(e))
            if _ctrl_c_in_duckdb(e):
                _exit_interrupted()
            if isinstance(e, OSError) and e.errno == errno.ENOSPC:  # a worker's too: re-raised here
                where = f" writing {e.filename}" if e.filename else ""
                fail(f"no space left on the device{where} ({e.strerror or e}); free some space, or point TMPDIR "
                     "(temporary files) or --cache-dir (builds) at a bigger disk")
            raise

    return wrapper


def options_from(audio_base_path, vocab, pred_fields, predictions, normalize, alphabet,
                 estimate_audio_metrics, strict, storage_options=None, tarred_audio=None, threads=None,
                 memory_limit=None, part_size=None) -> "DatasetOptions":
    from sde.dataset import DatasetOptions
    from sde.text import parse_normalize

    from sde.manifest import parse_pred_field

    # Not a dataset option (not part of the cache key, never written to disk: it may hold secrets):
    # it says how to reach the store, for every remote read of this process.
    _configure_storage(storage_options)
    _check_remote_timeout()
    _configure_engine(threads, memory_limit, part_size)

    try:
        steps = parse_normalize(normalize)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--normalize") from None
    if normalize and normalize.strip() and not steps:  # `--normalize ,` scored nothing normalised, silently
        raise click.BadParameter(f"{normalize!r} names no step; give one or more of lower, punct, numbers, "
                                 "comma-separated (e.g. --normalize lower,punct)", param_hint="--normalize")
    for spec in pred_fields:
        try:
            parse_pred_field(spec)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--pred-field") from None
    _check_tarred_audio(tarred_audio)
    return DatasetOptions(
        audio_base_path=audio_base_path,
        vocab=vocab,
        pred_fields=tuple(pred_fields),
        predictions=predictions,
        strict=strict,
        normalize=tuple(steps),
        # the space between words is in every alphabet: `--alphabet abc…z` flagged every utterance for its spaces
        alphabet=alphabet if not alphabet or " " in alphabet else alphabet + " ",
        estimate_audio_metrics=estimate_audio_metrics,
        tarred_audio=tarred_audio,
    )


def _check_tarred_audio(pattern: str | None) -> None:
    """A --tarred-audio pattern that is malformed or matches no tar is a usage error, said before
    the manifest is read (the build expands it again, once the manifest is scored)."""
    from sde.sources import PatternError, RemoteError, expand_sources
    from sde.sources.remote import StorageOptionsError

    if not pattern:
        return
    try:
        expand_sources([pattern])
    except PatternError as e:
        raise click.BadParameter(str(e), param_hint="--tarred-audio") from None
    except StorageOptionsError as e:  # the options, not the store: a usage error, as their bad JSON is
        raise click.UsageError(str(e)) from None
    except RemoteError as e:
        fail(f"--tarred-audio: {e}")


def _configure_engine(threads: int | None, memory_limit: str | None, part_size: str | None) -> None:
    from sde.engine import EngineSettingError, configure, parse_memory_limit, parse_part_size

    for text, hint, parse in ((memory_limit, "--memory-limit", parse_memory_limit),
                              (part_size, "--part-size", parse_part_size)):
        try:
            if text:
                parse(text)
        except EngineSettingError as e:
            raise click.BadParameter(str(e), param_hint=hint) from None
    if memory_limit:
        _check_memory_limit_fits(memory_limit)
    try:
        configure(threads, memory_limit, part_size)
    except EngineSettingError as e:
        raise click.BadParameter(str(e), param_hint="--threads") from None
    from sde.query import reopen

    try:  # the DuckDB database every table view queries, with the settings just set
        reopen()
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--memory-limit") from None


def _check_memory_limit_fits(memory_limit: str) -> None:
    """Refuse a --memory-limit over the machine's memory. Clamping it would hide a typo (1TB for
    1GB); taking it as it is lets DuckDB plan for memory that is not there, so a big sort or group
    has the kernel kill the server instead of spilling to disk as the limit promised."""
    from sde.engine import machine_memory, parse_size

    have = machine_memory()
    if parse_size(memory_limit) <= have:
        return
    suggestion = max(1, int(have * 0.8) // 10**9)
    raise click.BadParameter(f"{memory_limit!r} is more than this machine has: {have / 2**30:.1f} GiB of memory "
                             "(RAM, or the container's limit where that is lower); give at most that, e.g. "
                             f"--memory-limit {suggestion}GB, or leave it out for 80% of it",
                             param_hint="--memory-limit")


def _check_remote_timeout() -> None:
    """A malformed $SDE_REMOTE_TIMEOUT is a usage error as the command starts, before any source is
    listed (a command that reads local files only is told too: the setting is broken either way)."""
    from sde.sources.remote import RemoteError, timeout_s

    try:
        timeout_s()
    except RemoteError as e:
        raise click.UsageError(str(e)) from None


def _configure_storage(text: str | None) -> None:
    from sde.sources import remote

    if text is None:
        return
    try:
        options = json.loads(text)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not valid JSON ({e.msg} at column {e.colno}); write an object such as "
                                 '\'{"endpoint_url": "http://127.0.0.1:9000"}\'', param_hint="--storage-options") \
            from None
    if not isinstance(options, dict):
        raise click.BadParameter("must be a JSON object such as '{\"profile\": \"lab\"}'",
                                 param_hint="--storage-options")
    remote.configure(options)


def expand(sources: "str | Sequence[str] | SourceSet"):
    """The manifest files the SOURCE arguments name (a SourceSet: already expanded); a pattern that
    matches nothing is a usage error."""
    from sde.sources import PatternError, RemoteError, SourceSet, expand_sources
    from sde.sources.remote import StorageOptionsError

    if isinstance(sources, SourceSet):
        return sources
    try:
        expanded = expand_sources([sources] if isinstance(sources, str) else list(sources))
    except PatternError as e:
        raise click.BadParameter(str(e), param_hint="SOURCE") from None
    except StorageOptionsError as e:
        raise click.UsageError(str(e)) from None
    except RemoteError as e:
        fail(str(e))
    for given, first in expanded.repeats[:NOTES_SHOWN]:
        click.echo(f"note: {given} is named more than once: its lines are read once" if given == first else
                   f"note: {given} is the same file as {first} (a link, or another path to it): its lines "
                   "are read once", err=True)
    if len(expanded.repeats) > NOTES_SHOWN:
        click.echo(f"note: and {len(expanded.repeats) - NOTES_SHOWN} more files named again, read once", err=True)
    return expanded


# Above this many utterances the server starts before the audio files are checked (a stat per
# file takes seconds at 10M); `audio_exists` and the summary's audio_missing appear when done.
PRESENCE_BEFORE_START_ROWS = 100_000
# Above this many, not at all: one stat per file (at most 10 s) and a table of every distinct path
# would cost the server gigabytes of memory and its first seconds of CPU for a partial answer.
PRESENCE_MAX_ROWS = 2_000_000
NOTES_SHOWN = 5  # bad lines (and notes) named at load; the Problems page lists them all
# At exit, how long the warm-up may take to end once its queries are interrupted (a column being
# decompressed finishes first: ~1-2 s at 10M rows).
WARM_UP_EXIT_S = 10.0


def load_notes(problems: Sequence[Any], warnings: Sequence[Any], shown: int = NOTES_SHOWN) -> list[str]:
    """What a load found wrong, as the terminal says it (a command-line user may never open a
    page): the manifest files skipped (of several), the bad lines skipped, then the notes about the
    lines kept (a hypothesis some lines lack, predictions unused, utterances too long to align
    whole); of each, how many, the first few as FILE[:LINE]: reason, and where the others are."""
    said = []
    # line 0: a whole file of several (missing, unreadable, empty) left out, not a line of it
    files = [p for p in problems if not getattr(p, "line", 1)]
    lines = [p for p in problems if getattr(p, "line", 1)]
    if files:
        said += _listed(files, f"{_counted(len(files), 'manifest file')} skipped",
                        "the Problems page lists them too; --strict stops at the first instead", shown)
    if lines:
        said += _listed(lines, f"{_counted(len(lines), 'bad line')} skipped",
                        "the Problems page and /api/problems list every one; --strict stops at the first instead", shown)
    if warnings:
        said += _listed(warnings, f"{_counted(len(warnings), 'note')} about the lines kept",
                        "the Problems page and /api/summary list every one", shown)
    return said


def _listed(items: Sequence[Any], head: str, where: str, shown: int) -> list[str]:
    said = [f"warning: {head} ({where}):", *(f"  {item}" for item in items[:shown])]
    if len(items) > shown:
        said.append(f"  ... and {len(items) - shown:,} more")
    return said


def _counted(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def load(manifest: "str | Sequence[str] | SourceSet", options, cache_dir: str | None, no_cache: bool, quiet: bool = False,
         background_write: bool = False, vad: bool = False, check_audio: bool = True,
         check_audio_later: bool = False, engine: dict[str, Any] | None = None, notes: bool = True):
    """The dataset of ``manifest``, saying what it does on stderr unless ``quiet``; what it found
    wrong (bad lines, files skipped: :func:`load_notes`) is said with ``notes`` even when quiet:
    `sde stats --json` keeps stdout for its JSON, and the docs promise the first five bad lines."""
    from sde.build.load import load_dataset
    from sde.engine import settings
    from sde.quality.vad import VadError
    from sde.sources import remote

    from sde.audio_presence import with_audio_presence
    from sde.quality.apply import swap_lock
    from sde.startup_gc import resume_full_collections

    resume_full_collections()  # paused for the imports (sde.startup_gc); a build is work
    status = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    if not no_cache and not cache_dir:
        _say_cache_without_home()
    # a server checks stored audio measures against their files once it answers (sde.build.remeasure)
    measure_checks: list[MeasureCheck] | None = [] if check_audio_later else None
    # one load: what the store said of a tar folder while building is what the members' check reads
    with remote.silence_is_final():
        try:
            dataset = load_dataset(expand(manifest), options, cache_dir=cache_dir, use_cache=not no_cache,
                                   progress=not quiet, status=status, background_write=background_write, vad=vad,
                                   threads=settings().threads, memory_limit=settings().memory_limit,
                                   **({"part_bytes": settings().part_bytes} if settings().part_bytes else {}),
                                   **(engine or {}), measure_checks=measure_checks)
        except VadError as e:  # --vad without Silero VAD installed: what to install
            fail(f"--vad: {e}")
        # Checked at every start, never cached: files come and go while the manifest stays the same.
        if check_audio and dataset.tar_shards:  # NeMo tarred audio / Lhotse Shar: each line's member, in its tar
            from sde.manifest import Problem
            from sde.sources.members import with_tar_members

            dataset = with_tar_members(dataset, Problem, status=status,
                                       cache_dir=Path(cache_dir) / "tar-index" if cache_dir else None)
    for line in load_notes(dataset.problems, dataset.warnings) if notes else ():  # after the members' check too
        click.echo(line, err=True)
    rows = len(dataset.utterances)
    presence = check_audio and not dataset.tar_shards
    if presence and rows > PRESENCE_MAX_ROWS:
        status(f"note: {rows:,} utterances: their audio files are not checked at start (above "
               f"{PRESENCE_MAX_ROWS:,}); audio_missing stays empty, and the inspector says when a file is missing")
        presence = False
    measures = measure_checks[0] if measure_checks else None
    if check_audio_later and rows > PRESENCE_BEFORE_START_ROWS and (presence or measures):
        if measures is not None:
            status(f"audio measures: checking the audio files of {rows:,} utterances for changes since they were "
                   "measured, while serving (the measures shown until then are those stored)")

        def check() -> None:
            if measures is not None:
                checked = measures.run(dataset, say=status)
                if presence:
                    checked = with_audio_presence(checked, status=status)
                if checked is not dataset:
                    dataset.replace_with(checked)
                return
            # On the tables as they are then (a swap meanwhile, such as quality columns added, is
            # not undone); the audio's presence alone changes: what was computed or kept with
            # the build still holds (the quality columns read no `audio_exists`, nor the pages kept)
            with swap_lock(dataset):
                checked = with_audio_presence(dataset, status=status)
                if checked is not dataset:
                    dataset.replace_with(checked, keep=("quality-columns",), keepers="all")

        threading.Thread(target=check, name="sde-audio-presence", daemon=True).start()
        return dataset
    if measures is not None:
        dataset = measures.run(dataset, say=status)
    return with_audio_presence(dataset, status=status) if presence else dataset


@functools.cache  # once a process: `sde index` loads twice
def _say_cache_without_home() -> None:
    """With no home folder (a container run as a uid with no passwd entry, without HOME) the cache
    is in the temporary folder: it works, and lasts as long as the container's own ~/.cache would
    have. Said once, with where to keep it instead."""
    from sde.caching import configured_cache_dir, homeless_cache_dir, user_cache_folder

    if configured_cache_dir() is not None or user_cache_folder() is not None:
        return
    who = f"uid {os.geteuid()}" if hasattr(os, "geteuid") else "this user"
    click.echo(f"note: no home folder to cache in (HOME is not set, and {who} has no passwd entry): caching in "
               f"{homeless_cache_dir()}, lost with the temporary folder (a container's when it goes); to keep "
               "builds and reviews, set HOME, or pass --cache-dir DIR / SDE_CACHE_DIR (a mounted folder), "
               "or --no-cache", err=True)


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sde")
def cli() -> None:
    """sde — the speech data explorer.

    Point it at NeMo JSONL manifests to explore the dataset and the model's errors in a browser:

    \b
        sde manifest.json --port 8050
        sde stats manifest.json --json
        sde 'shards/manifest__OP_0..511_CL_.json'
        sde s3://bucket/manifest.json --storage-options '{"profile": "lab"}'
        sde demo
    """


vad_option = click.option(
    "--vad", is_flag=True,
    help='Measure speech activity (Silero VAD: speech_duration, leading/trailing silence, speech_ratio), '
         'audio hashes and loudness of every utterance; cached with the dataset. Needs pip install "sde[vad]".')


def _auth_checked(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--auth checked as the command line is read: a typo was found only once the whole dataset had
    been read and scored (minutes at 10M lines)."""
    if value is not None:
        from sde.web.auth import parse_credentials

        try:
            parse_credentials(value)
        except ValueError as e:
            raise click.BadParameter(str(e), ctx=ctx, param=param) from None
    return value


def _allowed_hosts_checked(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """--allow-host NAME (repeatable) or SDE_ALLOWED_HOSTS (names split by commas or spaces), each a
    host name or IP, checked as the command line is read."""
    from sde.web.sites import allowed_names

    names = tuple(n for value in values for n in value.replace(",", " ").split())
    try:
        allowed_names(names)
    except ValueError as e:
        raise click.BadParameter(str(e).removeprefix("--allow-host "), ctx=ctx, param=param) from None
    return names


def _auth_env_set_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """SDE_AUTH set to nothing (SDE_AUTH="$SECRET" with SECRET unset) reads as unset to click: the
    server would run open while its user believes it guarded. Refused, as --auth '' is."""
    typed = ctx.get_parameter_source(param.name or "") is click.core.ParameterSource.COMMANDLINE
    if not typed and os.environ.get("SDE_AUTH") is not None and not os.environ["SDE_AUTH"].strip():
        raise click.BadParameter("SDE_AUTH is set but empty, so no password would be asked for; set it to "
                                 "USER:PASSWORD, or unset it (unset SDE_AUTH) to serve without a password",
                                 ctx=ctx, param_hint="SDE_AUTH")
    return _auth_checked(ctx, param, value)


def serve_options(f: Callable) -> Callable:
    decorators = [
        click.option("--port", cls=EnvOption, type=click.IntRange(0, 65535), default=8050, show_default=True,
                     envvar="SDE_PORT",
                     help="Port to listen on; 0 picks a free one (or set SDE_PORT)."),
        click.option("--host", cls=EnvOption, default="127.0.0.1", show_default=True, envvar="SDE_HOST",
                     help="Interface to bind; 0.0.0.0 exposes sde to your network (or set SDE_HOST)."),
        click.option("--auth", cls=EnvOption, secret=True, default=None, envvar="SDE_AUTH", metavar="USER:PASSWORD",
                     callback=_auth_env_set_empty,
                     help="Require HTTP basic auth on every route (or set SDE_AUTH)."),
        click.option("--allow-host", "allow_hosts", multiple=True, metavar="NAME", envvar="SDE_ALLOWED_HOSTS",
                     callback=_allowed_hosts_checked,
                     help="Also answer requests for this host name on a server bound to 127.0.0.1 (repeatable; "
                          "'*' any; or SDE_ALLOWED_HOSTS=a,b): a proxy's or an /etc/hosts alias. Other names are "
                          "refused, so that a web page cannot read sde through DNS rebinding."),
        click.option("--debug", is_flag=True, help="Dash debug mode (never use on a shared machine)."),
    ]
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def review_options(f: Callable) -> Callable:
    """--reviews FILE and --read-only: where the browser's keep / drop / fix reviews are kept."""
    f = click.option("--read-only", is_flag=True,
                     help="Show reviews but turn editing off (the reviews file is opened read-only).")(f)
    return click.option("--reviews", "reviews", type=click.Path(dir_okay=False), default=None, metavar="FILE",
                        help="The reviews file (SQLite, created when missing; default: the manifest's own, "
                             "in the cache folder).")(f)


def _reviews_file(dataset, reviews: str | None, cache_dir: str | None, no_cache: bool) -> str | None:
    """--reviews FILE, else the manifest's reviews file in the cache folder (None with --no-cache:
    reviews are off rather than written into a cache the user asked sde not to touch). In a
    read-only cache folder (sde.cache.CacheReadOnly) the reviews kept there are shown
    (sde.review_store turns editing off where their file cannot be written, and says why); with
    none kept there, reviews are off, and a note says where else to keep them."""
    if reviews is not None or no_cache:
        return reviews
    from sde.cache import CacheReadOnly, CacheUnusable, check_cache_folder
    from sde.lines import ExportError
    from sde.reviews import default_reviews_path

    try:  # named after the manifest files, which must still be where sde read them
        path = default_reviews_path(dataset, cache_dir)
    except ExportError as e:
        click.echo(f"note: reviews are off: {e}", err=True)
        return None
    try:
        # The same checks as the cache itself: a folder others can write is refused (the cache
        # already warned once), and reviews are then off rather than kept where others can swap them.
        check_cache_folder(path.parent.parent)
        check_cache_folder(path.parent)
    except CacheReadOnly as e:
        if path.is_file():  # the store says why editing is off (a read-only file system), or edits
            return str(path)  # where only the cache folder itself was made read-only
        click.echo(f"note: reviews are off: the cache folder {e.directory} is read-only; pass --reviews FILE "
                   "to keep them in a file of your own", err=True)
        return None
    except CacheUnusable:
        return None
    return str(path)


@cli.command("serve")
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@data_options
@click.option("--model", default=None, metavar="NAME_OR_.nemo",
              help="NeMo ASR model used to transcribe when the manifest has no predictions.")
@vad_option
@click.option("--noise-dir", type=click.Path(exists=True, file_okay=False), default=None, callback=_augment_dir_noted,
              help="Noise recordings for the inspector's augmentation preview (default: synthetic noise).")
@click.option("--rir-dir", type=click.Path(exists=True, file_okay=False), default=None, callback=_augment_dir_noted,
              help="Room impulse responses for the augmentation preview (default: a synthetic one).")
@serve_options
@review_options
@handle_data_errors
def serve_command(sources: tuple[str, ...], model: str | None, port: int, host: str, auth: str | None,
                  allow_hosts: tuple[str, ...], debug: bool, cache_dir: str | None, no_cache: bool, vad: bool,
                  noise_dir: str | None, rir_dir: str | None, reviews: str | None, read_only: bool,
                  **data: Any) -> None:
    """Serve the explorer on SOURCE... (this is also what `sde SOURCE...` does): one or more
    manifests, globs, NeMo shard patterns or URLs, read as one dataset."""
    sock = _reserve_port(host, port)
    data["alphabet"] = _alphabet_from_model(data.get("alphabet"), model)
    options = options_from(**data)
    # The server starts while the cache entry is written: the first start is ready sooner.
    dataset = load(sources, options, cache_dir, no_cache, background_write=True, vad=vad, check_audio_later=True)
    if not dataset.hypotheses:
        dataset = _maybe_transcribe(dataset, sources, model, cache_dir, no_cache)
    else:
        _say_model_unused(dataset, sources, model)
    _serve(dataset, host=host, port=port, auth=auth, debug=debug, cache_dir=_jobs_dir(cache_dir, no_cache),
           sock=sock, augment_dirs=(noise_dir, rir_dir),
           reviews=_reviews_file(dataset, reviews, cache_dir, no_cache), read_only=read_only,
           cache_options=(cache_dir, no_cache), vad=vad, allow_hosts=allow_hosts)


def _reserve_port(host: str, port: int):
    """The port, taken before anything is loaded: a busy one is reported in a moment, not after
    minutes of reading a large manifest (sde.web.serve imports no web framework for this)."""
    from sde.web.serve import ServeError, reserve

    if not host.strip():  # "" binds every interface, while the URL printed says 127.0.0.1
        raise click.BadParameter("empty; give an interface: 127.0.0.1 (this machine only, the default) or "
                                 "0.0.0.0 (your network)", param_hint="--host")
    try:
        return reserve(host, port)
    except ServeError as e:
        ctx = click.get_current_context(silent=True)
        given = [f"{v}={value}" for name, value in (("host", host), ("port", port))
                 if (v := from_environment(ctx, name))]
        # the fix names --host/--port; the value the user must change is an environment variable's
        message = f"{e}" + (f" (from the environment: {', '.join(given)}; fix or unset it)" if given else "")
        if e.bad_host:  # a value no address answers to: a usage error (exit 2), as a bad --port is
            raise click.UsageError(message) from None
        fail(message)


def _alphabet_from_model(alphabet: str | None, model: str | None) -> str | None:
    """Without --alphabet, a local character-based .nemo model's labels are the alphabet to check."""
    if alphabet is not None or not model or not model.endswith(".nemo") or not Path(model).is_file():
        return alphabet
    from sde.nemo.model import TranscribeError, model_alphabet

    try:
        found = model_alphabet(model)
    except TranscribeError as e:
        click.echo(f"warning: {e}; no alphabet check", err=True)
        return None
    if found is None:
        click.echo(f"note: {Path(model).name} is a subword model: it has no fixed alphabet to check", err=True)
    return found


def _jobs_dir(cache_dir: str | None, no_cache: bool) -> str | None:
    """Where the UI's background jobs hand results over (None: a temporary folder)."""
    if no_cache:
        return None
    from sde.cache import default_cache_dir

    return str(cache_dir or default_cache_dir())


def _say_model_unused(dataset, sources: tuple[str, ...], model: str | None) -> None:
    """--model only transcribes a manifest without predictions; one with them was served with its
    own while the user believed they were looking at the model they named."""
    if not model:
        return
    fields = ", ".join(h.field for h in dataset.hypotheses)
    source = sources[0] if len(sources) == 1 else "SOURCE..."
    name = re.sub(r"\W+", "_", Path(model).name.removesuffix(".nemo")).strip("_") or "model"
    click.echo(f"note: --model {model} is not used: the manifest has predictions ({fields}), and --model only "
               f"transcribes a manifest that has none. To score this model too: sde transcribe {source} "
               f"--model {model} -o {name}.json, then add --predictions {name}.json (scored as "
               f"pred_text_{name})", err=True)


def _maybe_transcribe(dataset, manifest: str, model: str | None, cache_dir, no_cache):
    """No predictions: transcribe with NeMo when it is installed, else explain how to get them."""
    from sde.nemo import model as transcribe

    if not transcribe.nemo_available():
        if model:  # asked for by name: say why it is not used
            click.echo(f"warning: could not transcribe with --model {model}: NeMo is not installed "
                       "(pip install \"sde[nemo]\", the CPU build of torch first); serving statistics only.",
                       err=True)
            return dataset
        click.echo(
            "note: the manifest has no predictions (pred_text); serving statistics only.\n"
            "      For error analysis, pass --predictions FILE, or install NeMo (pip install \"sde[nemo]\")\n"
            "      and sde transcribes with --model NAME_OR_.nemo.",
            err=True,
        )
        return dataset
    from sde.nemo.jobs import transcribe_dataset

    model = model or transcribe.DEFAULT_MODEL
    click.echo(f"no predictions in the manifest: transcribing with {model} (cached for the next start)", err=True)
    try:
        return transcribe_dataset(dataset, model, cache_dir=cache_dir, use_cache=not no_cache, progress=True)
    except transcribe.TranscribeError as e:
        click.echo(f"warning: could not transcribe: {e}\n         serving statistics only.", err=True)
        return dataset


def _warm_queries(query, transcripts: list[str], errors: list, prepare: Callable[[], list[str]] | None = None,
                  served: threading.Event | None = None) -> None:
    """The server's warm-up (:func:`_warm_up`), ending quietly when the process exits under it: the
    exit interrupts its DuckDB queries, and Python's shutdown refuses new work to its thread pools
    (a RuntimeError), where a traceback would be all the user saw. ``served`` is set once the
    server has stopped: Python's exit refuses that work before sde's exit handler says it is
    stopping (sde.filters.engine.stopping)."""
    from sde.filters.engine import stopping

    try:
        _warm_up(query, transcripts, errors, prepare)
    except RuntimeError:
        if not (stopping() or (served is not None and served.is_set())):
            raise


def _warm_up(query, transcripts: list[str], errors: list, prepare: Callable[[], list[str]] | None = None) -> None:
    """The query engine's start-up work (sde.query.TableQuery.warm_search), then a line saying
    searches are at full speed, one when phrases of common words are (TableQuery.warm_phrases), and
    one when sorts by text are (TableQuery.warm_sorts: the transcripts first), then one when regexes
    across words are (TableQuery.warm_joins): at 10M utterances building them takes tens of seconds,
    and a user timing a search or a sort should know. ``prepare`` lays out the pages whose first
    visit computes for seconds (sde.web.pages.prepare_pages) and a line says so. The words of the
    errors tables coded (sde.analysis.prepare_errors: a second at 10M) and the columns the budget
    keeps read whole (TableQuery.warm_columns) come first where the indexes are built (from those
    reads); where a previous start wrote them (TableQuery.map_indexes), after the indexes and the
    pages. Last, the transcripts the budget has room for are read whole
    (TableQuery.warm_transcripts), and a line names those in memory: the warm-up's last."""
    from sde.analysis import prepare_errors
    from sde.filters import QueryError
    from sde.filters.engine import stopping

    started = time.monotonic()

    def read_whole(indexes_to_build: bool) -> None:
        for table in errors:
            try:
                prepare_errors(table)
            except QueryError:  # interrupted by the exit; else the first request for them says what failed
                if stopping():
                    return
        query.warm_columns(transcripts, indexes_to_build)  # then built in the same budget

    def lay_out_pages() -> None:
        if prepare is None:
            return
        try:
            pages = prepare()
        except Exception as e:  # a page's own error shows at its visit; the server goes on either way
            if not stopping():
                click.echo(f"warning: the pages were not prepared ({type(e).__name__}: {e}); each is laid out "
                           "at its first visit", err=True)
            return
        click.echo(f"pages ready ({time.monotonic() - started:.1f} s; {', '.join(pages) or 'no page'} prepared)",
                   err=True)

    # Word indexes a previous start wrote are mapped in milliseconds: searches, phrases, sorts and
    # regexes are then at full speed before the seconds of reading columns whole (10M lines: ~9 s
    # with the errors' words). Indexes to build are built from those reads: they come first.
    mapped = query.map_indexes(transcripts)
    if not mapped:
        read_whole(indexes_to_build=True)
        if stopping():  # interrupted by the exit
            return
    indexed = query.warm_search(transcripts)
    if stopping():  # interrupted by the exit
        return
    words = f"; words of {', '.join(indexed)} indexed" if indexed else ""
    click.echo(f"searches ready ({time.monotonic() - started:.1f} s{words})", err=True)
    # each step: its line, the step, what it did to the columns it names, what it says when none
    steps: list[tuple[str, Callable[[], list[str]], str, str]] = [
        ("sorts ready", lambda: query.warm_sorts([*transcripts, *query.columns]), "{} ranked",
         "no text column ranked: sorts compare the values")]
    if indexed:  # the word indexes grow: pairs of common words before the sorts, joins of words after
        steps.insert(0, ("phrases ready", lambda: query.warm_phrases(indexed), "pairs of common words of {} indexed",
                         "no room for pairs of common words"))
        steps.append(("regexes across words ready", lambda: query.warm_joins(indexed), "joins of words of {} indexed",
                      "no room for joins of words"))
    for said, step, done, none in steps:
        columns = step()
        if stopping():  # interrupted by the exit
            return
        what = done.format(", ".join(columns)) if columns else none
        click.echo(f"{said} ({time.monotonic() - started:.1f} s; {what})", err=True)
    if mapped:  # the pages a browser opens first, before the reads no page waits for
        lay_out_pages()
        if stopping():
            return
        read_whole(indexes_to_build=False)
    else:
        lay_out_pages()
    if stopping():
        return
    kept = query.warm_transcripts(transcripts)  # last: the pages' reads would push them out
    if stopping():
        return
    what = f"{', '.join(kept)} kept whole" if kept else "none: no room for them whole, searches read them by batch"
    click.echo(f"transcripts in memory ({time.monotonic() - started:.1f} s; {what})", err=True)


def _summary_ahead(dataset) -> None:
    """The dataset's summary, computed before it is asked for; an error is left for the request
    that asks to report (with its status), not printed here."""
    try:
        dataset.summary()
    except Exception:
        pass


def _end_background_queries(warm) -> None:
    """At exit: interrupt DuckDB queries still running (the warm-up's word indexes, a request's
    search) and let the warm-up end, before Python stops its threads in the middle of them."""
    from sde.filters.engine import stop_queries

    stop_queries()
    warm.join(WARM_UP_EXIT_S)


def _serve(dataset, *, host: str, port: int, auth: str | None, debug: bool, cache_dir: str | None = None,
           sock=None, augment_dirs: tuple[str | None, str | None] = (None, None), reviews: str | None = None,
           read_only: bool = False, cache_options: tuple[str | None, bool] = (None, False), vad: bool = False,
           allow_hosts: tuple[str, ...] = ()) -> None:
    # The first page a browser opens shows the summary (sums over every row: 0.3-0.8 s at 10M,
    # mostly reading the columns, numpy without the GIL): made while the web framework imports.
    threading.Thread(target=_summary_ahead, args=(dataset,), name="sde-summary", daemon=True).start()
    from sde.startup_gc import pause_full_collections, resume_full_collections
    from sde.web.serve import ServeError, import_dash, serve

    pause_full_collections()  # for the web framework's imports (sde.startup_gc)
    import_dash()
    from sde.web.app import AppConfig, create_app

    from sde.web.sites import is_loopback_name

    # --auth was checked as the command line was read (_auth_checked), before the dataset
    local = is_loopback_name(host.strip("[]").lower())  # the one definition the Host check uses too
    if debug and not local:
        click.echo("warning: --debug shows tracebacks (source lines, paths) to every client; "
                   "use it on 127.0.0.1 only", err=True)
    if not local:
        click.echo(
            f"warning: listening on {host}: anyone who can reach this machine can read the manifest "
            "and its audio" + ("" if auth else "; consider --auth USER:PASSWORD"),
            err=True,
        )
    # --cache-dir as given, else $SDE_CACHE_DIR: the printed commands name the folder, so that they read
    # this build from another shell or folder too.
    given_cache, no_cache = cache_options
    from sde.caching import configured_cache_dir

    given_cache = given_cache or configured_cache_dir()
    app = create_app(dataset, AppConfig(title=dataset.name, debug=debug, auth=auth, cache_dir=cache_dir,
                                        reviews=reviews, read_only=read_only, no_cache=no_cache,
                                        dataset_cache_dir=None if no_cache or not given_cache
                                        else os.path.abspath(given_cache), vad=vad, allowed_hosts=allow_hosts))

    # The query engine's view of the table (seconds at 10M rows) is made while the browser opens;
    # of the text columns, the transcripts are the ones searched (paths, speakers: on first use).
    transcripts = ["text", *(h.field for h in dataset.hypotheses)]
    errors = [dataset.errors[h.field] for h in dataset.hypotheses if h.field in dataset.errors]
    from sde.cache.read_ahead import read_ahead
    from sde.web.pages import prepare_pages

    # The kernel reads the build's files while the browser opens: the first filter, search and
    # breakdown then read memory, not the disk (sde.cache.read_ahead).
    threading.Thread(target=read_ahead, name="sde-read-ahead", daemon=True, args=(dataset.files,)).start()
    served = threading.Event()
    warm = threading.Thread(target=_warm_queries, name="sde-warm-queries", daemon=True,
                            args=(dataset.utterance_query, transcripts, errors, lambda: prepare_pages(dataset), served))
    warm.start()
    atexit.register(_end_background_queries, warm)
    from sde.web.panels.augment import configure_sources

    configure_sources(app.server, *augment_dirs)
    resume_full_collections()
    try:
        serve(app, host=host, port=port, debug=debug, sock=sock)
    except ServeError as e:
        fail(str(e))
    finally:
        served.set()


@cli.command("stats")
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@data_options
@click.option("--model", default=None, metavar="NAME_OR_.nemo",
              help="When the manifest has no predictions, transcribe with this NeMo model first (cached).")
@click.option("--json", "as_json", is_flag=True, help="Print the /api/summary JSON instead of a table.")
@vad_option
@handle_data_errors
def stats_command(sources: tuple[str, ...], model: str | None, as_json: bool, cache_dir: str | None,
                  no_cache: bool, vad: bool, **data: Any) -> None:
    """Print the summary of SOURCE... (one dataset): hours, utterances, vocabulary, alphabet,
    WER/CER/WMR/MWA."""
    data["alphabet"] = _alphabet_from_model(data.get("alphabet"), model)
    options = options_from(**data)
    dataset = load(sources, options, cache_dir, no_cache, quiet=as_json, vad=vad)
    if model and not dataset.hypotheses:
        dataset = _maybe_transcribe(dataset, sources, model, cache_dir, no_cache)
    elif model:
        _say_model_unused(dataset, sources, model)
    summary = dataset.summary()
    from sde.audio_quality import cached_audio_quality_summary, has_audio_metrics

    # as the server's Statistics page does (its "Audio quality" card); unmeasured, nothing to say,
    # and no summary to make (counting files: seconds at 10M utterances)
    audio = cached_audio_quality_summary(dataset) if has_audio_metrics(dataset.utterances) else {}
    unreadable = _unreadable_audio(audio)
    if as_json:
        from sde.audio_presence import COLUMN as EXISTS, tarred_hint

        # the load's note on a NeMo tarred manifest given without its tars (said on the terminal, not
        # here: quiet) is the fix of audio_missing, so --json's warnings carry it too
        exists = dataset.utterances.get(EXISTS)
        hint = "" if dataset.tar_shards or exists is None or not summary.get("audio_missing") or \
            exists.fillna(False).any() else tarred_hint(dataset.utterances)
        if hint:
            summary["warnings"] = [*summary["warnings"], f"all {summary['audio_missing_files'] or 0:,} audio files "
                                   f"are missing ({summary['audio_missing']:,} utterances){hint}"]
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
        if unreadable:  # stdout is the /api/summary JSON; the measures' is /api/audio-quality
            click.echo("note: " + "\n".join(unreadable), err=True)
    else:
        click.echo(format_summary(summary, [*unreadable, *_audio_findings(audio)]))


@cli.command("index")
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@data_options
@vad_option
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Build on this machine's cores, or on a Ray cluster (needs sde[ray]).")
@click.option("--address", default=None, metavar="ADDRESS", callback=checked_address,
              help="--engine ray: the cluster (auto, ray://HOST:PORT or HOST:PORT; default: $RAY_ADDRESS, "
                   "else a local Ray instance of --threads CPUs).")
@click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="--engine ray: parts built at once (default: one per CPU of the Ray cluster).")
@click.option("--search-indexes", is_flag=True,
              help="Also build the transcripts' word indexes and the text columns' sort ranks, written beside "
                   "the dataset, which a server otherwise builds in its first minutes (10M utterances: ~3 min "
                   "more here, ~2.4 GB more on disk): its searches are then at full speed from the start.")
@click.option("--checks", is_flag=True,
              help="Also count the suspicious utterances and duplicates of the Statistics page, which a server "
                   "otherwise counts in the background at its first start (10M utterances: ~4 min of two cores), "
                   "kept with the dataset.")
@handle_data_errors
def index_command(sources: tuple[str, ...], cache_dir: str | None, no_cache: bool, vad: bool, engine: str,
                  address: str | None, workers: int | None, search_indexes: bool, checks: bool,
                  **data: Any) -> None:
    """Build SOURCE... into the cache without serving it (for a batch job): a later
    `sde SOURCE...` with the same options starts at once, and shows its Statistics, Errors and
    Comparison pages at once too (laid out here, kept with the dataset).

    A big local manifest is built part by part on --threads processes in bounded memory; an
    interrupted build (Ctrl-C, a killed job) resumes where it stopped when run again.
    With --engine ray the parts are built as Ray tasks; on a cluster the manifest and the cache
    folder (--cache-dir) must be on storage every node sees at the same path (NFS, Lustre).
    """
    import time

    if no_cache:
        raise click.BadParameter("sde index writes the built dataset into the cache; drop --no-cache "
                                 "(choose the folder with --cache-dir DIR)", param_hint="--no-cache")
    options = options_from(**data)
    _check_index_folder(cache_dir)
    started = time.perf_counter()
    if engine == "ray":
        dataset = _index_on_ray(sources, options, cache_dir, vad, address, workers)
    elif address or workers:
        raise click.BadParameter("only with --engine ray", param_hint="--address" if address else "--workers")
    else:
        dataset = load(sources, options, cache_dir, no_cache, vad=vad, check_audio=False)
    from sde.cache import default_cache_dir

    where = cache_dir or default_cache_dir()
    if not _stored(sources, options, where, vad):  # a batch job's one product: say it failed
        fail(f"built {len(dataset.utterances):,} utterances of {dataset.name}, but nothing was stored in {where} "
             "(the warnings above say why: a read-only or full folder); choose a writable folder with "
             "free space with --cache-dir DIR")
    click.echo(f"indexed {len(dataset.utterances):,} utterances of {dataset.name} in "
               f"{time.perf_counter() - started:.1f} s into {where}; serve them with: "
               f"{_serve_command(click.get_current_context(), sources)}"
               + (" (credentials in --storage-options shown as …: give them again, or in the store's usual "
                  "variables or profile)" if _has_credentials(data.get("storage_options")) else ""), err=True)
    stored = load(sources, options, cache_dir, False, quiet=True, vad=vad, check_audio=False, notes=False)
    if search_indexes:
        _write_search_indexes(stored)
    _keep_pages(stored)
    if checks:
        _keep_checks(stored)


#: Options of sde index that are not the dataset's: the command that serves it leaves them out.
_INDEX_ONLY = {"engine", "address", "workers", "search_indexes", "checks"}


def _serve_command(ctx: click.Context, sources: Sequence[str]) -> str:
    """`sde SOURCE...` with every option given to this command that a server needs to find the
    same build (data options are part of its key: without --tarred-audio, --normalize, --vad, …
    it would build another dataset), quoted for a shell."""
    words = ["sde", *sources]
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in _INDEX_ONLY or param.name is None \
                or ctx.get_parameter_source(param.name) in (None, click.core.ParameterSource.DEFAULT):
            continue
        value = ctx.params.get(param.name)
        flag = max(param.opts, key=len)
        if param.is_flag:
            if value:
                words.append(flag)
        elif param.name == "storage_options" and value is not None:
            words += [flag, _without_credentials(str(value))[0]]
        else:
            words += [w for v in (value if param.multiple else [value]) for w in (flag, str(v))]
    return " ".join(shlex.quote(w) for w in words)


_CREDENTIAL = re.compile(r"secret|token|password|passwd|credential|^key$|access_key|account_key|sas", re.IGNORECASE)


def _has_credentials(storage_options: str | None) -> bool:
    return storage_options is not None and _without_credentials(storage_options)[1]


def _without_credentials(storage_options: str) -> tuple[str, bool]:
    """--storage-options as printed for the user to run again: the values of credential keys (S3's
    key and secret, tokens, passwords, at any depth) shown as "…", since what sde prints lands in
    terminals, job logs and CI output; and whether any value was hidden."""
    hid = False

    def hidden(value: Any) -> Any:
        nonlocal hid
        if isinstance(value, dict):
            shown = {}
            for k, v in value.items():
                secret = bool(_CREDENTIAL.search(str(k))) and not isinstance(v, (dict, list))
                # a value "…" already (a printed command run again) hides nothing more
                hid = hid or (secret and v != "…")
                shown[k] = "…" if secret else hidden(v)
            return shown
        if isinstance(value, list):
            return [hidden(v) for v in value]
        return value

    try:
        return json.dumps(hidden(json.loads(storage_options)), ensure_ascii=False), hid
    except ValueError:  # checked as the command line was read; as given, should that change
        return storage_options, False


def _check_index_folder(cache_dir: str | None) -> None:
    """Fail before building where the cache folder cannot take the dataset (read-only, not
    writable, not private): a batch job learned it only after the whole build. A folder that
    fills up during the build is found out after it (_stored)."""
    from sde.cache import CacheUnusable, check_cache_folder, default_cache_dir

    try:
        check_cache_folder(cache_dir or default_cache_dir())
    except CacheUnusable as e:
        fail(f"cannot index into {e.directory}: {e.reason}; nothing was built (fix: {e.fix})")


def _stored(sources: Sequence[str], options, where: str | Path, vad: bool) -> bool:
    """Whether the cache folder holds the dataset of these sources and options now (a folder sde
    cannot store in was refused before the build: _check_index_folder)."""
    from sde.build.load import entry_key
    from sde.cache import CacheUnusable, DatasetCache

    try:
        cache = DatasetCache(where, warn=lambda _message: None, note=lambda _message: None)
    except CacheUnusable:
        return False
    try:
        return cache.holds(entry_key(expand(sources), options, vad))
    finally:
        cache.close()


def _keep_pages(dataset) -> None:
    """sde index: the pages a server's warm-up lays out (sde.web.pages.prepare_pages), laid out
    here on the dataset as stored, so that what they compute is kept beside it (sde.caching):
    a server started on it shows them at once (10M utterances: ~20 s of work once, here)."""
    from sde.web.pages import prepare_pages

    _kept_by_the_job(dataset, lambda: prepare_pages(dataset), "the pages were not laid out",
                     "a server lays them out at its start",
                     lambda pages, s: f"pages laid out in {s:.1f} s and kept with the dataset: {', '.join(pages) or 'none'}")


def _keep_checks(dataset) -> None:
    """sde index --checks: the suspicious-utterance and duplicate counts a server's Statistics page
    starts in the background (sde.web.panels.suspicious), counted here and kept with the dataset:
    a server started on it shows them at once."""
    from sde.web.panels.suspicious import summary

    _kept_by_the_job(dataset, lambda: summary(dataset), "the suspicious utterances were not counted",
                     "a server counts them at its first start",
                     lambda _, s: f"suspicious utterances and duplicates counted in {s:.1f} s and kept with the dataset")


def _kept_by_the_job(dataset, work: Callable[[], Any], failed: str, instead: str,
                     done: Callable[[Any, float], str]) -> None:
    """Run ``work`` on the stored dataset, whose results are kept beside it (sde.caching.keeping),
    and say ``done(result, seconds)``; a failure is a warning (the build is done: the server does
    the work itself), and nothing is said where nothing could be kept (a read-only cache folder)."""
    import time

    started = time.perf_counter()
    try:
        result = work()
    except Exception as e:  # noqa: BLE001 - the build is done; a server does this work itself
        click.echo(f"warning: {failed} ({type(e).__name__}: {e}); {instead}", err=True)
        return
    if dataset.caches.keeper(dataset.generation) is None:
        return  # not read back from the cache (a read-only folder): nothing was kept
    click.echo(done(result, time.perf_counter() - started), err=True)


def _write_search_indexes(dataset) -> None:
    """sde index --search-indexes: the server's warm-up steps that write files beside the dataset
    (sde.index_files) run here, on the dataset as stored (as a server reads it): the transcripts'
    words, their pairs of common words, the text columns' ranks, the joins of words."""
    import time

    from sde.compressed_columns import stored_column
    from sde.index_files import PARTS, SORT_PARTS, part_path

    started = time.perf_counter()
    query = dataset.utterance_query
    transcripts = ["text", *(h.field for h in dataset.hypotheses)]
    indexed = query.warm(text=transcripts)
    query.warm_phrases(indexed)
    query.warm_sorts([*transcripts, *query.columns])
    query.warm_joins(indexed)
    written = []
    for name in query.columns:
        column = stored_column(dataset.utterances[name])
        path = getattr(column, "path", None)
        parts = [part for part in (*PARTS, *SORT_PARTS) if path and os.path.exists(part_path(path, part))]
        if parts:
            written.append(f"{name} ({', '.join(parts)})")
    if written:
        click.echo(f"search indexes written in {time.perf_counter() - started:.1f} s: {'; '.join(written)}", err=True)
    elif not query.stored_compressed(transcripts):  # (sde index refused a read-only folder before the build)
        click.echo("no search index written: the transcripts repeat a few distinct texts, stored once each "
                   "(labels); a search tests each distinct text once, with no index to write", err=True)
    else:
        click.echo("no search index written: the memory budget had no room to build them; give sde index a "
                   "larger --memory-limit (a server builds them at its start within its own)", err=True)


def _index_on_ray(sources: tuple[str, ...], options, cache_dir: str | None, vad: bool, address: str | None,
                  workers: int | None):
    """sde index with the parts built as Ray tasks (sde.build.ray_parts) in sde.nemo.ray_engine's
    session (--address, RAY_ADDRESS or a local instance), opened only if parts remain to build."""
    from sde.build.ray_parts import RayBuildError, RayEngine
    from sde.engine import settings
    from sde.nemo.model import TranscribeError
    from sde.nemo.ray_engine import RayOptions, ray_session

    engine = RayEngine(workers, connect=lambda: ray_session(RayOptions(address=address, num_cpus=settings().threads)))
    try:
        return load(sources, options, cache_dir, False, vad=vad, check_audio=False, engine={"engine": engine})
    except (RayBuildError, TranscribeError) as e:  # Ray missing, no cluster there, a part that failed
        fail(f"--engine ray: {e}")


def _unmeasured(summary: dict) -> str:
    """How many utterances the speech hours leave out (their audio could not be read)."""
    n = summary.get("speech_unmeasured") or 0
    return (f"; {n:,} {'utterance' if n == 1 else 'utterances'} unreadable, not counted: "
            "filter {quality_error} is not null") if n else ""


def _unreadable_audio(audio: dict) -> list[str]:
    """The lines of the stats table on audio that --estimate-audio-metrics could not read, from
    :func:`sde.audio_quality.audio_quality_summary` (how many, why, the first file); none when all
    of it was read or none was measured."""
    unread = audio.get("unreadable") if audio.get("measured") else None
    if not unread or not unread["utterances"]:
        return []
    files = f"{unread['files']:,} {'file' if unread['files'] == 1 else 'files'}"
    lines = [f"unreadable audio {unread['utterances']:,} of {audio['utterances']:,} utterances ({files}), "
             f"not measured: filter {unread['filter']}",
             "  why files could not be read:",
             *(f"    {r['reason']} ({r['utterances']:,})" for r in unread["reasons"])]
    if unread["examples"]:
        first = unread["examples"][0]
        lines.append(f"  first: {first['path'] or first['error']} (utterance {first['id']})")
    return lines


def _audio_findings(audio: dict) -> list[str]:
    """The stats table's lines on what --estimate-audio-metrics found in the audio it read, from
    :func:`sde.audio_quality.audio_quality_summary` as the Statistics page's "Audio quality" card
    shows it: clipped utterances, durations that differ from the manifest's, and the sample rates
    and channel counts (each kind with its count where they are mixed), each with the filter that
    lists them in Samples; none when nothing was measured."""
    if not audio.get("measured"):
        return []
    n = audio["utterances"]
    clip, mism = audio["clipped"], audio["duration_mismatch"]

    def counted(part: dict, why: str) -> str:
        found = part["utterances"]
        return f"{found:,} of {_counted(n, 'utterance')} ({why})" + (f": filter {part['filter']}" if found else "")

    largest = f", largest {mism['max_abs_diff_s']:g} s" if mism["max_abs_diff_s"] is not None else ""
    full_scale = f"> {clip['threshold'] * 100:g}% of samples at full scale"
    off_by = f"manifest vs audio by > {mism['tolerance_s']:g} s{largest}"
    lines = [f"clipped audio    {counted(clip, full_scale)}", f"durations differ {counted(mism, off_by)}"]
    lines += _kinds_line("sample rates     ", "sample_rate", audio["sample_rates"], lambda r: f"{r / 1000:g} kHz")
    lines += _kinds_line("channels         ", "channels", audio["channels"],
                         lambda c: {1: "mono", 2: "stereo"}.get(c, f"{c} channels"))
    return lines


def _kinds_line(label: str, key: str, rows: Sequence[dict], name: Callable[[Any], str]) -> list[str]:
    """One line of a distribution of the readable audio (``sample_rates`` or ``channels``): its one
    value, or every value with its files, the most common first, and the filter of the others."""
    if not rows:  # no readable audio
        return []
    rows = sorted(rows, key=lambda r: (-r["files"], -r["utterances"], r[key]))

    def files(r: dict) -> str:
        extra = f" ({_counted(r['utterances'], 'utterance')})" if r["utterances"] != r["files"] else ""
        return f"{_counted(r['files'], 'file')}{extra}"

    if len(rows) == 1:
        return [f"{label}{name(rows[0][key])} (every readable file)"]
    main = rows[0][key]
    return [f"{label}{', '.join(f'{name(r[key])} {files(r)}' for r in rows)}: "
            f"filter {{{key}}} != {main} lists the files not {name(main)}"]


def _hours_text(hours: float | None) -> str:
    """Hours to two places, with minutes or seconds where that shows 0.00 or little more (a small
    dataset read "hours 0.00" for 14 s of speech)."""
    if hours is None:
        return "-"
    seconds = hours * 3600
    if seconds >= 360:  # 0.10 h and up: two places say it
        return f"{hours:.2f}"
    return f"{hours:.2f}  ({seconds / 60:.1f} min)" if seconds >= 60 else f"{hours:.2f}  ({seconds:.1f} s)"


def format_summary(summary: dict, unreadable: Sequence[str] = ()) -> str:
    """The stats table; ``unreadable``: its lines on audio that could not be read (_unreadable_audio)."""
    lines = [
        f"manifest         {summary['manifest']}",
        f"utterances       {summary['utterances']:,}",
        f"hours            {_hours_text(summary['hours'])}",
        *([f"speech hours     {_hours_text(summary['speech_hours'])}  (VAD{_unmeasured(summary)})"]
          if summary.get("speech_hours") is not None else []),
        f"words            {summary['words']:,}",
        f"vocabulary size  {summary['vocabulary_size']:,}",
        f"alphabet size    {summary['alphabet_size']}",
        f"alphabet         {summary['alphabet']!r}",
        f"skipped files    {summary['skipped_files']:,}",
        f"skipped lines    {summary['skipped_lines']:,}",
        *unreadable,
    ]
    if summary["hypotheses"]:
        lines.append("")
        lines.append(f"{'hypothesis':<28}{'WER %':>8}{'CER %':>8}{'WMR %':>8}{'MWA %':>8}")
        for name, h in summary["hypotheses"].items():
            def fmt(x):
                return f"{x:8.2f}" if x is not None else f"{'-':>8}"

            lines.append(f"{name:<28}{fmt(h['wer'])}{fmt(h['cer'])}{fmt(h['wmr'])}{fmt(h['mwa'])}")
            if h.get("missing"):
                lines.append(f"  missing on {_counted(h['missing'], 'line')}: left out of its scores")
            norm = h.get("normalized")
            if norm:
                lines.append(f"{'  normalised':<28}{fmt(norm['wer'])}{fmt(norm['cer'])}"
                             f"{fmt(norm['wmr'])}{fmt(norm['mwa'])}")
    else:
        lines.append("")
        lines.append("no predictions: add pred_text, --predictions FILE, or run `sde transcribe`")
    return "\n".join(lines)


@cli.command("export")
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@data_options
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Where the kept lines go (.gz compresses), never the input: a NeMo manifest (NeMo's "
                   "AudioTo*Dataset reads plain .json; its Lhotse dataloading (use_lhotse) reads .gz), or for "
                   "a Lhotse source its lines, named .jsonl or .jsonl.gz as Lhotse reads them.")
@click.option("--rejected", type=click.Path(dir_okay=False), default=None,
              help="Also write the valid lines that were not kept here.")
@click.option("--filter", "filter_text", default=None, metavar="Q", help="Keep only the utterances Q selects.")
@click.option("--sort", "sort_text", default=None, metavar="S", help="Order of the kept lines (default: the manifest's).")
@click.option("--rules", "rules_path", type=click.Path(dir_okay=False), default=None,
              callback=_exists_checked("file", "give a YAML file of drop rules (see docs/cleaning.md)"),
              help="A YAML file of drop rules (named filters); their matches are removed.")
@click.option("--apply-reviews", is_flag=True,
              help='Remove "drop" reviews; write fixes into text (old text in text_original), notes, tags.')
@click.option("--reviews", "reviews_path", type=click.Path(dir_okay=False), default=None,
              callback=_exists_checked("file", "no such reviews file: check the path (sde creates it when you "
                                       "review in the browser), or leave --reviews out for the manifest's own"),
              help="The reviews file (default: the manifest's, in the cache folder).")
@vad_option
@handle_data_errors
def export_command(sources: tuple[str, ...], output: str, rejected: str | None, filter_text: str | None,
                   sort_text: str | None, rules_path: str | None, apply_reviews: bool, reviews_path: str | None,
                   cache_dir: str | None, no_cache: bool, vad: bool, **data: Any) -> None:
    """Write the lines of SOURCE... that are kept, byte for byte, and a changelog beside -o."""
    from sde.export import ExportError, export_dataset, gzip_nemo_note, summary_lines
    from sde.query import QueryError
    from sde.reviews import ReviewError
    from sde.rules import RulesError

    for option, path, example in (("-o", output, "kept.json"), ("--rejected", rejected, "dropped.json"),
                                  ("--reviews", reviews_path, "reviews.jsonl")):
        if path is not None and not path.strip():  # `-o "$OUT"` with OUT unset: no file to write or read
            raise click.BadParameter(f"is empty; name a file, e.g. {option} {example}", param_hint=option)
        if path == "-" and option != "--reviews":  # read as "stdout", it made a file named "-" and "-.changelog.json"
            raise click.BadParameter(f"'-' (standard output) is not written to: an export is files (and a changelog "
                                     f"beside them); name a file, e.g. {option} {example}", param_hint=option)
    for option, path in (("-o", output), ("--rejected", rejected)):
        for manifest in sources:  # checked again on every file read, after patterns are expanded
            if path is not None and Path(manifest).is_file() and (
                    os.path.realpath(path) == os.path.realpath(manifest)
                    or (Path(path).exists() and os.path.samefile(path, manifest))):
                raise click.BadParameter(f"{path} is the manifest itself: sde never modifies its input; "
                                         "write to another file", param_hint=option)
    _check_before_loading(filter_text, rules_path)
    # --vad: the build a `sde --vad` server stored (its own cache entry), and the columns its rules may name
    options = options_from(**data)  # first: it configures the object store a pattern is listed from
    expanded = expand(sources)
    lhotse = _check_output_names({"-o": output, "--rejected": rejected}, expanded)
    dataset = load(expanded, options, cache_dir, no_cache, vad=vad)
    declared = [s.location for s in expanded.sources]  # a sharded -o: a shard for each, empty ones too
    try:
        changelog = export_dataset(dataset, output, rejected=rejected, filter=filter_text, sort=sort_text,
                                   rules_path=rules_path, reviews_path=reviews_path, apply_reviews=apply_reviews,
                                   cache_dir=cache_dir, command=["sde", *sys.argv[1:]], declared=declared)
    except (ExportError, QueryError, ReviewError, RulesError) as e:
        fail(str(e))
    for line in summary_lines(changelog):
        click.echo(line, err=True)
    click.echo(f"changelog {output}.changelog.json", err=True)
    note = None if lhotse else gzip_nemo_note([output, rejected])
    if note:  # last, where a user about to train on the output reads it
        click.echo(f"note: {note}", err=True)


def _check_output_names(outputs: dict[str, str | None], sources: Any) -> str | None:
    """Output names the reader of the output would reject (-o kept.json.bz2; kept.json for a
    Lhotse source) are refused before the build, not after it (write_export checks them again).
    Returns the sources' Lhotse kind (None: NeMo manifests)."""
    from sde.export import ExportError, refuse_names_lhotse_cannot_read, refuse_unwritten_compression
    from sde.manifest.lhotse_reads import lhotse_kind

    try:
        refuse_unwritten_compression(outputs)
        kind = lhotse_kind(sources)
        refuse_names_lhotse_cannot_read(outputs, kind)
    except ExportError as e:
        fail(str(e))
    return kind


def _check_before_loading(filter_text: str | None, rules_path: str | None) -> None:
    """What can be checked without the data is checked first: a typo in --filter or rules.yaml
    must not cost the user a build of a big manifest before they hear of it. The columns a filter
    names are checked later, against the dataset."""
    from sde.filters import parse
    from sde.query import QueryError
    from sde.rules import RulesError, load_rules

    try:
        parse(filter_text)
    except QueryError as e:  # a typo on the command line, like click's own checks: a usage error
        raise click.BadParameter(str(e), param_hint="--filter") from None
    if rules_path is not None:
        try:
            load_rules(rules_path)
        except RulesError as e:
            fail(str(e))


@cli.command("demo")
@serve_options
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, callback=_cache_choice_checked,
              help="Cache folder.")
@click.option("--no-cache", is_flag=True, callback=_cache_size_checked, help="Neither read nor write the cache.")
@review_options
@handle_data_errors
def demo_command(port: int, host: str, auth: str | None, allow_hosts: tuple[str, ...], debug: bool,
                 cache_dir: str | None, no_cache: bool, reviews: str | None, read_only: bool) -> None:
    """Serve the small dataset shipped with sde: real speech, references and two models' output."""
    sock = _reserve_port(host, port)
    from sde.dataset import DatasetOptions
    from sde.demo import DEMO_MANIFEST

    dataset = load(str(DEMO_MANIFEST), DatasetOptions(normalize=("lower", "punct", "numbers"),
                                                      alphabet="abcdefghijklmnopqrstuvwxyz' "),
                   cache_dir, no_cache)
    _serve(dataset, host=host, port=port, auth=auth, debug=debug, cache_dir=_jobs_dir(cache_dir, no_cache),
           sock=sock, reviews=_reviews_file(dataset, reviews, cache_dir, no_cache), read_only=read_only,
           cache_options=(cache_dir, no_cache), allow_hosts=allow_hosts)


def _terminate(signum: int, _frame: Any) -> None:
    # SIGTERM (docker stop, kill, job schedulers) unwinds like Ctrl-C: finally blocks remove
    # temporary files, the server closes its socket; exit status 128 + 15 as a shell reports it.
    # Said, as Ctrl-C's "interrupted" is (a job's log showed a silent end); os.write, not print: a
    # handler may run while a print holds the stream.
    os.write(2, b"terminated\n")
    raise SystemExit(128 + signum)


def main() -> None:
    import signal

    # `python -m sde.cli` as well as the `sde` script (sde.entry): a Ctrl-C that Python had to
    # swallow, handled inside a __del__ or a weakref callback (Ray's object references have one), is
    # raised again where it can unwind; without the hook the command carried on to its end, exit 0
    import sde.entry  # noqa: F401 - its import installs that hook
    from sde.startup_gc import pause_full_collections

    pause_full_collections()

    signal.signal(signal.SIGINT, signal.default_int_handler)  # from here sde.cli's own handling
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli(prog_name="sde")
    except KeyboardInterrupt:  # after the command's own handling, before click exits
        _exit_interrupted()
    finally:
        # The command is over and its output written: a Ctrl-C while Python shuts down (worker
        # pools joined, exit handlers) must not turn a finished run into a killed one.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    main()
