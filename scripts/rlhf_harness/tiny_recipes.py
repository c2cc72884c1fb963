"""The shipped recipes shrunk to a CPU: the hub model, datasets and reward models swapped for
tiny local ones, everything else (reward sources, refinement, algorithm, backend) the recipe's
own. Used by the recipe tests (tests/controller/test_user_recipes.py,
tests/distributed/test_cluster_recipe.py, tests/reliability/test_clean_exit.py) and by
`scripts/recipe_memory.py` and `scripts/soak.py --tiny`.

`tiny_overrides(recipe, work_dir)` writes the data (and the tiny reward models) a recipe needs
under `work_dir` and returns the `key=value` overrides of its tiny variant; the tiny policy is
built in the run directory, `trainer.output_dir` is `<work_dir>/run`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from rlhf.data.arithmetic import arithmetic_rows

SMALL = [
    "model.source=tiny", "model.dtype=float32", "data.system_prompt=null", "data.max_prompt_tokens=64",
    "data.train_batch_size=4", "data.eval_batch_size=8", "data.eval.size=8", "rollout.n=4", "rollout.max_new_tokens=16",
    "rollout.micro_batch_size=0", "actor.mini_batch_size=8", "actor.micro_batch_size=4", "actor.warmup_steps=0",
    "critic.mini_batch_size=8", "critic.micro_batch_size=4", "critic.warmup_rl_steps=0", "critic.warmup_steps=0",
    "trainer.total_steps=2", "trainer.eval_every=0",
]
"""A one-GPU recipe at tiny sizes: 4 prompts × 4 samples of up to 16 tokens, 2 steps."""

CLUSTER_LAYOUT = [
    "model.source=tiny", "model.dtype=float32", "data.system_prompt=null", "data.max_prompt_tokens=64", "data.train_batch_size=4",
    "data.eval_batch_size=8", "data.eval.size=8", "rollout.n=4", "rollout.max_new_tokens=16", "rollout.vllm.max_model_len=96",
    "rollout.vllm.gpu_memory_utilization=0.5", "actor.mini_batch_size=8", "actor.micro_batch_size=4", "actor.warmup_steps=0",
    "resources.pools.gpus.devices_per_node=2", "resources.pools.gpus.cpus_per_worker=1", "trainer.device=cpu",
    "trainer.total_steps=2", "trainer.eval_every=0", "sync.check_every=1",
]
"""The 8-GPU recipe's layout on 2 CPU workers: Ray, ZeRO-3, tiny sizes, 2 steps."""


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def sums() -> list[dict]:
    """64 training sums of 2-digit addition: the questions of every tiny variant."""
    return arithmetic_rows("train", digits=2, test_fraction=0.1, seed=0)[:64]


def gsm8k_rows(sums: list[dict]) -> list[dict]:
    """GSM8K's own format: `question`, and `answer` ending in '#### N'."""
    return [{"question": f"What is {r['prompt'][:-1]}?", "answer": f"{r['prompt']}{r['ground_truth']}\n#### {r['ground_truth']}"} for r in sums]


def math_rows(sums: list[dict]) -> tuple[list[dict], list[dict]]:
    """MATH-lighteval's format (problem, solution with \\boxed{}, level, type) for training and
    MATH-500's (problem, answer, subject) for evaluation."""
    train = [{"problem": f"Compute {r['prompt'][:-1]}.", "solution": f"So \\boxed{{{r['ground_truth']}}}.", "level": "Level 1", "type": "Prealgebra"} for r in sums]
    test = [{"problem": f"Compute {r['prompt'][:-1]}.", "answer": r["ground_truth"], "subject": ("Algebra", "Prealgebra")[i % 2]} for i, r in enumerate(sums)]
    return train, test


def single_process(work_dir: Path, train: str, test: str) -> list[str]:
    """A one-GPU recipe on local data in one CPU process with the HF rollout engine."""
    return [
        *SMALL, "model.path=", f"data.train.path={train}", f"data.eval.path={test}", "data.train.name=null",
        "data.eval.name=null", "data.eval.split=train", "rollout.engine=hf", "trainer.device=auto", "trainer.save_every=0",
        "train.gradient_checkpointing=false", f"trainer.output_dir={work_dir / 'run'}",
    ]


