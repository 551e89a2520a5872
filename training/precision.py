"""Which precision a round trains in: bfloat16 autocast where the hardware computes it natively.

On a CPU with AVX-512 BF16 or AMX, a LoRA step of the embedded model under bf16 autocast
costs about half of a float32 one (``bench/step_cost.py``: 2.28 s against 4.43 s for a batch
of 4 x 256 tokens on a 2-core Xeon with AMX); on a CPU without them, bf16 is emulated and slower
than float32. The weights, the LoRA matrices and the optimizer state stay float32 (autocast
only runs the matrix products in bf16), so what a round saves is the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PRECISIONS = ("auto", "bf16", "float32")
BF16_CPU_FEATURES = frozenset({"avx512_bf16", "amx_bf16"})
"""CPU flags (``/proc/cpuinfo``) under which bf16 matrix products run in hardware."""


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU's feature flags (empty where the file is missing: not Linux)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


@dataclass(frozen=True)
class Precision:
    """The precision chosen for a round and why (logged and kept in the adapter's metadata)."""

    bf16: bool
    reason: str

    @property
    def name(self) -> str:
        """``bf16`` or ``float32``."""
        return "bf16" if self.bf16 else "float32"


def choose(requested: str, *, cuda: bool | None = None,
           features: frozenset[str] | None = None) -> Precision:
    """``training.precision`` resolved on this machine (``cuda`` and ``features``: for tests)."""
    if requested not in PRECISIONS:
        raise ValueError(f"training.precision must be one of {', '.join(PRECISIONS)}; "
                         f"not {requested!r}")
    if requested != "auto":
        return Precision(requested == "bf16", f"training.precision = {requested}")
    cuda_bf16 = cuda
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
        cuda_bf16 = cuda and torch.cuda.is_bf16_supported()
    if cuda:
        return Precision(bool(cuda_bf16), f"CUDA {'with' if cuda_bf16 else 'without'} bf16")
    have = sorted((cpu_features() if features is None else features) & BF16_CPU_FEATURES)
    if have:
        return Precision(True, f"the CPU computes bf16 natively ({', '.join(have)})")
    return Precision(False, "the CPU has no avx512_bf16 or amx_bf16: bf16 would be emulated")
