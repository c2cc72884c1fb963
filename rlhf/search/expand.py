"""The policy side of the step beam: a rollout engine as the `expand` callable of
:func:`rlhf.search.beam.step_beam`.

The beam hands over partial solutions as token ids after the prompt; the engine's
`generate_steps` continues prompt + prefix as token ids (never decoded and re-tokenised) and
returns :class:`rlhf.search.beam.Step` objects, so the adapter only pairs each prefix with the
problem's prompt. Any engine with `generate_steps` serves: the HF and vLLM rollout engines, or
a worker-group proxy of either (the requests are the call's first argument, which the
``engines`` dispatch splits over the engines).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from rlhf.rollout.base import SamplingParams, StepPrompt
from rlhf.search.beam import ExpandSteps, Step


class StepEngine(Protocol):
    """What the adapter needs of a rollout engine."""

    def generate_steps(self, prompts: Sequence[StepPrompt], k: int, sampling: SamplingParams,
                       delimiter: str | None = None) -> list[list[Step]]: ...


def expand_with(engine: StepEngine, prompt_ids: Sequence[int], sampling: SamplingParams,
                delimiter: str | None = None) -> ExpandSteps:
    """The `expand` callable of a step beam over one problem.

    Args:
        engine: samples the steps (`generate_steps`).
        prompt_ids: the problem's prompt, as token ids (no padding).
        sampling: temperature, top-k/p, and `max_new_tokens`, the cap on a whole response
            (prefix + step): a step that reaches it ends the solution.
        delimiter: the step delimiter, a regex (None: a blank line); use the PRM's own
            `step_split` so that the steps the policy stops at are the steps the PRM scores.
    """
    prompt = tuple(int(token) for token in prompt_ids)
    if not prompt:
        raise ValueError("expand_with: the prompt is empty; a step continues a prompt")

    def expand(prefixes: Sequence[tuple[int, ...]], k: int) -> list[list[Step]]:
        requests = [StepPrompt(prompt, tuple(prefix)) for prefix in prefixes]
        return engine.generate_steps(requests, k, sampling, delimiter) if requests else []

    return expand
