"""Drop rules: named filters whose matches an export removes, kept in a small YAML file.

    rules:
      - name: high WER
        filter: "{wer} > 60"
      - name: too fast
        filter: "{char_rate} > 25"
        description: faster than anyone speaks      # optional
      - name: duplicate text
        filter: "{dup_text_group} >= 0"
        enabled: false                               # optional: kept in the file, not applied

The same file is what the browser saves and what `sde export --rules rules.yaml` replays, so the
cleaning decided while looking at the data is reproducible in a pipeline. Before exporting, each
rule's count and hours are reported, and their union (an utterance matched by two rules is
counted once).

The file is read with YAML's safe loader only (no Python objects), at most MAX_RULES_BYTES and
MAX_RULES rules; every problem names the file, the line and the rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterable, Mapping, Sequence, TypeVar

import numpy as np

from sde.audio import AUDIO_METRIC_COLUMNS
from sde.quality.apply import TooLarge, ensure_named_quality_columns
from sde.quality.vad import VAD_COLUMNS
from sde.filters import Column, column_refs, parse
from sde.query import QueryError
from sde.reviews import ReviewStore, query_for

if TYPE_CHECKING:  # pragma: no cover
    from sde.dataset import Dataset

MAX_RULES_BYTES = 1 << 20
MAX_RULES = 200
MAX_NAME_CHARS = 200
RULE_FIELDS = ("name", "filter", "description", "enabled")
EXAMPLE = 'rules:\n  - name: high WER\n    filter: "{wer} > 60"'


class RulesError(ValueError):
    """A rules file or rule that cannot be used; names the file, line and rule, and the fix.

    `rule` is the rule's name and `position` the 0-based character in its filter, when known.
    """

    def __init__(self, message: str, *, rule: str | None = None, position: int | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.position = position


class UnmeasuredColumn(RulesError):
    """A rule or filter naming a column that only a build option measures, on a dataset built
    without it; `column` and `option` (the flag to add) are given to the caller as fields."""

    def __init__(self, message: str, *, column: str, option: str, rule: str | None = None,
                 position: int | None = None) -> None:
        super().__init__(message, rule=rule, position=position)
        self.column = column
        self.option = option


@dataclass(frozen=True)
class Measure:
    """How a column that only a build option measures comes to be."""

    option: str       # the flag of `sde` and `sde export` that measures it
    what: str         # what the column is, as a message names it
    made_from: str    # the measured column it needs: itself, or the audio hash a group is made from
    in_browser: str   # how a running server measures it without a restart


Where = TypeVar("Where")
_SPEECH_CARD = "press Measure on the TTS readiness page's Speech activity card"
_AUDIO_CARD = "press Measure audio on the Statistics page"
# The duplicate columns made from the audio hash (sde.quality.duplicates), which only --vad measures.
AUDIO_DUPLICATE_COLUMNS = ("dup_audio_group", "dup_audio_text_conflict")
#: Column -> the option that measures it. Without the measure an unknown column would only say
#: "Unknown column", and a duplicate-audio column would exist but be empty: a drop rule on it would
#: silently remove nothing.
MEASURED_BY: dict[str, Measure] = {
    **{c: Measure("--vad", "a speech-activity measure (Silero VAD)", c, _SPEECH_CARD) for c in VAD_COLUMNS},
    "audio_hash": Measure("--vad", "the audio hash", "audio_hash", _SPEECH_CARD),
    "lufs": Measure("--vad", "the loudness", "lufs", _SPEECH_CARD),
    "quality_error": Measure("--vad", "why a segment could not be measured", "quality_error", _SPEECH_CARD),
    **{c: Measure("--vad", "a duplicate-audio group made from the audio hashes (without them it is empty on "
                           "every line and matches none: a drop rule on it would keep every line)", "audio_hash",
                  _SPEECH_CARD)
       for c in AUDIO_DUPLICATE_COLUMNS},
    **{c: Measure("--estimate-audio-metrics", "an audio metric (sample rate, levels, clipping, bandwidth)", c,
                  _AUDIO_CARD) for c in AUDIO_METRIC_COLUMNS},
}


def unmeasured_columns(columns: Collection[str], named: Iterable[tuple[Where, str]]
                       ) -> list[tuple[Where, str, Measure]]:
    """(where, column, measure) for each (where, column) in `named` that only a build option
    measures and the table of `columns` lacks. A column the table holds is read as it is: a
    manifest's own field of the name (an audio metric is not renamed until it is measured), or a
    measure taken by the server's Measure job."""
    return [(where, column, MEASURED_BY[column]) for where, column in named
            if column in MEASURED_BY and MEASURED_BY[column].made_from not in columns]


def manifest_field_hint(columns: Collection[str], column: str) -> str:
    """A manifest's own field of a measured column's name is read as manifest_<name>: say so."""
    return f"; the manifest's own {column} field is {{manifest_{column}}}" if f"manifest_{column}" in columns else ""


