"""Connected speech from libespeak-ng, with each word's start from the library's word events.

`tts.EspeakTTS` says a line word by word (each word alone, joined with gaps), which gives
exact word times but not how people talk: no coarticulation, every word in its citation
form ("what is" as two stressed words, a gap between them). A live user speaks connected
lines, and a model trained only on joined words heard espeak-ng's own connected "What is 347
times 29?" as "ha iis377times 29". The espeak-ng program does not tell where its words
are; the library it is built on does (`espeakEVENT_WORD`: a word's character position and
the millisecond its audio starts), so this module calls it through ctypes. A word ends where
its audio goes quiet before the next word starts (`tts.loud_span` on that stretch).

The library holds one voice and its wave generator in global state: each line is said in a
forked child (`_Library.synth`), so lines do not leak into each other, and a lock keeps the
threads of one process from forking over each other.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import pickle
import threading

import numpy as np

from ..streams.audio import resample
from ..streams.turns import Event
from .tts import Speech, TTSUnavailable, Voice, loud_span, words_of

SYNCHRONOUS, WORD_EVENT, CHARS_UTF8, POS_CHARACTER = 2, 1, 1, 1
RATE_PARAM, PITCH_PARAM = 1, 3
DONT_EXIT = 0x8000  # an error in the library must not end the Python process


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


class _VoiceSpec(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("languages", ctypes.c_char_p),
                ("identifier", ctypes.c_char_p), ("gender", ctypes.c_ubyte),
                ("age", ctypes.c_ubyte), ("variant", ctypes.c_ubyte), ("xx1", ctypes.c_ubyte),
                ("score", ctypes.c_int), ("spare", ctypes.c_void_p)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))
_LOCK = threading.Lock()


class _Library:
    def __init__(self) -> None:
        path = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(path)
        except OSError as e:
            raise TTSUnavailable(f"libespeak-ng was not found ({e}): install the Debian package "
                                 "'espeak-ng' (apt-get install espeak-ng)") from e
        self.rate = self.lib.espeak_Initialize(SYNCHRONOUS, 0, None, DONT_EXIT)
        if self.rate <= 0:
            raise TTSUnavailable(f"libespeak-ng did not initialise (error {self.rate})")
        self.samples: list[np.ndarray] = []
        self.words: list[tuple[int, int]] = []  # (character position, audio start in ms)
        self._callback = _CALLBACK(self._collect)  # held: the library keeps the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, n: int, events) -> int:
        if n > 0:
            self.samples.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events[i].type != 0:  # the list ends with espeakEVENT_LIST_TERMINATED
            if events[i].type == WORD_EVENT:
                self.words.append((events[i].text_position, events[i].audio_position))
            i += 1
        return 0

    def synth(self, text: str, voice: Voice) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Audio at `self.rate` and the word events, from a forked child: the library keeps
        state from one line to the next (wavegen's pitch flutter index is a C static), so the
        same line came out a few samples different each time. This process only initialises
        it; every line is said by a copy of that pristine state, and is the same every time."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: say the line, send it back, leave without Python's exit
            os.close(r)
            try:
                out = pickle.dumps(self._say(text, voice))
            except TTSUnavailable as e:
                out = pickle.dumps(e)
            except BaseException as e:  # noqa: BLE001 - sent back and raised in the parent
                out = pickle.dumps(TTSUnavailable(f"libespeak-ng failed on {text!r}: {e}"))
            with os.fdopen(w, "wb") as f:
                f.write(out)
            os._exit(0)
        os.close(w)
        with os.fdopen(r, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        result = pickle.loads(data) if data else TTSUnavailable("libespeak-ng's child died")
        if isinstance(result, Exception):
            raise result
        return result

    def _say(self, text: str, voice: Voice) -> tuple[np.ndarray, list[tuple[int, int]]]:
        self.samples, self.words = [], []
        if (self.lib.espeak_SetVoiceByName(voice.spec.encode()) != 0
                and (voice.variant or self.lib.espeak_SetVoiceByProperties(
                    ctypes.byref(_VoiceSpec(languages=voice.name.encode()))) != 0)):
            # the program finds 'en-gb' by its language; by name the library does not
            raise TTSUnavailable(f"libespeak-ng has no voice {voice.spec!r}")
        self.lib.espeak_SetParameter(RATE_PARAM, voice.speed, 0)
        self.lib.espeak_SetParameter(PITCH_PARAM, voice.pitch, 0)
        data = text.encode()
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8,
                                    None, None)
        if err != 0:
            raise TTSUnavailable(f"libespeak-ng failed on {text!r} (error {err})")
        audio = np.concatenate(self.samples) if self.samples else np.zeros(0, np.int16)
        return audio.astype(np.float32) / 32768.0, list(self.words)


@functools.lru_cache(maxsize=1)
def _library() -> _Library:
    return _Library()


def speak_connected(text: str, voice: Voice, rate: int, kind: str = "user_word") -> Speech | None:
    """`text` said as one line by libespeak-ng, at `rate`, with each word's start and end.

    The library marks where a word starts, but joins a function word to the word before it
    ("on the", one event): such words share their stretch of sound in proportion to their
    letters. None if the line's words (`words_of`: the text between spaces) cannot be placed
    (the caller then says it word by word)."""
    tokens = words_of(text)
    starts, pos = [], 0
    for tok, _ in tokens:
        starts.append(text.index(tok, pos))
        pos = starts[-1] + len(tok)
    with _LOCK:
        lib = _library()
        audio, events = lib.synth(text, voice)
    onset: dict[int, int] = {}  # word -> ms its first event starts at ("1,204": two events)
    for char, ms in events:  # text_position counts characters from 1
        k = max((i for i, s in enumerate(starts) if s <= char - 1), default=0)
        onset.setdefault(k, ms)
    if 0 not in onset:
        return None
    audio = resample(audio, lib.rate, rate)
    heads = sorted(onset)  # each starts a group: itself and the words with no event after it
    bounds = [min(int(onset[k] * rate / 1000), len(audio)) for k in heads] + [len(audio)]
    words: list[Event] = []
    for g, k in enumerate(heads):
        group = range(k, heads[g + 1] if g + 1 < len(heads) else len(tokens))
        a, b = bounds[g], bounds[g + 1]
        lo, hi = loud_span(audio[a:b], rate)
        if hi <= lo:  # a word the library said nothing for
            return None
        letters = [max(len(tokens[j][1]), 1) for j in group]
        edge = np.cumsum([0, *letters]) / sum(letters) * (hi - lo) + a + lo
        words += [Event(float(edge[i]) / rate, kind, tokens[j][0], float(edge[i + 1]) / rate)
                  for i, j in enumerate(group)]
    first, last = int(round(words[0].t * rate)), int(round(words[-1].end * rate))
    line = Speech(audio[first:last].astype(np.float32), words, rate)
    line.words = line.shifted(-first / rate)  # the line starts at its first word
    return line
