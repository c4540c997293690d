"""The OpenAI-compatible backend against a local chat-completions server with scripted
replies: the one mock in the suite, standing in for a remote LLM at its HTTP edge."""

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from microturn.background.context import ContextPackage
from microturn.background.openai_agent import OpenAIAgent
from microturn.background.tasks import BackgroundRunner, TaskManager


def chunk(delta, finish=None):
    return {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": "scripted",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def tool_call(name, arguments, call_id="call_1"):
    head = {
        "tool_calls": [
            {
                "index": 0,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
        ]
    }
    half = len(arguments) // 2  # arguments arrive in pieces, as real servers stream them
    parts = [
        {"tool_calls": [{"index": 0, "function": {"arguments": arguments[:half]}}]},
        {"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]},
    ]
    return (
        [chunk({"role": "assistant", **head})]
        + [chunk(p) for p in parts]
        + [chunk({}, "tool_calls")]
    )


def say(text):
    return (
        [chunk({"role": "assistant", "content": ""})]
        + [chunk({"content": w + " "}) for w in text.split()]
        + [chunk({}, "stop")]
    )


class ScriptedServer:
    def __init__(self, replies, hang=False):
        self.replies, self.requests, self.hang = list(replies), [], hang
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(
                    {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                )
                if server.hang:
                    time.sleep(3)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()
                for c in server.replies.pop(0):
                    self.wfile.write(f"data: {json.dumps(c)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


async def collect(agent, ctx):
    return [c async for c in agent.run(ctx)]


def test_streams_content_and_runs_tools(monkeypatch):
    monkeypatch.setenv("MICROTURN_BACKGROUND_API_KEY", "sk-test")
    srv = ScriptedServer(
        [
            tool_call("calculate", json.dumps({"expression": "17 * 23"})),
            say("Seventeen times twenty-three is 391."),
        ]
    )
    try:
        agent = OpenAIAgent(srv.url, "scripted-model")
        ctx = ContextPackage(
            "t1", "what is 17 times 23", 2.0, [{"t": 1.0, "kind": "user_text", "text": "hi"}]
        )
        out = asyncio.run(collect(agent, ctx))
    finally:
        srv.close()
    assert "".join(out).strip() == "Seventeen times twenty-three is 391."
    first, second = srv.requests
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer sk-test"
    assert first["body"]["model"] == "scripted-model" and first["body"]["stream"] is True
    assert {t["function"]["name"] for t in first["body"]["tools"]} >= {
        "calculate",
        "lookup",
        "set_timer",
    }
    assert first["body"]["messages"][1] == {
        "role": "user",
        "content": "[1.0s] hi",
    }  # the conversation, not a bare query
    tool_msg = second["body"]["messages"][-1]
    assert tool_msg == {"role": "tool", "tool_call_id": "call_1", "content": "17 * 23 = 391"}


def test_bad_tool_arguments_go_back_to_the_model():
    srv = ScriptedServer(
        [tool_call("calculate", json.dumps({"expression": "(1).__class__"})), say("Sorry.")]
    )
    try:
        out = asyncio.run(collect(OpenAIAgent(srv.url, "m"), ContextPackage("t1", "x", 0.0, [])))
    finally:
        srv.close()
    assert "".join(out).strip() == "Sorry."
    assert srv.requests[1]["body"]["messages"][-1]["content"].startswith("error: attribute access")


def test_hung_server_times_out_and_the_task_fails():
    srv = ScriptedServer([], hang=True)
    runner = BackgroundRunner()
    try:
        tm = TaskManager(OpenAIAgent(srv.url, "m", timeout_s=0.5), runner)
        t = tm.start("anything", [], 0.0)
        deadline, events = time.monotonic() + 10, []
        while tm.states[t] in ("created", "running") and time.monotonic() < deadline:
            events += tm.poll()
            time.sleep(0.02)
        events += tm.poll()
    finally:
        runner.close()
        srv.close()
    assert tm.states[t] == "failed"
    assert any(
        e.kind == "failed" and ("timed out" in e.text.lower() or "Timeout" in e.text)
        for e in events
    )


def test_no_network_unless_configured():
    """The embedded agent and its tools import no HTTP client; only the OpenAI agent does."""
    import subprocess
    import sys

    code = (
        "import sys, microturn.background.agent, microturn.background.tasks, "
        "microturn.runtime.offline;"
        "print(sorted(m for m in ('openai', 'httpx', 'requests', 'urllib3', 'aiohttp') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
