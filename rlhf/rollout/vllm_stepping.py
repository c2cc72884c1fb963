"""A vLLM generation driven one engine step at a time, so that it can pause between decoding
steps.

`LLM.generate` runs its requests to the end in one call. Partial rollouts, and snapshots of a
generation under way, need a call that can stop early (AReaL's interruptible generation, Fu et
al. 2025, sec. 5.2). Here the requests go to vLLM's engine directly:

    (1) add every row as a request whose outputs are cumulative (each engine step reports
        every token a request has so far, with its logprobs)
    (2) step the engine; keep each request's newest output
    (3) ask `interrupt` after every step; when it says pause, abort the requests still running
        and stop. Those rows come back with the tokens they have and no EOS, as the HF engine's
        interrupted rows do; the caller goes on from prompt + tokens
        (:class:`rlhf.rollout.versioned.VersionedGeneration`).

vLLM's own engine, scheduler and KV cache do the work; only the loop around `step()` is ours.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_REQUEST_IDS = itertools.count()
"""Request ids of this module's calls, distinct from `LLM.generate`'s plain numbers."""


@dataclass
class SteppedRow:
    """One row's generation so far: what a vLLM `CompletionOutput` holds, for rows that may have
    produced nothing yet."""

    token_ids: list[int] = field(default_factory=list)
    logprobs: list | None = None
    """Per token, vLLM's {token id: Logprob} of that step (None without logprobs)."""
    finished: bool = False


def stepped_generate(llm, prompts: Sequence, params: Sequence, interrupt: Callable[[], bool]) -> list[SteppedRow]:
    """Steps (1)-(3) of the module docstring for `prompts` (vLLM `TokensPrompt`s) with their
    `params` (one `vllm.SamplingParams` per row, changed to cumulative outputs). Returns one row
    per prompt, in order; a row cut short by `interrupt` has `finished` False."""
    from vllm.sampling_params import RequestOutputKind

    engine = llm.llm_engine
    if engine.has_unfinished_requests():
        raise RuntimeError("stepped_generate: the vLLM engine still has requests of another call; one call at a time")
    request_ids = [f"rlhf-stepped-{next(_REQUEST_IDS)}" for _ in prompts]
    rows = {request_id: SteppedRow() for request_id in request_ids}
    try:
        for request_id, prompt, row_params in zip(request_ids, prompts, params):  # (1)
            row_params.output_kind = RequestOutputKind.CUMULATIVE
            engine.add_request(request_id, prompt, row_params)
        while engine.has_unfinished_requests():
            for output in engine.step():  # (2)
                completion = output.outputs[0]
                rows[output.request_id] = SteppedRow(list(completion.token_ids), completion.logprobs, output.finished)
            if interrupt():  # (3)
                break
    finally:
        running = [request_id for request_id, row in rows.items() if not row.finished]
        if running:  # a pause (or an error) leaves no request behind for the next call
            engine.abort_request(running)
    return [rows[request_id] for request_id in request_ids]
