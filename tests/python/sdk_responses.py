"""Drives aisbf's /v1/responses with the official openai SDK (`client.responses`).

usage: sdk_responses.py BASE_URL MODEL MODE
  MODE = create    non-stream create; prints {"text", "usage", "status"}
         stream    create(stream=True), iterating the raw events; prints {"text", "last", "types"}
         helper    the responses.stream() helper and its final response; prints {"text", "status"}
         previous  create, then a second create with previous_response_id; prints {"text"}
         tools     non-stream with a function tool; prints {"calls"}
Exit code 0 only when the SDK parsed everything.
"""
import json
import sys

import openai

TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def main():
    base_url, model, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    client = openai.OpenAI(base_url=base_url, api_key="sk-client-not-forwarded", max_retries=0, timeout=30)
    if mode == "create":
        r = client.responses.create(model=model, instructions="Be terse.", input="Say hello")
        out = {"text": r.output_text, "usage": r.usage.model_dump(), "status": r.status}
    elif mode == "stream":
        text, types = "", []
        for event in client.responses.create(model=model, input="Say hello", stream=True):
            types.append(event.type)
            if event.type == "response.output_text.delta":
                text += event.delta
        out = {"text": text, "last": types[-1], "types": types}
    elif mode == "helper":
        text = ""
        with client.responses.stream(model=model, input="Say hello") as stream:
            for event in stream:
                if event.type == "response.output_text.delta":
                    text += event.delta
            final = stream.get_final_response()
        assert final.output_text == text, (final.output_text, text)
        out = {"text": text, "status": final.status}
    elif mode == "previous":
        first = client.responses.create(model=model, input="Say hello")
        again = client.responses.retrieve(first.id)
        assert again.id == first.id
        second = client.responses.create(model=model, input="Again", previous_response_id=first.id)
        out = {"text": second.output_text}
    elif mode == "tools":
        r = client.responses.create(model=model, input="Weather in Paris?", tools=TOOLS)
        out = {"calls": [{"name": i.name, "arguments": json.loads(i.arguments), "call_id": i.call_id}
                         for i in r.output if i.type == "function_call"]}
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
