"""Test-time search with reward models: spend inference compute through an ORM or a PRM.

- :mod:`rlhf.search.cost`: what a strategy spent (samples, generated tokens, reward-model
  scorings), so strategies compare at equal compute;
- :mod:`rlhf.search.aggregate`: a PRM's step scores folded into one score per response;
- :mod:`rlhf.search.best_of_n`: sample N, keep the highest-scored response;
- :mod:`rlhf.search.vote`: majority vote over final answers, plain or weighted by scores;
- :mod:`rlhf.search.beam`: beam search over reasoning steps guided by a PRM;
- :mod:`rlhf.search.expand`: a rollout engine's `generate_steps` as the beam's `expand`.

The strategies are pure: they read scores and token counts, or call the two small callables
of the step beam, and never load a model (:func:`rlhf.search.expand.expand_with` wraps an
engine that has). Greedy decoding and pass@k / maj@k stay the
baselines (:mod:`rlhf.eval`).
"""
