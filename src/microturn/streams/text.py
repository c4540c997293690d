"""Text stream: a byte-level tokenizer (no download, any language) with special tokens."""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from ..errors import InputError

SPECIALS = ("<pad>", "<sep>", "<delegate>", "</delegate>")  # ids up to vocab_size - 1 are reserved
N_BYTES = 256


@dataclass(frozen=True)
class ByteTokenizer:
    """Ids 0-255 are UTF-8 bytes; specials follow.

    PAD fills a text slot with nothing in it; SEP ends a typed message or a background
    result; DELEGATE ... /DELEGATE wraps a request to the background model in the output.
    """

    vocab_size: int = 272

    PAD = N_BYTES
    SEP = N_BYTES + 1
    DELEGATE = N_BYTES + 2
    DELEGATE_END = N_BYTES + 3

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise InputError(f"text of type {type(text).__name__}: expected str")
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(i for i in ids if 0 <= i < N_BYTES).decode("utf-8", errors="replace")

    def name(self, token: int) -> str:
        if 0 <= token < N_BYTES:
            return repr(bytes([token]))[2:-1]
        if token - N_BYTES < len(SPECIALS):
            return SPECIALS[token - N_BYTES]
        return f"<unused{token}>"


class Utf8Stream:
    """Bytes arriving a few per turn -> text, holding back incomplete characters."""

    def __init__(self) -> None:
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, byte_ids: list[int]) -> str:
        return self._dec.decode(bytes(byte_ids))
