"""A word's synthesised audio, cached in memory and on disk.

The world says the same few hundred words thousands of times, in a few dozen voices, and
every engine is deterministic (Piper with its noise off), so a word is synthesised once per
(engine build, voice, word, speed, rate) and then read back: from memory in this process,
from disk in every other one (training renders episodes in several worker processes, and
each run and test session would otherwise start cold). Piper costs ~0.2 s a word on one
core and espeak-ng ~25 ms (a process each); a cached word costs well under a millisecond.

The disk cache lives in $MICROTURN_WORD_CACHE (default ~/.cache/microturn/words; "off"
turns it off). Files are 16-bit .npy (the engines' own output is 16-bit; a word is held as
those levels in memory too, so a word read back equals the word first synthesised), written
atomically, so concurrent writers are safe. ~12 KB a word: ~35 MB after 300 episodes.
The engine's own version is part of the key: an upgraded engine starts a fresh cache.
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

MEMORY_WORDS = 4096  # per engine instance: ~90 MB at 16 kHz, float32
FORMAT = "1"  # bump when what a cached word holds changes (trimming, gain, ...)
FULL_SCALE = 32767.0


def cache_dir() -> Path | None:
    default = Path.home() / ".cache" / "microturn" / "words"
    where = os.environ.get("MICROTURN_WORD_CACHE", str(default))
    return None if where.lower() in ("", "off", "0", "none") else Path(where)


@functools.lru_cache(maxsize=16)
def program_version(binary: str, flag: str = "--version") -> str:
    """The first line of a program's version text (part of its words' cache key)."""
    try:
        out = subprocess.run([binary, flag], capture_output=True, text=True, timeout=30)
    except OSError:
        return "unknown"
    text = (out.stdout or out.stderr).strip().splitlines()
    found = (line.strip() for line in text if "version" in line.lower() or ":" in line)
    return next(found, "unknown")


class WordCache:
    """A bounded least-recently-used map from (voice, word, speed) to read-only audio, over
    a shared disk cache for one engine build (`tag`: engine, its version, the rate)."""

    def __init__(self, tag: str, size: int = MEMORY_WORDS, disk: Path | None = None) -> None:
        self.size, self.items = size, OrderedDict()
        self.hits = self.misses = 0
        root = disk if disk is not None else cache_dir()
        name = hashlib.sha1(f"{FORMAT}|{tag}".encode()).hexdigest()[:16]
        self.dir = root / name if root is not None else None

    def _file(self, key: tuple) -> Path:
        return self.dir / f"{hashlib.sha1(repr(key).encode()).hexdigest()[:24]}.npy"

    def get(self, key: tuple) -> np.ndarray | None:
        audio = self.items.get(key)
        if audio is None and self.dir is not None:
            try:
                pcm = np.load(self._file(key), allow_pickle=False)
            except (OSError, ValueError):  # not there yet, or a damaged file: synthesise again
                pcm = None
            if pcm is not None and pcm.dtype == np.int16:
                audio = (pcm / np.float32(FULL_SCALE)).astype(np.float32)
                audio.setflags(write=False)
                self._remember(key, audio)
        if audio is None:
            self.misses += 1
            return None
        self.hits += 1
        self.items.move_to_end(key)
        return audio

    def __contains__(self, key: tuple) -> bool:
        return key in self.items or (self.dir is not None and self._file(key).exists())

    def put(self, key: tuple, audio: np.ndarray) -> np.ndarray:
        pcm = np.round(np.clip(audio, -1.0, 1.0) * FULL_SCALE).astype(np.int16)
        audio = (pcm / np.float32(FULL_SCALE)).astype(np.float32)
        audio.setflags(write=False)
        self._remember(key, audio)
        if self.dir is not None:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                with tempfile.NamedTemporaryFile(dir=self.dir, suffix=".tmp", delete=False) as f:
                    np.save(f, pcm, allow_pickle=False)
                os.replace(f.name, self._file(key))
            except OSError:  # a read-only or full disk: the memory cache still works
                pass
        return audio

    def _remember(self, key: tuple, audio: np.ndarray) -> None:
        self.items[key] = audio
        if len(self.items) > self.size:
            self.items.popitem(last=False)
