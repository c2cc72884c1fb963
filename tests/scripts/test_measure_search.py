"""scripts/measure_search.py's own pieces: the step-format solutions it trains the policy on
and the curves it draws (the full measurement trains models for minutes: it is run by hand,
its numbers go into the issue notes)."""

import importlib.util
from pathlib import Path

import pytest

from reward_models.synthetic import step_labelled_solutions
from rlhf.rewards.steps import split_steps
from rlhf.rewards.verifiers import gsm8k_score

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "measure_search.py"
spec = importlib.util.spec_from_file_location("measure_search", SCRIPT)
measure_search = importlib.util.module_from_spec(spec)
spec.loader.exec_module(measure_search)


def test_solutions_are_paragraph_steps_whose_last_number_is_the_sum():
    text = measure_search.solution_text("07+45=")
    assert text == "7+5=12\n\n0+4+1=5\n\nanswer 52"
    assert [text[start:end] for start, end in split_steps(text)] == ["7+5=12", "0+4+1=5", "answer 52"]  # the PRM's steps
    assert gsm8k_score(text, "52") == 1.0 and gsm8k_score(text, "51") == 0.0
    example = step_labelled_solutions("train", size=1)[0]  # the PRM's training solutions have the same steps
    assert len(example["steps"]) == 3 and example["steps"][-1].startswith("answer ")


def test_curves_average_seeds_at_equal_token_budgets():
    def run(offset):
        metrics = {"eval/sampled_response_length": 10.0, "eval/response_length": 9.0, "eval/accuracy": 0.2 + offset}
        for k in (1, 2):
            metrics |= {f"eval/{key}@{k}": 0.1 * k + offset for key in ("pass", "maj", "best_of_n", "weighted_vote")}
        return {"metrics": metrics}

    def beam(tokens, accuracy):
        return {"metrics": {"eval/step_beam_tokens": tokens, "eval/step_beam": accuracy}}

    seeds = [{"orm": run(0.0), "prm": run(0.1), "beam 2x2": beam(40.0, 0.5), "beam 1x2": beam(20.0, 0.3)},
             {"orm": run(0.2), "prm": run(0.3), "beam 2x2": beam(44.0, 0.7), "beam 1x2": beam(22.0, 0.1)}]
    lines = measure_search.curves(seeds, n=2)
    assert lines["greedy"] == [(9.0, pytest.approx(0.3))]
    assert lines["best-of-N ORM"] == [(10.0, pytest.approx(0.2)), (20.0, pytest.approx(0.3))]
    assert lines["best-of-N PRM"] == [(10.0, pytest.approx(0.3)), (20.0, pytest.approx(0.4))]
    assert lines["step beam PRM"] == [(21.0, pytest.approx(0.2)), (42.0, pytest.approx(0.6))]  # ordered by tokens
    assert measure_search.budgets(16) == [1, 2, 4, 8, 16] and measure_search.budgets(6) == [1, 2, 4]
