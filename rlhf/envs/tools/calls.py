"""Finding a tool call in the text of an action.

Two syntaxes are read; the first call in the action counts and any text after it is ignored.

1. Our own tag syntax, made of characters a character-level model has (printable ASCII):

       <calc>123*4567</calc>          -> ToolCall("calculator", "123*4567")
       <python>print(2**10)</python>  -> ToolCall("python", "print(2**10)")

   `TAGS` maps each tag to its tool. A missing closing tag at the very end of the action is
   tolerated (the argument then runs to the end): a small model often stops there.

2. The Qwen2.5 / Hermes chat templates' format, JSON between `<tool_call>` tags:

       <tool_call>{"name": "python", "arguments": {"code": "print(1)"}}</tool_call>
       <tool_call>{"name": "calculator", "arguments": {"expression": "2+2"}}</tool_call>

   Whitespace and newlines around and inside the JSON are allowed; "arguments" may also be a
   JSON string holding that object (as some models write it), or a plain string taken as the
   argument itself. `ARGUMENT_KEYS` names the argument of each tool.

An action with neither syntax has no tool call (`parse_tool_call` returns None): it is the
agent's final answer. A `<tool_call>` block that cannot be read is still a call, with `error`
set, so that the agent sees what was wrong instead of having its attempt scored as an answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

TAGS = {"calc": "calculator", "python": "python"}
"""Tag of our own syntax -> tool name."""

ARGUMENT_KEYS = {"calculator": "expression", "python": "code"}
"""Tool name -> the key of its argument in a JSON tool call."""

_TAG_CALL = re.compile(
    r"<(?P<tag>" + "|".join(TAGS) + r")>(?P<argument>.*?)(?:</(?P=tag)>|\Z)", re.DOTALL
)
_JSON_CALL = re.compile(r"<tool_call>(?P<body>.*?)(?:</tool_call>|\Z)", re.DOTALL)


@dataclass(frozen=True)
class ToolCall:
    """One tool call found in an action."""

    name: str
    """The tool's name (a key of ARGUMENT_KEYS, or whatever a JSON call named)."""
    argument: str
    """The expression or code, as written (not stripped)."""
    error: str | None = None
    """Why the call could not be read, or None (then `name` and `argument` are meaningful)."""


def _json_argument(name: str, arguments: object) -> str | None:
    """The argument of tool `name` in a JSON call's "arguments" value, or None if absent."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return arguments
    if isinstance(arguments, dict):
        key = ARGUMENT_KEYS.get(name)
        if key in arguments and isinstance(arguments[key], str):
            return arguments[key]
        if len(arguments) == 1:
            only = next(iter(arguments.values()))
            return only if isinstance(only, str) else None
    return arguments if isinstance(arguments, str) else None


def _parse_json_call(body: str) -> ToolCall:
    """The call in the JSON body of a <tool_call> block (error set when it is unreadable)."""
    try:
        call = json.loads(body.strip())
    except json.JSONDecodeError as error:
        return ToolCall("", "", f"the tool call is not valid JSON ({error.msg})")
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return ToolCall("", "", 'the tool call needs {"name": ..., "arguments": {...}}')
    name = call["name"].strip()
    argument = _json_argument(name, call.get("arguments", call.get("parameters")))
    if argument is None:
        key = ARGUMENT_KEYS.get(name, "...")
        return ToolCall(name, "", f'the tool call needs "arguments": {{"{key}": "..."}}')
    return ToolCall(name, argument)


def parse_tool_call(action: str) -> ToolCall | None:
    """The first tool call in `action`, or None when it has none (a final answer)."""
    matches = [m for m in (_TAG_CALL.search(action), _JSON_CALL.search(action)) if m]
    if not matches:
        return None
    first = min(matches, key=lambda match: match.start())
    if first.re is _JSON_CALL:
        return _parse_json_call(first.group("body"))
    return ToolCall(TAGS[first.group("tag")], first.group("argument"))


def format_tag_call(tool: str, argument: str) -> str:
    """Our own syntax for calling `tool` with `argument` (the inverse of parse_tool_call)."""
    tag = next(tag for tag, name in TAGS.items() if name == tool)
    return f"<{tag}>{argument}</{tag}>"
