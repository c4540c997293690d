"""`microturn bench`: microturn and the turn-based harness on the same scenarios.

Each scenario is rendered once (real espeak-ng speech), run through a microturn session
(the offline runner, background agent on) and through the VAD harness, and scored with
the same metrics from what each system said and when. Episodes of the world's eval split
also score the world's own lines (`REFERENCE`): what training teaches, so each metric's
ceiling as the world defines it (FD-bench's backchannel TOR counts the world's own three
"mm-hm"s in a story as taking the turn).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace

import torch
from tqdm import tqdm

from ..background.agent import EmbeddedAgent
from ..engine.engine import Engine
from ..engine.session import SamplerSettings
from ..runtime.conversation import DeliveryPolicy
from ..runtime.offline import OFFLINE_RESULT_LATENCY_S, run_offline
from ..world.scenario import Rendered, Scenario, render
from ..world.tts import EspeakTTS
from . import metrics as M
from .baseline import SERVER_VAD, TurnBasedHarness, VadSettings, vad_agreement
from ..vocoder.asr import audio_text_agreement
from .scenario import oracle, score

METRICS = (
    "pause_tor",
    "turn_taking_tor",
    "turn_taking_latency_s",
    "interruption_tor",
    "interruption_latency_s",
    "stop_latency_s",
    "backchannel_freq",
    "not_addressed_response_rate",
    "timespeak_acc",
    "cuespeak_acc",
    "correction_latency_s",
    "repcount_acc",
    "startstop_miou",
    "proactive_score",
    "tool_pass1",
    "delegation_rate",
    "stray_delegation_rate",
    "refusal_rate",
    "over_refusal_rate",
    "answer_cer",
    "transcript_cer",
)
SYSTEMS = ("microturn", "vad_harness")
REFERENCE = "world"  # not a system: the world's own lines, where the scenarios have them
VOICE_GROUP_METRICS = ("turn_taking_tor", "turn_taking_latency_s", "transcript_cer")


def voice_group(r: Rendered) -> str:
    """'unseen' when the user speaks in a held-out voice (world.voices), else 'seen'."""
    return "unseen" if any(u.voice_split == "heldout" for _, _, u in r.turns) else "seen"


@dataclass
class Run:
    """One system on one scenario: what it said, and its scores."""

    words: list[M.Word]
    speech: list[M.Interval]
    scores: dict
    extra: list = field(default_factory=list)  # timeline events (background tasks, the transcript)


@dataclass
class BenchResult:
    suite: str
    rendered: list[Rendered]
    runs: dict[str, list[Run]]  # system -> one Run per scenario

    def summary(self) -> dict:
        systems = {}
        for name, runs in self.runs.items():
            s = M.summarize([r.scores for r in runs])
            systems[name] = {k: s.get(k) for k in METRICS} | {
                k: v for k, v in s.items() if k not in METRICS
            }
            systems[name] |= self.by_voice_group(name)
        return {"suite": self.suite, "scenarios": len(self.rendered), "systems": systems}

    def by_voice_group(self, system: str) -> dict[str, float | None]:
        """Turn-taking TOR and latency and the listening transcript's CER on episodes spoken in
        held-out voices ("unseen": never trained on) and in training voices ("seen"); scenario
        files' own voices count as seen."""
        out: dict[str, float | None] = {}
        for group in ("seen", "unseen"):
            rows = [
                run.scores
                for r, run in zip(self.rendered, self.runs[system])
                if voice_group(r) == group
            ]
            s = M.summarize(rows)
            for key in VOICE_GROUP_METRICS:
                out[f"{key}_{group}_voices"] = s.get(key)
        return out

    def by_family(self) -> dict[str, dict[str, dict]]:
        fams: dict[str, dict[str, dict]] = {}
        for i, r in enumerate(self.rendered):
            for name, runs in self.runs.items():
                fams.setdefault(r.scenario.family, {}).setdefault(name, []).append(runs[i].scores)
        return {
            f: {n: M.summarize(rows) for n, rows in systems.items()} for f, systems in fams.items()
        }


def _checks(audio, words: list[M.Word], speech: list[M.Interval], intelligibility: bool) -> dict:
    """Does a system's logged speech match its audio: where a VAD hears speech, and (unless
    skipped) whether the recogniser hears the words it says it spoke."""
    check = {"vad_agreement": vad_agreement(audio, speech)}
    if intelligibility:
        said = " ".join(w.text for w in words)
        check["audio_text_agreement"] = audio_text_agreement(audio, said, speech)
    return check


