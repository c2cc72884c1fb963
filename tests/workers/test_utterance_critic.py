"""ArCHer's utterance critic and its replay buffer on hand-built multi-turn batches and a tiny model."""

import io

import pytest
import torch

from rlhf.config.errors import ConfigError
from rlhf.config.training_schema import ArcherConfig
from rlhf.data.batch import Batch
from rlhf.dispatch import ALL, RANK_ZERO, dispatch_table
from rlhf.models.load import load_causal_lm
from rlhf.models.tokenizer import build_char_tokenizer
from rlhf.workers.replay import ReplayBuffer, trajectories_from_batch
from rlhf.workers.utterance_critic import UtteranceCritic, build_utterance_critic, load_backbone
from tiny_helpers import sharpen_weights

TOKENIZER = build_char_tokenizer()


def ids(text: str) -> list[int]:
    return TOKENIZER(text, add_special_tokens=False)["input_ids"]


def episode_batch(episodes: list[dict]) -> Batch:
    """A multi-turn Batch as the rollout source makes it: one episode per row, left-padded
    prompts, right-padded responses of interleaved actions and observations.
    Each episode: prompt (str), turns [(action, observation)], rewards [float], truncated (bool)."""
    prompts = [ids(e["prompt"]) for e in episodes]
    responses, starts, ends = [], [], []
    for e in episodes:
        tokens, row_starts, row_ends = [], [], []
        for action, observation in e["turns"]:
            row_starts.append(len(tokens))
            tokens += ids(action)
            row_ends.append(len(tokens))
            tokens += ids(observation)
        responses.append(tokens)
        starts.append(row_starts)
        ends.append(row_ends)
    width_p, width_r, turns = max(map(len, prompts)), max(map(len, responses)), max(len(e["turns"]) for e in episodes)

    def pad(rows, width, left=False, fill=0):
        return torch.tensor([([fill] * (width - len(r)) + r) if left else (r + [fill] * (width - len(r))) for r in rows])

    turn_index = torch.full((len(episodes), width_r), -1)
    for row, (s, e) in enumerate(zip(starts, ends)):
        for k, (a, b) in enumerate(zip(s, e)):
            turn_index[row, a:b] = k
    rewards = pad([list(e["rewards"]) for e in episodes], turns, fill=0.0).float()
    return Batch({
        "prompt_ids": pad(prompts, width_p, left=True), "prompt_mask": pad([[1] * len(p) for p in prompts], width_p, left=True),
        "response_ids": pad(responses, width_r), "response_mask": pad([[1] * len(r) for r in responses], width_r),
        "action_mask": (turn_index >= 0).long(), "turn_index": turn_index,
        "action_starts": pad(starts, turns, fill=-1), "action_ends": pad(ends, turns, fill=-1),
        "turn_rewards": rewards, "turn_mask": pad([[1.0] * len(e["turns"]) for e in episodes], turns, fill=0.0).float(),
        "num_turns": torch.tensor([len(e["turns"]) for e in episodes]), "scores": rewards.sum(1),
    }, {"truncated": [e["truncated"] for e in episodes]})


HAND = [
    # ids: p r x y o z  -> actions at [2, 4) and [5, 6); cut by the budget
    {"prompt": "pr", "turns": [("xy", "o"), ("z", "")], "rewards": [0.0, 1.0], "truncated": True},
    # ids: l o n g p q a b -> one action at [5, 7), then the observation "b"; ended with done
    {"prompt": "longp", "turns": [("qa", "b")], "rewards": [0.5], "truncated": False},
]


def two_turn_game(first_actions: str) -> Batch:
    """Two turns; the only reward comes at the end, 1 when the FIRST action was 'g': the
    critic must carry the credit back one turn by bootstrapping."""
    return episode_batch([{"prompt": "q", "turns": [(a, "o"), ("c", "")], "rewards": [0.0, float(a == "g")], "truncated": False}
                          for a in first_actions])


@pytest.fixture(scope="module")
def policy(tiny_path):
    return sharpen_weights(load_causal_lm(tiny_path, torch.device("cpu")))


def critic(tiny_path, backbone="separate", policy_module=None, seed=0, **archer):
    config = ArcherConfig(backbone=backbone, **{"critic_lr": 1e-3, "tau": 0.1, **archer})
    own = load_backbone(tiny_path) if backbone == "separate" else None
    return build_utterance_critic(config, policy_module=policy_module, backbone=own, device="cpu", seed=seed, gamma=0.9)


