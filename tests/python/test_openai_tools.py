"""The official `openai` Python client against `llama-cli serve`: structured output with
`chat.completions.parse` and a Pydantic model, a tools round trip with the tool's result, and
streamed tool calls (SmolLM2's template knows no tools: the generic grammar-constrained format
makes it call them).

    usage: python tests/python/test_openai_tools.py --binary PATH/llama-cli --model MODEL.gguf

Run by the Rust test `generation::openai_python_tools` (llama-cli/tests/cli/generation.rs).
"""

import argparse
import json
import subprocess
import sys
import unittest

import openai
import pydantic

from test_openai_client import KEY, start_server

BASE_URL = None

TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}]

QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


def client():
    return openai.OpenAI(base_url=BASE_URL + "/v1", api_key=KEY, max_retries=0, timeout=120)


class Person(pydantic.BaseModel):
    name: str
    age: int


class Tools(unittest.TestCase):
    def test_parse_with_a_pydantic_model(self):
        r = client().chat.completions.parse(
            model="any", temperature=0, max_tokens=80, response_format=Person,
            messages=[{"role": "user", "content": "Describe a person named Ada, aged 36."}])
        person = r.choices[0].message.parsed
        self.assertIsInstance(person, Person)
        self.assertIsInstance(person.age, int)

    def test_tools_round_trip_with_the_result(self):
        c = client()
        r = c.chat.completions.create(model="any", temperature=0, max_tokens=80,
                                      messages=QUESTION, tools=TOOLS, tool_choice="required")
        choice = r.choices[0]
        self.assertEqual(choice.finish_reason, "tool_calls")
        call = choice.message.tool_calls[0]
        self.assertEqual(call.function.name, "get_weather")
        self.assertIn("city", json.loads(call.function.arguments))
        history = QUESTION + [
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id,
             "content": json.dumps({"temperature": 21, "sky": "clear"})},
        ]
        r = c.chat.completions.create(model="any", temperature=0, max_tokens=40,
                                      messages=history, tools=TOOLS)
        self.assertEqual(r.choices[0].message.role, "assistant")
        self.assertTrue(r.choices[0].message.content or r.choices[0].message.tool_calls)

    def test_streamed_tool_calls(self):
        stream = client().chat.completions.create(
            model="any", temperature=0, max_tokens=80, messages=QUESTION, tools=TOOLS,
            tool_choice="required", stream=True)
        calls, finish = {}, None
        for chunk in stream:
            for ch in chunk.choices:
                for d in ch.delta.tool_calls or []:
                    entry = calls.setdefault(d.index, {"id": None, "name": "", "arguments": ""})
                    entry["id"] = d.id or entry["id"]
                    if d.function and d.function.name:
                        entry["name"] += d.function.name
                    if d.function and d.function.arguments:
                        entry["arguments"] += d.function.arguments
                if ch.finish_reason:
                    finish = ch.finish_reason
        self.assertEqual(finish, "tool_calls")
        self.assertEqual(calls[0]["name"], "get_weather")
        self.assertTrue(calls[0]["id"])
        self.assertIn("city", json.loads(calls[0]["arguments"]))


def main():
    global BASE_URL
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--model", required=True)
    args, rest = parser.parse_known_args()
    server, BASE_URL = start_server(args.binary, args.model)
    try:
        program = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
        result = program.result
        failed = len(result.failures) + len(result.errors)
        print(f"{result.testsRun - failed} passed, {failed} failed")
        code = 0 if result.wasSuccessful() else 1
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
    sys.exit(code)


if __name__ == "__main__":
    main()
