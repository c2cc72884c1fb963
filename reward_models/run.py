"""`rlhf rm RECIPE`: train a reward model from a recipe, evaluate it, save it.

1. Load the training and held-out examples (synthetic arithmetic or jsonl files).
2. Build (tiny) or load (pretrained) the network with the head of the recipe's kind.
3. Train it with the trainer of its kind (:mod:`reward_models.train`).
4. Evaluate on the held-out examples (:mod:`reward_models.evaluate`).
5. Save ``<output_dir>/model``, ``<output_dir>/eval.json`` and the resolved recipe
   ``<output_dir>/config.yaml``. A directory that already holds a trained model is refused
   before anything runs (a config error).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from reward_models.config import RMRecipeConfig
from rlhf.config.errors import ConfigError


def run_rm_recipe(config: RMRecipeConfig) -> dict:
    """Steps 1-5 of the module docstring; returns what ``eval.json`` holds."""
    from reward_models.checkpoint import load_model_and_tokenizer, save_reward_model
    from reward_models.data import load_examples
    from reward_models.evaluate import evaluate
    from rlhf.config.loader import save_resolved

    output_dir = Path(config.output_dir)
    if (output_dir / "model").exists():
        raise ConfigError(f"output_dir: {output_dir} already holds a trained model (model/); "
                          "choose another output_dir or remove it")
    # 1. data
    train_examples, held_out = load_examples(config.kind, config.data)
    save_resolved(config, output_dir / "config.yaml")
    # 2. network
    model, tokenizer = load_model_and_tokenizer(config)
    # 3. training
    started = time.perf_counter()
    model = _train(config, model, tokenizer, train_examples)
    train_seconds = time.perf_counter() - started
    # 4. held-out evaluation
    metrics = evaluate(config.kind, model, tokenizer, held_out, config.steps.separator)
    result = {"kind": config.kind, **{k: round(v, 4) for k, v in metrics.items()},
              "train_examples": len(train_examples), "train_seconds": round(train_seconds, 2)}
    # 5. outputs
    save_reward_model(model, tokenizer, config, output_dir / "model")
    (output_dir / "eval.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{config.kind}: held-out accuracy {result['accuracy']:.3f} (chance {result['chance']:.3f}, "
          f"{result['num_examples']} examples), trained in {train_seconds:.1f} s; "
          f"model saved to {output_dir / 'model'}")
    return result


def _train(config: RMRecipeConfig, model, tokenizer, examples: list[dict]):
    """Step 3: the trainer of ``config.kind``; its scratch directory is temporary (it saves no
    checkpoints, see :mod:`reward_models.train`)."""
    from reward_models import train as trainers

    with tempfile.TemporaryDirectory(prefix="rlhf-rm-") as scratch:
        if config.kind == "orm_pairs":
            return trainers.train_orm_pairs(model, tokenizer, examples, config.train, Path(scratch))
        if config.kind == "orm_labels":
            return trainers.train_orm_labels(model, tokenizer, examples, config.train, Path(scratch))
        return trainers.train_prm(model, tokenizer, examples, config.steps.separator, config.train, Path(scratch))
