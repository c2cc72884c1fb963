"""Train an ORM or a PRM with the Hugging Face / TRL trainers (no hand-written loop).

* :func:`train_orm_pairs`: Bradley–Terry on preference pairs with TRL's ``RewardTrainer``:
  loss ``-log sigmoid(r(x, y_chosen) - r(x, y_rejected))`` (Ouyang et al. 2022, "Training
  language models to follow instructions with human feedback", Eq. 1; Bradley & Terry 1952).
* :func:`train_orm_labels`: binary cross-entropy of ``sigmoid(r(x, y))`` against a 0/1
  correctness label, the outcome-supervised verifier of Cobbe et al. 2021 ("Training Verifiers
  to Solve Math Word Problems"; they train a token-level head and use the last token, we train
  only the last token's score). TRL has no trainer for this, so it is ``transformers.Trainer``
  with this loss as its ``compute_loss_func``.
* :func:`train_prm`: cross-entropy of a two-class token head at each step's separator (good /
  bad), as in Math-Shepherd (Wang et al. 2024) with hard labels and Qwen2.5-Math-PRM's
  layout. TRL 1.16 ships no PRM trainer, so it is ``transformers.Trainer`` on a
  token-classification model, whose own loss already skips the ``-100`` labels.

Every trainer returns the trained model (also updated in place); nothing is checkpointed on
the way (``save_strategy="no"``): the caller saves the final model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from datasets import Dataset
from transformers import (
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)

from reward_models.config import RMTrainConfig
from reward_models.data import encode_orm, encode_prm
from rlhf.config.errors import ConfigError


def _arguments(cls: type, train: RMTrainConfig, output_dir: Path, **extra) -> TrainingArguments:
    """Trainer arguments of ``cls`` (``TrainingArguments`` or TRL's ``RewardConfig``) from a recipe."""
    return cls(
        output_dir=str(output_dir), learning_rate=train.lr, num_train_epochs=train.epochs,
        per_device_train_batch_size=train.batch_size, weight_decay=train.weight_decay, seed=train.seed, data_seed=train.seed,
        logging_steps=train.log_every, save_strategy="no", report_to="none", disable_tqdm=True,
        dataloader_pin_memory=False, bf16=train.bf16, **_renamed_arguments(cls, train), **extra,
    )


def _renamed_arguments(cls: type, train: RMTrainConfig) -> dict:
    """Warmup and activation checkpointing under this transformers version's argument names
    (v5 reads a float ``warmup_steps`` < 1 as a ratio and renamed gradient checkpointing).
    Checkpointing is passed even when off: TRL's configs turn it on by default, which only
    slows a small model down."""
    names = {f.name for f in dataclasses.fields(cls)}
    warmup = "warmup_ratio" if "warmup_ratio" in names else "warmup_steps"
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"
    return {warmup: train.warmup_ratio, checkpointing: train.activation_checkpointing}


def _fitting(rows: list[dict], lengths: list[int], train: RMTrainConfig) -> list[dict]:
    """The rows whose tokenized length is at most ``train.max_length`` (longer ones are dropped)."""
    kept = [row for row, length in zip(rows, lengths) if length <= train.max_length]
    if not kept:
        raise ConfigError(f"train.max_length: all {len(rows)} training examples are longer than "
                          f"{train.max_length} tokens")
    return kept


def train_orm_pairs(model, tokenizer, pairs: list[dict], train: RMTrainConfig, output_dir: Path):
    """Bradley–Terry ORM from ``{prompt, chosen, rejected}`` pairs with TRL's ``RewardTrainer``.

    The pairs are tokenized here (``encode_orm``, the one ORM input convention) and handed to
    TRL as ``chosen_ids``/``rejected_ids``, which it uses as they are.
    """
    from trl import RewardConfig, RewardTrainer

    rows = [{"chosen_ids": encode_orm(tokenizer, p["prompt"], p["chosen"]),
             "rejected_ids": encode_orm(tokenizer, p["prompt"], p["rejected"])} for p in pairs]
    rows = _fitting(rows, [max(len(r["chosen_ids"]), len(r["rejected_ids"])) for r in rows], train)
    args = _arguments(RewardConfig, train, output_dir, max_length=train.max_length,
                      pad_to_multiple_of=None)
    trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                            processing_class=tokenizer)
    trainer.train()
    return trainer.model


def binary_cross_entropy_loss(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """Mean BCE-with-logits of the scalar head ``outputs.logits [b, 1]`` against 0/1 ``labels [b]``
    (the ``compute_loss_func`` hook of ``Trainer``)."""
    return torch.nn.functional.binary_cross_entropy_with_logits(outputs.logits[:, 0].float(), labels.float())


def train_orm_labels(model, tokenizer, examples: list[dict], train: RMTrainConfig, output_dir: Path):
    """ORM from ``{prompt, response, label}`` examples by binary cross-entropy (``Trainer``)."""
    rows = [{"input_ids": encode_orm(tokenizer, e["prompt"], e["response"]), "labels": e["label"]}
            for e in examples]
    rows = _fitting(rows, [len(r["input_ids"]) for r in rows], train)
    trainer = Trainer(
        model=model, args=_arguments(TrainingArguments, train, output_dir),
        train_dataset=Dataset.from_list(rows), data_collator=DataCollatorWithPadding(tokenizer),
        compute_loss_func=binary_cross_entropy_loss,
    )
    trainer.train()
    return trainer.model


def train_prm(model, tokenizer, solutions: list[dict], separator: str, train: RMTrainConfig,
              output_dir: Path):
    """Two-class PRM from ``{prompt, steps, labels}`` solutions (``Trainer``, token classification)."""
    rows = []
    for solution in solutions:
        input_ids, labels = encode_prm(tokenizer, solution["prompt"], solution["steps"], separator,
                                       solution["labels"])
        rows.append({"input_ids": input_ids, "labels": labels})
    rows = _fitting(rows, [len(r["input_ids"]) for r in rows], train)
    trainer = Trainer(
        model=model, args=_arguments(TrainingArguments, train, output_dir),
        train_dataset=Dataset.from_list(rows), data_collator=DataCollatorForTokenClassification(tokenizer),
    )
    trainer.train()
    return trainer.model
