"""Phoneme coverage of transcripts, with espeak-ng: which sounds each TTS voice has recordings of.

Words are phonemised one distinct word at a time through libespeak-ng's ``espeak_TextToPhonemes``
(ctypes; the library every espeak-ng install ships). The ``espeak-ng`` command would do the same
but synthesises audio for everything it reads, ~50× slower (2k words/s against 100k on one
core). A speaker's histogram is then (times the speaker says each word) × (phonemes of the word),
so 1M utterances cost one phonemisation per distinct word. Cross-word effects (linking r, French
liaison) are left out: coverage is about which sounds occur, which words decide.

Phonemes are espeak-ng's IPA units ("aɪ", "tʃ", "ɑ̃" are one each) without stress marks.

The inventory of a language is the set of phonemes of a reference text written for it
(``sde.quality.reference_texts``: English, German, French, Spanish), phonemised the same way; for
other languages it is every phoneme the dataset itself uses (``phoneme_inventory`` returns None
and the caller falls back to that union).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import re
import threading
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from sde.compressed_columns import row_reader, value_codes
from sde.quality.reference_texts import REFERENCE_TEXTS
from sde.text import normalize, normalize_arrow

__all__ = [
    "PhonemizerError",
    "UnknownVoice",
    "check_voice",
    "espeak_version",
    "phoneme_histograms",
    "phoneme_inventory",
    "phoneme_tokens",
    "speaker_codes",
    "phonemize_words",
]

_STRIP = re.compile(r"\([^)]*\)|[ˈˌ\-]")  # language-switch markers "(en)", stress, espeak's "-" links
_SPLIT = re.compile(r"[_\s]+")
_IPA_MODE = 0x02            # espeak_TextToPhonemes: IPA output
_UTF8 = 1                   # espeakCHARS_UTF8
_RETRIEVAL = 1              # AUDIO_OUTPUT_RETRIEVAL: never opens a sound device
_DONT_EXIT = 0x8000         # espeakINITIALIZE_DONT_EXIT: report errors instead of exit()
_TEXT_STEPS = ("lower", "punct")


class PhonemizerError(RuntimeError):
    """espeak-ng is missing or has no voice for the language; the message names the fix."""


class UnknownVoice(PhonemizerError):
    """espeak-ng is there but has no voice of that name: the caller asked for a language that is not
    one (a request's mistake), where a missing espeak-ng is the machine's."""


class _VoiceSpec(ctypes.Structure):
    """espeak_VOICE: what espeak_SetVoiceByProperties matches a voice against."""

    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p), ("identifier", ctypes.c_char_p),
                ("gender", ctypes.c_ubyte), ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte),
                ("xx1", ctypes.c_ubyte), ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


class _Espeak:
    """libespeak-ng, initialised once per process. The library keeps global state: one lock."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            raise PhonemizerError("phoneme coverage needs espeak-ng (its library libespeak-ng): "
                                  "apt install espeak-ng, or brew install espeak-ng") from None
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByProperties.restype = ctypes.c_int
        lib.espeak_SetVoiceByProperties.argtypes = [ctypes.POINTER(_VoiceSpec)]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
        lib.espeak_Info.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        if lib.espeak_Initialize(_RETRIEVAL, 0, None, _DONT_EXIT) < 0:
            raise PhonemizerError("espeak-ng cannot find its data (espeak-ng-data); reinstall espeak-ng")
        self._lib = lib
        self._voice: str | None = None
        self.lock = threading.Lock()

    def set_voice(self, lang: str) -> None:
        """The voice ``lang`` as `espeak-ng -v LANG` finds it: a voice file's name (en, gmw/en-US),
        else a language code of `espeak-ng --voices` (en-gb, fr-fr; any case, so BCP-47's en-GB),
        which espeak_SetVoiceByName alone does not know."""
        if lang != self._voice:
            self._voice = None  # a failed attempt may leave the library on another voice
            if (self._lib.espeak_SetVoiceByName(lang.encode()) != 0
                    and self._lib.espeak_SetVoiceByProperties(ctypes.byref(_VoiceSpec(languages=lang.encode()))) != 0):
                raise UnknownVoice(f'espeak-ng has no voice "{lang}"; `espeak-ng --voices` lists them '
                                   f'(e.g. en, en-gb, en-us, de, fr, es)')
            self._voice = lang

    def version(self) -> str | None:
        version = self._lib.espeak_Info(None)
        return version.decode("utf-8", "replace") if version else None

    def phonemes(self, text: str) -> str:
        """IPA of ``text``, phonemes separated by "_" and words by spaces (all its clauses)."""
        buf = ctypes.create_string_buffer(text.encode("utf-8"))
        pointer = ctypes.c_void_p(ctypes.addressof(buf))
        parts = []
        while pointer.value:  # espeak advances the pointer clause by clause, NULL at the end
            out = self._lib.espeak_TextToPhonemes(ctypes.byref(pointer), _UTF8, _IPA_MODE | (ord("_") << 8))
            parts.append(out.decode("utf-8", "replace") if out else "")
        return " ".join(parts)


