"""The inspector's "Augmentation preview" card: hear and see the utterance as training would
augment it (speed perturbation, time stretch, a room impulse response, additive noise at a chosen
SNR; ``sde.quality.augment``), seeded, with the NeMo augmentor config that reproduces it.

The card's Apply button sets the card's player to ``/api/utterances/ID/augment?…`` (the route in
sde.web.api.quality, WAV) and draws the augmented waveform + spectrogram; both come from one
computation kept per dataset (``sde.caching.for_dataset``), so the player's request costs nothing
more. Same parameters and seed → same samples → same bytes.

Noise and impulse-response files come from ``--noise-dir`` / ``--rir-dir`` (:func:`configure_sources`,
called by the CLI on the server); without them the choices are synthetic. Only segments up to
``MAX_AUGMENT_SECONDS`` are processed: longer ones get a 422 from the route and a note here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import dash_bootstrap_components as dbc
import numpy as np
from dash import Input, Output, State, dcc, html, no_update
from flask import current_app

from sde.audio import AudioError, Segment
from sde.caching import for_dataset
from sde.quality.augment import (
    MAX_AUGMENT_SECONDS,
    AugmentError,
    AugmentParams,
    AugmentSources,
    augment,
    nemo_augmentor_yaml,
)
from sde.web import state
from sde.web.figures import NO_CLOUD
from sde.web.audio_service import UnknownUtterance, service_of
from sde.web.signal_figure import signal_figure

if TYPE_CHECKING:  # pragma: no cover
    import dash

    from sde.dataset import Dataset

log = logging.getLogger(__name__)

#: ``server.extensions[EXTENSION_KEY]`` holds the server's :class:`AugmentSources`.
EXTENSION_KEY = "sde_augment_sources"
CARD = "aug-card"
SPEED, STRETCH, NOISE, SNR, RIR, RT60, SEED = ("aug-speed", "aug-stretch", "aug-noise", "aug-snr", "aug-rir",
                                               "aug-rt60", "aug-seed")
APPLY, AUDIO, FIGURE, CONFIG, MESSAGE, LINK = ("aug-apply", "aug-audio", "aug-figure", "aug-config",
                                               "aug-message", "aug-link")
_CACHE_BYTES = 64 << 20
_PARAM_NAMES = {"speed": "speed", "stretch": "stretch", "noise": "noise", "snr": "snr_db", "rir": "rir",
                "rt60": "rt60", "seed": "seed"}


class TooLong(AugmentError):
    """The segment is longer than the preview processes (the route answers 422)."""


# ---------------------------------------------------------------- sources and parameters


def configure_sources(server: Any, noise_dir: str | None = None, rir_dir: str | None = None) -> None:
    """Where the noise and impulse-response files of this server are (``--noise-dir``, ``--rir-dir``)."""
    server.extensions[EXTENSION_KEY] = AugmentSources(noise_dir, rir_dir)


def sources() -> AugmentSources:
    """The current server's sources (none outside a request: synthetic noise and RIR only)."""
    try:
        found = current_app.extensions.get(EXTENSION_KEY)
    except RuntimeError:
        found = None
    return found if isinstance(found, AugmentSources) else AugmentSources()


def _number(name: str, raw: Any, default: float) -> float:
    if raw is None or raw == "":
        return default
    if isinstance(raw, str) and len(raw) > 40:
        raise AugmentError(f"{name} must be a number, got {raw[:40]!r}…")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise AugmentError(f"{name} must be a number, got {raw!r}") from None
    return value


def params_from(args: Mapping[str, Any]) -> AugmentParams:
    """AugmentParams from request arguments (speed, stretch, noise, snr, rir, rt60, seed);
    AugmentError naming the bad one."""
    defaults = AugmentParams()
    seed = _number("seed", args.get("seed"), defaults.seed)
    if not float(seed).is_integer():
        raise AugmentError(f"seed must be a whole number, got {args.get('seed')!r}")
    noise = str(args.get("noise") or defaults.noise)[:500]
    rir = str(args.get("rir") or defaults.rir)[:500]
    return AugmentParams(speed=_number("speed", args.get("speed"), defaults.speed),
                         stretch=_number("stretch", args.get("stretch"), defaults.stretch),
                         noise=noise, snr_db=_number("snr", args.get("snr"), defaults.snr_db),
                         rir=rir, rt60=_number("rt60", args.get("rt60"), defaults.rt60), seed=int(seed))


