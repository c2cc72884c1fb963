"""Multi-turn rollouts: exact tokens across turns, the Batch layout, context budgets, batched
episodes equal to episodes played one at a time, and the action mask in the policy update."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import copy  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from rlhf.config.env_schema import EnvConfig  # noqa: E402
from rlhf.config.schema import DataConfig  # noqa: E402
from rlhf.data.batch import action_mask  # noqa: E402
from rlhf.envs.base import Step  # noqa: E402
from rlhf.models.load import load_causal_lm, load_tokenizer  # noqa: E402
from rlhf.models.tiny import build_tiny_model  # noqa: E402
from rlhf.rollout.base import SamplingParams  # noqa: E402
from rlhf.rollout.episodes import Limits, play_episodes  # noqa: E402
from rlhf.rollout.hf import HFRolloutEngine  # noqa: E402
from rlhf.rollout.multi_turn import episodes_batch, policy_chooser  # noqa: E402
from rlhf.rollout.turn_format import TurnFormat  # noqa: E402
from rlhf.timing import PhaseTimer  # noqa: E402
from tiny_helpers import sharpen_weights  # noqa: E402


class EchoEnv:
    """Answers each action with its first characters; done when the action holds a '7' or
    after `turns` actions (the env's own limit), reward 1 on the turn it says done."""

    def __init__(self, turns: int = 3):
        self.turns, self.taken = turns, 0

    def reset(self, row: dict) -> str:
        return row.get("first", "")

    def step(self, action: str) -> Step:
        self.taken += 1
        done = "7" in action or self.taken >= self.turns
        return Step(f"[{action[:3]}]", reward=1.0 if done else 0.25, done=done, info={"success": "7" in action, "tool_calls": 1})


class ListPool:
    """The lockstep interface of rlhf.envs.pool.EnvPool over in-process instances."""

    def __init__(self, make):
        self.make, self.envs = make, []

    def reset(self, rows):
        self.envs = [self.make() for _ in rows]
        return [env.reset(row) for env, row in zip(self.envs, rows)]

    def step(self, actions, turn):
        return {i: self.envs[i].step(action) for i, action in actions.items()}

    def close(self):
        pass


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0))


def formats(tokenizer, chat: bool, template: str = "\n{observation}\n") -> TurnFormat:
    return TurnFormat(tokenizer, DataConfig(chat_template=chat), EnvConfig(type="class", observation_template=template))


def test_observations_as_chat_turns_and_as_plain_text(tokenizer):
    chat = formats(tokenizer, chat=True)
    # the tiny chat template closes an assistant turn with <|end|>, not with EOS: nothing to drop
    assert chat.observation_text("higher", ended_with_eos=True) == "<|end|><|user|>higher<|end|><|assistant|>"
    assert chat.prompt_text({"prompt": "guess"}, "0-9") == "<|user|>guess\n0-9<|end|><|assistant|>"
    plain = formats(tokenizer, chat=False, template=" > {observation};")
    assert plain.observation_text("lower", ended_with_eos=False) == " > lower;"
    assert plain.prompt_text({"prompt": "guess"}, "") == "guess"


# ChatML with Qwen2.5's rendering of tool results: a user turn wrapping <tool_response>
TOOL_ROLE_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'tool' %}<|im_start|>user\n<tool_response>\n{{ m['content'] }}\n</tool_response><|im_end|>\n"
    "{% else %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_tool_results_use_the_templates_tool_role_where_it_has_one(tokenizer):
    chatml = copy.deepcopy(tokenizer)
    chatml.chat_template = TOOL_ROLE_TEMPLATE
    turn_format = formats(chatml, chat=True)
    assert turn_format.has_tool_role
    assert turn_format.observation_text("42", ended_with_eos=False) == "<|im_end|>\n<|im_start|>user\n42<|im_end|>\n<|im_start|>assistant\n"
    assert turn_format.observation_text("42", ended_with_eos=False, tool=True) == (
        "<|im_end|>\n<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n<|im_start|>assistant\n")
    # the tiny template refuses the tool role: tool results are user turns there
    tiny = formats(tokenizer, chat=True)
    assert not tiny.has_tool_role
    assert tiny.observation_text("42", ended_with_eos=False, tool=True) == tiny.observation_text("42", ended_with_eos=False)
    # plain prompts have one observation template for both
    plain = formats(tokenizer, chat=False, template=" > {observation};")
    assert plain.observation_text("42", ended_with_eos=False, tool=True) == " > 42;"


