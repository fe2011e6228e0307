"""How the detector's score and the verifier's probability become one score: a logistic regression on their
logits, ``sigmoid(bias + a·logit(detector) + b·logit(verifier))``, fitted per class on validation candidates
(true positive or not, as COCO matches them). Three numbers per class: nothing is tuned by hand."""

from __future__ import annotations

import numpy as np
import torch

from .verifier import NEUTRAL, logit

L2 = 1e-3  # a light pull towards 0, so a class with few candidates still gets finite weights


def fit(detector: np.ndarray, verifier: np.ndarray, positive: np.ndarray) -> tuple[float, float, float]:
    """``(bias, a, b)`` maximising the likelihood of ``positive`` (bool per candidate). With no positive or no
    negative to learn from, the verifier's and the detector's logits are averaged."""
    positive = np.asarray(positive, dtype=bool)
    if positive.all() or not positive.any():
        return NEUTRAL
    x = torch.tensor(np.stack([logit(detector), logit(verifier)], axis=1), dtype=torch.float64)
    y = torch.tensor(positive, dtype=torch.float64)
    w = torch.tensor(NEUTRAL, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        z = w[0] + x @ w[1:]
        value = torch.nn.functional.binary_cross_entropy_with_logits(z, y) + L2 * (w[1:] ** 2).sum()
        value.backward()
        return value

    opt.step(loss)
    return tuple(float(v) for v in w.detach())  # type: ignore[return-value]
