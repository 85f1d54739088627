"""Text to phoneme symbols with espeak-ng, through its C API (ctypes).

The symbols are espeak-ng's own phoneme mnemonics as its synthesizer reports them
in ``espeakEVENT_PHONEME`` events (``h``, ``@``, ``'oU``: stress marks stay on
the vowel they belong to), plus pause symbols (``_``, ``_:``). The same events,
with their sample positions, are what the demo voice was trained on
(``addons/fastpitch-demo/training/make_dataset.py`` calls :func:`render`), so
:func:`phonemize` yields exactly the inventory and the sequences of training.

Token rules, shared by training and runtime (see :func:`_tokens`):

- the silence before the first phoneme is a pause token ``_``;
- consecutive pause events are merged into one token named after the first
  (a clause end gives ``_:`` then ``_``: one ``_:`` token);
- every other event is one token.

espeak-ng is found, in order: the ``espeakng-loader`` wheel (``pip install
espeakng-loader``, which bundles libespeak-ng and its data), then a system
library (Debian: ``apt-get install libespeak-ng1 espeak-ng-data``). espeak-ng
keeps global state, so every call here holds one lock.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from dataclasses import dataclass

import numpy as np

DEFAULT_VOICE = "en-us"
PAUSE_PREFIX = "_"
"""Pause symbols start with this character (``_``, ``_:``, ``_!``...)."""

# speak_lib.h constants
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_EE_OK = 0
_PARAMETER_RATE = 1
DEFAULT_RATE = 175
"""espeak-ng's default speaking rate (words per minute): :func:`render` speaks at it, for training durations."""
PHONEMIZE_RATE = 400
"""The rate :func:`phonemize` speaks at: twice as fast as the default, whose audio it throws away. The
tokens are the same: checked on all 4,100 demo training and held-out sentences and the benchmark texts."""