def test_an_episode_shows_tool_results_as_tool_messages_and_other_feedback_as_user_turns(tokenizer):
    chatml = copy.deepcopy(tokenizer)
    chatml.chat_template = TOOL_ROLE_TEMPLATE
    turn_format = formats(chatml, chat=True)

    class HalfTools(EchoEnv):
        def step(self, action: str) -> Step:
            step = super().step(action)
            return Step(step.observation, step.reward, step.done, {"tool_calls": self.taken % 2})

    a, b = chatml("ab", add_special_tokens=False)["input_ids"]
    seen = []

    def choose(contexts, budget):
        seen.append(dict(contexts))
        return {i: ([a, b], [-0.5, -0.5]) for i in contexts}

    rows = [{"prompt": "go"}]
    play_episodes(rows, ListPool(lambda: HalfTools(turns=3)), choose, turn_format, Limits(5, 8, 300), [chatml.eos_token_id])
    prompt = turn_format.prompt_ids(rows[0], "")
    tool = turn_format.observation_ids("[ab]", ended_with_eos=False, tool=True)
    user = turn_format.observation_ids("[ab]", ended_with_eos=False)
    assert tool != user
    assert seen[2][0] == prompt + [a, b] + tool + [a, b] + user  # turn 1 called a tool, turn 2 did not


def test_action_and_observation_tokens_are_kept_exactly_as_produced(tokenizer):
    """Actions come back as given (even ids whose text would tokenise differently) and every
    later context is exactly prompt ++ earlier actions ++ observations: nothing re-tokenised."""
    turn_format = formats(tokenizer, chat=True)
    end_id = tokenizer.convert_tokens_to_ids("<|end|>")
    a, b = tokenizer("ab", add_special_tokens=False)["input_ids"]
    scripted = [[a, end_id, b, tokenizer.eos_token_id], [b, b], [a, tokenizer.eos_token_id]]
    seen = []

    def choose(contexts, budget):
        seen.append(dict(contexts))
        return {i: (scripted[len(seen) - 1], [-0.5] * len(scripted[len(seen) - 1])) for i in contexts}

    rows = [{"prompt": "go"}]
    episodes = play_episodes(rows, ListPool(lambda: EchoEnv(turns=3)), choose, turn_format, Limits(5, 8, 200), [tokenizer.eos_token_id])
    prompt = turn_format.prompt_ids(rows[0], "")
    obs = [turn_format.observation_ids(text, ended) for text, ended in (("[ab]", True), ("[bb]", False))]
    assert seen[1][0] == prompt + scripted[0] + obs[0]
    assert seen[2][0] == prompt + scripted[0] + obs[0] + scripted[1] + obs[1]
    batch = episodes_batch(episodes, rows, tokenizer.pad_token_id)
    response = scripted[0] + obs[0] + scripted[1] + obs[1] + scripted[2]
    assert batch["response_ids"][0].tolist() == response
    assert batch["action_mask"][0].tolist() == [1] * 4 + [0] * len(obs[0]) + [1] * 2 + [0] * len(obs[1]) + [1] * 2
    starts = [0, 4 + len(obs[0]), 6 + len(obs[0]) + len(obs[1])]
    assert batch["action_starts"][0].tolist() == starts and batch["action_ends"][0].tolist() == [4, starts[1] + 2, starts[2] + 2]
    assert batch["turn_index"][0].tolist() == [0] * 4 + [-1] * len(obs[0]) + [1] * 2 + [-1] * len(obs[1]) + [2] * 2
    assert batch["turn_rewards"][0].tolist() == [0.25, 0.25, 1.0] and batch["scores"].tolist() == [1.5]
    assert batch["num_turns"].tolist() == [3] and batch["truncated"] == [False]
    assert batch["rollout_logprobs"][0][batch["action_mask"][0] == 1].eq(-0.5).all()
    assert batch["rollout_logprobs"][0][batch["action_mask"][0] == 0].eq(0).all()


def test_the_context_budget_and_the_turn_limit_end_episodes_as_truncated(tokenizer):
    turn_format = formats(tokenizer, chat=False)

    def choose(contexts, budget):
        return {i: (tokenizer("12345", add_special_tokens=False)["input_ids"][:budget], None) for i in contexts}

    rows = [{"prompt": "go"}, {"prompt": "a much longer prompt"}]
    limits = Limits(max_turns=4, max_tokens_per_turn=5, max_total_tokens=30)
    episodes = play_episodes(rows, ListPool(lambda: EchoEnv(turns=99)), choose, turn_format, limits, [tokenizer.eos_token_id])
    assert all(e.truncated and not e.done for e in episodes)
    assert all(e.length <= limits.max_total_tokens for e in episodes)
    assert len(episodes[1].action_spans) < len(episodes[0].action_spans) <= limits.max_turns
    turn_limited = play_episodes(rows[:1], ListPool(lambda: EchoEnv(turns=99)), choose, turn_format, Limits(2, 5, 500), [tokenizer.eos_token_id])
    assert len(turn_limited[0].action_spans) == 2 and turn_limited[0].truncated


