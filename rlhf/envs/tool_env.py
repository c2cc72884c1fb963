"""`tool`: the agent may call tools (calculator, python) before it answers.

Rules (one episode):
- `reset(row)` returns '' (or, with `hint: true`, a one-line reminder of the call syntax); the
  row's prompt is the question, e.g. "123*4567=" (:mod:`rlhf.data.multiplication`) or a GSM8K
  problem.
- An action with a tool call (syntax: :mod:`rlhf.envs.tools.calls`, e.g. `<calc>123*4567</calc>`
  or `<tool_call>{"name": "python", "arguments": {"code": "print(1)"}}</tool_call>`) runs the
  tool; the observation is its result, at most `max_observation_chars` characters; reward 0,
  not done, `info["tool_calls"] = 1`. Observations: the calculator's result ("561741") or
  "error: <reason>"; the python tool's output as in
  :func:`rlhf.envs.tools.sandbox.format_observation` (stdout, then "stderr:" and its tail, then a
  status line such as "[exit code 1]" or "[killed: timeout]"); a call of a tool that is not
  enabled or that cannot be read: "error: <reason>".
- An action without a tool call is the final answer: done, reward 0, `info["answer"]` = the
  action's text. The environment does not score it: the trainer scores the answer with the
  recipe's reward sources (arithmetic, gsm8k, math or a function) against the row's
  ground_truth, so one environment serves every task.

`demo_action` (the supervised warm start's policy) plays legally but not well, see
`ToolEnv.demo_action`: on the multiplication task it succeeds in about 40% of episodes, so a
policy imitating it starts with non-zero reward and RL has room to improve.
"""

from __future__ import annotations

import dataclasses
import random
import re

from rlhf.envs.base import Step
from rlhf.envs.tools.calculator import calculate
from rlhf.envs.tools.calls import format_tag_call, parse_tool_call
from rlhf.envs.tools.sandbox import SandboxLimits, format_observation, run_python

TOOLS = ("calculator", "python")
"""Names of the tools an environment may enable (env.kwargs.tools)."""

_HINTS = {"calculator": "<calc>expression</calc>", "python": "<python>code</python>"}


def hint_text(tools: tuple[str, ...]) -> str:
    """What reset returns with `hint: true`, e.g. "tools: <calc>expression</calc>; then answer"."""
    return "tools: " + ", ".join(_HINTS[tool] for tool in tools) + "; then answer"

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")

# The demonstration policy's probabilities (see ToolEnv.demo_action).
DEMO_CALL_RIGHT = 0.5
DEMO_CALL_PERTURBED = 0.25
DEMO_ANSWER_RESULT = 0.8


def _validated_tools(tools: object) -> tuple[str, ...]:
    if isinstance(tools, str):
        tools = [tools]
    if not isinstance(tools, (list, tuple)) or not tools or not all(t in TOOLS for t in tools):
        raise ValueError(
            f"tool: env.kwargs.tools must be a non-empty list of {', '.join(TOOLS)}; got {tools!r}"
        )
    return tuple(dict.fromkeys(tools))


def _sandbox_limits(python: object) -> SandboxLimits:
    known = [field.name for field in dataclasses.fields(SandboxLimits)]
    if not isinstance(python, dict) or set(python) - set(known):
        unknown = sorted(set(python) - set(known)) if isinstance(python, dict) else python
        raise ValueError(
            f"tool: env.kwargs.python: unknown keys {unknown!r}; valid keys: {', '.join(known)}"
        )
    return SandboxLimits(**python)


def _perturbed(text: str, rng: random.Random) -> str:
    """`text` with one of its digits replaced by another (never a leading zero)."""
    positions = [i for i, char in enumerate(text) if char.isdigit()]
    if not positions:
        return text + "1"
    position = rng.choice(positions)
    leading = position == 0 or not text[position - 1].isdigit()
    choices = [d for d in "0123456789" if d != text[position] and not (leading and d == "0")]
    return text[:position] + rng.choice(choices) + text[position + 1 :]