_made = threading.Lock()
_engine: _Espeak | None = None


def _espeak() -> _Espeak:
    """The one libespeak-ng of the process. Made under a lock: requests asking at once for their
    first phonemes each initialised the library's global state beside the others (a server crashed
    in libc, or said a voice it has was missing). A failure is not kept: espeak-ng may be installed
    since."""
    global _engine
    with _made:
        if _engine is None:
            _engine = _Espeak()
        return _engine


def phoneme_tokens(ipa: str) -> list[str]:
    """espeak-ng's "_"-separated IPA → phonemes, without stress marks or non-phoneme symbols."""
    return [t for t in _SPLIT.split(_STRIP.sub("", ipa)) if any(ch.isalpha() for ch in t)]


def espeak_version() -> str | None:
    """The version of the espeak-ng that phonemises ("1.51"), None where it is missing: a phoneme
    report kept from one run is read by another only where it was made by the same."""
    try:
        engine = _espeak()
    except PhonemizerError:
        return None
    with engine.lock:
        return engine.version()


def check_voice(lang: str) -> None:
    """UnknownVoice when espeak-ng has no voice ``lang`` (PhonemizerError when espeak-ng is missing)."""
    engine = _espeak()
    with engine.lock:
        engine.set_voice(lang)


def phonemize_words(words: Sequence[str], lang: str) -> list[list[str]]:
    """Phonemes of each word (any text works; it is phonemised as a whole) with voice ``lang``."""
    engine = _espeak()
    with engine.lock:
        engine.set_voice(lang)
        return [phoneme_tokens(engine.phonemes(w)) if w else [] for w in words]


def _reference_text(lang: str) -> str | None:
    return REFERENCE_TEXTS.get(lang) or REFERENCE_TEXTS.get(lang.split("-")[0].lower())


@functools.lru_cache(maxsize=32)
def _inventory(lang: str) -> tuple[str, ...] | None:
    text = _reference_text(lang)
    if text is None:
        return None
    words = sorted(set(normalize(text, _TEXT_STEPS).split()))
    return tuple(sorted({p for ph in phonemize_words(words, lang) for p in ph}))


def phoneme_inventory(lang: str) -> list[str] | None:
    """The phonemes of ``lang``'s reference text (sorted), or None when sde has none for it."""
    inventory = _inventory(lang)
    return list(inventory) if inventory is not None else None


#: Transcripts counted at a time by :func:`phoneme_histograms` (memory: their words, not a column's).
CHUNK_ROWS = 65_536


