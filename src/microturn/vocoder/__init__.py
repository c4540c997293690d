"""The trained streaming vocoder (log-mel -> waveform) and its training and scoring.

Imports stay lazy here: streams/turns.py reaches for `vocoder.streaming` and must not pull
in training code.
"""
