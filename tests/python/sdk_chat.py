"""Drives aisbf with the official openai SDK and checks what the SDK got.

usage: sdk_chat.py BASE_URL MODEL MODE
  MODE = text         non-stream chat; prints {"content", "usage"}
         stream       streaming chat with usage; prints {"content", "usage", "chunks"}
         tools        non-stream with a tool; prints {"tool_calls", "finish_reason"}
         tools_stream streaming tool call; prints {"tool_calls" (reassembled), "finish_reason"}
         image        non-stream with an image part (data: URL); prints {"content"}
Exit code 0 only when the SDK parsed everything and the answer is well-formed.
"""
import json
import sys

import openai

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}]
PIXEL = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
         "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def main():
    base_url, model, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    client = openai.OpenAI(base_url=base_url, api_key="sk-client-not-forwarded", max_retries=0, timeout=30)
    msgs = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello"}]
    out = {}
    if mode == "text":
        r = client.chat.completions.create(model=model, messages=msgs)
        out = {"content": r.choices[0].message.content, "usage": r.usage.model_dump(),
               "finish_reason": r.choices[0].finish_reason}
    elif mode == "stream":
        content, usage, n = "", None, 0
        for chunk in client.chat.completions.create(model=model, messages=msgs, stream=True,
                                                    stream_options={"include_usage": True}):
            n += 1
            if chunk.usage is not None:
                usage = chunk.usage.model_dump()
            for c in chunk.choices:
                content += c.delta.content or ""
        assert usage is not None, "no usage chunk"
        out = {"content": content, "usage": usage, "chunks": n}
    elif mode == "tools":
        r = client.chat.completions.create(model=model, messages=msgs, tools=TOOLS)
        calls = r.choices[0].message.tool_calls or []
        out = {"tool_calls": [{"id": c.id, "name": c.function.name, "arguments": json.loads(c.function.arguments)}
                              for c in calls],
               "finish_reason": r.choices[0].finish_reason}
    elif mode == "tools_stream":
        calls, finish, usage = {}, None, None
        for chunk in client.chat.completions.create(model=model, messages=msgs, tools=TOOLS, stream=True):
            if chunk.usage is not None:
                usage = chunk.usage.model_dump()
            for c in chunk.choices:
                finish = c.finish_reason or finish
                for tc in c.delta.tool_calls or []:
                    slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                    if tc.id:
                        slot["id"] = tc.id
                    if tc.function and tc.function.name:
                        slot["name"] += tc.function.name
                    if tc.function and tc.function.arguments:
                        slot["arguments"] += tc.function.arguments
        out = {"tool_calls": [{**v, "arguments": json.loads(v["arguments"])} for _, v in sorted(calls.items())],
               "finish_reason": finish, "usage": usage}
    elif mode == "image":
        r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": PIXEL}}]}])
        out = {"content": r.choices[0].message.content}
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