@dataclass(frozen=True)
class Rule:
    name: str
    filter: str
    description: str = ""
    enabled: bool = True
    line: int | None = None   # 1-based line of the rule in its file

    def to_json(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "filter": self.filter}
        if self.description:
            out["description"] = self.description
        if not self.enabled:
            out["enabled"] = False
        return out


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover - PyYAML is a dependency
        raise RulesError("reading rules needs PyYAML: pip install pyyaml") from None
    return yaml


def load_rules(path: str | Path) -> list[Rule]:
    """The enabled and disabled rules of a YAML file (see the module docstring)."""
    p = Path(path)
    try:
        if p.is_dir():
            raise RulesError(f"{path}: is a folder; --rules takes a YAML file such as:\n{EXAMPLE}")
        with p.open("rb") as f:
            raw = f.read(MAX_RULES_BYTES + 1)
    except FileNotFoundError:
        raise RulesError(f"{path}: file not found; check the path of --rules") from None
    except OSError as e:
        raise RulesError(f"{path}: cannot read it ({e.strerror})") from None
    if len(raw) > MAX_RULES_BYTES:
        raise RulesError(f"{path}: larger than {MAX_RULES_BYTES >> 20} MiB; a rules file is a short list of "
                         "named filters")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RulesError(f"{path}: not UTF-8 text (byte {e.start + 1}); save it as UTF-8") from None
    return parse_rules(text, str(path))


def parse_rules(text: str, source: str = "rules.yaml") -> list[Rule]:
    """Rules from YAML text: a mapping with `rules:` (or just the list)."""
    yaml = _yaml()
    if len(text) > MAX_RULES_BYTES:
        raise RulesError(f"{source}: longer than {MAX_RULES_BYTES >> 20} MiB; a rules file is a short list")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RulesError(f"{where}: not valid YAML ({problem}); a rules file looks like:\n{EXAMPLE}") from None
    except RecursionError:
        raise RulesError(f"{source}: nested too deeply to be a rules file") from None
    items, nodes = data, root
    if isinstance(data, Mapping):
        extra = [k for k in data if k != "rules"]
        if extra or "rules" not in data:
            raise RulesError(f"{source}: expected a top-level `rules:` list"
                             + (f", found {_short(extra[0])}" if extra else "") + f"; e.g.\n{EXAMPLE}")
        items = data["rules"]
        nodes = next((v for k, v in root.value if k.value == "rules"), None)
    if items is None:
        return []
    if not isinstance(items, list):
        raise RulesError(f"{source}: `rules` must be a list of {{name, filter}} entries; e.g.\n{EXAMPLE}")
    if len(items) > MAX_RULES:
        raise RulesError(f"{source}: {len(items)} rules; at most {MAX_RULES}")
    lines = [n.start_mark.line + 1 for n in nodes.value] if nodes is not None and hasattr(nodes, "value") else []
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        line = lines[i] if i < len(lines) else None
        rule = _rule(item, f"{source}:{line}" if line else source, i + 1, line)
        if rule.name in seen:
            raise RulesError(f"{source}:{line}: two rules are named {rule.name!r}; give each rule its own name",
                             rule=rule.name)
        seen.add(rule.name)
        rules.append(rule)
    return rules


def _rule(item: Any, where: str, number: int, line: int | None) -> Rule:
    # `where` is "FILE:LINE" (or the file); "" for a rule sent as JSON, which has neither: its
    # messages then start "rule 'NAME': ", as evaluate_rules and check_rules say them
    where = f"{where}: " if where else ""
    if not isinstance(item, Mapping):
        raise RulesError(f"{where}rule {number} must be a mapping with name and filter, e.g.\n{EXAMPLE}")
    unknown = [k for k in item if k not in RULE_FIELDS]
    if unknown:
        raise RulesError(f"{where}rule {number} has an unknown field {_short(unknown[0])}; a rule has "
                         f"{', '.join(RULE_FIELDS)}")
    name, flt = item.get("name"), item.get("filter")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS or not name.isprintable():
        # YAML reads an unquoted off, no, yes, 1.5 or 2024-01-01 as a boolean, number or date
        quote = ('; YAML reads an unquoted off, no, yes, a number or a date as such: quote the name '
                 '(name: "off")') if isinstance(name, (bool, int, float)) or type(name).__name__ in ("date", "datetime") \
            else ""
        raise RulesError(f"{where}rule {number} needs a name: a line of text of at most {MAX_NAME_CHARS} "
                         f"characters; got {_short(name)}{quote}")
    name = name.strip()
    if not isinstance(flt, str) or not flt.strip():
        raise RulesError(f"{where}rule {name!r} needs a filter (text in the filter language, e.g. "
                         f'"{{wer}} > 60"); got {_short(flt)}', rule=name)
    description = item.get("description") or ""
    if not isinstance(description, str):
        raise RulesError(f"{where}rule {name!r}: description must be text", rule=name)
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        raise RulesError(f"{where}rule {name!r}: enabled must be true or false; got {_short(enabled)}", rule=name)
    try:  # every rule, a disabled one too: its mistake would surface only once it is turned on
        parse(flt)
    except QueryError as e:
        raise RulesError(f"{where}rule {name!r}{_off(enabled)}: {e}", rule=name,
                         position=getattr(e, "position", None)) from None
    return Rule(name, flt, description, enabled, line)


