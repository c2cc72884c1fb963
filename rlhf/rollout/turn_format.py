"""How a multi-turn trajectory is laid out in tokens: the first prompt, and each observation
inserted between two actions.

The tokens of a trajectory are kept exactly as generated and as fed back: an action's tokens
are the engine's own (its EOS included), and an observation is tokenised on its own and
appended. Earlier turns are never rendered and tokenised again, so the policy is trained on
exactly the tokens it saw and produced (re-tokenising the text of a whole conversation can
split or merge tokens at turn boundaries: the "multi-turn token drift").

With a chat template (`data.chat_template` and a tokenizer that has one), an observation is a
user turn: its tokens are the template's text between the end of an assistant message and the
start of the next one (`<|im_end|>\\n<|im_start|>user\\n...<|im_end|>\\n<|im_start|>assistant\\n`
for ChatML), found by rendering a probe conversation once. The result of a tool call (a step
whose `info["tool_calls"]` is positive) is a `tool` message instead, where the template renders
that role (Qwen2.5's wraps it as `<|im_start|>user\\n<tool_response>\\n...\\n</tool_response>`, the
format the model was tuned on); a template without a tool role gives it the user turn. When the
action already ended with the EOS token that closes an assistant turn, that token is not repeated. Without a chat
template, `env.observation_template` ('{observation}' replaced by the text) is appended.
"""

from __future__ import annotations

from rlhf.config.env_schema import EnvConfig
from rlhf.config.errors import ConfigError
from rlhf.config.schema import DataConfig
from rlhf.data.fields import apply_template

_PROBE_ACTION = "ACTION-7f3a"
_PROBE_OBSERVATION = "OBSERVATION-7f3a"


class TurnFormat:
    """Token ids of the first prompt and of the observations of one tokenizer and recipe."""

    def __init__(self, tokenizer, data: DataConfig, env: EnvConfig):
        self.tokenizer = tokenizer
        self.data, self.env = data, env
        self.chat = bool(data.chat_template and getattr(tokenizer, "chat_template", None))
        eos = tokenizer.eos_token_id
        self.eos_text = tokenizer.decode([eos]) if eos is not None else ""
        self.tool_delimiters: tuple[str, str] | None = None
        if self.chat:
            self.before_observation, self.after_observation = self._chat_delimiters("user")
            self.tool_delimiters = self._tool_delimiters()

    def prompt_text(self, row: dict, first_observation: str) -> str:
        """The first context as text: the row's prompt (in `data.prompt_template`), the first
        observation, and the chat template's generation prompt when chatting."""
        text = apply_template(row, self.data.prompt_template)
        if not self.chat:
            return text + (self.env.observation_template.format(observation=first_observation) if first_observation else "")
        content = text + ("\n" + first_observation if first_observation else "")
        system = [{"role": "system", "content": self.data.system_prompt}] if self.data.system_prompt else []
        return self.tokenizer.apply_chat_template([*system, {"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)

    def prompt_ids(self, row: dict, first_observation: str) -> list[int]:
        return self.encode(self.prompt_text(row, first_observation))

    @property
    def has_tool_role(self) -> bool:
        """True when tool results are inserted as the chat template's own `tool` messages."""
        return self.tool_delimiters is not None

    def observation_text(self, observation: str, ended_with_eos: bool, tool: bool = False) -> str:
        """The text inserted after an action and before the next one (`tool`: the observation
        is a tool's result)."""
        if not self.chat:
            return self.env.observation_template.format(observation=observation)
        before, after = self.tool_delimiters if tool and self.has_tool_role else (self.before_observation, self.after_observation)
        if ended_with_eos and self.eos_text and before.startswith(self.eos_text):
            before = before[len(self.eos_text):]
        return before + observation + after

    def observation_ids(self, observation: str, ended_with_eos: bool, tool: bool = False) -> list[int]:
        return self.encode(self.observation_text(observation, ended_with_eos, tool))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _chat_delimiters(self, role: str) -> tuple[str, str]:
        """(text between an assistant message's content and the observation's content, text
        after the observation up to the next assistant message's content), read off a probe
        conversation rendered by the tokenizer's chat template with the observation in `role`."""
        messages = [
            {"role": "user", "content": "question"},
            {"role": "assistant", "content": _PROBE_ACTION},
            {"role": role, "content": _PROBE_OBSERVATION},
        ]
        rendered = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        if _PROBE_ACTION not in rendered or _PROBE_OBSERVATION not in rendered:
            raise ConfigError(
                f"data.chat_template: the tokenizer's chat template drops assistant or {role} messages of a conversation, so "
                "observations cannot be inserted as chat turns; set data.chat_template=false (env.observation_template is then used)"
            )
        after_action = rendered[rendered.rindex(_PROBE_ACTION) + len(_PROBE_ACTION):]
        before, _, after = after_action.partition(_PROBE_OBSERVATION)
        return before, after

    def _tool_delimiters(self) -> tuple[str, str] | None:
        """The delimiters of a `tool` message, or None where the template has no tool role
        (it raises on the role, drops the message, or renders it exactly as a user turn)."""
        try:
            delimiters = self._chat_delimiters("tool")
        except Exception:  # templates refuse unknown roles in their own ways (raise_exception, TemplateError, KeyError)
            return None
        return None if delimiters == (self.before_observation, self.after_observation) else delimiters