def vllm_available() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken install counts as absent
        return False
    return True


def _quickstart(work_dir: Path) -> list[str]:
    # already tiny: only a short SFT warm start, so that its phase is measured too
    return ["sft.max_steps=20", "trainer.total_steps=2", f"trainer.output_dir={work_dir / 'run'}"]


def _gsm8k_grpo_orm(work_dir: Path) -> list[str]:
    from rlhf.models.tiny_reward import build_tiny_reward_model

    data = write_jsonl(work_dir / "gsm8k.jsonl", gsm8k_rows(sums()))
    orm = build_tiny_reward_model(work_dir / "orm", "classifier", seed=0)
    return [
        *SMALL, "model.path=", f"data.train.path={data}", f"data.eval.path={data}", "data.train.name=null", "data.eval.name=null",
        "data.eval.split=train", f"reward.sources.1.kwargs={{path: {orm}, kind: classifier, chat_template: true, batch_size: 4}}",
        "reward.sources.0.kwargs={num_workers: 1}", f"trainer.output_dir={work_dir / 'run'}",
    ]


def _math_ppo_prm_clip_delta(work_dir: Path) -> list[str]:
    from rlhf.models.tiny_reward import build_tiny_reward_model

    rows = [{"problem": f"Compute {r['prompt'][:-1]}.", "solution": f"Add: {r['prompt']}{r['ground_truth']}.\n\nSo \\boxed{{{r['ground_truth']}}}."} for r in sums()]
    data = write_jsonl(work_dir / "math.jsonl", rows)
    prm = build_tiny_reward_model(work_dir / "prm", "two_class", seed=0)
    return [
        *SMALL, "model.path=", f"data.train.path={data}", f"data.eval.path={data}", "data.eval.split=train",
        f"reward.sources.1.kwargs={{path: {prm}, kind: two_class, separator: '#', chat_template: true, batch_size: 4}}",
        "reward.sources.0.kwargs={num_workers: 1, timeout_s: 5.0}", f"trainer.output_dir={work_dir / 'run'}",
    ]


def _gsm8k_grpo_qwen2_5_0_5b(work_dir: Path) -> list[str]:
    data = write_jsonl(work_dir / "gsm8k.jsonl", gsm8k_rows(sums()))
    return [*single_process(work_dir, data, data), "reward.sources.0.kwargs={num_workers: 1}", "sync.check_every=1"]


def _math_files(work_dir: Path) -> tuple[str, str]:
    train, test = math_rows(sums())
    return write_jsonl(work_dir / "train.jsonl", train), write_jsonl(work_dir / "test.jsonl", test)


def _math_ppo_qwen2_5_math_1_5b(work_dir: Path) -> list[str]:
    return [*single_process(work_dir, *_math_files(work_dir)), "reward.sources.0.kwargs={num_workers: 1, timeout_s: 5.0}"]


def _math_rloo_t1(work_dir: Path) -> list[str]:
    return [*single_process(work_dir, *_math_files(work_dir)), "reward.sources.0.kwargs={num_workers: 1, timeout_s: 5.0}", "ref.anchor.every=1"]


def _math_dapo(work_dir: Path) -> list[str]:
    return [
        *single_process(work_dir, *_math_files(work_dir)), "reward.sources.0.kwargs={num_workers: 1, timeout_s: 5.0}",
        "reward.sources.1.kwargs={max_length: 16, buffer_length: 4, penalty: 1.0}", "distributed.backend=local", "train.zero_stage=2", "sync.bucket_mb=1",
    ]


def _gsm8k_grpo_qwen2_5_7b(work_dir: Path) -> list[str]:
    data = write_jsonl(work_dir / "gsm8k.jsonl", gsm8k_rows(sums()))
    engine = "vllm" if vllm_available() else "hf"
    return [
        *CLUSTER_LAYOUT, "model.path=", f"data.train.path={data}", f"data.eval.path={data}", "data.train.name=null",
        "data.eval.name=null", "data.eval.split=train", f"rollout.engine={engine}", "reward.sources.0.kwargs={num_workers: 1}",
        f"trainer.output_dir={work_dir / 'run'}",
    ]