def run_bench(
    engine: Engine,
    scenarios: list[Scenario | Rendered],
    suite: str = "dev",
    seed: int = 0,
    vad: VadSettings = SERVER_VAD,
    progress: bool = True,
    intelligibility: bool = True,
    temperature: float = 0.8,
    text_temperature: float = 0.8,
) -> BenchResult:
    """Both systems on each scenario, scored alike. `intelligibility=False` skips the
    recogniser's check that the spoken audio says the text (~40% of a scenario's time), for
    tables that do not report it. `temperature` samples the model's control tokens and
    `text_temperature` its words (0: greedy)."""
    tts = EspeakTTS()
    harness = TurnBasedHarness(vad, tts)
    result = BenchResult(suite, [], {s: [] for s in SYSTEMS})
    for sc in tqdm(scenarios, desc="scenarios", unit="scenario", disable=not progress):
        r = sc if isinstance(sc, Rendered) else render(sc)  # generated episodes come rendered
        result.rendered.append(r)
        ours = run_offline(
            engine,
            # as live: background tasks know the user's words only from the model's transcript
            replace(r.recording, user_words=[]),
            SamplerSettings(temperature=temperature, seed=seed, text_temperature=text_temperature),
            agent=EmbeddedAgent(),
            policy=DeliveryPolicy(min_latency_s=OFFLINE_RESULT_LATENCY_S),
        )
        words, speech = M.heard(ours.timeline.events)
        tasks = [
            e
            for e in ours.timeline.events
            if e.kind.startswith("task_") or e.kind in ("delegation", "result", "heard_word")
        ]
        check = _checks(ours.timeline.model_audio, words, speech, intelligibility)
        delegated = any(e.kind == "delegation" for e in tasks)
        check |= M.delegation(r.scenario.family == "tool_use", delegated)
        if engine.model.transcript_head is not None:  # the harness's transcript is an oracle: none
            check |= M.transcript_cer(
                [e.text for e in ours.timeline.events if e.kind == "heard_word"],
                [w.text for w in r.user_words],
            )
        result.runs["microturn"].append(Run(words, speech, score(r, words, speech) | check, tasks))
        base = harness.run(r.recording.audio, oracle(r))
        check = _checks(base.audio, base.words, base.speech, intelligibility)
        result.runs["vad_harness"].append(
            Run(base.words, base.speech, score(r, base.words, base.speech) | check)
        )
        if r.ideal is not None:
            words, speech = M.heard(r.ideal)
            result.runs.setdefault(REFERENCE, []).append(
                Run(words, speech, score(r, words, speech))
            )
    if len(result.runs.get(REFERENCE, [])) != len(result.rendered):
        result.runs.pop(REFERENCE, None)  # a suite with scenario files has no reference
    return result


# ---- many processes: one engine each, scenarios handed out one at a time ---------------------
_WORKER_ENGINE: Engine | None = None


def _start_worker(make_engine: Callable[[], Engine]) -> None:
    global _WORKER_ENGINE
    torch.set_num_threads(1)  # the cores are the pool's
    _WORKER_ENGINE = make_engine()


def _bench_one(scenario: Scenario | Rendered, kwargs: dict) -> BenchResult:
    assert _WORKER_ENGINE is not None
    return run_bench(_WORKER_ENGINE, [scenario], progress=False, **kwargs)


def run_bench_parallel(
    make_engine: Callable[[], Engine],
    scenarios: list[Scenario | Rendered],
    workers: int,
    suite: str = "dev",
    progress: bool = True,
    **kwargs,
) -> BenchResult:
    """`run_bench` in `workers` processes, each with its own engine from `make_engine` (a
    picklable callable: processes are spawned, not forked, so torch's threads are safe). Each
    scenario's session is seeded alone, so the result is the one process's, in the same order."""
    if workers <= 1:
        return run_bench(make_engine(), scenarios, suite=suite, progress=progress, **kwargs)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_start_worker, initargs=(make_engine,)
    ) as pool:
        futures = [pool.submit(_bench_one, sc, kwargs) for sc in scenarios]
        bar = tqdm(total=len(futures), desc="scenarios", unit="scenario", disable=not progress)
        parts = []
        for f in futures:  # in order: a slow scenario holds the bar, not the pool
            parts.append(f.result())
            bar.update()
        bar.close()
    names = (*SYSTEMS, REFERENCE) if parts and all(REFERENCE in p.runs for p in parts) else SYSTEMS
    return BenchResult(
        suite,
        [p.rendered[0] for p in parts],
        {s: [p.runs[s][0] for p in parts] for s in names},
    )
