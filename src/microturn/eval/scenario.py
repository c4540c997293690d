"""Scoring a scenario: the family's metrics from what a system said and when.

The scenario types and `render` live in `world.scenario` (the world builds on them); this
module only judges, so nothing in the world imports the evaluation.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..world.scenario import Rendered
from . import metrics as M


def oracle(r: Rendered):
    """The baseline's oracle: at a commit, the answer of the last user turn that ended before it."""
    def answer_for(commit: float) -> str | None:
        done = [u for start, end, u in r.turns if end <= commit]
        return done[-1].answer if done else None
    return answer_for


def score(r: Rendered, words: list[M.Word], speech: list[M.Interval]) -> dict:
    """The family's metrics for what a system said (`words` as heard, `speech` intervals)."""
    sc, tg, turns = r.scenario, r.scenario.targets, r.turns
    f = sc.family
    if f == "turn_taking":
        answer = turns[-1][2].answer
        return M.turn_taking(words, speech, turns[-1][1]) | (
            M.answer_cer(words, answer, turns[-1][1]) if answer else {})
    if f == "pause":  # two utterances of one sentence with a pause between
        return M.pause_handling(words, speech, (turns[0][1], turns[1][0]))
    if f == "interruption":  # the second utterance cuts in on the answer to the first
        return M.interruption(words, speech, (turns[1][0], turns[1][1]))
    if f == "backchannel":
        return M.backchannel(words, speech, (turns[0][0], turns[-1][1]))
    if f == "not_addressed":
        window = (turns[0][0], turns[-1][1] + float(tg.get("window", 3.0)))
        return M.not_addressed(words, speech, window)
    if f == "timespeak":  # say: [[seconds after the request ends, phrase], ...]
        end = turns[0][1]
        targets = [(end + float(t), p) for t, p in tg["say"]]
        return M.timed_targets(words, targets, float(tg.get("tolerance", 1.0)))
    if f in ("cuespeak", "correction"):  # cues: the cue word's onsets after the instruction
        cue = M.norm(tg["cue"])
        cues = [(w.t, tg["say"]) for w in r.user_words
                if M.norm(w.text) == cue and w.t >= turns[0][1]]
        return M.cue_targets(words, cues, float(tg.get("window", 2.0)),
                             correction=f == "correction")
    if f == "simultaneous":  # pairs: [[user word, what to say right after it], ...]
        pairs = {M.norm(a): b for a, b in tg["pairs"]}
        cues = [(w.t, pairs[M.norm(w.text)]) for w in r.user_words
                if M.norm(w.text) in pairs and w.t >= turns[0][1]]
        return M.cue_targets(words, cues, float(tg.get("window", 1.5)))
    if f == "tool_use":
        return M.tool_use(words, str(tg["answer"]), turns[0][1], [end for _, end, _ in turns[1:]])
    if f == "refusal":
        return M.refusal(words, bool(tg["harmful"]), turns[0][1])
    if f == "repcount":  # the count said after the last bounce
        last = max(r.truth["bounce_times"], default=0.0)
        return M.repetition_count(words, r.truth["bounces"], after=last)
    if f == "startstop":
        return M.start_stop(words, tuple(r.truth["motion"]))
    if f == "proactive":  # say tg["say"] within tg["window"] s of the target appearing
        t0 = r.truth["appears"]
        return M.proactive(words, tg["say"], (t0, t0 + float(tg.get("window", 3.0))))
    raise ConfigError(f"{sc.id}: no scorer for family {f!r}")