def test_a_batched_rollout_equals_the_same_episodes_played_one_at_a_time(tokenizer, model_dir):
    model = sharpen_weights(load_causal_lm(model_dir, torch.device("cpu")))
    engine = HFRolloutEngine(model, tokenizer)
    turn_format = formats(tokenizer, chat=True)
    greedy = SamplingParams(max_new_tokens=6, greedy=True, logprobs=True)
    rows = [{"prompt": p, "first": f} for p, f in (("1+2", ""), ("abc", "x"), ("hello there", "yy"), ("7", ""))]
    limits = Limits(max_turns=3, max_tokens_per_turn=6, max_total_tokens=120)

    def play(some_rows):
        choose = policy_chooser(engine, greedy, tokenizer.pad_token_id, PhaseTimer())
        episodes = play_episodes(some_rows, ListPool(lambda: EchoEnv(turns=3)), choose, turn_format, limits, [tokenizer.eos_token_id])
        return episodes_batch(episodes, some_rows, tokenizer.pad_token_id)

    together = play(rows)
    for i, row in enumerate(rows):
        alone = play([row])
        width = int(alone["response_mask"].sum())
        assert together["response_ids"][i, :width].tolist() == alone["response_ids"][0, :width].tolist(), i
        assert int(together["response_mask"][i].sum()) == width
        for key in ("action_mask", "turn_index"):
            assert together[key][i, :width].tolist() == alone[key][0, :width].tolist(), (i, key)
        assert torch.allclose(together["rollout_logprobs"][i, :width], alone["rollout_logprobs"][0, :width], atol=1e-5)
        turns = int(alone["num_turns"][0])
        assert together["turn_rewards"][i, :turns].tolist() == alone["turn_rewards"][0, :turns].tolist()


def test_observation_tokens_get_no_gradient(tokenizer, model_dir):
    """The policy update on a multi-turn batch does not depend on anything stored at observation
    positions: advantages, old logprobs and reference logprobs there may be garbage."""
    from rlhf.engines.base import OptimConfig
    from rlhf.engines.torch_engine import TorchEngine
    from rlhf.workers.actor import ActorWorker, PolicyLossConfig

    model = sharpen_weights(load_causal_lm(model_dir, torch.device("cpu")))
    engine = HFRolloutEngine(model, tokenizer)
    turn_format = formats(tokenizer, chat=False)
    choose = policy_chooser(engine, SamplingParams(max_new_tokens=5, logprobs=True), tokenizer.pad_token_id, PhaseTimer())
    rows = [{"prompt": "ab"}, {"prompt": "xyz"}, {"prompt": "q"}]
    torch.manual_seed(0)
    episodes = play_episodes(rows, ListPool(lambda: EchoEnv(turns=3)), choose, turn_format, Limits(3, 5, 100), [tokenizer.eos_token_id])
    batch = episodes_batch(episodes, rows, tokenizer.pad_token_id)
    observation = (batch["response_mask"] == 1) & (batch["action_mask"] == 0)
    assert observation.any()
    mask = action_mask(batch).float()
    batch.set("advantages", torch.randn(mask.shape) * mask).set("old_logprobs", batch["rollout_logprobs"]).set("ref_logprobs", batch["rollout_logprobs"] - 0.1 * mask)
    garbage = copy.deepcopy(batch)
    noise = torch.randn(mask.shape) * 100
    for key in ("advantages", "old_logprobs", "ref_logprobs"):
        garbage.set(key, torch.where(observation, noise, garbage[key]))
    updated = []
    for data in (batch, garbage):
        actor = ActorWorker(TorchEngine(copy.deepcopy(model), OptimConfig(lr=1e-2, grad_clip=0.0)), PolicyLossConfig(kl_coef=0.1, entropy_coef=0.01), temperature=1.0, seed=0)
        metrics = actor.update_policy(data)
        updated.append((actor.engine.module, metrics))
    (first, m1), (second, m2) = updated
    for (name, p), q in zip(first.named_parameters(), second.parameters()):
        assert torch.equal(p, q), name
    assert m1["actor/pg_loss"] == m2["actor/pg_loss"]


def test_an_observation_longer_than_the_whole_budget_is_an_error_naming_episode_and_turn(tokenizer):
    from rlhf.envs.errors import EnvError

    class Verbose(EchoEnv):
        def step(self, action):
            return Step("x" * 200, reward=0.0, done=False)

    def choose(contexts, budget):
        return {i: ([tokenizer.eos_token_id], None) for i in contexts}

    with pytest.raises(EnvError, match=r"episode 0 at turn 0 has 200 tokens.*env.max_total_tokens \(60\)"):
        play_episodes([{"prompt": "a"}, {"prompt": "b"}], ListPool(Verbose), choose, formats(tokenizer, chat=False, template="{observation}"),
                      Limits(3, 4, 60), [tokenizer.eos_token_id])
