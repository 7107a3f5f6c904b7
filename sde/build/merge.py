"""The built parts joined into a dataset's tables, streaming: one part in memory at a time.

Each column of the utterance and error tables is gathered part by part into one contiguous array
of its own file (ids and the errors' utterance numbers shifted by the rows before the part; columns
a part lacks, e.g. a hypothesis its lines never carry, filled with nulls, NaN for floats), so
pandas maps it in place at every start; text is compressed (sde.compressed_columns); columns of
other types are appended part by part to one file per table. The vocabulary is the sum of the parts' word tallies,
grouped by DuckDB, which spills to disk beyond its memory limit however many distinct words
there are.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde.cache import COLUMN_FILE_SEPARATOR, NUMPY_FLOATS, done_with_temp_file, missing_as_nan, temp_file_in
from sde.compressed_columns import compressible, write_compressed
from sde.build.duck import build_connection
from sde.build.parts import is_cutset
from sde.build.predictions import PredictionsPlan
from sde.build.part_files import (PartInfo, errors_file, frame_dtypes, normalized_tallies_file, tallies_file,
                                  utterances_file)
from sde.dataset import (HYPOTHESIS_METRICS, NORMALIZED_SUMS, DatasetOptions, computed_columns,
                         normalized_column, normalized_corpus, read_word_list)
from sde.vocabulary import tally_columns, vocabulary_from_tallies
from sde.manifest import HypothesisField, ManifestError, Problem, parse_pred_field
from sde.manifest.hypotheses import MISSING_EXAMPLES, missing_lines_warning
from sde.manifest.files import every_line_bad
from sde.manifest.lhotse_reads import no_usable_supervision
from sde.manifest.model import GENERATED, found_hypotheses
from sde.manifest.pieces import SeenFields, cap_warning
from sde.sources import SourceSet


@dataclass
class Joined:
    """The dataset's table files (name → path, as sde.cache stores them) and everything else."""

    files: dict[str, Path]
    column_order: dict[str, list[str]]
    dtypes: dict[str, dict[str, str]]
    hypotheses: list[HypothesisField]
    problems: list[Problem]
    warnings: list[Problem]
    total_lines: int
    alphabet: list[str]
    alphabet_report: dict | None
    name: str
    manifest_path: str
    tar_shards: tuple[str, ...]
    extra_summary: dict = field(default_factory=dict)  # --normalize: each hypothesis's normalised scores