class ToolEnv:
    """One episode of the `tool` environment (see the module docstring). Implements
    Environment and Demonstrator.

    Args:
        tools: the enabled tools, any of "calculator" and "python".
        python: limits of the python tool (fields of SandboxLimits, e.g. {timeout_s: 5,
            memory_mb: 512}).
        max_observation_chars: longest observation shown to the agent.
        hint: reset returns a one-line reminder of the call syntax instead of ''.
    """

    def __init__(
        self,
        tools: list[str] | tuple[str, ...] = ("calculator",),
        python: dict | None = None,
        max_observation_chars: int = 500,
        hint: bool = False,
    ):
        self.tools = _validated_tools(tools)
        self.limits = _sandbox_limits(python or {})
        if not isinstance(max_observation_chars, int) or max_observation_chars < 16:
            raise ValueError(
                "tool: env.kwargs.max_observation_chars must be an integer >= 16, "
                f"got {max_observation_chars!r}"
            )
        self.max_observation_chars = max_observation_chars
        self.hint = hint
        self.row: dict = {}
        self.last_result: str | None = None
        self.calls = 0

    def reset(self, row: dict) -> str:
        self.row, self.last_result, self.calls = dict(row), None, 0
        return hint_text(self.tools) if self.hint else ""

    def _run(self, name: str, argument: str) -> str:
        """The observation of one call of an enabled tool."""
        if name == "calculator":
            return calculate(argument)
        result = run_python(argument, self.limits)
        return format_observation(result, self.max_observation_chars)

    def step(self, action: str) -> Step:
        call = parse_tool_call(action)
        if call is None:
            return Step("", 0.0, True, {"answer": action, "tool_calls": 0})
        self.calls += 1
        if call.error is not None:
            observation = f"error: {call.error}"
        elif call.name not in self.tools:
            observation = f"error: unknown tool {call.name!r}; available: {', '.join(self.tools)}"
        else:
            observation = self._run(call.name, call.argument)
        observation = observation[: self.max_observation_chars]
        number = _NUMBER.fullmatch(observation.strip())
        self.last_result = number.group() if number else None
        return Step(observation, 0.0, False, {"tool_calls": 1})

    def _expression(self) -> str | None:
        """The row's prompt as a calculator expression ("123*4567=" -> "123*4567"), if it is one."""
        text = str(self.row.get("prompt", "")).strip().removesuffix("=")
        return text if text and not calculate(text).startswith("error") else None

    def _call(self, expression: str, rng: random.Random) -> str:
        tool = "calculator" if "calculator" in self.tools else "python"
        if len(self.tools) > 1 and rng.random() < 0.25:
            tool = "python"
        return format_tag_call(tool, expression if tool == "calculator" else f"print({expression})")

    def _guess(self, rng: random.Random) -> str:
        """A direct answer of the right length, almost never right."""
        length = len(str(self.row.get("ground_truth", ""))) or rng.randint(1, 4)
        return str(rng.randint(10 ** (length - 1), 10**length - 1))

    def demo_action(self, rng: random.Random) -> str:
        """A legal action: before any result, call the tool with the row's expression
        (probability DEMO_CALL_RIGHT), with that expression with one digit changed
        (DEMO_CALL_PERTURBED), or answer at once with a guess (the rest; after two calls without
        a numeric result, always). After a numeric result, answer it (DEMO_ANSWER_RESULT) or a
        copy with one digit changed. On rows whose prompt is an arithmetic expression that is
        about 0.5 * 0.8 = 40% success; on other rows (no expression) the demo only guesses.
        """
        if self.last_result is not None:
            if rng.random() < DEMO_ANSWER_RESULT:
                return self.last_result
            return _perturbed(self.last_result, rng)
        expression = self._expression()
        draw = rng.random()
        if expression is None or self.calls >= 2 or draw >= DEMO_CALL_RIGHT + DEMO_CALL_PERTURBED:
            return self._guess(rng)
        if draw < DEMO_CALL_RIGHT:
            return self._call(expression, rng)
        return self._call(_perturbed(expression, rng), rng)