def query_of(params: AugmentParams) -> str:
    """The canonical query string of ``params`` (every value, so the URL names the result)."""
    values = params.as_dict()
    return urlencode({arg: f"{values[field]:g}" if isinstance(values[field], float) else values[field]
                      for arg, field in _PARAM_NAMES.items()})


def audio_url(uid: int, params: AugmentParams) -> str:
    return f"/api/utterances/{int(uid)}/augment?{query_of(params)}"


# ---------------------------------------------------------------- the computation


def augmented(dataset: Dataset, uid: int, params: AugmentParams) -> tuple[Segment, float]:
    """(the augmented segment, the original's RMS in dBFS), cached per dataset. UnknownUtterance,
    AudioError, TooLong (over MAX_AUGMENT_SECONDS), AugmentError (a noise/RIR file)."""
    service = service_of(dataset)
    path, offset, duration = service.locate(uid)
    if duration is not None and duration > MAX_AUGMENT_SECONDS:
        raise TooLong(f"utterance {uid} is {duration:.1f} s long: the augmentation preview processes segments "
                      f"of at most {MAX_AUGMENT_SECONDS:g} s")
    src = sources()
    key = (uid, service.etag(uid), params, src)
    cache = for_dataset(dataset, "augment", _CACHE_BYTES, size_of=lambda v: v[0].samples.nbytes + 256)
    hit = cache.get(key)
    if hit is not None:
        return hit
    seg = service.source(uid)
    if not isinstance(seg, Segment):  # a reader: too long to hold, certainly over the bound
        seg.close()
        raise TooLong(f"utterance {uid} is too long for the augmentation preview (at most "
                      f"{MAX_AUGMENT_SECONDS:g} s)")
    if seg.duration > MAX_AUGMENT_SECONDS:
        raise TooLong(f"utterance {uid} is {seg.duration:.1f} s long: the augmentation preview processes segments "
                      f"of at most {MAX_AUGMENT_SECONDS:g} s")
    samples = augment(seg.samples, seg.sample_rate, params, src)
    rms = float(np.sqrt(np.mean(np.square(seg.samples, dtype=np.float64)))) if len(seg.samples) else 0.0
    rms_db = 20 * math.log10(rms) if rms > 0 else -120.0
    out = Segment(samples=samples, sample_rate=seg.sample_rate, channels=1, path=seg.path, offset=seg.offset,
                  duration=len(samples) / seg.sample_rate)
    cache.put(key, (out, rms_db))
    return out, rms_db


def config_yaml(dataset: Dataset, uid: int, params: AugmentParams) -> str:
    seg, rms_db = augmented(dataset, uid, params)
    return nemo_augmentor_yaml(params, seg.sample_rate, rms_db)


# ---------------------------------------------------------------- layout


def _choices(kind: str) -> list[dict[str, str]]:
    synthetic = ([{"label": "none", "value": "none"}, {"label": "white noise (synthetic)", "value": "white"},
                  {"label": "pink noise (synthetic)", "value": "pink"}] if kind == "noise" else
                 [{"label": "none", "value": "none"}, {"label": "synthetic room", "value": "synthetic"}])
    return synthetic + [{"label": name, "value": f"file:{name}"} for name in sources().files(kind)]


def _field(label: str, control: Any, hint: str | None = None) -> dbc.Col:
    # tied to its control (htmlFor): a screen reader names the box by it, and a click on it focuses the box
    return dbc.Col([html.Label(label, htmlFor=control.id, className="form-label small mb-0", title=hint), control],
                   xs=6, md=3, className="mb-2")


