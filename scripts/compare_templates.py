#!/usr/bin/env python3
"""Renders chat templates with Hugging Face transformers' Jinja setup (jinja2, trim_blocks,
lstrip_blocks, loop controls, tojson as json.dumps, raise_exception, strftime_now) and with
llama-core's renderer (the render_template example), and compares the prompts.

    usage: scripts/compare_templates.py RENDER_BINARY TEMPLATE.jinja...
           scripts/compare_templates.py --transformers < case.json   (one render, for tests)

Prints one line per template and conversation, then 'N passed, N failed, N skipped'; a
template jinja2 itself cannot render is skipped. Exit status 1 if any differ.
"""

import datetime
import json
import subprocess
import sys

try:
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    print("skipped: jinja2 is not installed")
    print("0 passed, 0 failed, 1 skipped")
    sys.exit(0)

TOOLS = [{"type": "function", "function": {
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "The city's name."},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"]}}}]

CONVERSATIONS = {
    "user": ([{"role": "user", "content": "Say hi"}], None),
    "system+turns": ([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there"},
        {"role": "user", "content": "How are you? ünïcödé"}], None),
    "tools": ([
        {"role": "system", "content": "You help."},
        {"role": "user", "content": "Weather in Paris?"}], TOOLS),
    "tool round trip": ([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call123456", "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "tool_call_id": "call123456", "name": "get_weather", "content": "{\"temp\": 21}"},
        ], TOOLS),
}


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.datetime.now(datetime.timezone.utc).strftime(fmt)


def transformers_render(source, messages, tools, extra=None):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source).render(
        messages=messages, tools=tools, add_generation_prompt=True,
        bos_token="<s>", eos_token="</s>", **(extra or {}))


# The date variables llama.cpp's templating adds (and llama-core's renderer), fixed and given to
# both renderers so that the comparison does not depend on the day.
DATES = {"date_string": "26 Jul 2024", "datetime": "Jul 26 2024"}


def ours(binary, source, messages, tools):
    case = {"template": source, "messages": messages, "tools": tools,
            "add_generation_prompt": True, "bos_token": "<s>", "eos_token": "</s>",
            "extra": DATES}
    out = subprocess.run([binary], input=json.dumps(case), capture_output=True, text=True,
                         timeout=60)
    return out.stdout


def main():
    if sys.argv[1:] == ["--transformers"]:
        case = json.load(sys.stdin)
        try:
            out = transformers_render(case["template"], case["messages"], case.get("tools"),
                                      case.get("extra"))
        except Exception as e:
            print(f"SKIP: {type(e).__name__}: {e}", end="")
            return
        print(out, end="")
        return
    binary, paths = sys.argv[1], sys.argv[2:]
    passed = failed = skipped = 0
    for path in paths:
        source = open(path, encoding="utf-8").read()
        for name, (messages, tools) in CONVERSATIONS.items():
            try:
                expected = transformers_render(source, messages, tools, DATES)
            except Exception as e:  # jinja2 itself cannot render it: not a comparison
                skipped += 1
                print(f"skip {path} [{name}]: jinja2: {type(e).__name__}: {e}")
                continue
            got = ours(binary, source, messages, tools)
            if got == expected:
                passed += 1
                print(f"ok   {path} [{name}]")
            else:
                failed += 1
                print(f"FAIL {path} [{name}]")
                print("  expected:", json.dumps(expected[:600]))
                print("  got:     ", json.dumps(got[:600]))
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
