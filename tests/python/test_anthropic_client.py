"""The official `anthropic` Python client against `llama-cli serve`'s `/v1/messages`.

Starts the server itself (`--port 0`, the real test model, an API key the client sends as
`X-Api-Key`), then talks to it only through the client: non-streaming and streaming messages
(with `system`, `max_tokens` and `stop_sequences`), token counting, auth and error mapping,
and a tools round trip: a `tool_use` answer, the same call streamed (the client joins the
`input_json_delta` fragments), the `tool_result` sent back, `thinking` in the history.
Prints "skipped" and exits 0 when the `anthropic` package is not installed.

    usage: python tests/python/test_anthropic_client.py --binary PATH/llama-cli --model MODEL.gguf

Run by the Rust test `serve_compat::anthropic_python_client`, with the interpreter from
scripts/python-env.sh.
"""

import argparse
import re
import subprocess
import sys
import threading
import unittest

try:
    import anthropic
except ImportError:
    print("skipped: the anthropic package is not installed")
    sys.exit(0)

KEY = "test-key-456"
SERVER = None
BASE_URL = None
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def start_server(binary, model):
    proc = subprocess.Popen(
        [binary, "serve", "-m", model, "--port", "0", "-c", "1024", "--parallel", "2",
         "-t", "2", "--api-key", KEY, "--temp", "0"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    found = {}
    ready = threading.Event()

    def pump():
        for line in proc.stderr:
            m = re.search(r"listening on http://([\d.]+):(\d+)", line)
            if m and not ready.is_set():
                found["url"] = f"http://{m.group(1)}:{m.group(2)}"
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(120) or "url" not in found:
        proc.kill()
        raise RuntimeError("the server did not start")
    return proc, found["url"]


def client(key=KEY):
    return anthropic.Anthropic(base_url=BASE_URL, api_key=key, max_retries=0, timeout=120)


class AnthropicClient(unittest.TestCase):
    def test_message(self):
        m = client().messages.create(
            model="any", max_tokens=24, temperature=0, system="Answer in one short sentence.",
            messages=QUESTION)
        self.assertEqual(m.type, "message")
        self.assertEqual(m.role, "assistant")
        self.assertEqual(m.content[0].type, "text")
        self.assertIn("Paris", m.content[0].text)
        self.assertIn(m.stop_reason, ("end_turn", "max_tokens"))
        self.assertGreater(m.usage.input_tokens, 10)
        self.assertGreater(m.usage.output_tokens, 0)

    def test_max_tokens_and_stop_sequences(self):
        m = client().messages.create(model="any", max_tokens=3, messages=QUESTION)
        self.assertEqual(m.stop_reason, "max_tokens")
        self.assertEqual(m.usage.output_tokens, 3)
        # A word of the greedy answer as the stop sequence: the answer ends before it.
        whole = client().messages.create(
            model="any", max_tokens=20, temperature=0, messages=QUESTION).content[0].text
        word = whole.split()[2]
        m = client().messages.create(
            model="any", max_tokens=20, temperature=0, messages=QUESTION,
            stop_sequences=[word])
        self.assertEqual(m.stop_reason, "stop_sequence")
        self.assertEqual(m.stop_sequence, word)
        self.assertTrue(whole.startswith(m.content[0].text), (whole, m.content[0].text))
        self.assertNotIn(word, m.content[0].text)

    def test_stream_gives_the_same_text(self):
        whole = client().messages.create(model="any", max_tokens=24, messages=QUESTION)
        with client().messages.stream(model="any", max_tokens=24, messages=QUESTION) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        self.assertEqual(text, whole.content[0].text)
        self.assertEqual(final.content[0].text, text)
        self.assertEqual(final.stop_reason, whole.stop_reason)
        self.assertEqual(final.usage.output_tokens, whole.usage.output_tokens)
        self.assertEqual(final.usage.input_tokens, whole.usage.input_tokens)

    def test_count_tokens(self):
        n = client().messages.count_tokens(model="any", messages=QUESTION)
        m = client().messages.create(model="any", max_tokens=2, messages=QUESTION)
        self.assertEqual(n.input_tokens, m.usage.input_tokens)

    def test_tools_round_trip(self):
        tools = [{"name": "get_weather", "description": "The current weather in a city",
                  "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                   "required": ["city"]}}]
        question = [{"role": "user", "content": "What is the weather in Paris?"}]
        args = dict(model="any", max_tokens=80, temperature=0, messages=question, tools=tools,
                    tool_choice={"type": "tool", "name": "get_weather"})
        m = client().messages.create(**args)
        self.assertEqual(m.stop_reason, "tool_use")
        use = next(b for b in m.content if b.type == "tool_use")
        self.assertEqual(use.name, "get_weather")
        self.assertIsInstance(use.input, dict)
        self.assertIn("city", use.input)
        # Streamed, the client's accumulation of the input_json_delta events gives the same.
        with client().messages.stream(**args) as s:
            final = s.get_final_message()
        streamed = next(b for b in final.content if b.type == "tool_use")
        self.assertEqual((streamed.name, streamed.input), (use.name, use.input))
        self.assertEqual(final.stop_reason, "tool_use")
        indices = [b.type for b in final.content]
        self.assertEqual(indices[-1], "tool_use")
        # The result goes back; thinking in the history is rendered (and counted).
        history = question + [
            {"role": "assistant", "content": [b.model_dump() for b in m.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                          "content": "Sunny, 21 degrees"}]},
        ]
        answer = client().messages.create(model="any", max_tokens=30, temperature=0,
                                          messages=history, tools=tools)
        self.assertIn(answer.stop_reason, ("end_turn", "max_tokens", "tool_use"))
        plain = client().messages.count_tokens(model="any", messages=history, tools=tools)
        thinking = [dict(history[1], content=[{"type": "thinking", "thinking": "Ask the tool.",
                                               "signature": ""}] + history[1]["content"])]
        with_thinking = client().messages.count_tokens(
            model="any", messages=history[:1] + thinking + history[2:], tools=tools)
        self.assertGreaterEqual(with_thinking.input_tokens, plain.input_tokens)
        error = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                               "is_error": True, "content": "no such city"}]}]
        r = client().messages.create(model="any", max_tokens=4, tools=tools,
                                     messages=history[:2] + error)
        self.assertEqual(r.type, "message")

    def test_wrong_key_is_authentication_error(self):
        with self.assertRaises(anthropic.AuthenticationError):
            client("wrong").messages.create(model="any", max_tokens=4, messages=QUESTION)

    def test_unsupported_block_is_bad_request(self):
        image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": "iVBORw0KGgo="}}
        with self.assertRaises(anthropic.BadRequestError) as ctx:
            client().messages.create(
                model="any", max_tokens=4, messages=[{"role": "user", "content": [image]}])
        self.assertEqual(ctx.exception.body["type"], "error")
        self.assertIn("image input is not supported", ctx.exception.body["error"]["message"])
        # Inside a tool result too.
        result = {"type": "tool_result", "tool_use_id": "t1", "content": [image]}
        with self.assertRaises(anthropic.BadRequestError):
            client().messages.create(
                model="any", max_tokens=4, messages=[{"role": "user", "content": [result]}])


def main():
    global SERVER, BASE_URL
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--model", required=True)
    args, rest = parser.parse_known_args()
    SERVER, BASE_URL = start_server(args.binary, args.model)
    try:
        program = unittest.main(argv=[sys.argv[0]] + rest, exit=False, verbosity=2)
        result = program.result
        failed = len(result.failures) + len(result.errors)
        print(f"{result.testsRun - failed} passed, {failed} failed")
        code = 0 if result.wasSuccessful() else 1
    finally:
        SERVER.terminate()
        try:
            rc = SERVER.wait(15)
        except subprocess.TimeoutExpired:
            SERVER.kill()
            rc = None
        if rc != 0:
            print(f"server exited with {rc} after SIGTERM", file=sys.stderr)
            code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