def layout(dataset: Dataset, uid: int, duration: Any) -> dbc.Card:
    """The card for utterance ``uid`` (a note instead of controls when it is too long)."""
    header = dbc.CardHeader(html.Div([
        html.Span("Augmentation preview", className="fw-bold"),
        html.Span("speed · time stretch · room · noise, seeded", className="text-muted small"),
    ], className="d-flex gap-3 align-items-baseline"))
    if isinstance(duration, (int, float)) and math.isfinite(duration) and duration > MAX_AUGMENT_SECONDS:
        return dbc.Card([header, dbc.CardBody(
            f"This segment is {duration:.1f} s long; the augmentation preview processes segments of at most "
            f"{MAX_AUGMENT_SECONDS:g} s.", className="small text-muted")], className="mb-3", id=CARD)
    number = {"type": "number", "size": "sm", "debounce": True}
    controls = dbc.Row([
        _field("speed", dbc.Input(id=SPEED, value=1.0, min=0.5, max=2.0, step=0.05, **number),
               "resampling: tempo and pitch change together (NeMo speed)"),
        _field("time stretch", dbc.Input(id=STRETCH, value=1.0, min=0.5, max=2.0, step=0.05, **number),
               "tempo only, same pitch (NeMo time_stretch)"),
        _field("noise", dbc.Select(id=NOISE, options=_choices("noise"), value="none", size="sm")),
        _field("SNR (dB)", dbc.Input(id=SNR, value=20, min=-10, max=60, step=1, **number)),
        _field("room impulse response", dbc.Select(id=RIR, options=_choices("rir"), value="none", size="sm")),
        _field("RT60 (s)", dbc.Input(id=RT60, value=0.4, min=0.05, max=2.0, step=0.05, **number),
               "reverberation time of the synthetic room"),
        _field("seed", dbc.Input(id=SEED, value=0, min=0, step=1, **number)),
        dbc.Col(dbc.Button("Apply", id=APPLY, color="primary", size="sm", n_clicks=0, className="mt-3"),
                xs=6, md=3, className="mb-2"),
    ], className="g-2")
    return dbc.Card([header, dbc.CardBody([
        controls,
        html.Div(id=MESSAGE),
        # Plays as soon as Apply sets its src: the click on Apply is the gesture browsers require.
        html.Audio(id=AUDIO, controls=True, preload="auto", autoPlay=True, className="w-100 my-2"),
        html.A("this audio (WAV)", id=LINK, className="small", href=None),
        dcc.Loading(dcc.Graph(id=FIGURE, config={"displaylogo": False, "responsive": True, **NO_CLOUD},
                              style={"display": "none"}), type="dot", delay_show=300),
        html.Div("NeMo augmentor config (paste into your training config):", className="small fw-semibold mt-2"),
        html.Pre(id=CONFIG, className="small bg-light p-2 border rounded mb-0"),
    ])], className="mb-3", id=CARD)


# ---------------------------------------------------------------- callback


def preview(dataset: Dataset, uid: Any, values: Mapping[str, Any]) -> dict:
    """The outputs of Apply: the player's src, the figure, the config, or why not."""
    nothing = {"src": no_update, "link": no_update, "figure": no_update, "style": no_update, "config": no_update}
    if uid is None:
        return {**nothing, "message": None}
    try:
        params = params_from(values)
        seg, rms_db = augmented(dataset, int(uid), params)
    except (AugmentError, AudioError, UnknownUtterance) as exc:
        return {**nothing, "message": dbc.Alert(str(exc), color="warning", className="py-2 small mb-2")}
    except Exception as exc:  # noqa: BLE001 - a DSP failure must not break the page
        log.exception("augmentation preview of utterance %s failed", uid)
        return {**nothing, "message": dbc.Alert(f"{type(exc).__name__}: {exc}", color="danger", className="py-2")}
    url = audio_url(int(uid), params)
    return {"src": url, "link": url, "figure": signal_figure(seg, height=320),
            "style": {"height": "320px"}, "config": nemo_augmentor_yaml(params, seg.sample_rate, rms_db),
            "message": None}


def callbacks(app: dash.Dash, dataset: Dataset) -> None:
    @app.callback(
        output={"src": Output(AUDIO, "src"), "link": Output(LINK, "href"), "figure": Output(FIGURE, "figure"),
                "style": Output(FIGURE, "style"), "config": Output(CONFIG, "children"),
                "message": Output(MESSAGE, "children")},
        inputs={"clicks": Input(APPLY, "n_clicks"), "uid": State(state.UTT_ID, "data"),
                "speed": State(SPEED, "value"), "stretch": State(STRETCH, "value"), "noise": State(NOISE, "value"),
                "snr": State(SNR, "value"), "rir": State(RIR, "value"), "rt60": State(RT60, "value"),
                "seed": State(SEED, "value")},
        prevent_initial_call=True,
    )
    def apply_augmentation(clicks, uid, **values):
        return preview(dataset, uid, values)


__all__ = ["EXTENSION_KEY", "TooLong", "audio_url", "augmented", "callbacks", "config_yaml", "configure_sources",
           "layout", "params_from", "preview", "query_of", "sources"]