MULTI_TURN_SHORT = ["sft.stop_at_accuracy=0.02", "sft.eval_every=10", "sft.max_steps=60", "data.eval.size=8", "data.train_batch_size=4", "rollout.n=4",
                    "actor.mini_batch_size=16", "actor.micro_batch_size=16", "trainer.total_steps=2", "trainer.eval_every=2"]
"""A tiny multi-turn recipe cut to 2 steps of 4 prompts × 4 episodes, after at most 60 SFT steps."""

MULTI_TURN_SMALL = ["env.max_tokens_per_turn=16", "env.max_total_tokens=128", "env.timeout_s=30", "rollout.vllm.max_model_len=128"]
"""A GPU multi-turn recipe's episodes at the tiny model's context (128 positions)."""


def _tiny_env_recipe(work_dir: Path) -> list[str]:
    return [*MULTI_TURN_SHORT, f"trainer.output_dir={work_dir / 'run'}"]


def _gsm8k_python_tool(work_dir: Path) -> list[str]:
    data = write_jsonl(work_dir / "gsm8k.jsonl", gsm8k_rows(sums()))
    return [*single_process(work_dir, data, data), *MULTI_TURN_SMALL, "reward.sources.0.kwargs={num_workers: 1}", "sync.check_every=1"]


def _math_python_tool(work_dir: Path) -> list[str]:
    engine = "vllm" if vllm_available() else "hf"
    train, test = _math_files(work_dir)
    return [
        *CLUSTER_LAYOUT, *MULTI_TURN_SMALL, "model.path=", f"data.train.path={train}", f"data.eval.path={test}", "data.eval.split=train",
        f"rollout.engine={engine}", "reward.sources.0.kwargs={num_workers: 1, timeout_s: 5.0}", f"trainer.output_dir={work_dir / 'run'}",
    ]


def _twenty_questions_qwen(work_dir: Path) -> list[str]:
    return [
        *SMALL, *MULTI_TURN_SMALL, "model.path=", "rollout.engine=hf", "trainer.device=auto", "trainer.save_every=0", "train.gradient_checkpointing=false",
        "algorithm.archer.critic_batch_size=16", "algorithm.archer.warmup_steps=1", f"trainer.output_dir={work_dir / 'run'}",
    ]


TINY_VARIANTS: dict[str, Callable[[Path], list[str]]] = {
    "quickstart": _quickstart,
    "gsm8k_grpo_orm": _gsm8k_grpo_orm,
    "gsm8k_grpo_qwen2.5-0.5b": _gsm8k_grpo_qwen2_5_0_5b,
    "gsm8k_grpo_qwen2.5-7b": _gsm8k_grpo_qwen2_5_7b,
    "math_dapo": _math_dapo,
    "math_ppo_prm_clip_delta": _math_ppo_prm_clip_delta,
    "math_ppo_qwen2.5-math-1.5b": _math_ppo_qwen2_5_math_1_5b,
    "math_rloo_t1": _math_rloo_t1,
    "multi_turn/guess_number": _tiny_env_recipe,
    "multi_turn/twenty_questions": _tiny_env_recipe,
    "multi_turn/calculator_tool": _tiny_env_recipe,
    "multi_turn/gsm8k_python_tool_qwen2.5-1.5b": _gsm8k_python_tool,
    "multi_turn/math_python_tool_qwen2.5-7b": _math_python_tool,
    "multi_turn/twenty_questions_qwen2.5-1.5b": _twenty_questions_qwen,
}
"""Every shipped RL recipe (top level and multi_turn/) -> the builder of its tiny variant's overrides."""


def tiny_overrides(recipe: str, work_dir: Path) -> list[str]:
    """Write what `recipe`'s tiny variant needs under `work_dir`; its overrides."""
    if recipe not in TINY_VARIANTS:
        raise ValueError(f"no tiny variant of recipe {recipe!r}; recipes with one: {', '.join(TINY_VARIANTS)}")
    work_dir.mkdir(parents=True, exist_ok=True)
    return TINY_VARIANTS[recipe](work_dir)
