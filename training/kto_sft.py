"""KTO with an SFT term on the desirable side: the thesis's best method, which trl lacks.

In the thesis, KTO alone on compile / does-not-compile labels lowered compile@1, and KTO plus
the likelihood of the desirable completions raised it (as DPO + SFT does in CodeLutra: the
preference term alone can push both sides down as long as the margin grows). The SFT term
here is the mean negative log-likelihood of the desirable completions' tokens in the batch,
taken from the policy's own forward pass of the KTO loss (no extra pass), weighted by
``training.kto_sft_weight``.
"""

from __future__ import annotations

from typing import Any


def trainer_class() -> type:
    """The KTOTrainer of trl with the SFT term (imported late: trl and torch are heavy)."""
    import torch
    from trl import KTOTrainer

    class KTOWithSFT(KTOTrainer):
        """KTOTrainer whose loss adds ``sft_weight`` times the desirable completions' NLL."""

        def __init__(self, *args: Any, sft_weight: float, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.sft_weight = sft_weight

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            # The one forward pass with gradient is the policy on the batch's own
            # completions (the KL estimate and the reference run without): keep its output.
            kept: list[Any] = []

            def keep(_module: Any, _args: Any, output: Any) -> None:
                if torch.is_grad_enabled():
                    kept.append(output)

            handle = model.register_forward_hook(keep)
            try:
                loss = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                            num_items_in_batch=num_items_in_batch)
            finally:
                handle.remove()
            if not kept or not self.sft_weight:
                return loss
            seq_len = inputs["input_ids"].size(1) - 1
            logps = kept[0].log_probs[:, -seq_len:]
            mask = inputs["completion_mask"][:, 1:].to(logps.device, logps.dtype)
            good = torch.as_tensor(inputs["label"], dtype=torch.bool, device=logps.device)
            tokens = mask[good].sum()
            if tokens <= 0:
                return loss
            nll = -(logps[good] * mask[good]).sum() / tokens
            mode = "train" if self.model.training else "eval"
            self._metrics[mode]["sft_loss"].append(float(nll.detach()))
            if return_outputs:
                total, outputs = loss
                return total + self.sft_weight * nll, outputs
            return loss + self.sft_weight * nll

    return KTOWithSFT