def _off(enabled: bool) -> str:
    return "" if enabled else " (enabled: false, but its filter is checked too: fix it or remove the rule)"


def dump_rules(rules: Sequence[Rule]) -> str:
    """The YAML text of a rules file (what the browser's "save rules" writes)."""
    return _yaml().safe_dump({"rules": [r.to_json() for r in rules]}, sort_keys=False, allow_unicode=True, width=1000)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------------------------ evaluation


@dataclass
class RuleCount:
    rule: Rule
    utterances: int      # rows this rule matches (within the export's selection)
    hours: float
    only: int            # rows no other rule matches: what removing this rule would bring back


@dataclass
class RulesReport:
    counts: list[RuleCount]
    mask: np.ndarray     # rows removed by at least one enabled rule (within the selection)
    union_utterances: int
    union_hours: float
    considered: int      # rows the rules were applied to

    def to_json(self, file: str | None = None) -> dict:
        return {
            "file": file,
            "considered": self.considered,
            "rules": [{**c.rule.to_json(), "utterances": c.utterances, "hours": c.hours, "only": c.only}
                      for c in self.counts],
            "union": {"utterances": self.union_utterances, "hours": self.union_hours},
        }


def evaluate_rules(rules: Sequence[Rule], select: Callable[[str], np.ndarray], duration: np.ndarray, *,
                   within: np.ndarray | None = None, source: str | None = None,
                   check: Callable[[str], Any] | None = None) -> RulesReport:
    """What each enabled rule removes from the rows `within` (a boolean mask; all rows if None).

    `select(filter)` returns row positions (TableQuery.select). A filter the engine refuses raises
    RulesError naming the rule, its line and the position in its filter; a disabled rule's filter is
    checked too, by `check(filter)` (TableQuery.clauses: its columns and types, without running it;
    `select` when None), so that a mistake in it is found now, not once it is turned on.
    """
    n = len(duration)
    scope = np.ones(n, dtype=bool) if within is None else within
    masks: list[np.ndarray | None] = []
    for rule in rules:
        try:
            if not rule.enabled:
                (check or select)(rule.filter)
                masks.append(None)
                continue
            positions = np.asarray(select(rule.filter), dtype=np.int64)
        except QueryError as e:
            raise _filter_error(source, rule, e) from None
        m = np.zeros(n, dtype=bool)
        m[positions] = True
        masks.append(m & scope)
    union = np.zeros(n, dtype=bool)
    hits = np.zeros(n, dtype=np.int32)
    for m in masks:
        if m is not None:
            union |= m
            hits += m
    counts = []
    for rule, m in zip(rules, masks):
        if m is None:
            counts.append(RuleCount(rule, 0, 0.0, 0))
            continue
        counts.append(RuleCount(rule, int(m.sum()), float(np.nansum(duration[m])) / 3600.0,
                                int(np.count_nonzero(m & (hits == 1)))))
    return RulesReport(counts, union, int(union.sum()), float(np.nansum(duration[union])) / 3600.0,
                       int(scope.sum()))


def _filter_error(source: str | None, rule: Rule, e: QueryError) -> RulesError:
    where = f"{source}:{rule.line}: " if source and rule.line else (f"{source}: " if source else "")
    return RulesError(f"{where}rule {rule.name!r}{_off(rule.enabled)}: {e}", rule=rule.name,
                      position=getattr(e, "position", None))


def _columns_named(text: str | None) -> list[Column]:
    """The columns a filter reads, with their positions; none when it does not parse: the query
    then says what is wrong with it."""
    try:
        return list(column_refs(parse(text))) if text else []
    except QueryError:
        return []