def test_trajectories_follow_the_batch_contract():
    left, right = trajectories_from_batch(episode_batch(HAND), bootstrap_truncated=True)
    assert left.ids.tolist() == ids("prxyoz") and right.ids.tolist() == ids("longpqab")
    # V(s_k): last token before action k; Q(s_k, a_k): last token of action k;
    # V̄(s_{k+1}): last token before action k + 1, or the trajectory's last token after the last action
    assert left.value_positions().tolist() == [1, 4] and left.q_positions().tolist() == [3, 5]
    assert left.next_positions().tolist() == [4, 5] and left.terminal_turns().tolist() == [False, False]
    assert right.value_positions().tolist() == [4] and right.q_positions().tolist() == [6]
    assert right.next_positions().tolist() == [7] and right.terminal_turns().tolist() == [True]
    assert left.turn_rewards.tolist() == [0.0, 1.0]


def test_a_truncated_episode_is_over_unless_the_critic_bootstraps_it():
    """By default the budget is part of the task: the last turn of a cut episode is terminal,
    so a failed episode teaches its critic a 0 instead of V̄ of a state nobody plays on."""
    left, right = trajectories_from_batch(episode_batch(HAND))
    assert left.terminal_turns().tolist() == [False, True] and right.terminal_turns().tolist() == [True]
    assert ArcherConfig().bootstrap_truncated is False


def test_a_single_turn_batch_is_refused_with_the_missing_fields():
    batch = episode_batch(HAND)
    del batch.tensors["action_starts"]
    with pytest.raises(ValueError, match="action_starts"):
        trajectories_from_batch(batch)


def test_the_buffer_drops_its_oldest_trajectories_while_over_capacity_in_turns():
    buffer = ReplayBuffer(capacity=5, seed=0)
    games = [trajectories_from_batch(two_turn_game(a))[0] for a in "gbg"]
    buffer.push(games[:2])
    assert buffer.num_turns == 4 and len(buffer) == 2
    buffer.push(games[2:])
    assert buffer.num_turns == 4 and buffer.trajectories == games[1:]
    tiny = ReplayBuffer(capacity=1, seed=0)
    tiny.push(games)
    assert tiny.trajectories == games[2:]  # the newest stays even when it alone is over capacity


def test_samples_are_turns_of_stored_trajectories_grouped_by_trajectory():
    buffer = ReplayBuffer(capacity=100, seed=0)
    buffer.push(trajectories_from_batch(episode_batch(HAND + HAND)))
    sample = buffer.sample(200)
    drawn = {(id(sample.trajectories[r]), int(t)) for r, t in zip(sample.rows, sample.turns)}
    every_turn = {(id(tr), k) for tr in buffer.trajectories for k in range(tr.num_turns)}
    assert drawn == every_turn
    assert sample.rows.max() == len(sample.trajectories) - 1


def test_samples_are_the_fewest_whole_trajectories_and_every_turn_is_equally_likely():
    buffer = ReplayBuffer(capacity=100, seed=0)
    buffer.push(trajectories_from_batch(episode_batch(HAND)))  # one trajectory of 2 turns, one of 1
    for wanted, possible_sizes in ((1, {1, 2}), (2, {2, 3}), (3, {3}), (50, {3})):
        sample = buffer.sample(wanted)
        assert len(sample.turns) in possible_sizes and len(sample.turns) >= min(wanted, 3)
        # dropping the last trajectory drawn would leave too few turns: the fewest were drawn
        assert len(sample.turns) - sample.trajectories[-1].num_turns < wanted
    seen = {}
    for _ in range(3000):
        sample = buffer.sample(1)
        for r, t in zip(sample.rows.tolist(), sample.turns.tolist()):
            key = (id(sample.trajectories[r]), t)
            seen[key] = seen.get(key, 0) + 1
    assert len(seen) == 3 and all(abs(count / 3000 - 0.5) < 0.04 for count in seen.values()), seen


