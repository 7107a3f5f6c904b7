"""The stat cards of the Comparison page: corpus WER of A and B with their 95% bootstrap
intervals, the paired-bootstrap difference B − A with its interval and p-value, and one sentence
saying what that means (`section(payload, a, b)`, from the /api/compare payload)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import dash_bootstrap_components as dbc
from dash import html

from sde.web.components import fmt_int

if TYPE_CHECKING:  # pragma: no cover
    from sde.manifest import HypothesisField

# Below this many utterances a significant difference comes with a caution (see interpretation).
FEW_UTTERANCES = 20

STATS = "cmp-stats"                  # container of the stat cards + interpretation
INTERPRETATION = "cmp-interpretation"
A_WER, B_WER, DIFF_WER = "cmp-a-wer", "cmp-b-wer", "cmp-diff-wer"
A_CI, B_CI, DIFF_CI, DIFF_P = "cmp-a-ci", "cmp-b-ci", "cmp-diff-ci", "cmp-diff-p"


def ci_digits(lo: float, hi: float) -> int:
    """Decimals that keep an interval's ends apart: 1 for a wide one, up to 3 for a narrow one
    (a million utterances give intervals a few hundredths of a point wide)."""
    width = abs(hi - lo)
    if not math.isfinite(width) or width <= 0:
        return 2
    return max(1, min(3, math.ceil(-math.log10(width))))


def fmt_points(x: float, digits: int = 1) -> str:
    """A WER difference in percentage points (at least 2 decimals below 1 point), with a true minus
    sign as the cards have, and no "−0.00" for a value that rounds to zero."""
    places = digits if abs(x) >= 1 else max(digits, 2)
    text = f"{x:.{places}f}"
    if float(text) == 0:
        text = f"{0.0:.{places}f}"
    return text.replace("-", "−")


def fmt_p(p: float | None, n_resamples: int | None = None) -> str:
    """The p-value; at the bootstrap's floor 2/(B+1) it says "≤" (the true p may be far smaller)."""
    if p is None or not math.isfinite(p):
        return "p = –"
    if n_resamples:
        floor = 2.0 / (n_resamples + 1)
        if p <= floor * (1 + 1e-6):
            return f"p ≤ {floor:.2g}" if floor < 0.001 else f"p ≤ {floor:.3f}"
    if p < 0.001:
        return "p < 0.001"
    # 0.052 shown as "0.05" would read as the 5% line the verdict is drawn at
    return f"p = {p:.3f}" if p < 0.01 or f"{p:.2f}" == "0.05" else f"p = {p:.2f}"


def fmt_signed(x: float | None, digits: int = 2) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:+.{digits}f}".replace("-", "−")


def _finite(*xs: Any) -> bool:
    return all(x is not None and isinstance(x, (int, float)) and math.isfinite(x) for x in xs)


def interpretation(payload: Mapping, a_name: str, b_name: str) -> tuple[str, str]:
    """(sentence, tone) saying what the paired bootstrap found.

    "B (x) is better by 8.0 points (95% CI 3.1 – 12.9, p = 0.002)" when the interval excludes 0;
    otherwise that the difference is not significant, or that nothing can be told (no p-value: the
    resamples did not vary, e.g. one utterance). tone: success | danger | secondary."""
    d = payload.get("diff") or {}
    diff, (lo, hi), p = d.get("wer"), d.get("ci") or (None, None), d.get("p")
    if not _finite(diff, lo, hi):
        return "No utterances selected: nothing to compare.", "secondary"
    if diff == 0 and lo == 0 and hi == 0:
        return f"A ({a_name}) and B ({b_name}) make exactly as many word errors.", "secondary"
    if not _finite(p):  # the resamples did not vary (one utterance): nothing measured the uncertainty
        n = payload.get("utterances")
        of = f"these {fmt_int(n)} utterances" if isinstance(n, int) and n > 1 else "this utterance"
        return (f"Cannot tell whether A ({a_name}) or B ({b_name}) is better: every bootstrap resample of {of} "
                f"gives the same difference ({fmt_signed(diff)} points), so there is no interval to judge it by; "
                "select more utterances.", "secondary")
    if diff == 0:  # the same WER, yet resamples differ: not a tie of every utterance
        digits = ci_digits(lo, hi)
        return (f"No difference: A ({a_name}) and B ({b_name}) have the same WER on these utterances (95% CI of "
                f"B − A {fmt_points(lo, digits)} – {fmt_points(hi, digits)} points, "
                f"{fmt_p(p, payload.get('n_resamples'))}).", "secondary")
    if diff < 0:  # B has the lower WER
        better, by, clo, chi = f"B ({b_name})", -diff, -hi, -lo
    else:
        better, by, clo, chi = f"A ({a_name})", diff, lo, hi
    digits = ci_digits(lo, hi)
    ci = f"95% CI {fmt_points(clo, digits)} – {fmt_points(chi, digits)}"
    pv = fmt_p(p, payload.get("n_resamples"))
    if lo > 0 or hi < 0:
        tone = "success" if diff < 0 else "danger"
        n = payload.get("utterances")
        caution = ""
        if isinstance(n, int) and n < FEW_UTTERANCES:
            # a percentile bootstrap over a handful of utterances is too narrow: 3 utterances all
            # better gave p = 0.002, where an exact sign test cannot go below 0.25
            caution = (f" Only {fmt_int(n)} {'utterance' if n == 1 else 'utterances'}: a bootstrap this small "
                       "understates the uncertainty; select more before relying on it.")
        return f"{better} is better by {fmt_points(by, digits)} points ({ci}, {pv}).{caution}", tone
    return (f"No significant difference: {better} is ahead by {fmt_points(by, digits)} points, but the {ci} "
            f"includes 0 ({pv}).", "secondary")


