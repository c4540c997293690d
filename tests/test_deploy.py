"""Two real `microturn serve` replicas behind a real HAProxy (deploy/haproxy.cfg) on loopback:
sessions spread, a full replica is skipped, a draining replica loses no live session, and the
drain grace closes what is left when it runs out."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import websockets

needs_haproxy = pytest.mark.skipif(
    shutil.which("haproxy") is None,
    reason="haproxy is not installed (Debian: apt-get install haproxy)",
)

ROOT = Path(__file__).resolve().parents[1]
SLOTS = 3  # sessions per replica
DRAIN_TURNS = 10  # turns the drained replica's live session gets after the SIGTERM
MODEL_TOML = """
base = "tiny"
[model]
n_layers = 2
d_model = 128
n_heads = 4
n_kv_heads = 2
ffn_hidden = 256
window_turns = 4
flow_width = 128
flow_depth = 2
hmlp_width = 64
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Replica:
    name: str
    port: int
    agent: int
    proc: subprocess.Popen

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def health(self) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://{self.addr}/healthz", timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def refused(self) -> float:
        text = urllib.request.urlopen(f"http://{self.addr}/metrics", timeout=5).read().decode()
        return float(
            next(
                line.split()[1]
                for line in text.splitlines()
                if line.startswith("microturn_sessions_refused_total")
            )
        )


def start_replica(name: str, toml: Path, grace: float, log: Path) -> Replica:
    port, agent = free_port(), free_port()
    cmd = [
        sys.executable,
        "-m",
        "microturn.cli",
        "serve",
        "--config",
        str(toml),
        "--port",
        str(port),
        "--agent-port",
        str(agent),
        "--max-sessions",
        str(SLOTS),
        "--threads",
        "1",
        "--drain-grace",
        str(grace),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    return Replica(name, port, agent, proc)


def wait_for(what: str, check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


@dataclass
class Cluster:
    lb: str
    stats: str
    r1: Replica
    r2: Replica
    haproxy: subprocess.Popen

    def servers(self) -> dict[str, dict]:
        """HAProxy's own view of each server (status, weight, current connections)."""
        text = urllib.request.urlopen(f"http://{self.stats}/stats;csv", timeout=5).read().decode()
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {
            r["svname"]: r
            for r in rows
            if r["pxname"] == "replicas" and r["svname"] in ("r1", "r2")
        }

    def live(self) -> tuple[int, int]:
        return self.r1.health()[1]["live_sessions"], self.r2.health()[1]["live_sessions"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy")
    toml = tmp / "model.toml"
    toml.write_text(MODEL_TOML)
    # r1 drains gracefully (its session ends well inside the grace); r2 shows the grace running out
    r1 = start_replica("r1", toml, 30.0, tmp / "r1.log")
    r2 = start_replica("r2", toml, 2.0, tmp / "r2.log")
    procs = [r1.proc, r2.proc]
    try:
        for r in (r1, r2):
            wait_for(
                f"replica {r.name} (log: {tmp / (r.name + '.log')})",
                lambda r=r: r.health()[0] == 200,
                120,
            )
        lb, stats = free_port(), free_port()
        env = {
            **os.environ,
            "MT_LISTEN": f"127.0.0.1:{lb}",
            "MT_STATS": f"127.0.0.1:{stats}",
            "MT_R1": r1.addr,
            "MT_R2": r2.addr,
            "MT_R1_AGENT": str(r1.agent),
            "MT_R2_AGENT": str(r2.agent),
        }
        haproxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(ROOT / "deploy" / "haproxy.cfg")],
            env=env,
            stdout=(tmp / "haproxy.log").open("w"),
            stderr=subprocess.STDOUT,
        )
        procs.append(haproxy)
        c = Cluster(f"127.0.0.1:{lb}", f"127.0.0.1:{stats}", r1, r2, haproxy)
        # up, and each agent heard from: its maxconn is the replica's slot count
        wait_for(
            "HAProxy to see both replicas up and their agents",
            lambda: all(
                s["status"] == "UP" and s["slim"] == str(SLOTS) for s in c.servers().values()
            ),
            20,
        )
        yield c
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)


class Client:
    """One native-protocol session that counts its turns and the errors it gets."""

    def __init__(self, addr: str) -> None:
        self.addr, self.turns, self.errors = addr, [], []
        self.ws = None
        self.closed_by_server = False
        self._reader: asyncio.Task | None = None

    async def open(self) -> Client:
        self.ws = await websockets.connect(f"ws://{self.addr}/v1/ws")
        await self.ws.send(json.dumps({"type": "session.start"}))
        first = json.loads(await asyncio.wait_for(self.ws.recv(), 20))
        assert first["type"] == "session.started", first
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if msg["type"] == "turn.timing":
                    self.turns.append(msg["turn"])
                elif msg["type"] == "error":
                    self.errors.append(msg["code"])
        except websockets.exceptions.ConnectionClosed:
            pass
        self.closed_by_server = True

    async def end(self) -> None:
        await self.ws.send(json.dumps({"type": "session.end"}))
        await self.ws.close()
        self._reader.cancel()


def test_agent_reports_free_slots_as_weight_and_drain():
    from types import SimpleNamespace

    from microturn.errors import ConfigError
    from microturn.server.drain import Drain, agent_reply

    hub = SimpleNamespace(max_sessions=4, occupied=1)
    drain = Drain(grace_s=5)
    assert agent_reply(hub, drain) == "ready up 75% maxconn:4\n"
    hub.occupied = 4
    assert agent_reply(hub, drain) == "ready up 0% maxconn:4\n"  # full: no new sessions
    drain.begin()
    assert agent_reply(hub, drain) == "drain 0%\n" and drain.draining
    with pytest.raises(ConfigError, match="drain grace"):
        Drain(grace_s=-1)


