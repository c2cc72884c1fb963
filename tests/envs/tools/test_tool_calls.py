"""Tool-call parsing: our tag syntax (within the character-level tokenizer's characters) and the
Qwen-style <tool_call> JSON, tolerant of whitespace; None for a final answer."""

from __future__ import annotations

import pytest

from rlhf.envs.tools.calls import ToolCall, format_tag_call, parse_tool_call
from rlhf.models.tokenizer import CHARACTERS


@pytest.mark.parametrize(
    "action, expected",
    [
        ("<calc>123*4567</calc>", ToolCall("calculator", "123*4567")),
        ("let me compute <calc>12*34</calc> and then", ToolCall("calculator", "12*34")),
        ("<calc>12*34", ToolCall("calculator", "12*34")),  # stopped before the closing tag
        ("<python>print(2**10)\n</python>", ToolCall("python", "print(2**10)\n")),
        (
            '<tool_call>\n  {"name": "python",\n   "arguments": {"code": "print(1)"}}\n</tool_call>',
            ToolCall("python", "print(1)"),
        ),
        (
            '<tool_call>{"name": "calculator", "arguments": "{\\"expression\\": \\"2+2\\"}"}</tool_call>',
            ToolCall("calculator", "2+2"),
        ),
        ('<tool_call>{"name": "calculator", "arguments": {"expr": "3*3"}}</tool_call>', ToolCall("calculator", "3*3")),
        ("<calc>1+1</calc> <calc>2+2</calc>", ToolCall("calculator", "1+1")),  # the first call counts
    ],
)
def test_calls_are_found(action, expected):
    assert parse_tool_call(action) == expected


@pytest.mark.parametrize("action", ["561741", "the answer is 42", "<calculator>1</calculator>", "", "calc 1+1"])
def test_final_answers_have_no_call(action):
    assert parse_tool_call(action) is None


@pytest.mark.parametrize(
    "action, error",
    [
        ("<tool_call>{not json}</tool_call>", "not valid JSON"),
        ('<tool_call>["python"]</tool_call>', '"name"'),
        ('<tool_call>{"name": "python", "arguments": {"code": 1, "x": 2}}</tool_call>', '"code"'),
    ],
)
def test_unreadable_json_calls_are_calls_with_an_error(action, error):
    call = parse_tool_call(action)
    assert call is not None and call.error is not None and error in call.error


def test_tag_syntax_fits_the_character_tokenizer_and_round_trips():
    for tool, argument in [("calculator", "123*4567"), ("python", "print(6*7)")]:
        text = format_tag_call(tool, argument)
        assert set(text) <= set(CHARACTERS)
        assert parse_tool_call(text) == ToolCall(tool, argument)
