"""Held-out accuracy of a trained reward model, one metric per kind.

    kind         metric                                                   chance
    orm_pairs    pairwise accuracy: score(chosen) > score(rejected)       0.5
    orm_labels   accuracy of sigmoid(score) >= 0.5 against the 0/1 label   majority-label share
    prm          step accuracy of P(good) >= 0.5 at each separator         majority-label share
                 (also: solution accuracy, every step good <-> all labels good)

Notation: N examples, L the longest tokenized example of a batch, S the steps of a solution.
"""

from __future__ import annotations

import torch

from reward_models.data import IGNORE_INDEX, encode_orm, encode_prm


def _pad(sequences: list[list[int]], value: int) -> torch.Tensor:
    """Right-padded ``[len(sequences), L]`` tensor."""
    width = max(len(seq) for seq in sequences)
    return torch.tensor([seq + [value] * (width - len(seq)) for seq in sequences])


@torch.no_grad()
def sequence_scores(model, tokenizer, sequences: list[list[int]], batch_size: int = 256) -> torch.Tensor:
    """ORM scores ``[N]``: the scalar head at each sequence's last token (float32, on CPU)."""
    model.eval()
    device = next(model.parameters()).device
    scores = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start:start + batch_size]
        input_ids = _pad(chunk, tokenizer.pad_token_id).to(device)
        attention_mask = _pad([[1] * len(seq) for seq in chunk], 0).to(device)
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # [n, 1]
        scores.append(logits[:, 0].float().cpu())
    return torch.cat(scores)


@torch.no_grad()
def step_probabilities(model, encoded: list[tuple[list[int], list[int]]],
                       pad_id: int, batch_size: int = 256) -> list[torch.Tensor]:
    """PRM P(good step) per solution (a ``[S]`` tensor each) from ``encode_prm`` outputs: the
    softmax index 1 at the positions whose label is not ``IGNORE_INDEX``."""
    model.eval()
    device = next(model.parameters()).device
    probabilities = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        input_ids = _pad([ids for ids, _ in chunk], pad_id).to(device)
        attention_mask = _pad([[1] * len(ids) for ids, _ in chunk], 0).to(device)
        labels = _pad([labels for _, labels in chunk], IGNORE_INDEX)  # [n, L]
        good = model(input_ids=input_ids, attention_mask=attention_mask).logits.float().softmax(-1)[..., 1]
        good = good.cpu()
        probabilities.extend(good[row][labels[row] != IGNORE_INDEX] for row in range(len(chunk)))
    return probabilities


def pairwise_accuracy(model, tokenizer, pairs: list[dict]) -> dict[str, float]:
    """Share of held-out pairs whose chosen response scores higher (ties count as wrong)."""
    chosen = sequence_scores(model, tokenizer, [encode_orm(tokenizer, p["prompt"], p["chosen"]) for p in pairs])
    rejected = sequence_scores(model, tokenizer, [encode_orm(tokenizer, p["prompt"], p["rejected"]) for p in pairs])
    return {"accuracy": (chosen > rejected).float().mean().item(), "chance": 0.5,
            "mean_margin": (chosen - rejected).mean().item(), "num_examples": len(pairs)}


def label_accuracy(model, tokenizer, examples: list[dict]) -> dict[str, float]:
    """Accuracy of ``sigmoid(score) >= 0.5`` against the 0/1 labels."""
    scores = sequence_scores(model, tokenizer, [encode_orm(tokenizer, e["prompt"], e["response"]) for e in examples])
    labels = torch.tensor([e["label"] for e in examples], dtype=torch.bool)
    share_good = labels.float().mean().item()
    return {"accuracy": ((scores >= 0) == labels).float().mean().item(),
            "chance": max(share_good, 1 - share_good), "num_examples": len(examples)}


def step_accuracy(model, tokenizer, examples: list[dict], separator: str) -> dict[str, float]:
    """Accuracy of ``P(good) >= 0.5`` per step, and per solution (all steps good or not)."""
    encoded = [encode_prm(tokenizer, e["prompt"], e["steps"], separator, e["labels"]) for e in examples]
    probabilities = step_probabilities(model, encoded, tokenizer.pad_token_id)
    predicted = torch.cat(probabilities) >= 0.5
    labels = torch.tensor([label for e in examples for label in e["labels"]], dtype=torch.bool)
    share_good = labels.float().mean().item()
    solution_ok = [bool((p >= 0.5).all()) == all(e["labels"]) for p, e in zip(probabilities, examples)]
    all_good = sum(all(e["labels"]) for e in examples) / len(examples)
    return {"accuracy": (predicted == labels).float().mean().item(),
            "chance": max(share_good, 1 - share_good),
            "solution_accuracy": sum(solution_ok) / len(examples),
            "solution_chance": max(all_good, 1 - all_good),
            "num_examples": len(examples), "num_steps": len(labels)}


def evaluate(kind: str, model, tokenizer, examples: list[dict], separator: str) -> dict[str, float]:
    """The held-out metrics of `kind` (see the module docstring)."""
    if kind == "orm_pairs":
        return pairwise_accuracy(model, tokenizer, examples)
    if kind == "orm_labels":
        return label_accuracy(model, tokenizer, examples)
    return step_accuracy(model, tokenizer, examples, separator)
