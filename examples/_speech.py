"""What the example clients share: the user's speech (espeak-ng, or a voiced tone where it is
missing), their common options and the summary line they print."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import wave
from dataclasses import asdict

import numpy as np


def speech(text: str, rate: int) -> np.ndarray:
    """`text` spoken by espeak-ng as int16 PCM at `rate`, or 2 s of a voiced tone."""
    if shutil.which("espeak-ng"):
        with tempfile.NamedTemporaryFile(suffix=".wav") as f:
            subprocess.run(["espeak-ng", "-s", "150", "-w", f.name, text], check=True)
            with wave.open(f.name) as w:
                x = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32)
                src = w.getframerate()
        return np.interp(np.arange(0, len(x), src / rate), np.arange(len(x)), x).astype("<i2")
    t = np.arange(int(2.0 * rate)) / rate
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    return (6000 * np.sin(2 * np.pi * 220 * t) * env).astype("<i2")


def report(seen) -> int:
    """Print what a client saw as one JSON line; 0 when audio went both ways without errors."""
    out = asdict(seen)
    out.pop("speech_end", None)
    out["said"], out["heard"] = "".join(seen.said).strip(), " ".join(seen.heard).strip()
    print(json.dumps(out))
    return 0 if seen.audio_in_s > 0 and seen.audio_out_s > 0 and not seen.errors else 1


def client_args(ap: argparse.ArgumentParser) -> argparse.Namespace:
    """The options both example clients share, then the parsed command line."""
    ap.add_argument("--token", default="none", help="the server's --token, if it has one")
    ap.add_argument("--say", default="what is the capital of france", help="what the user says")
    ap.add_argument("--silence", type=float, default=6.0, help="seconds of listening after it")
    return ap.parse_args()
