"""Read and validate NeMo JSON Lines manifests.

One JSON object per line with ``audio_filepath`` (or ``audio_filename``), ``duration`` (seconds) and
``text``; optional ``offset``, hypothesis fields (``pred_text``, ``pred_text_<label>``) and any other
fields, which are all kept.  :func:`read_manifest` returns a :class:`Manifest` whose ``table`` follows
the column contract of docs/internals.md.

How it is fast.  The file is read in chunks of about ``CHUNK_BYTES`` cut at line ends.  Each chunk
first goes through a *fast path*: ``pyarrow.json`` parses it in C++ on all cores, and the checks are
vectorised (pyarrow compute / numpy).  Only when that path cannot vouch for a chunk (a line that is
not JSON, mixed types in a column, nested values, numeric strings, duplicate keys, suspiciously deep
or wide lines...) is the chunk re-tried in smaller parts, and only the parts that still fail are read
by the *careful path*: line by line with orjson, which can say exactly which line is wrong and why
(several times slower: a manifest with nested values on every line loads at ~100k lines/s).
Lines that parse but fail a check (missing field, negative duration...) are re-examined one by one
by the careful checker, so both paths give the same reasons.

Decisions where NeMo or the contract are silent (tests pin each of them):

* ``duration`` / ``offset`` given as numeric strings (``"3.2"``) are accepted and converted, as
  NeMo's ``float(...)`` would; ``"abc"``, booleans, NaN, infinities and negatives are bad lines,
  and so is a value over ``MAX_SECONDS`` (1,000,000 s, ~11.6 days: longer than any recording, so a
  unit mistake or corrupt data; a few such lines would make the dataset's hours meaningless).
  ``duration`` 0 is valid.  ``offset`` absent or null means 0.0.
* ``duration`` absent or null (forced-alignment and speaker manifests omit it) is read from the audio
  file's header (soundfile, on a thread pool, once per distinct file): the file's duration, minus
  ``offset`` for a segment.  The table then has a ``duration_source`` column ("manifest" | "header").
  A line whose header cannot be read, or whose offset lies beyond the end, is skipped with the reason.
* ``text`` absent or null with ``text_filepath`` given: the text is read from that file as NeMo does
  (UTF-8, line breaks removed); relative paths resolve like audio paths.  A file that cannot be read
  (missing, not UTF-8, over ``MAX_TEXT_FILE_BYTES``) skips the line with the reason.
* ``audio_filepath`` must be a non-empty string.  ``audio_filename`` is an alias: it is used when
  ``audio_filepath`` is absent or null, and is not kept as a separate column.
* ``text`` must be a string (empty is fine).  Hypothesis fields must be strings when present; absent
  or null is <NA>: that line is left out of the hypothesis's scores (one warning per field in
  ``Manifest.warnings``), while "" is a real, empty hypothesis.  Non-string values make the line bad.
* JSON extensions that Python's ``json`` accepts (``NaN``, ``Infinity``, huge integers) are accepted,
  because NeMo reads manifests with ``json.loads``; a NaN duration is still a bad line.
* Duplicate keys: the last one wins (as in ``json.loads``).
* A byte-order mark at the start of the file, CRLF line ends and blank lines are accepted silently;
  blank lines count as physical lines (``line`` numbers match an editor) but are not problems.
* Values nested deeper than ``MAX_DEPTH`` levels make the line bad (``invalid JSON: nested deeper
  than ...``): it guards the parsers, which can crash on absurd nesting.
* Extra fields: booleans and mixed-type columns become strings (JSON text, ``true``/``false``;
  numbers as Arrow writes them, ``2.0`` as ``2``, whichever path read the line); nested values
  become compact JSON text; a field that is null on every valid line is dropped; integers beyond
  64 bits become floats (pyarrow does so; pandas could not hold them as int64). Columns come in
  the order their fields first appear, with a value or not.
  Manifest fields named like a column sde makes (``id``, ``line``, ``source``, ``audio_path``,
  ``audio_exists``, ``duration_bucket``, the reviews', speech activity's, duplicates' and checks'
  columns: model.GENERATED) are kept as ``manifest_<name>``, for one manifest as for several.
* Too many distinct fields (hostile or broken manifests): at most ``MAX_EXTRA_FIELDS`` extra fields are
  kept, fewer for very long manifests so that the table stays within about ``MAX_EXTRA_CELLS`` cells
  (never fewer than ``MIN_EXTRA_FIELDS``); a field counts from its first appearance, with a value
  or not.  Further fields are ignored and one warning, at the first line one of them is on, goes to
  ``Manifest.warnings`` (not ``problems``: those lines are not skipped); several manifests keep
  as many as one would, with one warning too.
* ``predictions=FILE`` merges that file's ``pred_text`` by (``audio_filepath`` as written, ``offset``),
  falling back to (resolved audio path, ``offset``), and by ``shard_id`` and ``audio_channel`` where
  the lines have them (a prediction that several lines fit, two shards' members of one name or two
  channels of one segment, is left unused with a note naming its line).  The merged field is ``pred_text`` when the main
  manifest has no ``pred_text``; otherwise ``pred_text_<stem of FILE>`` (label = that stem).  Lines
  without a match get <NA> (left out of its scores) and one warning in ``Manifest.warnings`` counts
  them; no match at all is a ManifestError.  The predictions file needs only the audio path and ``pred_text`` (a string);
  a line without ``pred_text`` (a model's output line for audio it could not read) holds no prediction, and is
  not a bad line: the line it names is left without one, as an unmatched line is.  Its relative paths
  resolve like the manifest's (``audio_base_path``, else its own folder); its bad lines are listed
  in ``problems`` under its own path (``strict`` applies to it too).  With explicit ``pred_fields``,
  the merged field is appended to them unless already named.
* Audio files are not checked for existence here (too slow for millions of lines), except the
  headers read for lines without a duration; sde.audio reports missing files when they are played.
* Several manifests (a list, globs, NeMo shard patterns: see sde.sources) are one table: ids over
  all valid lines in the order of the sources, a ``source`` column naming each line's manifest
  (relative to the folder they share; a manifest field named ``source`` becomes
  ``manifest_source``), problems under each manifest's name and its own line numbers, relative audio
  paths from each manifest's own folder. A manifest that is missing or unusable as a whole is one
  problem (line 0) and the others load (``strict``: an error). Small local files are parsed in
  batches (their bytes joined, the rows split back by file), so 512 shards load as fast as one file
  of the same lines; larger and remote files are read each on a thread of its own.
* URLs (``s3://``, ``gs://``, ...) are streamed through fsspec in chunks, never downloaded whole
  (sde.sources.remote: storage options, time limits, one clear error per failure). Relative audio
  paths of a remote manifest join its URL's folder; an ``audio_filepath`` that is a URL stays as
  written.
* Files that are not NeMo manifests at all (Lhotse cuts/recordings/supervisions, also gzipped; Kaldi
  text, wav.scp, segments; CSV/TSV with a header; a JSON array; gzip) raise one ManifestError that
  says what the file looks like and how to convert it, judged on its first ``SNIFF_LINES`` lines.

The package, one job per module (bottom to top): ``model`` (public types), ``pieces`` (what a chunk
read yields), ``careful`` (line by line), ``fast`` (pyarrow, falling back to careful), ``formats``
(files that are not NeMo manifests), ``paths`` (audio path resolution), ``columns`` (pieces to
columns), ``other_files`` (header durations, ``text_filepath``), ``files`` (one file: open, check,
chunk, complete), ``batches`` (small shards parsed together), ``several`` (several manifests at
once), ``hypotheses`` (predictions merge, missing-hypothesis warnings), ``reader`` (read_manifest).
"""

from sde.manifest.careful import seconds_field
from sde.manifest.model import (
    HypothesisField,
    Manifest,
    ManifestError,
    ManifestPart,
    PredFieldError,
    Problem,
    parse_pred_field,
)
from sde.manifest.paths import resolve_audio_path
from sde.manifest.reader import read_manifest

__all__ = [
    "HypothesisField",
    "Manifest",
    "ManifestError",
    "ManifestPart",
    "PredFieldError",
    "Problem",
    "parse_pred_field",
    "read_manifest",
    "resolve_audio_path",
    "seconds_field",
]
