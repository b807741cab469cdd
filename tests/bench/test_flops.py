"""Analytic FLOP counts, checked against products counted by hand."""

from __future__ import annotations

import pytest

from nnbench.bench.flops import format_sizes, mlp_flops, parse_sizes


def test_mnist_mlp_per_sample_matches_the_published_count():
    """784-256-256-10: forward 2*(784*256 + 256*256 + 256*10) = 537,600; backward adds the
    same for weight gradients and 2*(256*256 + 256*10) = 136,192 for input gradients."""
    assert mlp_flops((784, 256, 256, 10)) == {
        "forward": 537_600,
        "backward": 673_792,
        "total": 1_211_392,
    }


def test_small_network_by_hand_scales_with_the_batch():
    # 2-3-1 on 4 rows: forward 2*4*(2*3) + 2*4*(3*1) = 48 + 24 = 72;
    # backward: weight grads 72, input grad of the second layer only 2*4*3*1 = 24.
    assert mlp_flops((2, 3, 1), batch_size=4) == {"forward": 72, "backward": 96, "total": 168}


def test_single_layer_has_no_input_gradient():
    # 5 -> 2 on 3 rows: 2*3*5*2 = 60 forward, 60 for the weight gradient, nothing else.
    assert mlp_flops((5, 2), batch_size=3) == {"forward": 60, "backward": 60, "total": 120}


def test_sizes_round_trip_through_text():
    assert parse_sizes("784-256-256-10") == (784, 256, 256, 10)
    assert format_sizes((32, 64, 64, 4)) == "32-64-64-4"


@pytest.mark.parametrize("bad", [(784,), (784, 0, 10), (3, 2.5, 1), ()])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError, match=r"^Invalid layer sizes: "):
        mlp_flops(bad)


def test_bad_size_text_is_refused():
    with pytest.raises(ValueError, match=r"^Invalid layer sizes: '784-x-10' \(expected widths"):
        parse_sizes("784-x-10")