def join_parts(infos: Sequence[PartInfo], folder: Path, options: DatasetOptions, *,
               memory_limit: str | None = None, threads: int | None = None,
               say: Callable[[str], None] = lambda _msg: None,
               predictions: Sequence[PredictionsPlan] | None = None) -> Joined:
    """Join built parts (in line order) into the dataset's tables, written to ``folder``;
    ``predictions``: how each --predictions file was matched to the lines (sde.build.predictions)."""
    built = [info for info in infos if info.rows]
    if not built:
        raise _every_line_bad(infos)
    fields = SeenFields.joined([i.fields for i in infos if i.fields is not None])
    cut, _, _ = fields.capped()
    hypotheses = _hypotheses(built, options, cut)
    plans = list(predictions or ())
    merged = {plan.field.field for plan in plans}
    # asked-for fields first, as a one-piece read orders them
    hypotheses += [plan.field for plan in plans if all(h.field != plan.field.field for h in hypotheses)]
    say(f"joining {len(infos)} parts ({sum(i.rows for i in built):,} utterances)")
    parts = [utterances_file(folder, i.index) for i in built]
    schema = _in_build_order(_without(_with_values(_unified_schema([_schema_of(p) for p in parts])),
                                      _cut_columns(cut, built, hypotheses)), hypotheses)
    ref_chars = {h.column("ref_chars") for h in hypotheses}
    schema, holed = _integers_with_holes(schema, built, ref_chars)
    fixed = [f.name for f in schema if _fixed_width(f.type) or _is_text(f.type)]
    utterance_dtypes = {c: t for c, t in _merged_dtypes([i.dtypes for i in built]).items() if c in schema.names}
    utterance_dtypes.update(dict.fromkeys(holed, "float64"))
    files = {"utterances": folder / "utterances.arrow"}
    _append_tables(parts, files["utterances"], shift={"id": _offsets(built)},
                   schema=pa.schema([f for f in schema if f.name not in fixed], metadata=schema.metadata))
    # string columns are compressed on threads (zstd and Arrow's kernels release the GIL), the
    # fixed-width ones copied here meanwhile
    mapped = _MappedTables()  # each part file opened once for all its columns
    with ThreadPoolExecutor(max(1, threads or os.cpu_count() or 1), thread_name_prefix="sde-join") as pool:
        writes = []

        def column_file(table: str, j: int, paths: Sequence[Path], field: pa.Field, rows: int,
                        shift: list[int] | None, dtype: str | None = None, fill_from: str | None = None) -> None:
            files[f"{table}{COLUMN_FILE_SEPARATOR}{field.name}"] = out = folder / f"{table}.column{j}.arrow"
            args = (paths, field, out, rows, shift, dtype, mapped, fill_from)
            if compressible(field.type):
                writes.append(pool.submit(_write_column, *args))
            else:
                _write_column(*args)

        # A hypothesis's CER denominator is kept only where it differs from num_chars (a reference
        # with spaces around it): a part without the column has it equal to num_chars, not missing.
        for k, column in enumerate(fixed):
            column_file("utterances", k, parts, schema.field(column), sum(i.rows for i in built),
                        _offsets(built) if column == "id" else None, utterance_dtypes.get(column),
                        "num_chars" if column in ref_chars else None)
        column_order = {"utterances": schema.names}
        for k, h in enumerate(hypotheses):
            name = f"errors{k}"
            sources = [(errors_file(folder, i.index, _position(i, h)), offset)
                       for i, offset in zip(built, _offsets(built)) if _has(i, h)]
            paths = [path for path, _ in sources]
            errors_schema = _unified_schema([_schema_of(p) for p in paths])
            # each column a file of its own, as the utterances' are: a part's rows appended to one
            # file are a chunked column that pandas copies whole at every start (10M utterances:
            # ~0.38 s and ~0.2 GB for the two hypotheses' errors)
            apart = [f.name for f in errors_schema
                     if compressible(f.type) or _fixed_width(f.type) or pa.types.is_dictionary(f.type)]
            shift = [offset for _, offset in sources]
            files[name] = folder / f"{name}.arrow"
            _append_tables(paths, files[name], shift={"utt": shift},
                           schema=pa.schema([f for f in errors_schema if f.name not in apart],
                                            metadata=errors_schema.metadata))
            rows = sum(_rows_of(path) for path in paths)
            for j, column in enumerate(apart):
                column_file(name, j, paths, errors_schema.field(column), rows, shift if column == "utt" else None)
            column_order[name] = errors_schema.names
        for write in writes:
            write.result()  # raises a write's error here
    mapped.close()
    vocabulary = _vocabulary(built, folder, hypotheses, options, memory_limit, threads)
    vocabulary_table = pa.Table.from_pandas(vocabulary, preserve_index=False)
    vocabulary_table = vocabulary_table.cast(pa.schema([f.with_type(_stored_type(f.type)) for f in vocabulary_table.schema],
                                                       metadata=vocabulary_table.schema.metadata))
    column_order["vocabulary"] = vocabulary_table.column_names
    files.update(_write_split(vocabulary_table, "vocabulary", folder))
    first = built[0]
    dtypes = {"utterances": utterance_dtypes, "vocabulary": frame_dtypes(vocabulary)}
    for k, h in enumerate(hypotheses):
        dtypes[f"errors{k}"] = next(i.error_dtypes[h.field] for i in built if _has(i, h))
    return Joined(
        files=files, dtypes=dtypes, column_order=column_order, hypotheses=hypotheses,
        problems=[q for i in infos for q in i.problems] + [q for plan in plans for q in plan.problems],
        warnings=_cap_warnings(fields, built) + [w for plan in plans for w in plan.warnings()] + _missing_warnings(
            built, [h for h in hypotheses if h.field not in merged])
        + list(dict.fromkeys(w for i in infos for w in i.warnings)),
        total_lines=sum(i.total_lines for i in infos),
        alphabet=sorted({c for i in built for c in i.alphabet}),
        alphabet_report=_alphabet_report(built),
        name=first.name, manifest_path=first.manifest_path, tar_shards=first.tar_shards,
        extra_summary=_normalized_summary(built, folder, hypotheses, memory_limit, threads),
    )


