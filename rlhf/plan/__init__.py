"""`rlhf plan`: a placement and memory estimate of a recipe, before anything is launched.

``shapes`` turns a model's Hugging Face config (or a built-in table entry) into a
:class:`~rlhf.plan.shapes.ModelShape` and counts its parameters; ``memory`` holds the pure
byte arithmetic (ZeRO sharding, activations, KV cache); ``layout`` applies it to every role
of a recipe; ``report`` prints the verdict. Nothing here imports torch.
"""
