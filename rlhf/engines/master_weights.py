"""Float32 master weights for a module held in bfloat16: mixed-precision training as
Micikevicius et al. 2018 ("Mixed Precision Training", ICLR) describe it.

The module computes in low precision: its weights, activations and gradients are bfloat16,
which halves the memory of the weights the forward reads and lets the device run its fast
bfloat16 kernels without casting the weights at every forward. The optimiser never sees those
weights; it steps a float32 master copy of every trainable parameter. One optimiser step:

1. backward, once per micro-batch: each bfloat16 gradient is added into its master's float32
   gradient right after the backward that produced it, and dropped (micro-batches accumulate
   in float32, so summing many of them loses no digits to bfloat16 rounding);
2. gradient-norm clipping and AdamW run on the float32 masters and their float32 gradients
   (AdamW's moments are float32 because the masters are);
3. the masters are copied into the module, rounded to bfloat16 (round to nearest even).

So after every step (and after a checkpoint is loaded) each module parameter equals its master
rounded to bfloat16, bit for bit, and updates smaller than a bfloat16 step of a weight are not
lost: they accumulate in the master until they move the rounded weight.

Where we differ from the paper: no loss scaling. It is there for float16, whose 5 exponent bits
flush small gradients to zero; bfloat16 has float32's 8 exponent bits (its range), so
gradients float32 can hold do not underflow (DeepSpeed's and PyTorch FSDP's bf16 modes make
the same choice).
"""

from __future__ import annotations

import torch

from rlhf.models.load import cast_parameters


class MasterWeights:
    """Float32 masters of `module`'s trainable parameters; `module` is cast to `dtype` in place.

    The masters are taken before the cast, so they start at the module's exact float32 values
    (a float32 checkpoint loses nothing; only the module's copy is rounded)."""

    def __init__(self, module: torch.nn.Module, dtype: torch.dtype):
        self.params = [param for param in module.parameters() if param.requires_grad]
        self.masters = [torch.nn.Parameter(param.detach().float().clone()) for param in self.params]
        cast_parameters(module, dtype)

    def accumulate_grads(self) -> None:
        """Add each parameter's low-precision gradient into its master's float32 gradient and
        drop it (after each backward; a parameter without a gradient is skipped)."""
        for param, master in zip(self.params, self.masters):
            if param.grad is None:
                continue
            if master.grad is None:
                master.grad = param.grad.float()
            else:
                master.grad.add_(param.grad)  # float32 += bfloat16: the sum is taken in float32
            param.grad = None

    @torch.no_grad()
    def copy_to_module(self) -> None:
        """Round the masters into the module's parameters (after an optimiser step or a load)."""
        for param, master in zip(self.params, self.masters):
            param.copy_(master)

    def state_dict(self) -> list[torch.Tensor]:
        """The float32 masters, in the order of the module's trainable parameters."""
        return [master.detach() for master in self.masters]

    @torch.no_grad()
    def load_state_dict(self, state: list[torch.Tensor], source: str) -> None:
        """Restore what :meth:`state_dict` returned and round it into the module."""
        shapes = [tuple(master.shape) for master in self.masters]
        if [tuple(tensor.shape) for tensor in state] != shapes:
            raise RuntimeError(f"{source}: the float32 master weights do not match the model's trainable parameters "
                               f"({len(state)} tensors saved, {len(shapes)} trainable parameters)")
        for master, tensor in zip(self.masters, state):
            master.copy_(tensor)
        self.copy_to_module()
