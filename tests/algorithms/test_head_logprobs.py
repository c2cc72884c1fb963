"""The LM head fused with log-probabilities and entropy, in chunks: the same values and the same
gradients (to the hidden states and the head's weight) as projecting every token's logits at
once, for any chunk size and temperature."""

import pytest
import torch

from rlhf.algorithms.head_logprobs import chunk_tokens, head_logprobs
from rlhf.algorithms.logprobs import entropy_from_logits, logprobs_from_logits


def naive(hidden, weight, labels, temperature):
    logits = hidden @ weight.T / temperature
    return logprobs_from_logits(logits, labels), entropy_from_logits(logits)


def inputs(seed: int = 0, tokens: int = 7, size: int = 5, vocab: int = 11):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(tokens, size, generator=generator) * 2
    weight = torch.randn(vocab, size, generator=generator)
    labels = torch.randint(0, vocab, (tokens,), generator=generator)
    return hidden, weight, labels


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_values_and_gradients_equal_the_whole_logits(chunk, temperature):
    hidden, weight, labels = inputs()
    coef_lp, coef_ent = torch.linspace(-1, 1, 7), torch.linspace(0.5, -0.3, 7)
    grads = []
    for fused in (True, False):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        lp, ent = head_logprobs(h, w, labels, temperature, chunk) if fused else naive(h, w, labels, temperature)
        ((coef_lp * lp).sum() + (coef_ent * ent).sum()).backward()
        grads.append((lp.detach(), ent.detach(), h.grad, w.grad))
    for fused, whole in zip(*grads):
        torch.testing.assert_close(fused, whole, rtol=1e-5, atol=1e-5)


def test_a_loss_of_the_logprobs_alone_leaves_the_entropy_without_gradient():
    hidden, weight, labels = inputs(seed=1)
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    lp, ent = head_logprobs(h, w, labels, 1.0, 2)
    lp.sum().backward()  # entropy only logged
    h2, w2 = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    naive(h2, w2, labels, 1.0)[0].sum().backward()
    torch.testing.assert_close(h.grad, h2.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w.grad, w2.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ent, naive(hidden, weight, labels, 1.0)[1])


def test_a_hand_computed_token():
    """One token, hidden [1, 1], a 2-word head: logits (2, 0) -> p = (e²/(e²+1), 1/(e²+1))."""
    lp, ent = head_logprobs(torch.tensor([[1.0]]), torch.tensor([[2.0], [0.0]]), torch.tensor([1]))
    norm = torch.log(torch.tensor(torch.e**2 + 1))
    p = torch.tensor([torch.e**2, 1.0]) / (torch.e**2 + 1)
    torch.testing.assert_close(lp, -norm.reshape(1))
    torch.testing.assert_close(ent, -(p * p.log()).sum().reshape(1))


def test_a_chunk_of_float32_logits_stays_within_its_budget():
    assert chunk_tokens(151_936) == 441 and chunk_tokens(151_936) * 151_936 * 4 <= 256 * 2**20
    assert chunk_tokens(10**12) == 1