def test_compose_gives_haproxy_every_address_its_config_reads():
    cfg = (ROOT / "deploy" / "haproxy.cfg").read_text()
    compose = (ROOT / "deploy" / "compose.yaml").read_text()
    wanted = set(re.findall(r"\$\{(\w+)\}", cfg))
    assert wanted == {"MT_LISTEN", "MT_STATS", "MT_R1", "MT_R2", "MT_R1_AGENT", "MT_R2_AGENT"}
    assert all(re.search(rf"^\s+{v}: ", compose, re.M) for v in wanted), wanted
    # docker's stop timeout must outlast the drain grace, or SIGKILL cuts the live sessions
    grace = float(re.search(r'"--drain-grace", "(\d+)"', compose).group(1))
    assert float(re.search(r"stop_grace_period: (\d+)s", compose).group(1)) > grace


@needs_haproxy
def test_sessions_spread_skip_a_full_replica_and_drain_without_loss(cluster):
    c = cluster

    async def go() -> dict:
        # 1. two sessions through HAProxy: one on each replica
        s1 = await Client(c.lb).open()
        s2 = await Client(c.lb).open()
        spread = c.live()
        assert spread == (1, 1), spread

        # 2. fill r1 behind HAProxy's back; its agent reports 0% and new sessions skip it
        direct = [await Client(c.r1.addr).open() for _ in range(SLOTS - 1)]
        await asyncio.to_thread(
            wait_for, "r1's weight to drop to 0", lambda: c.servers()["r1"]["weight"] == "0", 5
        )
        refused_r1 = c.r1.refused()
        s3 = await Client(c.lb).open()
        skipped = c.live()
        assert skipped == (SLOTS, 2), skipped
        assert c.r1.refused() == refused_r1  # not refused by r1: HAProxy sent it to r2
        for d in direct:
            await d.end()
        await asyncio.to_thread(
            wait_for, "r1's direct sessions to close", lambda: c.live()[0] == 1, 5
        )

        # 3. SIGTERM r1 while s1 is live on it: no new session lands there, s1 keeps its turns
        t_term = time.monotonic()
        c.r1.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(
            wait_for, "r1 to report draining", lambda: c.r1.health()[0] == 503, 5
        )
        s4 = await Client(c.lb).open()  # a new session: on r2
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:  # direct: a clear 503
            await websockets.connect(f"ws://{c.r1.addr}/v1/ws")
        body = json.loads(refused.value.response.body)
        assert refused.value.response.status_code == 503
        assert body["error"]["code"] == "server_draining"
        turns_at_term = len(s1.turns)
        # s1 talks on for 10 more turns (2 s at real time; longer on a loaded machine), then ends
        await asyncio.to_thread(
            wait_for,
            "s1's turns during the drain",
            lambda: len(s1.turns) >= turns_at_term + DRAIN_TURNS,
            20,
        )
        s1_turns_in_drain = len(s1.turns) - turns_at_term
        assert c.r1.proc.poll() is None  # still serving s1
        t_end = time.monotonic()
        await s1.end()
        rc = await asyncio.to_thread(c.r1.proc.wait, 15)
        drain_s, exit_after_last_s = time.monotonic() - t_term, time.monotonic() - t_end
        after_r1 = c.r2.health()[1]["live_sessions"]
        lb_view = {
            name: {k: v[k] for k in ("stot", "slim", "wretr", "wredis")}
            for name, v in c.servers().items()
        }

        # 4. SIGTERM r2 with three live sessions that never end: the 2 s grace closes them
        t_term2 = time.monotonic()
        c.r2.proc.send_signal(signal.SIGTERM)
        rc2 = await asyncio.to_thread(c.r2.proc.wait, 15)
        grace_exit_s = time.monotonic() - t_term2
        await asyncio.sleep(0.2)
        return dict(
            spread=spread,
            skipped=skipped,
            s1=s1,
            s1_turns_in_drain=s1_turns_in_drain,
            rc=rc,
            drain_s=drain_s,
            exit_after_last_s=exit_after_last_s,
            after_r1=after_r1,
            r2_sessions=[s2, s3, s4],
            rc2=rc2,
            grace_exit_s=grace_exit_s,
            lb=lb_view,
        )

    out = asyncio.run(go())
    s1 = out["s1"]
    # the drained replica's live session: every turn delivered, in order, no error, ended by
    # the client
    assert s1.turns == list(range(s1.turns[0], s1.turns[0] + len(s1.turns))), s1.turns
    assert out["s1_turns_in_drain"] >= DRAIN_TURNS and s1.errors == []
    # exits once its last session ends (the shutdown itself takes ~0.1 s; the rest is the
    # interpreter tearing torch down, seconds on a loaded machine)
    assert out["rc"] == 0 and out["exit_after_last_s"] < 10, out
    assert out["after_r1"] == 3  # s2, s3 and the session opened during the drain, all on r2
    assert out["rc2"] == 0 and 2.0 <= out["grace_exit_s"] < 12, out
    for s in out["r2_sessions"]:  # told why, then closed
        assert s.errors == ["server_shutdown"] and s.closed_by_server, s.errors
    keys = (
        "spread",
        "skipped",
        "s1_turns_in_drain",
        "drain_s",
        "exit_after_last_s",
        "grace_exit_s",
        "lb",
    )
    stats = {k: out[k] for k in keys}
    print(f"deploy figures: {stats}")
