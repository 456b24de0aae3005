"""Drives aisbf's /v1/messages with the official anthropic SDK and checks every body and
stream event with the SDK's own types (pydantic validation, not the SDK's lenient parsing).

usage: sdk_messages.py BASE_URL MODEL MODE
  MODE = text    non-stream; prints {"text", "stop_reason", "usage"}
         stream  messages.stream(); prints {"text", "stop_reason", "events", "usage"}
         tools   a tool call, non-stream then streamed; prints {"calls": [input, input]}
         errors  prints {"not_found", "bad_request"}: the SDK exception class names
         error   one request to MODEL; prints {"error": class name, "status"}
Exit code 0 only when the SDK parsed and validated everything.
"""
import json
import sys

import anthropic
import httpx
import pydantic
from anthropic.types import Message, RawMessageStreamEvent

TOOLS = [{
    "name": "Read",
    "description": "Read a file",
    "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}},
                     "required": ["file_path"]},
}]
EVENT = pydantic.TypeAdapter(RawMessageStreamEvent)


def raw_events(base_url, body):
    """The stream's events as sent, each validated as a RawMessageStreamEvent."""
    names = []
    with httpx.stream("POST", base_url + "/v1/messages", json=body, timeout=30,
                      headers={"anthropic-version": "2023-06-01", "x-api-key": "k"}) as r:
        assert r.status_code == 200, r.status_code
        name, data = None, []
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data.append(line[len("data: "):])  # one event's data may span several lines
            elif line == "" and data:
                assert name, "every event needs its event: line"
                event = json.loads("\n".join(data))
                assert event["type"] == name, (name, event)
                if name != "ping":
                    EVENT.validate_python(event)
                names.append(name)
                name, data = None, []
    return names


def main():
    base_url, model, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    client = anthropic.Anthropic(base_url=base_url, api_key="sk-client", max_retries=0, timeout=30)
    user = [{"role": "user", "content": "Say hello"}]
    if mode == "text":
        raw = client.messages.with_raw_response.create(model=model, max_tokens=64, messages=user,
                                                      system="Be brief.")
        Message.model_validate(raw.http_response.json())
        m = raw.parse()
        out = {"text": "".join(b.text for b in m.content if b.type == "text"),
               "stop_reason": m.stop_reason, "usage": m.usage.model_dump()}
    elif mode == "stream":
        with client.messages.stream(model=model, max_tokens=64, messages=user) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        Message.model_validate(final.model_dump())
        names = raw_events(base_url, {"model": model, "max_tokens": 64, "messages": user,
                                      "stream": True})
        out = {"text": text, "stop_reason": final.stop_reason, "events": names,
               "usage": final.usage.model_dump()}
    elif mode == "tools":
        ask = [{"role": "user", "content": "RUN_TOOL on the notes"}]
        raw = client.messages.with_raw_response.create(model=model, max_tokens=64, messages=ask,
                                                      tools=TOOLS)
        Message.model_validate(raw.http_response.json())
        m = raw.parse()
        assert m.stop_reason == "tool_use", m
        call = next(b for b in m.content if b.type == "tool_use")
        with client.messages.stream(model=model, max_tokens=64, messages=ask, tools=TOOLS) as s:
            final = s.get_final_message()
        streamed = next(b for b in final.content if b.type == "tool_use")
        assert final.stop_reason == "tool_use", final
        # The round trip: the result goes back and the model answers with it.
        follow = client.messages.create(model=model, max_tokens=64, tools=TOOLS, messages=ask + [
            {"role": "assistant", "content": [call.model_dump()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                          "content": "the notes say 42"}]},
        ])
        raw_events(base_url, {"model": model, "max_tokens": 64, "messages": ask, "tools": TOOLS,
                              "stream": True})
        out = {"calls": [call.input, streamed.input], "ids": [call.id, streamed.id],
               "answer": follow.content[0].text}
    elif mode == "errors":
        out = {}
        try:
            client.messages.create(model="nope/none", max_tokens=5, messages=user)
        except anthropic.APIStatusError as e:
            out["not_found"] = type(e).__name__
        try:
            client.messages.create(model=model, max_tokens=5, messages=user + user)
        except anthropic.APIStatusError as e:
            out["bad_request"] = type(e).__name__
            out["bad_request_message"] = e.body["error"]["message"]
    elif mode == "error":
        try:
            client.messages.create(model=model, max_tokens=5, messages=user)
            out = {"error": None}
        except anthropic.APIStatusError as e:
            out = {"error": type(e).__name__, "status": e.status_code}
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
