"""The official `openai` Python client against `llama-cli serve`: structured output with
`chat.completions.parse` and a Pydantic model, a tools round trip with the tool's result,
streamed tool calls (the first delta names the call, the arguments come in fragments that the
client's own accumulation joins), and the Responses API's function tools: a `function_call`
item, its `function_call_output` sent back with `previous_response_id`, and the streamed
`response.function_call_arguments.delta` events (SmolLM2's template knows no tools: the
generic grammar-constrained format makes it call them).

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

    def test_tool_call_arguments_stream_in_fragments(self):
        c = client()
        args = dict(model="any", temperature=0, max_tokens=80, messages=QUESTION, tools=TOOLS,
                    tool_choice="required")
        whole = c.chat.completions.create(**args).choices[0].message.tool_calls[0]
        deltas = []
        for chunk in c.chat.completions.create(stream=True, **args):
            for ch in chunk.choices:
                deltas.extend(ch.delta.tool_calls or [])
        # The first delta names the call; the arguments follow in several fragments.
        first = deltas[0]
        self.assertEqual((first.index, first.type, first.function.name),
                         (0, "function", "get_weather"))
        self.assertTrue(first.id.startswith("call_"))
        self.assertEqual(first.function.arguments, "")
        fragments = [d.function.arguments for d in deltas[1:]]
        self.assertGreater(len(fragments), 2, fragments)
        self.assertTrue(all(d.id is None and d.function.name is None for d in deltas[1:]))
        self.assertEqual(json.loads("".join(fragments)), json.loads(whole.function.arguments))
        # The client's own accumulation of the stream gives the same call.
        with c.chat.completions.stream(**args) as s:
            final = s.get_final_completion()
        call = final.choices[0].message.tool_calls[0]
        self.assertEqual(call.function.name, "get_weather")
        self.assertEqual(json.loads(call.function.arguments), json.loads(whole.function.arguments))

    def test_responses_function_tools_round_trip(self):
        c = client()
        tools = [{"type": "function", "name": "get_weather",
                  "description": "The current weather in a city",
                  "parameters": TOOLS[0]["function"]["parameters"]}]
        r = c.responses.create(model="any", temperature=0, max_output_tokens=80,
                               input="What is the weather in Paris?", tools=tools,
                               tool_choice="required")
        call = next(o for o in r.output if o.type == "function_call")
        self.assertEqual(call.name, "get_weather")
        self.assertTrue(call.id.startswith("fc_"))
        self.assertIn("city", json.loads(call.arguments))
        # The result goes back as a function_call_output, continuing the stored response.
        # Room to finish: the answer is another call (about 24 tokens) or text, and the call's
        # random id in the prompt changes it from run to run (30 tokens ran out once).
        r2 = c.responses.create(
            model="any", temperature=0, max_output_tokens=80, previous_response_id=r.id,
            tools=tools, input=[{"type": "function_call_output", "call_id": call.call_id,
                                 "output": json.dumps({"temperature": 21, "sky": "clear"})}])
        self.assertEqual(r2.status, "completed")
        self.assertTrue(r2.output_text or any(o.type == "function_call" for o in r2.output))
        with self.assertRaises(openai.BadRequestError):
            c.responses.create(model="any", max_output_tokens=4, input="x",
                               previous_response_id="resp_unknown")
        # Streamed: the arguments' deltas join to the arguments of the finished item.
        events = list(c.responses.create(
            model="any", temperature=0, max_output_tokens=80, stream=True,
            input="What is the weather in Paris?", tools=tools, tool_choice="required"))
        types = [e.type for e in events]
        self.assertIn("response.function_call_arguments.delta", types)
        joined = "".join(e.delta for e in events
                         if e.type == "response.function_call_arguments.delta")
        done = next(e for e in events if e.type == "response.function_call_arguments.done")
        self.assertEqual(joined, done.arguments)
        final = events[-1].response
        self.assertEqual(final.output[0].type, "function_call")
        self.assertEqual(json.loads(final.output[0].arguments), json.loads(call.arguments))


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