def test_the_buffer_resumes_exactly_from_its_state_dict():
    straight = ReplayBuffer(capacity=6, seed=3)
    straight.push(trajectories_from_batch(two_turn_game("gbgb")))
    straight.sample(5)
    saved = io.BytesIO()
    torch.save(straight.state_dict(), saved)
    resumed = ReplayBuffer(capacity=99, seed=42)
    resumed.load_state_dict(torch.load(io.BytesIO(saved.getvalue()), weights_only=True))
    assert resumed.capacity == 6 and resumed.num_turns == straight.num_turns
    for _ in range(3):
        a, b = straight.sample(7), resumed.sample(7)
        assert torch.equal(a.rows, b.rows) and torch.equal(a.turns, b.turns)
        assert [t.ids.tolist() for t in a.trajectories] == [t.ids.tolist() for t in b.trajectories]


def test_advantages_read_q_and_v_at_the_contract_positions(tiny_path):
    model = critic(tiny_path)
    with torch.no_grad():  # non-zero heads, so that a wrong position changes the answer
        for mlp in (model.heads.q1, model.heads.q2, model.heads.v):
            mlp[2].weight.normal_(generator=torch.Generator().manual_seed(1))
    advantages = model.turn_advantages(episode_batch(HAND))
    expected = torch.zeros(2, 2)
    for row, (text, q_at, v_at) in enumerate([("prxyoz", [3, 5], [1, 4]), ("longpqab", [6], [4])]):
        with torch.no_grad():
            hidden = model.backbone(input_ids=torch.tensor([ids(text)])).last_hidden_state[0]
            q = torch.minimum(model.heads.q1(hidden[q_at]), model.heads.q2(hidden[q_at])).squeeze(-1)
            expected[row, : len(q_at)] = q - model.heads.v(hidden[v_at]).squeeze(-1)
    torch.testing.assert_close(advantages, expected)
    assert advantages[1, 1] == 0  # no second turn in that row


@pytest.mark.parametrize("backbone", ["separate", "policy"])
def test_td_learning_credits_the_first_action_of_a_delayed_reward(tiny_path, policy, backbone):
    batch = two_turn_game("gbgbbg")
    model = critic(tiny_path, backbone, policy_module=policy)
    model.observe(batch)
    for _ in range(20):
        metrics = model.update(10, batch_size=16)
    advantages = model.turn_advantages(batch)
    good, bad = advantages[[0, 2, 5], 0], advantages[[1, 3, 4], 0]
    assert (good > 0.15).all() and (bad < -0.15).all(), advantages
    # Q(s0, g) → γ · 1 = 0.9, Q(s0, b) → 0: the gap bootstrapped back from the second turn
    assert (good - bad.mean()).min() > 0.5, advantages
    assert advantages[:, 1].abs().max() < 0.2  # one possible action at the second turn: no advantage
    assert metrics["archer/td_error_abs"] < 0.1 and metrics["archer/buffer_turns"] == 12.0


def test_the_policy_backbone_leaves_the_policy_bit_identical(tiny_path, policy):
    before = {name: param.detach().clone() for name, param in policy.named_parameters()}
    flags = {name: param.requires_grad for name, param in policy.named_parameters()}
    policy.train()
    model = critic(tiny_path, "policy", policy_module=policy)
    model.observe(two_turn_game("gb"))
    model.update(3, batch_size=4)
    model.turn_advantages(two_turn_game("gb"))
    assert policy.training
    for name, param in policy.named_parameters():
        assert torch.equal(param, before[name]) and param.grad is None and param.requires_grad == flags[name], name
    assert not any(p is q for p in model.optimizer.param_groups[0]["params"] for q in policy.parameters())


@pytest.mark.parametrize("backbone", ["separate", "policy"])
def test_a_resumed_critic_gives_the_same_advantages_and_updates(tiny_path, policy, backbone):
    batch = two_turn_game("gbbg")
    straight = critic(tiny_path, backbone, policy_module=policy)
    straight.observe(batch)
    straight.update(3, batch_size=8)
    saved = io.BytesIO()
    torch.save(straight.state_dict(), saved)
    resumed = critic(tiny_path, backbone, policy_module=policy, seed=7)
    resumed.load_state_dict(torch.load(io.BytesIO(saved.getvalue()), weights_only=True))
    assert torch.equal(straight.turn_advantages(batch), resumed.turn_advantages(batch))
    for model in (straight, resumed):
        model.observe(two_turn_game("gg"))
    assert straight.update(3, batch_size=8) == resumed.update(3, batch_size=8)
    assert torch.equal(straight.turn_advantages(batch), resumed.turn_advantages(batch))
    for a, b in zip(straight.state_dict()["target_heads"].values(), resumed.state_dict()["target_heads"].values()):
        assert torch.equal(a, b)