def _every_line_bad(infos: Sequence[PartInfo]) -> ManifestError:
    problems = [q for i in infos for q in i.problems]
    if infos and is_cutset(infos[0].part.files[0]):  # the Lhotse read's message (the parts' files are still there)
        return no_usable_supervision(infos[0].name, "cuts", problems)
    shown = problems[0].path if problems else (infos[0].manifest_path if infos else "manifest")
    # the one-piece read's words, so that a set of shards none of which could be read says so
    # (and where relative paths are read from), not that its lines were bad
    return every_line_bad(shown, problems)


def _cap_warnings(fields: SeenFields, built: Sequence[PartInfo]) -> list[Problem]:
    """The one-piece read's warning about the fields the cap kept out, counted over every part."""
    manifest = built[0].part.manifest
    warning = cap_warning(fields, isinstance(manifest, SourceSet) and manifest.several)
    return [warning] if warning is not None else []


def _cut_columns(cut: set[str], built: Sequence[PartInfo], hypotheses: Sequence[HypothesisField]) -> set[str]:
    """The columns of fields some part kept that the dataset's cap keeps out (a part counts only
    its own fields: sde.manifest.pieces.SeenFields), named as the parts name them."""
    if not cut:
        return set()
    renamed = set(GENERATED) | computed_columns(hypotheses)
    columns = {f"manifest_{key}" if key in renamed else key for key in cut}
    dropped = [h for info in built for h in info.hypotheses if h.field in cut]  # and their scores
    return columns | (computed_columns(dropped) - computed_columns([])) if dropped else columns


def _without(schema: pa.Schema, names: set[str]) -> pa.Schema:
    return pa.schema([f for f in schema if f.name not in names], metadata=schema.metadata) if names else schema


def _hypotheses(built: Sequence[PartInfo], options: DatasetOptions, cut: set[str] = frozenset()) -> list[HypothesisField]:
    """The dataset's hypotheses: those asked for (--pred-field), else every field some part has
    that the dataset's cap keeps (``cut``: those it keeps out), in the order a one-piece read gives
    them (pred_text first, then by name)."""
    found: dict[str, HypothesisField] = {}
    for info in built:
        for h in info.hypotheses:
            if h.field not in cut:
                found.setdefault(h.field, h)
    if options.pred_fields:
        asked = [parse_pred_field(spec) for spec in options.pred_fields]
        for h in asked:
            if h.field not in found:
                raise ManifestError(f'{built[0].manifest_path}: no line has the hypothesis field "{h.field}"; '
                                    "pass a field the manifest has to --pred-field")
        return asked
    return [found[name] for name in found_hypotheses(found)]  # as a one-piece read lists them


def _missing_warnings(built: Sequence[PartInfo], hypotheses: Sequence[HypothesisField]) -> list[Problem]:
    """One warning per hypothesis that some lines lack, as a one-piece read words it."""
    warnings = []
    for h in hypotheses:
        count, shown, sources = 0, [], []
        for info in built:
            part_count, part_lines = info.missing.get(h.field, (info.rows, info.first_lines))
            part_sources = info.missing_sources.get(h.field, info.first_sources) if h.field in info.missing \
                else info.first_sources
            count += part_count
            room = MISSING_EXAMPLES - len(shown)
            shown += part_lines[:room]
            sources += part_sources[:room]
        if count:
            warnings.append(missing_lines_warning(built[0].shown, h.field, count, shown, sources or None))
    return warnings


def _has(info: PartInfo, h: HypothesisField) -> bool:
    return any(x.field == h.field for x in info.hypotheses)


def _position(info: PartInfo, h: HypothesisField) -> int:
    return next(k for k, x in enumerate(info.hypotheses) if x.field == h.field)


def _offsets(built: Sequence[PartInfo]) -> list[int]:
    offsets, rows = [], 0
    for info in built:
        offsets.append(rows)
        rows += info.rows
    return offsets


def _rows_of(path: Path) -> int:
    with pa.memory_map(str(path), "r") as source:
        reader = pa.ipc.open_file(source)
        if hasattr(reader, "count_rows"):  # newer pyarrow counts them itself
            return reader.count_rows()
        # older pyarrow: each batch of the mapped file is read without a copy, its rows counted
        return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))


