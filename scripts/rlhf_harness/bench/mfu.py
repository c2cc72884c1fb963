"""Model FLOPs utilisation (MFU) of the update phase.

    update FLOP/s = 6 · N · T / update seconds        MFU = update FLOP/s / peak FLOP/s

N: the model's parameters, embedding included and counted once where it is tied to the LM
head (what `common.build_initial_model` returns); T: the step's tokens, prompt + response up
to and including EOS (the arms' `StepRecord.tokens`); 6 = 2 (multiply-add) × 3 (forward,
then backward for activations and for weights). Attention's own FLOPs are left out, as in the
usual estimate (Kaplan et al. 2020, §2.1). With these choices the first GPU measurement's
numbers are reproduced: Qwen2.5-0.5B (N = 494.0M), 32 × 8 sequences of 6 + 128 tokens updated in
1.09 s give 93 TFLOP/s, and Qwen2.5-1.5B (N = 1,543.7M) in 1.29 s gives 246 TFLOP/s.

Peak: the dense bfloat16 tensor-core rate of the GPU (the update runs under bf16 autocast),
looked up by `torch.cuda.get_device_name()`; a CPU has no entry (MFU is then not computed
unless a peak is given).
"""

from __future__ import annotations

import statistics

PEAK_BF16_DENSE_FLOPS: tuple[tuple[str, float], ...] = (
    # the more specific names first: "H100 PCIe" must not match the SXM "H100" entry
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("GH200", 989e12),
    ("H200", 989e12),
    ("H100", 989e12),
    ("A100", 312e12),
)
"""(part of the device name, dense bf16 FLOP/s without sparsity) from NVIDIA's data sheets."""


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak FLOP/s of the GPU called `device_name`, or None when it is not in the table."""
    for part, flops in PEAK_BF16_DENSE_FLOPS:
        if part in device_name:
            return flops
    return None


def update_flops_per_second(parameters: int, tokens: float, update_seconds: float) -> float:
    """6 · N · T / seconds: the model FLOP rate of one update over `tokens` tokens."""
    if update_seconds <= 0:
        raise ValueError(f"update_seconds must be positive, got {update_seconds}")
    return 6.0 * parameters * tokens / update_seconds


def update_rates(records: list[dict], parameters: int, peak: float | None) -> dict[str, float | None]:
    """Median update TFLOP/s over an arm's timed steps (`StepRecord` dicts) and its MFU against
    `peak` FLOP/s (None without a peak, or when the arm reports no update time)."""
    rates = [update_flops_per_second(parameters, r["tokens"], r["update_seconds"]) for r in records if r.get("update_seconds")]
    if not rates:
        return {"update_tflops": None, "update_mfu": None}
    rate = statistics.median(rates)
    return {"update_tflops": rate / 1e12, "update_mfu": rate / peak if peak else None}
