"""The official `openai` Python client against `llama-cli serve` on loopback.

Starts the server itself (`--port 0`, the real test model), then talks to it only through the
client: non-streaming and streaming chat, text completions, models, auth and error mapping.

    usage: python tests/python/test_openai_client.py --binary PATH/llama-cli --model MODEL.gguf

Run by the Rust test `serve::openai_python_client` (llama-cli/tests/cli/serve.rs), with the
interpreter from scripts/python-env.sh.
"""

import argparse
import os
import re
import subprocess
import sys
import threading
import time
import unittest

import openai

KEY = "test-key-123"
ARGS = None
SERVER = None
BASE_URL = None


def start_server(binary, model):
    proc = subprocess.Popen(
        [binary, "serve", "-m", model, "--port", "0", "-c", "1024", "--parallel", "2",
         "-t", "2", "--api-key", KEY],
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
    return openai.OpenAI(base_url=BASE_URL + "/v1", api_key=key, max_retries=0, timeout=120)


MESSAGES = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


class OpenAIClient(unittest.TestCase):
    def test_models_list(self):
        ids = [m.id for m in client().models.list()]
        self.assertEqual(ids, ["SmolLM2-135M-Instruct.Q4_1"])

    def test_chat_non_streaming(self):
        r = client().chat.completions.create(
            model="any", messages=MESSAGES, temperature=0, max_tokens=24, seed=1)
        self.assertEqual(r.object, "chat.completion")
        self.assertEqual(len(r.choices), 1)
        choice = r.choices[0]
        self.assertEqual(choice.message.role, "assistant")
        self.assertIn("Paris", choice.message.content)
        self.assertIn(choice.finish_reason, ("stop", "length"))
        u = r.usage
        self.assertGreater(u.prompt_tokens, 0)
        self.assertGreater(u.completion_tokens, 0)
        self.assertEqual(u.total_tokens, u.prompt_tokens + u.completion_tokens)

    def test_chat_streaming_matches_non_streaming(self):
        c = client()
        whole = c.chat.completions.create(
            model="any", messages=MESSAGES, temperature=0, max_tokens=24)
        stream = c.chat.completions.create(
            model="any", messages=MESSAGES, temperature=0, max_tokens=24, stream=True,
            stream_options={"include_usage": True})
        pieces, finish, usage, roles = [], None, None, []
        for chunk in stream:
            self.assertEqual(chunk.object, "chat.completion.chunk")
            if chunk.usage is not None:
                usage = chunk.usage
            for ch in chunk.choices:
                if ch.delta.role:
                    roles.append(ch.delta.role)
                if ch.delta.content:
                    pieces.append(ch.delta.content)
                if ch.finish_reason:
                    finish = ch.finish_reason
        self.assertEqual(roles, ["assistant"])
        self.assertEqual("".join(pieces), whole.choices[0].message.content)
        self.assertEqual(finish, whole.choices[0].finish_reason)
        self.assertIsNotNone(usage)
        self.assertEqual(usage.completion_tokens, whole.usage.completion_tokens)
        self.assertEqual(usage.prompt_tokens, whole.usage.prompt_tokens)

    def test_text_completion(self):
        r = client().completions.create(
            model="any", prompt="The capital of France is", temperature=0, max_tokens=8)
        self.assertEqual(r.object, "text_completion")
        self.assertTrue(r.choices[0].text)
        self.assertEqual(r.choices[0].finish_reason, "length")
        self.assertEqual(r.usage.completion_tokens, 8)

    def test_responses(self):
        r = client().responses.create(
            model="any", input="What is the capital of France?", instructions="Be brief.",
            temperature=0, max_output_tokens=24)
        self.assertEqual(r.object, "response")
        self.assertIn("Paris", r.output_text)
        self.assertGreater(r.usage.input_tokens, 10)
        self.assertGreater(r.usage.output_tokens, 0)

    def test_responses_stream_gives_the_same_text(self):
        whole = client().responses.create(
            model="any", input=MESSAGES, temperature=0, max_output_tokens=24)
        deltas = []
        with client().responses.stream(
                model="any", input=MESSAGES, temperature=0, max_output_tokens=24) as s:
            for event in s:
                if event.type == "response.output_text.delta":
                    deltas.append(event.delta)
            final = s.get_final_response()
        self.assertEqual("".join(deltas), whole.output_text)
        self.assertEqual(final.output_text, whole.output_text)
        self.assertEqual(final.usage.output_tokens, whole.usage.output_tokens)

    def test_wrong_key_is_authentication_error(self):
        with self.assertRaises(openai.AuthenticationError):
            client("wrong").chat.completions.create(model="any", messages=MESSAGES)

    def test_bad_value_is_bad_request(self):
        with self.assertRaises(openai.BadRequestError) as ctx:
            client().chat.completions.create(model="any", messages=MESSAGES, top_p=2)
        self.assertEqual(ctx.exception.body.get("param"), "top_p")


def main():
    global ARGS, SERVER, BASE_URL
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--model", required=True)
    ARGS, rest = parser.parse_known_args()
    SERVER, BASE_URL = start_server(ARGS.binary, ARGS.model)
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