def _schema_of(path: Path) -> pa.Schema:
    with pa.memory_map(str(path), "r") as source:
        return pa.ipc.open_file(source).schema


def _unified_schema(schemas: Sequence[pa.Schema]) -> pa.Schema:
    """Every column of every part, in first-seen order; a column whose parts disagree on its type
    gets the type both convert to (int + float → float), else text."""
    types: dict[str, list[pa.DataType]] = {}
    for schema in schemas:
        for f in schema:
            types.setdefault(f.name, []).append(f.type)
    fields = [pa.field(name, _stored_type(_common_type(seen))) for name, seen in types.items()]
    return pa.schema(fields, metadata=schemas[0].metadata)


def _with_values(schema: pa.Schema) -> pa.Schema:
    """The columns some part has a value in: a part of a Lhotse CutSet keeps its fields without a
    value as null columns (sde.manifest.reader), and a one-piece read has no column for a field no
    line has a value in."""
    return pa.schema([f for f in schema if not pa.types.is_null(f.type)], metadata=schema.metadata)


def _stored_type(t: pa.DataType) -> pa.DataType:
    # Text as large_string: pandas wraps those buffers as they are (plain string ones it copies,
    # which at 10M utterances is gigabytes at every start).
    return pa.large_string() if pa.types.is_string(t) else t


def _common_type(seen: list[pa.DataType]) -> pa.DataType:
    distinct = list(dict.fromkeys(seen))
    if len(distinct) == 1:
        return distinct[0]
    plain = [t.value_type if pa.types.is_dictionary(t) else t for t in distinct]
    try:
        unified = pa.unify_schemas([pa.schema([pa.field("x", t)]) for t in plain], promote_options="permissive")
        return unified.field("x").type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return pa.string()


CORE_COLUMNS = ("id", "line", "source", "audio_filepath", "audio_path", "offset", "duration", "duration_source",
                "text")


def _in_build_order(schema: pa.Schema, hypotheses: Sequence[HypothesisField]) -> pa.Schema:
    """The columns in the order of a one-piece build (a part may lack some): the line's core
    fields, the hypotheses, the other fields, each hypothesis's metrics, then the other computed
    columns (text statistics, alphabet checks)."""
    names = schema.names
    fields = [h.field for h in hypotheses]
    metrics = [name for h in hypotheses for name in names
               if any(name == h.column(m) for m in (*HYPOTHESIS_METRICS, "ref_chars"))]
    computed = computed_columns(hypotheses)
    core = [n for n in names if n in CORE_COLUMNS]
    extra = [n for n in names if n not in CORE_COLUMNS and n not in fields and n not in computed]
    rest = [n for n in names if n in computed and n not in metrics]
    # the normalised scores in hypothesis order too (a hypothesis the first parts lack comes later)
    normalized = [c for h in hypotheses for c in (normalized_column(h, "wer"), normalized_column(h, "cer")) if c in rest]
    slots = iter(normalized)
    rest = [next(slots) if n in normalized else n for n in rest]
    order = core + [f for f in fields if f in names] + extra + metrics + rest
    assert sorted(order) == sorted(names), "every column placed once"
    return pa.schema([schema.field(n) for n in order], metadata=schema.metadata)


# Columns a one-piece read fills on every line once any line needs them (a part may not need them).
FILL_WHEN_ABSENT = {"duration_source": "manifest"}


_NUMPY_INTEGERS = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}


def _integers_with_holes(schema: pa.Schema, built: Sequence[PartInfo], filled: set[str]) -> tuple[pa.Schema, list[str]]:
    """``schema`` with float64 for each integer column that some parts lack (a hypothesis's
    counts, where its field starts after a part boundary), and those columns: their absent rows are
    missing, NaN as a one-piece read has them (pandas makes such a column float64). Kept integer,
    the joined column had nulls and pandas copied it at every start instead of mapping it.
    ``filled``: columns an absent part fills from another column (never missing)."""
    holed = [f.name for f in schema
             if pa.types.is_integer(f.type) and f.name not in FILL_WHEN_ABSENT and f.name not in filled
             and any(f.name not in i.dtypes for i in built)
             and all(i.dtypes[f.name] in _NUMPY_INTEGERS for i in built if f.name in i.dtypes)]  # not pandas' Int64
    if not holed:
        return schema, []
    return pa.schema([f.with_type(pa.float64()) if f.name in holed else f for f in schema],
                     metadata=schema.metadata), holed


