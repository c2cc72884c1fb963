"""Sampling evaluation with a scripted rollout engine: samples stay with their prompt, metrics
per data source, seeded sampling that leaves the caller's random stream alone."""

import pytest
import torch

from rlhf.config.schema import RewardConfig
from rlhf.data.batch import Batch
from rlhf.eval.sampled import EvalPlan, collect_outcomes, evaluate_policy
from rlhf.rewards.combine import build_combiner
from rlhf.rollout.base import SamplingParams


class ScriptedEngine:
    """Prompt i ('i?') answers its j-th sample of a call with answer(i, j, greedy); records
    the size and kind of every call."""

    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def generate(self, prompts: Batch, sampling: SamplingParams) -> Batch:
        self.calls.append((len(prompts), sampling.greedy))
        texts, seen = [], {}
        for prompt in prompts["prompt"]:
            j = seen[prompt] = seen.get(prompt, -1) + 1
            texts.append(self.answer(int(prompt.rstrip("?")), j, sampling.greedy))
        lengths = torch.tensor([len(text) + 1 for text in texts])
        mask = (torch.arange(int(lengths.max()))[None, :] < lengths[:, None]).long()
        out = Batch(dict(prompts.tensors), dict(prompts.non_tensors), dict(prompts.meta))
        return out.set("response_ids", mask.clone()).set("response_mask", mask).set("response_text", texts)


def prompt_batches(count: int, per_batch: int, sources=None) -> list[Batch]:
    rows = [{"prompt": f"{i}?", "ground_truth": str(i), **({"data_source": sources[i]} if sources else {})} for i in range(count)]
    batches = []
    for start in range(0, count, per_batch):
        part = rows[start : start + per_batch]
        batches.append(Batch({"prompt_ids": torch.zeros(len(part), 2, dtype=torch.long)}, {key: [row[key] for row in part] for key in part[0]}))
    return batches


def plan(ks, n, seed=0) -> EvalPlan:
    return EvalPlan(tuple(ks), n, SamplingParams(max_new_tokens=4), seed)


def test_samples_stay_with_their_prompt():
    # prompt i: sample j is correct when j < i; the greedy response is correct for even i
    engine = ScriptedEngine(lambda i, j, greedy: str(i) if (i % 2 == 0 if greedy else j < i) else "x")
    reward = build_combiner(RewardConfig())
    outcomes = collect_outcomes(engine, reward, prompt_batches(6, 4), plan([1, 4], 4))
    assert outcomes.sample_correct.sum(dim=1).tolist() == [0, 1, 2, 3, 4, 4]
    assert outcomes.greedy_correct.tolist() == [True, False, True, False, True, False]
    # "x" has no answer: it abstains; prompt 1 votes 1 of 4 for its (correct) answer
    assert [b.abstentions for b in outcomes.ballots] == [4, 3, 2, 1, 0, 0]
    metrics = evaluate_policy(engine, reward, prompt_batches(6, 4), plan([1, 4], 4))
    assert metrics["eval/accuracy"] == pytest.approx(0.5)
    assert metrics["eval/pass@1"] == pytest.approx((0 + 1 + 2 + 3 + 4 + 4) / 4 / 6)
    assert metrics["eval/pass@4"] == pytest.approx(5 / 6)
    assert metrics["eval/maj@4"] == pytest.approx(5 / 6)  # abstentions never outvote an answer
    assert metrics["eval/response_length"] == pytest.approx(2.0) and metrics["eval/sampled_response_length"] > 0
    assert not any("/x/" in key for key in metrics)  # one (unlabelled) source: no breakdown


def test_per_source_breakdown():
    sources = ["easy", "hard", "easy", "hard"]
    engine = ScriptedEngine(lambda i, j, greedy: str(i) if sources[i] == "easy" or (j == 0 and not greedy) else "7")
    metrics = evaluate_policy(engine, build_combiner(RewardConfig()), prompt_batches(4, 4, sources), plan([2], 2))
    assert metrics["eval/easy/accuracy"] == 1.0 and metrics["eval/hard/accuracy"] == 0.0
    assert metrics["eval/easy/pass@2"] == 1.0 and metrics["eval/hard/pass@2"] == 1.0
    assert metrics["eval/hard/maj@2"] == pytest.approx(0.5)  # a 1-1 tie between the answer and 7
    assert metrics["eval/accuracy"] == pytest.approx(0.5) and metrics["eval/maj@2"] == pytest.approx(0.75)


def test_greedy_only_plan_generates_once_per_batch():
    engine = ScriptedEngine(lambda i, j, greedy: str(i))
    metrics = evaluate_policy(engine, build_combiner(RewardConfig()), prompt_batches(6, 4), EvalPlan())
    assert engine.calls == [(4, True), (2, True)]
    assert metrics == {"eval/accuracy": 1.0, "eval/reward": 1.0, "eval/response_length": 2.0}


def test_sampling_calls_hold_about_a_batch_of_sequences():
    engine = ScriptedEngine(lambda i, j, greedy: str(i))
    collect_outcomes(engine, build_combiner(RewardConfig()), prompt_batches(8, 8), plan([4], 4))
    assert engine.calls == [(8, True)] + [(8, False)] * 4  # 2 prompts x 4 samples per call


def test_sampling_is_seeded_and_leaves_the_callers_random_stream_alone():
    def coin(i, j, greedy):
        return str(i) if greedy or torch.rand(()) < 0.5 else "x"

    reward = build_combiner(RewardConfig())
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = collect_outcomes(ScriptedEngine(coin), reward, prompt_batches(8, 8), plan([1, 8], 8, seed=0))
    assert torch.equal(torch.get_rng_state(), state)
    again = collect_outcomes(ScriptedEngine(coin), reward, prompt_batches(8, 8), plan([1, 8], 8, seed=0))
    other = collect_outcomes(ScriptedEngine(coin), reward, prompt_batches(8, 8), plan([1, 8], 8, seed=1))
    assert torch.equal(first.sample_correct, again.sample_correct)
    assert not torch.equal(first.sample_correct, other.sample_correct)


@pytest.mark.parametrize("ks, n", [((0,), 4), ((8,), 4), ((), 4)])
def test_plan_rejects_k_outside_1_to_n(ks, n):
    with pytest.raises(ValueError, match="1 <= k <= n"):
        EvalPlan(ks, n)
