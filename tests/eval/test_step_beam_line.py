"""The step beam as a line of the scaling curve, from hand-built outcomes: one setting per
width, metrics per width with the widest as the headline, per data source, and its points in
`scaling.json` and `scaling.png`."""

import matplotlib.image
import pytest
import torch

from rlhf.eval.outcomes import EvalOutcomes, eval_metrics
from rlhf.eval.scaling import plot_scaling, scaling_curve
from rlhf.eval.step_beam import BeamOutcomes, BeamSettings, beam_line


def test_beam_line_sorts_widths_once_each_and_spells_out_the_budgets():
    assert beam_line([4, 1, 2, 4], k=2, token_budget=0, max_new_tokens=5) == (
        BeamSettings(1, 2, 10), BeamSettings(2, 2, 20), BeamSettings(4, 2, 40))
    assert beam_line([2, 1], k=3, token_budget=7, max_new_tokens=5) == (BeamSettings(1, 3, 7), BeamSettings(2, 3, 7))


def beam(correct, tokens, steps, finished) -> BeamOutcomes:
    return BeamOutcomes(torch.tensor(correct, dtype=torch.bool), torch.tensor(finished, dtype=torch.bool),
                        torch.tensor(tokens, dtype=torch.float32), torch.tensor(steps, dtype=torch.float32))


def greedy_only_outcomes() -> EvalOutcomes:
    """Four prompts, two of source a and two of b; no samples; a step beam at widths 1 and 2."""
    outcomes = EvalOutcomes(torch.tensor([True, False, False, False]), torch.zeros(4), torch.full((4,), 3.0),
                            torch.zeros(4, 0, dtype=torch.bool), torch.zeros(4, 0), [], ["a", "a", "b", "b"])
    outcomes.beams = {
        BeamSettings(1, 2, 10): beam([1, 0, 0, 0], tokens=[2, 2, 4, 4], steps=[2, 2, 2, 2], finished=[1, 1, 1, 0]),
        BeamSettings(2, 2, 20): beam([1, 1, 0, 1], tokens=[4, 6, 8, 10], steps=[4, 4, 4, 6], finished=[1, 1, 1, 1]),
    }
    return outcomes


def test_metrics_per_width_and_per_source_with_the_widest_as_headline():
    metrics = eval_metrics(greedy_only_outcomes(), ())
    assert metrics["eval/step_beam@1"] == 0.25 and metrics["eval/step_beam@2"] == 0.75
    assert metrics["eval/step_beam_tokens@1"] == 3.0 and metrics["eval/step_beam_tokens@2"] == 7.0
    assert metrics["eval/step_beam_steps@1"] == 2.0 and metrics["eval/step_beam_steps@2"] == 4.5
    assert metrics["eval/step_beam_finished@1"] == 0.75 and metrics["eval/step_beam_finished@2"] == 1.0
    for name in ("step_beam", "step_beam_tokens", "step_beam_steps", "step_beam_finished"):
        assert metrics[f"eval/{name}"] == metrics[f"eval/{name}@2"]
    assert (metrics["eval/a/step_beam@1"], metrics["eval/a/step_beam@2"], metrics["eval/a/step_beam_tokens@2"]) == (0.5, 1.0, 5.0)
    assert (metrics["eval/b/step_beam@1"], metrics["eval/b/step_beam@2"], metrics["eval/b/step_beam_tokens@2"]) == (0.0, 0.5, 9.0)
    assert metrics["eval/b/step_beam"] == 0.5


def test_the_curve_holds_the_line_and_draws_it_without_samples(tmp_path):
    curve = scaling_curve(greedy_only_outcomes())
    assert curve["points"] == [] and curve["samples_per_prompt"] == 0 and "per_source" not in curve
    assert curve["step_beam"] == [
        {"beam_width": 1, "k": 2, "token_budget": 10, "accuracy": 0.25, "finished": 0.75, "tokens_per_prompt": 3.0, "steps_per_prompt": 2.0},
        {"beam_width": 2, "k": 2, "token_budget": 20, "accuracy": 0.75, "finished": 1.0, "tokens_per_prompt": 7.0, "steps_per_prompt": 4.5},
    ]
    plot_scaling(curve, tmp_path / "scaling.png")
    assert matplotlib.image.imread(tmp_path / "scaling.png").shape[:2] == (400, 1000)


def test_selecting_and_concatenating_keep_every_width():
    outcomes = greedy_only_outcomes()
    again = EvalOutcomes.concat([outcomes.select([0, 1]), outcomes.select([2, 3])])
    assert list(again.beams) == list(outcomes.beams)
    assert eval_metrics(again, ()) == pytest.approx(eval_metrics(outcomes, ()))
