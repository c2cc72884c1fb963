"""Assertions shared by the actor and critic tests: two workers took the same optimiser step."""

import torch


def max_weight_difference(first: torch.nn.Module, second: torch.nn.Module) -> float:
    other = dict(second.named_parameters())
    return max((p - other[name]).abs().max().item() for name, p in first.named_parameters())


def assert_same_update(whole, micro) -> None:
    """Same accumulated gradient and same updated weights after one AdamW step of two workers
    (anything with `.engine.module` and `.engine.optimizer`).

    AdamW's first step moves a weight by lr * g / (|g| + 1e-8): a weight whose gradient is
    ~1e-8 moves by up to lr on float rounding noise alone. So the gradients are compared
    through the first moment (exp_avg = 0.1 * clipped gradient after one step), and the
    weights within 1e-5 wherever the gradient is not vanishing (|g| > 1e-6).
    """
    micro_params = dict(micro.engine.module.named_parameters())
    for name, param in whole.engine.module.named_parameters():
        other = micro_params[name]
        moment = whole.engine.optimizer.state[param]["exp_avg"]
        other_moment = micro.engine.optimizer.state[other]["exp_avg"]
        assert torch.allclose(other_moment, moment, rtol=1e-4, atol=1e-6 * moment.abs().max().item()), name
        well_conditioned = moment.abs() > 0.1 * 1e-6
        assert (param - other)[well_conditioned].abs().max().item() < 1e-5, name
