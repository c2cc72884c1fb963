"""The rollout service of an asynchronous Ray run, in this process (no Ray needed): the stream's
loop in a thread over in-process queues, gated by the versions posted to its mailbox, lending
its engine to other calls between its generate calls."""

import copy

import torch
from tiny_helpers import sharpen_weights

from rlhf.data.batch import Batch
from rlhf.data.prompts import prompt_batch
from rlhf.distributed.rollout_service import RolloutService
from rlhf.models.load import load_causal_lm, load_tokenizer
from rlhf.models.tiny import build_tiny_model
from rlhf.rollout.async_worker import GroupRequest, WorkerSpec, dumps, loads
from rlhf.rollout.base import SamplingParams
from rlhf.rollout.hf import HFRolloutEngine

GREEDY = SamplingParams(greedy=True, max_new_tokens=6, logprobs=True)


def spec() -> WorkerSpec:
    return WorkerSpec(config=None, architecture=None, generation_config=None, dtype=None, tokenizer=None, model_path="", sampling=GREEDY,
                      partial=False, pausable=True, with_baseline=False, episodes=False, generate_groups=4, threads=1, seed=0, cpus=[],
                      trainer_pid=None)


def request(group_id: int, earliest: int, prompts: Batch) -> GroupRequest:
    one = prompts.select([group_id, group_id])
    return GroupRequest(group_id, group_id, earliest, Batch(one.tensors, one.non_tensors, {}))


def groups_of(service: RolloutService, timeout: float = 30.0) -> list:
    """The groups of the next message that carries groups (others, e.g. snapshots, skipped)."""
    for message in service.receive(timeout):
        if not (isinstance(message, tuple) and message[0] in ("snapshot", "error")):
            return loads(message)
        assert message[0] != "error", message[1]
    return []


def test_the_service_streams_by_version_and_lends_its_engine_between_calls(tmp_path):
    path = build_tiny_model(tmp_path / "model", seed=0)
    tokenizer = load_tokenizer(str(path))
    old = sharpen_weights(load_causal_lm(str(path), torch.device("cpu")).eval(), seed=0)
    new = sharpen_weights(copy.deepcopy(old), seed=1)
    prompts = prompt_batch([{"prompt": p, "ground_truth": "0"} for p in ["1+2=", "30+4=", "56+7="]], tokenizer)
    expected = {name: HFRolloutEngine(copy.deepcopy(model), tokenizer).generate(prompts, GREEDY)["response_ids"]
                for name, model in (("old", old), ("new", new))}
    assert not torch.equal(expected["old"], expected["new"])
    service = RolloutService(HFRolloutEngine(copy.deepcopy(old), tokenizer), spec(), version=0)
    try:
        # version 0 may start group 0; group 1 must wait for version 1
        service.submit(dumps([request(0, 0, prompts), request(1, 1, prompts)]))
        (first,) = groups_of(service)
        assert first.group_id == 0 and torch.equal(first.batch["response_ids"][0], expected["old"][0])
        assert set(first.batch["token_versions"][first.batch["response_mask"].bool()].tolist()) == {0}
        assert service.receive(0.5) == []  # gated: nothing else starts with version 0
        assert service.post(new.named_parameters(), 1) > 0
        (second,) = groups_of(service)
        assert second.group_id == 1 and torch.equal(second.batch["response_ids"][0], expected["new"][1])
        assert set(second.batch["token_versions"][second.batch["response_mask"].bool()].tolist()) == {1}
        # a call from the controller (evaluation) waits for the loop and gets the newest weights posted
        service.post(old.named_parameters(), 2)
        with service.holding() as engine:
            assert torch.equal(engine.generate(prompts, GREEDY)["response_ids"], expected["old"])
        assert service.mailbox.loaded == 2
        # snapshots are answered while idle
        number = service.ask_snapshot()
        assert ("snapshot", number, {}) in service.receive(5.0)
        waited, generated = service.seconds()
        assert waited > 0 and generated > 0
    finally:
        service.stop()
    assert not service.thread.is_alive()
