import json

import pytest
import torch

from microturn.config import EngineConfig
from microturn.engine.engine import Engine
from microturn.errors import ConfigError
from microturn.eval.bench import METRICS, run_bench
from microturn.eval.report import format_table, write_plots, write_timeline_html
from microturn.world.scenario import FAMILIES, Scenario, load_suite


def test_dev_suite_loads():
    suite = load_suite("dev")
    assert len(suite) >= 12 and {s.family for s in suite} <= set(FAMILIES)
    assert len({s.id for s in suite}) == len(suite)


@pytest.mark.parametrize(
    "text,message",
    [
        ('{"id": "x", "family": "dance", "duration": 3}', "family 'dance'"),
        ('{"id": "x", "family": "pause", "duration": 3, "speed": 2}', "unknown key 'speed'"),
        ('{"id": "x", "family": "pause"}', "missing 'duration'"),
        (
            (
                '{"id": "x", "family": "pause", "duration": 3, '
                '"user": [{"text": "hi", "t": 1, "after": 1}]}'
            ),
            "exactly one of",
        ),
        (
            '{"id": "x", "family": "pause", "duration": 3, "user": [{"text": "hi", "when": 1}]}',
            "bad \\[\\[user\\]\\]",
        ),
        (
            '{"id": "x", "family": "pause", "duration": 3, '
            '"user": [{"text": "hi", "t": 1, "connected": "yes"}]}',
            "'connected' is true or false",
        ),
        ('{"id": ', "not valid JSON"),
    ],
)
def test_bad_scenario_files_name_the_problem(tmp_path, text, message):
    (tmp_path / "s.json").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_suite(tmp_path)


def test_empty_or_missing_suite(tmp_path):
    with pytest.raises(ConfigError, match="no .json or .toml"):
        load_suite(tmp_path)
    with pytest.raises(ConfigError, match="not 'dev'"):
        load_suite(tmp_path / "nope")


def test_speech_longer_than_the_scenario_is_refused():
    from microturn.world.scenario import render

    sc = Scenario.from_dict(
        {
            "id": "x",
            "family": "turn_taking",
            "duration": 1.0,
            "user": [{"t": 0.5, "text": "a rather long sentence for one second"}],
        }
    )
    with pytest.raises(ConfigError, match="after its duration of 1 s"):
        render(sc)


def test_bench_side_by_side(small_model, tmp_path):
    suite = [
        s
        for s in load_suite("dev")
        if s.id in ("turn_taking_capital", "timespeak_seven", "pause_thinking")
    ]
    result = run_bench(Engine(small_model, EngineConfig(max_sessions=1)), suite, progress=False)
    summary = result.summary()
    assert summary["scenarios"] == 3 and set(summary["systems"]) == {"microturn", "vad_harness"}
    for system in summary["systems"].values():
        assert set(METRICS) <= set(system)  # every promised key, None where no scenario measures it
    base = summary["systems"]["vad_harness"]
    assert base["vad_agreement"] > 0.8  # its logged speech is where a VAD hears speech in its audio
    assert 0.2 < base["audio_text_agreement"] <= 1  # the recogniser hears some of its espeak words
    assert (
        base["turn_taking_latency_s"] >= 0.5
        and base["timespeak_acc"] == 0.0
        and base["pause_tor"] == 1.0
    )
    json.dumps(summary)
    assert "timespeak_acc" in format_table(result)
    pngs = write_plots(result, tmp_path / "plots")
    assert {p.name for p in pngs} == {"turn_taking.png", "timespeak.png", "pause.png"}
    assert all(p.stat().st_size > 5000 for p in pngs)
    page = write_timeline_html(result, "pause_thinking", tmp_path / "t.html").read_text()
    assert "vad_harness" in page and "know" in page and "<svg" in page
    with pytest.raises(KeyError, match="no scenario 'nope'"):
        write_timeline_html(result, "nope", tmp_path / "x.html")


def test_bench_in_processes_matches_one_process(small_model, tmp_path):
    """`bench --workers N` hands scenarios to spawned processes, each with its own engine;
    every session is seeded alone, so the figures are one process's, in the same order."""
    import argparse
    import functools

    from microturn.cli.measure import _bench_engine
    from microturn.eval.bench import run_bench_parallel
    from microturn.model.checkpoint import save_model

    save_model(small_model, tmp_path / "m.safetensors")
    args = argparse.Namespace(
        checkpoint=str(tmp_path / "m.safetensors"),
        config=None,
        seed=0,
        dtype="fp32",
        device=None,
        flow_steps=None,
    )
    suite = [s for s in load_suite("dev") if s.id in ("turn_taking_capital", "pause_thinking")]
    make = functools.partial(_bench_engine, args)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker runs: the same kernels, the same bits
    try:
        one = run_bench_parallel(
            make, suite, 1, progress=False, intelligibility=False, temperature=0.0,
            text_temperature=0.0,
        )
    finally:
        torch.set_num_threads(threads)
    two = run_bench_parallel(  # `--temperature 0 --text-temperature 0`, in every worker
        make, suite, 2, progress=False, intelligibility=False, temperature=0.0,
        text_temperature=0.0,
    )
    assert [r.scenario.id for r in two.rendered] == [s.id for s in suite]
    for system in ("microturn", "vad_harness"):
        assert [r.scores for r in two.runs[system]] == [r.scores for r in one.runs[system]]
        assert [w.text for r in two.runs[system] for w in r.words] == [
            w.text for r in one.runs[system] for w in r.words
        ]


def test_the_eval_split_scores_the_worlds_own_lines_beside_the_systems(small_model, tmp_path):
    """The world's own lines for an eval episode, scored alike, are each metric's ceiling as
    training teaches it: an exact answer, and a story's three "mm-hm"s taking the turn by
    FD-bench's count. Scenario files have none, and no such column."""
    from microturn.eval.bench import REFERENCE
    from microturn.world.families import eval_split

    rendered = eval_split(1, ["turn_taking", "backchannel"], duration=16.0)
    assert all(r.ideal for r in rendered)
    result = run_bench(Engine(small_model, EngineConfig(max_sessions=1)), rendered,
                       suite="eval", progress=False, intelligibility=False)
    world = result.summary()["systems"][REFERENCE]
    assert world["turn_taking_tor"] == 1.0 and world["answer_cer"] == 0.0
    said = [w.text for w in result.runs[REFERENCE][1].words]
    assert said and world["backchannel_freq"] > 0  # the world backchannels the story
    assert world["transcript_cer"] is None  # the world writes no transcript
    # a delegation in an episode that asks for none is a stray task, counted per episode
    ours = result.summary()["systems"]["microturn"]
    strays = [r.scores["stray_delegation_rate"] for r in result.runs["microturn"]]
    assert strays == [float(any(e.kind == "delegation" for e in r.extra))
                      for r in result.runs["microturn"]]
    assert ours["stray_delegation_rate"] == 100 * sum(strays) / 2
    assert ours["delegation_rate"] is None  # no tool question among these
    table = format_table(result)
    assert REFERENCE in table.splitlines()[0]
    page = write_timeline_html(result, rendered[0].scenario.id, tmp_path / "t.html").read_text()
    assert REFERENCE in page
    dev = [s for s in load_suite("dev") if s.id == "pause_thinking"]
    plain = run_bench(Engine(small_model, EngineConfig(max_sessions=1)), dev, progress=False,
                      intelligibility=False)
    assert REFERENCE not in plain.runs and REFERENCE not in format_table(plain)