def refuse_unmeasured_on_server(dataset: "Dataset", rules: Sequence[Rule], filter_text: str | None = None,
                                source: str | None = None) -> None:
    """UnmeasuredColumn when a rule (a disabled one too, as its other mistakes are found) or the
    view's filter names a column this server did not measure: the preview would otherwise count
    0 matches for it, or answer "Unknown column", without saying which option measures it."""
    own = set(dataset.utterances.columns)
    named = [(None, c) for c in _columns_named(filter_text)] + [(r, c) for r in rules for c in _columns_named(r.filter)]
    found = unmeasured_columns(own, [(i, ref.name) for i, (_, ref) in enumerate(named)])
    if not found:
        return
    i, column, measure = found[0]
    rule, ref = named[i]
    where = "the filter" if rule is None else \
        (f"{source}:{rule.line}: " if source and rule.line else "") + f"rule {rule.name!r}"
    raise UnmeasuredColumn(f"{where}: {unmeasured_message(own, column, measure)}", column=column,
                           option=measure.option, rule=None if rule is None else rule.name,
                           position=None if rule is None else ref.pos)


def unmeasured_message(columns: Collection[str], column: str, measure: Measure) -> str:
    """What a server started without `measure.option` says of `column`, and the ways to measure it."""
    return (f"{{{column}}} is measured by {measure.option} ({measure.what}), and this server was started "
            f"without it: restart sde with {measure.option} (or export with {measure.option}), or "
            f"{measure.in_browser}{manifest_field_hint(columns, column)}")


def unmeasured_in_filter(columns: Collection[str], text: str | None) -> UnmeasuredColumn | None:
    """The view filter's first column that this server did not measure (what the Rules page says
    of it), or None. Runs per request: a filter whose text holds no measured column's name (a
    column is named as written, so each name it reads is in its text) is not parsed at all."""
    if not text or not any(name in text for name in MEASURED_BY):
        return None
    found = unmeasured_columns(columns, [(None, ref.name) for ref in _columns_named(text)])
    if not found:
        return None
    _, column, measure = found[0]
    return UnmeasuredColumn(f"the filter: {unmeasured_message(columns, column, measure)}", column=column,
                            option=measure.option)


def check_rules(dataset: "Dataset", store: "ReviewStore | None", rules: Sequence[Rule],
                source: str | None = None) -> None:
    """Each rule's filter (a disabled rule's too) checked against the dataset's columns and types,
    without running it: RulesError names the file `source`, the line and the rule."""
    refuse_unmeasured_on_server(dataset, rules, source=source)
    filters = [r.filter for r in rules]
    try:
        ensure_named_quality_columns(dataset, filters)
    except TooLarge as e:
        raise RulesError(str(e)) from None
    query = query_for(dataset, store, *filters)
    for rule in rules:
        try:
            query.clauses(rule.filter)
        except QueryError as e:
            raise _filter_error(source, rule, e) from None


# ----------------------------------------------------------------------------------- HTTP twin


def rules_preview_route(dataset: "Dataset", store: "ReviewStore | None", body: Any,
                        filter_text: str | None = None) -> tuple[int, dict]:
    """POST /api/rules/preview with {"rules": [{name, filter}...]} or {"yaml": TEXT}, optional
    {"filter": Q} (the current view) → 200 the report of RulesReport.to_json; 400 naming the rule."""
    try:
        if not isinstance(body, Mapping):
            raise RulesError('send {"rules": [{"name": ..., "filter": ...}]} or {"yaml": "rules: ..."}')
        if "yaml" in body:
            if not isinstance(body["yaml"], str):
                raise RulesError("yaml must be the text of a rules file")
            rules = parse_rules(body["yaml"], "rules")
        else:
            items = body.get("rules")
            if not isinstance(items, list) or len(items) > MAX_RULES:
                raise RulesError(f"rules must be a list of at most {MAX_RULES} {{name, filter}} objects")
            rules = [_rule(item, "", i + 1, None) for i, item in enumerate(items)]
        filter_text = body.get("filter", filter_text) or None
        if filter_text is not None and not isinstance(filter_text, str):
            raise RulesError("filter must be text in the filter language")
        refuse_unmeasured_on_server(dataset, rules, filter_text, "rules" if "yaml" in body else None)
        try:  # a rule may name a quality column no request has computed yet ({dup_text_group}, …)
            ensure_named_quality_columns(dataset, [filter_text, *(r.filter for r in rules)])
        except TooLarge as e:
            raise RulesError(str(e)) from None
        query = query_for(dataset, store, filter_text, *(r.filter for r in rules))
        within = None
        if filter_text:
            within = np.zeros(len(dataset.utterances), dtype=bool)
            within[query.select(filter_text)] = True
        duration = dataset.utterances["duration"].to_numpy(dtype="float64", na_value=np.nan)
        # rules from YAML text know their lines: name them as parse_rules does ("rules:4: rule 'x'")
        report = evaluate_rules(rules, query.select, duration, within=within,
                                source="rules" if "yaml" in body else None, check=query.clauses)
        return 200, report.to_json()
    except (RulesError, QueryError) as e:
        payload: dict[str, Any] = {"error": str(e)}
        for attr in ("rule", "position", "column", "option"):
            if getattr(e, attr, None) is not None:
                payload[attr] = getattr(e, attr)
        return 400, payload
