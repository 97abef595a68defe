"""runtime/layout.py: the one NCHW <-> NHWC conversion, for arrays and tensors alike."""

import numpy as np
import pytest
import torch

from edgepress.runtime import layout


@pytest.mark.parametrize("make", [np.asarray, torch.from_numpy])
def test_round_trip_and_axes(make):
    a = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)  # N, C, H, W
    nhwc = layout.to_nhwc(make(a))
    assert tuple(nhwc.shape) == (2, 4, 5, 3)
    assert float(nhwc[1, 2, 3, 0]) == a[1, 0, 2, 3]
    assert np.array_equal(np.asarray(layout.to_nchw(nhwc)), a)


def test_golden_files_have_a_sample_axis_first():
    s = np.zeros((7, 1, 3, 4, 5), np.float32)  # samples, N, C, H, W
    assert layout.to_nhwc(s, lead=2).shape == (7, 1, 4, 5, 3)
    assert layout.to_nchw(layout.to_nhwc(s, lead=2), lead=2).shape == s.shape


def test_tensors_without_a_layout_are_left_alone():
    v = np.zeros((2, 8), np.float32)
    assert layout.to_nhwc(v) is v and layout.to_nchw(v) is v