def _card(label: str, value: str, value_id: str, sub: Any, sub_id: str, tone: str | None = None,
          extra: Any = None, title: str | None = None, name: str | None = None) -> dbc.Card:
    head = [html.Span(label, className="stat-label")]
    if name:  # the hypothesis as written (stat labels are upper-cased)
        head.append(html.Span(name, className="hyp-name small ms-2 text-truncate"))
    body = [html.Div(head, className="d-flex align-items-baseline"),
            html.Div(value, id=value_id, className="stat-value" + (f" text-{tone}" if tone else "")),
            html.Div(sub, id=sub_id, className="stat-sub")]
    if extra is not None:
        body.append(extra)
    card = dbc.Card(dbc.CardBody(body), className="stat-card h-100")
    return html.Div(card, title=title, className="h-100") if title else card


def _pct(x: Any) -> str:
    return f"{x:.2f}%" if _finite(x) else "–"


def _ci(ci: Any, unit: str = "%") -> str:
    lo, hi = (ci or [None, None])[:2]
    if not _finite(lo, hi):
        return "95% CI –"
    return f"95% CI {lo:.2f} – {hi:.2f}{unit}"


def section(payload: Mapping, a: "HypothesisField", b: "HypothesisField") -> html.Div:
    sentence, tone = interpretation(payload, a.name, b.name)
    d = payload["diff"]
    diff_tone = {"success": "success", "danger": "danger"}.get(tone)
    dlo, dhi = (d.get("ci") or [None, None])[:2]
    diff_ci = (f"95% CI {fmt_signed(dlo)} – {fmt_signed(dhi)} points" if _finite(dlo, dhi) else "95% CI –")
    cards = [
        _card("WER of A", _pct(payload["a"]["wer"]), A_WER, _ci(payload["a"]["ci"]), A_CI, name=a.name,
              title=f"corpus WER of {a.field} with its 95% bootstrap interval"),
        _card("WER of B", _pct(payload["b"]["wer"]), B_WER, _ci(payload["b"]["ci"]), B_CI, name=b.name,
              title=f"corpus WER of {b.field} with its 95% bootstrap interval"),
        _card("Difference B − A", (fmt_signed(d["wer"]) + " points") if _finite(d["wer"]) else "–", DIFF_WER,
              diff_ci, DIFF_CI, tone=diff_tone,
              extra=html.Div(fmt_p(d.get("p"), payload.get("n_resamples")), id=DIFF_P, className="stat-sub"),
              title="paired bootstrap over utterances: negative means B makes fewer errors"),
    ]
    n = payload.get("utterances")
    note = (f"{fmt_int(n)} {'utterance' if n == 1 else 'utterances'} · {fmt_int(payload.get('n_resamples'))} "
            "bootstrap resamples "
            f"(seed {payload.get('seed', 0)}), paired for the difference")
    return html.Div([
        dbc.Row([dbc.Col(c, xs=12, md=4, className="mb-2") for c in cards], className="g-2"),
        dbc.Alert(sentence, color={"success": "success", "danger": "danger"}.get(tone, "light"),
                  id=INTERPRETATION, className="mb-1 py-2 fw-bold"),
        html.Div(note, className="text-muted small mb-3"),
    ], id=STATS)
