"""Signal side of sde: read an utterance's segment, encode it, summarise it for display, measure it.

- :mod:`sde.audio.io` — one reader with one fallback chain (libsndfile → ffmpeg → audioread):
  :func:`open_segment` (block by block, any length), :func:`read_segment`, :func:`read_channels`,
  :func:`file_info`, :class:`AudioError`, and :func:`channel_selection`: the one rule for a
  row's ``audio_channel`` (one channel, the mean of a list of channels, or the mix of all), used
  by the player, figures, measures, speech activity and transcription.
- :mod:`sde.audio.inputs` — audio that is not a local path (a tar member's bytes in memory, a file
  in an object store read with byte ranges): :class:`AudioInput`, accepted wherever a path is.
- :mod:`sde.audio.encode` — WAV (whole or streamed with Range support) and Ogg Vorbis.
- :mod:`sde.audio.dsp` — bounded display data (envelope, spectrogram) and resampling
  (:func:`read_resampled`: a segment at a model's rate, read and resampled block by block).
- :mod:`sde.audio.quality` — per-segment audio metrics and the parallel runner over a table.

The bottom layer of sde: imports nothing else of sde, and only numpy and soundfile at import time
(pandas, scipy, librosa, soxr lazily): the metric worker processes import it, and their start-up
time counts.
"""

from sde.audio.dsp import DB_FLOOR, DisplayData, display_data, envelope, read_resampled, resample, spectrogram
from sde.audio.encode import WavStream, ogg_bytes, ogg_stream, wav_bytes, wav_header
from sde.audio.inputs import AudioInput, FileAudio, MemoryAudio
from sde.audio.io import (BLOCK_FRAMES, DURATION_TOLERANCE, IN_MEMORY_MAX_FRAMES, MAX_SECONDS, AudioError,
                          ChannelSelection, RawAudio, Segment, SegmentReader, channel_selection,
                          file_info, open_segment, read_channels, read_segment, select_channels, to_mono)
from sde.audio.quality import AUDIO_METRIC_COLUMNS, audio_metrics, compute_audio_metrics, segment_channels

__all__ = [
    "AUDIO_METRIC_COLUMNS",
    "AudioError",
    "AudioInput",
    "BLOCK_FRAMES",
    "DB_FLOOR",
    "DURATION_TOLERANCE",
    "DisplayData",
    "FileAudio",
    "IN_MEMORY_MAX_FRAMES",
    "MAX_SECONDS",
    "MemoryAudio",
    "RawAudio",
    "Segment",
    "SegmentReader",
    "WavStream",
    "audio_metrics",
    "compute_audio_metrics",
    "segment_channels",
    "channel_selection",
    "ChannelSelection",
    "select_channels",
    "display_data",
    "envelope",
    "file_info",
    "ogg_bytes",
    "ogg_stream",
    "open_segment",
    "read_channels",
    "read_resampled",
    "read_segment",
    "resample",
    "spectrogram",
    "to_mono",
    "wav_bytes",
    "wav_header",
]
