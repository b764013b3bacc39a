"""The MC-dropout masks: one formula for the exporter's checks and the service's requests."""

import numpy as np

from forecaster_format import draw_masks


def test_known_masks_for_a_fixed_seed() -> None:
    # rng(42).random((3, 4)) = [[.774 .439 .859 .697] [.094 .976 .761 .786] [.128 .450 .371 .927]]
    # then .random((3, 2)) = [[.644 .823] [.443 .227] [.555 .064]]; keep 0.5: below it -> 2
    first, second = draw_masks(np.random.default_rng(42), 3, [4, 2], 0.5)

    np.testing.assert_array_equal(first, [[0, 2, 0, 0], [2, 0, 0, 0], [2, 2, 2, 0]])
    np.testing.assert_array_equal(second, [[0, 0], [2, 2], [0, 2]])
    assert first.dtype == second.dtype == np.float32
    (third,) = draw_masks(np.random.default_rng(42), 2, [3], 0.2)
    np.testing.assert_array_equal(third, [[1.25, 1.25, 0], [1.25, 1.25, 0]])


def test_masks_are_bernoulli_over_keep_in_float32_bit_for_bit() -> None:
    """The formula they were first drawn with, same generator, same order of sites."""
    for rate in (0.1, 0.25, 0.3, 0.5):
        drawn = draw_masks(np.random.default_rng(7), 200, [8, 3, 64], rate)
        rng, keep = np.random.default_rng(7), 1.0 - rate
        for mask, width in zip(drawn, (8, 3, 64), strict=True):
            expected = ((rng.random((200, width)) < keep) / keep).astype(np.float32)
            assert mask.dtype == np.float32
            assert mask.shape == (200, width)
            np.testing.assert_array_equal(mask, expected)


def test_no_sites_draw_nothing() -> None:
    rng = np.random.default_rng(0)
    assert draw_masks(rng, 5, [], 0.1) == []
    assert rng.random() == np.random.default_rng(0).random()  # the generator was not advanced