def _absent(field: pa.Field, rows: int, table: pa.Table | None = None, fill_from: str | None = None) -> pa.Array:
    """The column of a part that lacks it: the part's column ``fill_from`` where given, what a
    one-piece read fills in, else nulls."""
    if fill_from is not None and table is not None and fill_from in table.column_names:
        return _cast(table[fill_from], field.type).combine_chunks()
    if field.name in FILL_WHEN_ABSENT:
        return pa.array([FILL_WHEN_ABSENT[field.name]] * rows, field.type)
    return pa.nulls(rows, field.type)


def _conformed(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for f in schema:
        if f.name in table.column_names:
            column = table[f.name]
            if column.type != f.type:
                column = _cast(column, f.type)
        else:
            column = _absent(f, len(table))
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _cast(column: pa.ChunkedArray, to: pa.DataType) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type) and not pa.types.is_dictionary(to):
        column = pc.dictionary_decode(column) if hasattr(pc, "dictionary_decode") else column.cast(column.type.value_type)
    # Values of mixed kinds become text as the one-piece read writes them: Arrow's cast, which it
    # applies to a column whose chunks differ in kind (sde.manifest.columns.string_column), writes
    # 2.0 as "2" and true as "true" (Python's str: "2.0", "True").
    return column.cast(to)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _fixed_width(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_temporal(t)


def _write_column(paths: Sequence[Path], field: pa.Field, out: Path, rows: int, shift: list[int] | None,
                  dtype: str | None = None, mapped: "_MappedTables | None" = None, fill_from: str | None = None) -> None:
    """One column of every part as one contiguous array: pages of rows are then cheap takes (Arrow
    copies a chunked column whole to take rows from it); a text column worth it compressed instead
    (sde.compressed_columns: pages decompress only their rows' batches). Numbers and text are gathered in files
    mapped into memory, so a column of 10M rows costs page cache, not resident memory. ``dtype``:
    the column's pandas dtype, where known (a float column read as numpy's keeps its missing values
    as NaN, see sde.cache.missing_as_nan)."""
    arrays: Iterable[pa.Array] = (_part_column(path, field, None if shift is None else shift[k], mapped, fill_from)
                                  for k, path in enumerate(paths))
    if dtype is None or dtype in NUMPY_FLOATS:
        arrays = map(missing_as_nan, arrays)
    if compressible(field.type):
        write_compressed(out, field.name, arrays)  # part by part, a batch of rows at a time
        return
    if not (_is_text(field.type) or (_fixed_width(field.type) and not pa.types.is_boolean(field.type))):
        _write_table(pa.table({field.name: pa.concat_arrays(list(arrays))}), out)
        return
    with _MappedColumn(field, rows, out.parent) as column:
        for array in arrays:
            column.append(array)
        _write_table(pa.table({field.name: column.array()}), out)


class _MappedTables:
    """The part files of one join, each memory-mapped and read once for all of its columns (it was
    opened again for each: ~250 opens at 1M utterances). Mapped: a table costs page cache, and
    reading a column touches only its pages."""

    def __init__(self) -> None:
        self._tables: dict[Path, pa.Table] = {}
        self._lock = threading.Lock()

    def table(self, path: Path) -> pa.Table:
        with self._lock:
            table = self._tables.get(path)
            if table is None:
                table = self._tables[path] = pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
            return table

    def close(self) -> None:
        with self._lock:
            self._tables.clear()


def _part_column(path: Path, field: pa.Field, shift: int | None, mapped: _MappedTables | None = None,
                 fill_from: str | None = None) -> pa.Array:
    """One part's column (cast to the joined type; where the part lacks it, its ``fill_from``
    column or nulls: _absent), as one array."""
    # Mapped: reading the table touches only this column's pages.
    table = mapped.table(path) if mapped is not None else pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()
    if field.name not in table.column_names:
        return _absent(field, table.num_rows, table, fill_from)
    column = table[field.name] if table[field.name].type == field.type else _cast(table[field.name], field.type)
    if shift:
        column = pc.add(column, pa.scalar(shift, field.type))
    return column.combine_chunks()


class _MappedColumn:
    """A fixed-width or large_string column assembled part by part in memory-mapped files."""

    def __init__(self, field: pa.Field, rows: int, folder: Path) -> None:
        self.field, self.rows, self.row = field, rows, 0
        self.valid = np.ones(rows, dtype=bool)
        self.text = _is_text(field.type)
        self._files = [temp_file_in(folder, ".column") for _ in range(2)]
        if self.text:
            self.offsets = np.memmap(self._files[0], dtype=np.int64, mode="w+", shape=(rows + 1,))
            self.offsets[0] = 0
            self.data: np.ndarray | None = None  # sized once the parts' text is known (see append)
            self.bytes = 0
        else:
            self.width = field.type.bit_width // 8
            self.data = np.memmap(self._files[1], dtype=np.uint8, mode="w+", shape=(max(1, rows * self.width),))

    def __enter__(self) -> "_MappedColumn":
        return self

    def __exit__(self, *exc: object) -> None:
        self.offsets = self.data = None  # type: ignore[assignment]
        for path in self._files:
            done_with_temp_file(path)

    def append(self, array: pa.Array) -> None:
        n, first = len(array), self.row
        if array.null_count:
            self.valid[first:first + n] = array.is_valid().to_numpy(zero_copy_only=False)
        buffers = array.buffers()
        if self.text:
            offsets = np.frombuffer(buffers[1], dtype=np.int64)[array.offset:array.offset + n + 1]
            start, end = int(offsets[0]), int(offsets[-1])
            self._grow(self.bytes + end - start)
            self.data[self.bytes:self.bytes + end - start] = np.frombuffer(buffers[2], dtype=np.uint8)[start:end]
            self.offsets[first + 1:first + n + 1] = offsets[1:] - start + self.bytes
            self.bytes += end - start
        elif n:
            raw = np.frombuffer(buffers[1], dtype=np.uint8)
            self.data[first * self.width:(first + n) * self.width] = \
                raw[array.offset * self.width:(array.offset + n) * self.width]
        self.row += n

    def _grow(self, size: int) -> None:
        if self.data is not None and len(self.data) >= size:
            return
        capacity = max(size, 2 * (0 if self.data is None else len(self.data)), 1 << 20)
        if self.data is not None:
            self.data.flush()
        with open(self._files[1], "r+b" if self.data is not None else "wb") as f:
            f.truncate(capacity)
        self.data = np.memmap(self._files[1], dtype=np.uint8, mode="r+", shape=(capacity,))

    def array(self) -> pa.Array:
        nulls = int(self.rows - self.valid.sum())
        validity = pa.py_buffer(np.packbits(self.valid, bitorder="little")) if nulls else None
        if self.text:
            self._grow(1)
            return pa.Array.from_buffers(self.field.type, self.rows, [
                validity, pa.py_buffer(self.offsets), pa.py_buffer(self.data[:max(1, self.bytes)])], nulls)
        return pa.Array.from_buffers(self.field.type, self.rows, [validity, pa.py_buffer(self.data)], nulls)


def _append_tables(paths: Sequence[Path], out: Path, shift: dict[str, list[int]],
                   schema: pa.Schema | None = None) -> None:
    """Concatenate Arrow files into ``out`` one at a time, adding ``shift[column][k]`` to that
    column of the ``k``-th file; ``schema``: the columns to keep (default: all of every file)."""
    schema = schema if schema is not None else _unified_schema([_schema_of(p) for p in paths])
    with pa.OSFile(str(out), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for k, path in enumerate(paths):
            with pa.memory_map(str(path), "r") as source:
                table = pa.ipc.open_file(source).read_all()
            for column, offsets in shift.items():
                if offsets[k] and column in table.column_names:
                    i = table.column_names.index(column)
                    table = table.set_column(i, column, pc.add(table[column], pa.scalar(offsets[k], table[column].type)))
            writer.write_table(_conformed(table, schema))
            del table


def _write_split(table: pa.Table, name: str, folder: Path) -> dict[str, Path]:
    """``table`` as the cache stores it: its string columns compressed, each in a file of its own
    (``name/column``), the rest in ``name``; returns those files."""
    text = [f.name for f in table.schema if compressible(f.type)]
    files = {name: folder / f"{name}.arrow"}
    _write_table(table.drop_columns(text), files[name])
    for j, column in enumerate(text):
        files[f"{name}{COLUMN_FILE_SEPARATOR}{column}"] = folder / f"{name}.column{j}.arrow"
        write_compressed(files[f"{name}{COLUMN_FILE_SEPARATOR}{column}"], column, [table[column]])
    return files


def _write_table(table: pa.Table, out: Path) -> None:
    with pa.OSFile(str(out), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)


def _vocabulary(built: Sequence[PartInfo], folder: Path, hypotheses: Sequence[HypothesisField],
                options: DatasetOptions, memory_limit: str | None, threads: int | None) -> pd.DataFrame:
    sums = ['sum("count") AS "count"']
    for h in hypotheses:
        for column in tally_columns(h):
            sums.append(f'coalesce(sum("{column}"), 0) AS "{column}"')
    files = [str(tallies_file(folder, i.index)) for i in built]
    with build_connection(folder, memory_limit, threads, what="summing the vocabulary's word counts") as con:
        # Ordered as the one-piece build orders its counts: most frequent first, then by code point.
        table = con.sql(
            f"SELECT word, {', '.join(sums)} FROM read_parquet(?, union_by_name = true) "
            'GROUP BY word ORDER BY "count" DESC, word', params=[files]).to_arrow_table()
    tallies = pd.DataFrame({
        "word": pd.arrays.ArrowStringArray(table["word"].cast(pa.string())),
        **{name: table[name].to_numpy().astype("int64") for name in table.column_names if name != "word"},
    })
    return vocabulary_from_tallies(tallies, hypotheses, read_word_list(options.vocab) if options.vocab else None)


def _normalized_summary(built: Sequence[PartInfo], folder: Path, hypotheses: Sequence[HypothesisField],
                        memory_limit: str | None, threads: int | None) -> dict:
    """--normalize: each hypothesis's corpus scores on normalised text, from the parts' sums and
    their word tallies summed by DuckDB (as the vocabulary is)."""
    files = [str(normalized_tallies_file(folder, i.index)) for i in built if i.normalized_sums]
    if not files:
        return {}
    with build_connection(folder, memory_limit, threads, what="summing the normalised word counts") as con:
        table = con.sql('SELECT field, word, sum("count") AS "count", sum(hits) AS hits '
                        "FROM read_parquet(?) GROUP BY field, word", params=[files]).to_arrow_table()
    tallies = table.to_pandas()
    summary = {}
    for h in hypotheses:
        if not any(h.field in i.normalized_sums for i in built):
            continue
        sums = {k: sum(i.normalized_sums.get(h.field, {}).get(k, 0) for i in built) for k in NORMALIZED_SUMS}
        summary[h.field] = {"normalized": normalized_corpus(sums, tallies[tallies["field"] == h.field])}
    return summary


def _merged_dtypes(all_dtypes: Sequence[dict[str, str]]) -> dict[str, str]:
    """The pandas dtypes to restore: each column's where all parts agree (else what Arrow gives)."""
    seen: dict[str, set[str]] = {}
    for dtypes in all_dtypes:
        for column, dtype in dtypes.items():
            seen.setdefault(column, set()).add(dtype)
    return {column: next(iter(kinds)) for column, kinds in seen.items() if len(kinds) == 1}


def _alphabet_report(built: Sequence[PartInfo]) -> dict | None:
    """--alphabet's report summed over the parts (each example the first utterance of all)."""
    reports = [(i, offset) for i, offset in zip(built, _offsets(built)) if i.alphabet_report is not None]
    if not reports:
        return None
    chars: dict[str, dict] = {}
    for info, offset in reports:
        for row in info.alphabet_report["chars"]:
            entry = chars.setdefault(row["char"], {"char": row["char"], "count": 0, "utterances": 0,
                                                   "example_id": row["example_id"] + offset})
            entry["count"] += row["count"]
            entry["utterances"] += row["utterances"]
    first = reports[0][0].alphabet_report
    return {
        "allowed": first["allowed"],
        "utterances": sum(i.alphabet_report["utterances"] for i, _ in reports),
        "chars": sorted(chars.values(), key=lambda r: (-r["count"], ord(r["char"][0]))),
        "digits": sum(i.alphabet_report["digits"] for i, _ in reports),
    }