def test_token_advantages_spread_over_each_turns_action_tokens(tiny_path):
    batch = episode_batch(HAND)
    model = critic(tiny_path)
    model.observe(batch)
    model.update(5, batch_size=4)
    turn_values = model.turn_advantages(batch)
    index = batch["turn_index"]
    # what rlhf.algorithms.turns.spread_over_tokens does: turn k's value on action k's tokens
    tokens = torch.where(index >= 0, turn_values.gather(1, index.clamp(min=0)), torch.zeros(()))
    # row 0's response is x y o z: action 0 on columns 0-1, the observation on 2, action 1 on 3
    assert torch.equal(tokens[0], torch.stack([turn_values[0, 0], turn_values[0, 0], torch.tensor(0.0), turn_values[0, 1]]))
    assert turn_values[0].abs().min() > 0


def test_build_errors_name_the_recipe_key(tiny_path, policy):
    with pytest.raises(ConfigError, match="algorithm.archer.backbone"):
        build_utterance_critic(ArcherConfig(backbone="shared"), device="cpu", seed=0, gamma=1.0)
    with pytest.raises(ValueError, match="backbone module"):
        build_utterance_critic(ArcherConfig(backbone="separate"), device="cpu", seed=0, gamma=1.0)
    with pytest.raises(ConfigError, match="critic.path: cannot load"):
        load_backbone(str(tiny_path) + "-missing")
    with pytest.raises(ValueError, match="policy module"):
        build_utterance_critic(ArcherConfig(backbone="policy"), device="cpu", seed=0, gamma=1.0)
    separate_state = critic(tiny_path).state_dict()
    with pytest.raises(ValueError, match="'separate' backbone"):
        critic(tiny_path, "policy", policy_module=policy).load_state_dict(separate_state)


def test_every_replica_runs_the_critic_and_rank_zero_saves_it():
    table = dispatch_table(UtteranceCritic)
    assert {name: spec.mode for name, spec in table.items()} == {
        "observe": ALL, "update": ALL, "turn_values": ALL, "turn_advantages": ALL, "load_state_dict": ALL,
        "state_dict": RANK_ZERO}


def test_micro_batches_weigh_their_turns_as_one_batch_would(tiny_path):
    batch = two_turn_game("gbgbbg")
    whole, per_trajectory = (build_utterance_critic(ArcherConfig(critic_lr=1e-3), backbone=load_backbone(tiny_path), device="cpu", seed=0,
                                                    gamma=0.9, micro_batch_size=size) for size in (8, 1))
    for model in (whole, per_trajectory):
        model.observe(batch)
    metrics = [model.update(4, batch_size=16) for model in (whole, per_trajectory)]
    assert metrics[0].keys() == metrics[1].keys()
    for key in metrics[0]:
        assert metrics[0][key] == pytest.approx(metrics[1][key], rel=1e-4, abs=1e-6), key
    torch.testing.assert_close(whole.turn_advantages(batch), per_trajectory.turn_advantages(batch), rtol=1e-4, atol=1e-5)


def test_a_separate_backbone_copies_the_policy_as_it_is_now_not_its_checkpoint(tiny_path, policy):
    """After an in-process SFT warm start the policy's weights exist only in memory: the
    critic's backbone must start from them (as the PPO critic's does), not from the
    checkpoint the run began with."""
    from rlhf.config.schema import RecipeConfig
    from rlhf.workers.build import separate_archer_backbone

    config = RecipeConfig()
    backbone = separate_archer_backbone(config, policy)  # `policy` is the checkpoint, sharpened in memory
    checkpoint = load_backbone(tiny_path)
    for (name, copied), original, saved in zip(backbone.named_parameters(), policy.base_model.parameters(), checkpoint.parameters()):
        assert torch.equal(copied, original) and copied.data_ptr() != original.data_ptr(), name
    assert any(not torch.equal(copied, saved) for copied, saved in zip(backbone.parameters(), checkpoint.parameters()))
    config.critic.path = tiny_path
    assert all(torch.equal(a, b) for a, b in zip(separate_archer_backbone(config, policy).parameters(), checkpoint.parameters()))
    config.algorithm.archer.backbone = "policy"
    assert separate_archer_backbone(config, policy) is None