def phoneme_histograms(texts: Sequence[str] | pd.Series, speakers: Sequence[object] | pd.Series | None,
                       lang: str) -> pd.DataFrame:
    """How often each speaker's transcripts use each phoneme: columns speaker, phoneme, count.

    ``speakers`` None (or missing values) counts under speaker "" . Texts are lower-cased and
    stripped of punctuation before being split into words. They are read :data:`CHUNK_ROWS` at a
    time (10M transcripts at once took ~10 GB), each distinct word phonemised once.
    """
    n = len(texts)
    read = row_reader(texts if isinstance(texts, pd.Series) else pd.Series(list(texts), dtype=object))
    spk_codes, spk_names = speaker_codes(speakers, n)
    from scipy.sparse import coo_matrix  # lazy: scipy.sparse takes ~0.2 s to import

    phonemes_of: dict[str, list[int]] = {}  # word → its phonemes' ids
    phoneme_ids: dict[str, int] = {}
    totals = np.zeros((len(spk_names), 0), dtype=np.int64)
    for start in range(0, n, CHUNK_ROWS):
        norm = normalize_arrow(read(start, min(CHUNK_ROWS, n - start)), _TEXT_STEPS)
        lists = pc.split_pattern(norm, " ")
        flat = pc.list_flatten(lists)
        parents = np.asarray(pc.list_parent_indices(lists).to_numpy(zero_copy_only=False), dtype=np.int64)
        keep = np.asarray(pc.not_equal(flat, "").to_numpy(zero_copy_only=False), dtype=bool)
        encoded = pc.dictionary_encode(pc.filter(flat, pa.array(keep)))
        if isinstance(encoded, pa.ChunkedArray):
            encoded = encoded.combine_chunks()
        word_ids = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        vocabulary = encoded.dictionary.to_pylist()
        new = [w for w in vocabulary if w not in phonemes_of]
        for word, phonemes in zip(new, phonemize_words(new, lang) if new else []):
            phonemes_of[word] = [phoneme_ids.setdefault(p, len(phoneme_ids)) for p in phonemes]
        # Speaker × word counts, then × word → phoneme counts: a sparse product, not a loop over text.
        said = coo_matrix((np.ones(len(word_ids)), (spk_codes[start + parents[keep]], word_ids)),
                          shape=(len(spk_names), len(vocabulary))).tocsr()
        made = [phonemes_of[w] for w in vocabulary]
        rows = np.repeat(np.arange(len(vocabulary)), [len(ph) for ph in made])
        made_of = coo_matrix((np.ones(len(rows)), (rows, np.array([p for ph in made for p in ph], dtype=np.int64))),
                             shape=(len(vocabulary), len(phoneme_ids))).tocsr()
        counts = np.rint((said @ made_of).toarray()).astype(np.int64)
        if counts.shape[1] > totals.shape[1]:
            totals = np.pad(totals, ((0, 0), (0, counts.shape[1] - totals.shape[1])))
        totals[:, :counts.shape[1]] += counts
    names = np.array(list(phoneme_ids) or [""], dtype=object)
    spk, ph = np.nonzero(totals)
    out = pd.DataFrame({"speaker": np.asarray(spk_names, dtype=object)[spk], "phoneme": names[ph],
                        "count": totals[spk, ph]})
    out = out.sort_values(["speaker", "count", "phoneme"], ascending=[True, False, True])
    return out.reset_index(drop=True)


def speaker_codes(speakers: Sequence[object] | pd.Series | None, n: int) -> tuple[np.ndarray, list[str]]:
    """(per row, its speaker's index into the names; the names): missing speakers are "" (one name
    however it came: missing, or an empty name), from a label column's own codes where it has them."""
    if speakers is None:
        return np.zeros(n, dtype=np.int64), [""]
    codes, uniques = value_codes(speakers if isinstance(speakers, pd.Series) else pd.Series(list(speakers), dtype=object))
    names = [str(u) for u in uniques] + [""]  # the last: missing
    merged, distinct = pd.factorize(pd.Series(names, dtype=object))
    return merged[np.where(codes < 0, len(names) - 1, codes)].astype(np.int64), list(distinct)
