"""The MC-dropout masks the graph's `mc_mask_<i>` inputs take (docs/model-repository.md).

Variational dropout driven from outside the graph: one mask row per path and site, shared by every
time step, values {0, 1/keep} (inverted dropout). The exporter's checks and the service's requests
draw them here, so a seed gives the same masks in both.
"""

import numpy as np
from numpy.typing import NDArray


def draw_masks(
    rng: np.random.Generator, rows: int, widths: list[int], rate: float
) -> list[NDArray[np.float32]]:
    """One [rows, width] float32 mask per site, in order: Bernoulli(keep) / keep, keep = 1 - rate.

    Each site draws `rng.random((rows, width))` in turn and keeps a unit where the draw is below
    `keep`: bit for bit `((rng.random((rows, w)) < keep) / keep).astype(np.float32)`, with the
    division done once per call rather than once per element.
    """
    keep = 1.0 - rate
    on, off = np.float32(1.0 / keep), np.float32(0.0)
    return [np.where(rng.random((rows, w)) < keep, on, off) for w in widths]
