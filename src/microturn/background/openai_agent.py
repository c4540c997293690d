"""Background agent backed by any OpenAI-compatible chat-completions server (vLLM, SGLang,
Ollama, llama.cpp, OpenAI): streamed, with the built-in tools offered as functions.

The only part of microturn that reaches the network, and only when configured with a URL.
"""

from __future__ import annotations

import json
import os
from typing import AsyncIterator

import openai

from .context import ContextPackage
from .tools import Clock, Knowledge, Tool, ToolError, default_tools

MAX_ROUNDS = 4  # model -> tools -> model ... at most this many model calls per task


class OpenAIAgent:
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        clock: Clock | None = None,
        knowledge: Knowledge | None = None,
    ) -> None:
        self.model, self.timeout_s = model, timeout_s
        self.tools: dict[str, Tool] = default_tools(clock or Clock(), knowledge)
        self.client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key
            or os.environ.get("MICROTURN_BACKGROUND_API_KEY")
            or os.environ.get("OPENAI_API_KEY")
            or "none",
            timeout=timeout_s,
            max_retries=0,
        )

    async def _call_tool(self, name: str, arguments: str) -> str:
        tool = self.tools.get(name)
        if tool is None:
            return f"error: no tool named {name!r}"
        try:
            args = json.loads(arguments or "{}")
            return " ".join([c async for c in tool.run(**args) if c])
        except (json.JSONDecodeError, TypeError, ValueError, ToolError) as e:
            return f"error: {e}"  # the model sees the error and can recover; the task goes on

    async def run(self, ctx: ContextPackage) -> AsyncIterator[str]:
        messages = ctx.to_messages()
        schemas = [t.schema() for t in self.tools.values()]
        for _ in range(MAX_ROUNDS):
            stream = await self.client.chat.completions.create(
                model=self.model, messages=messages, tools=schemas, stream=True
            )
            content, calls = "", {}
            async for chunk in stream:
                if not chunk.choices:
                    continue
                delta = chunk.choices[0].delta
                if delta.content:
                    content += delta.content
                    yield delta.content
                for tc in delta.tool_calls or []:
                    call = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                    call["id"] = tc.id or call["id"]
                    if tc.function is not None:
                        call["name"] += tc.function.name or ""
                        call["arguments"] += tc.function.arguments or ""
            if not calls:
                return
            messages.append(
                {
                    "role": "assistant",
                    "content": content or None,
                    "tool_calls": [
                        {
                            "id": c["id"],
                            "type": "function",
                            "function": {"name": c["name"], "arguments": c["arguments"]},
                        }
                        for c in calls.values()
                    ],
                }
            )
            for c in calls.values():
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": c["id"],
                        "content": await self._call_tool(c["name"], c["arguments"]),
                    }
                )
        yield "I could not finish that in time."