class EspeakError(RuntimeError):
    """espeak-ng is missing, or failed to initialise or to synthesize."""


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT`` of speak_lib.h (API revision 12)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Rendering:
    """One text spoken by espeak-ng, with its phoneme tokens and their sample spans.

    ``boundaries`` has ``len(phonemes) + 1`` non-decreasing sample indices:
    token ``i`` spans ``audio[boundaries[i]:boundaries[i + 1]]``; the first is 0
    and the last is ``len(audio)``.
    """

    audio: np.ndarray  # float32 in [-1, 1], mono
    sample_rate: int
    phonemes: list[str]
    boundaries: list[int]

    def frame_durations(self, hop_length: int) -> list[int]:
        """Mel frames per token for a centred STFT (``1 + len(audio) // hop_length`` frames in all).

        Frame ``t`` is centred on sample ``t * hop_length`` and belongs to the
        token whose span holds that sample; the durations sum to the frame count.
        """
        n_frames = 1 + len(self.audio) // hop_length
        edges = [min(-(-b // hop_length), n_frames) for b in self.boundaries[:-1]] + [n_frames]
        return [edges[i + 1] - edges[i] for i in range(len(self.phonemes))]


class _Espeak:
    """The loaded library, initialised once for synchronous synthesis with phoneme events."""

    def __init__(self) -> None:
        self.lib, data_dir, self.origin = _load_library()
        self.lib.espeak_Initialize.restype = ctypes.c_int
        self.lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        self.lib.espeak_SetVoiceByName.restype = ctypes.c_int
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_Synth.restype = ctypes.c_int
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        self.lib.espeak_Info.restype = ctypes.c_char_p
        self.lib.espeak_Info.argtypes = [ctypes.c_void_p]
        self.lib.espeak_SetParameter.restype = ctypes.c_int
        self.lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        path = data_dir.encode() if data_dir else None
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, path, _INITIALIZE_PHONEME_EVENTS)
        if self.sample_rate <= 0:
            raise EspeakError(f"espeak-ng ({self.origin}) failed to initialise: is its data folder present?")
        self.version = self.lib.espeak_Info(None).decode()
        self.voice: str | None = None
        self.rate = DEFAULT_RATE
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, int, int]] = []
        self._callback = _Callback(self._on_synth)  # kept referenced: the library holds a raw pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav, n_samples, events) -> int:
        if wav and n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_PHONEME:
                symbol = event.id.string.decode("utf-8", "replace")
                self._events.append((symbol, int(event.sample), int(event.text_position) - 1))
            i += 1
        return 0

    def synthesize(self, text: str, voice: str, rate: int) -> "_Spoken":
        if rate != self.rate:
            if self.lib.espeak_SetParameter(_PARAMETER_RATE, rate, 0) != _EE_OK:
                raise EspeakError(f"espeak-ng refused the speaking rate {rate}")
            self.rate = rate
        if voice != self.voice:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                raise EspeakError(f"espeak-ng has no voice {voice!r}")
            self.voice = voice
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        status = self.lib.espeak_Synth(data, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
        if status != _EE_OK:
            raise EspeakError(f"espeak-ng failed to synthesize {text[:80]!r} (error {status})")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        return _Spoken(audio, self._events, self.sample_rate)


@dataclass(frozen=True)
class _Spoken:
    """What one ``espeak_Synth`` call reported: int16 audio and phoneme events ``(symbol, sample, character)``,
    ``character`` the 0-based index in the text of the word the phoneme was read from."""

    pcm: np.ndarray
    events: list[tuple[str, int, int]]
    sample_rate: int


def _load_library() -> tuple[ctypes.CDLL, str | None, str]:
    """(library, folder holding ``espeak-ng-data`` or None for the built-in default, description)."""
    try:
        import espeakng_loader
    except ImportError:
        espeakng_loader = None
    if espeakng_loader is not None:
        lib_path = espeakng_loader.get_library_path()
        data_path = espeakng_loader.get_data_path()  # .../espeak-ng-data
        return ctypes.CDLL(lib_path), data_path.rsplit("/espeak-ng-data", 1)[0], f"espeakng-loader: {lib_path}"
    name = ctypes.util.find_library("espeak-ng")
    for candidate in [name, "libespeak-ng.so.1", "libespeak-ng.dylib"]:
        if not candidate:
            continue
        try:
            return ctypes.CDLL(candidate), None, f"system library {candidate}"
        except OSError:
            continue
    raise EspeakError(
        "espeak-ng is not installed, and the phonemes frontend needs it: "
        "`pip install espeakng-loader` (bundles libespeak-ng and its data), "
        "or on Debian/Ubuntu `apt-get install libespeak-ng1 espeak-ng-data`"
    )


_lock = threading.Lock()
_engine: _Espeak | None = None


def _get_engine() -> _Espeak:
    global _engine
    if _engine is None:
        _engine = _Espeak()
    return _engine


def _tokens(events: list[tuple[str, int, int]], n_samples: int) -> tuple[list[str], list[int], list[int | None]]:
    """Phoneme events -> (tokens, boundaries, characters) by the rules in the module docstring.

    ``characters[i]`` is the index in the text of the word token ``i`` belongs
    to (espeak-ng's event position), None for a pause.
    """
    phonemes: list[str] = []
    starts: list[int] = []
    characters: list[int | None] = []
    if not events or not events[0][0].startswith(PAUSE_PREFIX):
        phonemes.append(PAUSE_PREFIX)
        starts.append(0)
        characters.append(None)
    for symbol, sample, character in events:
        sample = min(max(sample, starts[-1] if starts else 0), n_samples)
        pause = symbol.startswith(PAUSE_PREFIX)
        if pause and phonemes and phonemes[-1].startswith(PAUSE_PREFIX):
            continue  # merged into the pause before
        phonemes.append(symbol)
        starts.append(sample if starts else 0)
        characters.append(None if pause else character)
    return phonemes, starts + [n_samples], characters


def render(text: str, voice: str = DEFAULT_VOICE, rate: int = DEFAULT_RATE) -> Rendering:
    """Speak ``text`` with espeak-ng at ``rate`` words per minute; its audio, phoneme tokens and their sample spans."""
    spoken = _speak(text, voice, rate)
    phonemes, boundaries, _ = _tokens(spoken.events, len(spoken.pcm))
    return Rendering(spoken.pcm.astype(np.float32) / 32768.0, spoken.sample_rate, phonemes, boundaries)


def phonemize(text: str, voice: str = DEFAULT_VOICE) -> list[str]:
    """espeak-ng phoneme symbols of ``text`` (pauses included), as the demo voice was trained on.

    Raises :class:`EspeakError` with the install command when espeak-ng is missing.
    """
    return phonemize_positions(text, voice)[0]


def phonemize_positions(text: str, voice: str = DEFAULT_VOICE) -> tuple[list[str], list[int | None]]:
    """:func:`phonemize`'s symbols, and for each the index in ``text`` of the word it was read from (None: a pause).

    espeak-ng reports each phoneme with the position of its word, so the
    frontend can map tokens back to words for word timings, whatever
    espeak-ng made of the word (``42`` is ``forty two``, both from one word).
    """
    spoken = _speak(text, voice, PHONEMIZE_RATE)
    symbols, _, characters = _tokens(spoken.events, len(spoken.pcm))
    return symbols, characters


def word_starts(text: str, voice: str = DEFAULT_VOICE, rate: int = DEFAULT_RATE) -> tuple[list[tuple[int, int]], int]:
    """espeak-ng's own word timings: ``(character index in text, start sample)`` per word, and its sample rate.

    A word starts where espeak-ng's phoneme events say its first phoneme
    does: the tokens and boundaries :func:`render` gives, so at
    :data:`DEFAULT_RATE` the timings of the audio the demo voice was trained
    on. espeak-ng's word events are not used: one often fires inside the
    previous word's last vowel (up to 1,082 samples, 4.2 frames of 256,
    before the word's first phoneme: ``forty two``), when espeak-ng starts
    preparing the word rather than when it is heard.
    """
    spoken = _speak(text, voice, rate)
    _, boundaries, characters = _tokens(spoken.events, len(spoken.pcm))
    starts: dict[int, int] = {}
    for character, sample in zip(characters, boundaries):
        if character is not None:
            starts.setdefault(character, sample)
    return sorted(starts.items()), spoken.sample_rate


def _speak(text: str, voice: str, rate: int) -> _Spoken:
    """espeak-ng's int16 audio of ``text``, its phoneme events and its sample rate."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text is empty: nothing to phonemize")
    for position, char in enumerate(text):  # espeak-ng stops at a NUL; UTF-8 has no lone surrogates
        if char == "\x00" or 0xD800 <= ord(char) <= 0xDFFF:
            raise ValueError(f"text has U+{ord(char):04X} at {position}, which espeak-ng cannot read; remove it")
    with _lock:
        return _get_engine().synthesize(text, voice, rate)


def espeak_info() -> dict[str, object]:
    """Which espeak-ng is in use: ``{"version", "sample_rate", "library"}``."""
    with _lock:
        engine = _get_engine()
        return {"version": engine.version, "sample_rate": engine.sample_rate, "library": engine.origin}
