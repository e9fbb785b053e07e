"""Linear separability: the exact LP, the boxed maximal margin, the NCM screen."""

import re

import numpy as np
import pytest

from lesde import metrics as M


def blobs(rng, K, n, p, sep=10.0):
    y = np.repeat(np.arange(K), n)
    return sep * rng.normal(size=(K, p))[y] + rng.normal(size=(K * n, p)), y


def test_one_dimensional_hand_cases():
    # {0, 1} | {2, 3}: a threshold separates; {0, 2} | {1}: class 1 sits between
    assert M.linearly_separable(np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1], 2)
    assert not M.linearly_separable(np.array([[0.0], [2.0], [1.0]]), [0, 0, 1], 2)
    # the boxed margin of {0} | {1}: max t = (w1 - w0) * 1 + (b1 - b0) ... with h_0 = 0:
    # b0 - b1 >= t and (w1 - w0) + (b1 - b0) >= t; w1 - w0 <= 2 -> t = 1
    assert M.separation_margin(np.array([[0.0], [1.0]]), [0, 1], 2) == pytest.approx(1.0, abs=1e-7)
    # XOR is not linearly separable
    xor = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    assert not M.linearly_separable(xor, [0, 0, 1, 1], 2)
    assert M.separation_margin(xor, [0, 0, 1, 1], 2) == pytest.approx(0.0, abs=1e-7)


def test_separated_blobs_are_separable_and_ncm_error_is_zero():
    rng = np.random.default_rng(0)
    h, y = blobs(rng, 4, 25, 3)
    assert M.linearly_separable(h, y, 4) is True
    assert M.separation_margin(h, y, 4) > 1e-3
    assert float(M.ncm_error(h, y, 4)) == 0.0


def test_random_labels_with_many_samples_are_not_separable():
    rng = np.random.default_rng(1)
    h = rng.normal(size=(300, 3))
    y = rng.integers(0, 3, size=300)
    assert M.linearly_separable(h, y, 3) is False
    assert abs(M.separation_margin(h, y, 3)) < 1e-7
    assert float(M.ncm_error(h, y, 3)) > 0.3


def test_boxed_margin_positive_exactly_when_lp_feasible():
    rng = np.random.default_rng(2)
    decided = []
    for trial in range(8):
        n = 6 + 6 * trial  # from few samples (separable) to many (not)
        h = rng.normal(size=(n, 3))
        y = rng.integers(0, 3, size=n)
        sep = M.linearly_separable(h, y, 3)
        t = M.separation_margin(h, y, 3)
        assert t > -1e-9
        assert (t > 1e-6) == sep, (trial, t, sep)
        decided.append(sep)
    assert any(decided) and not all(decided)  # both outcomes were exercised


def test_ncm_error_zero_is_sufficient_not_necessary():
    # 1-D: class 0 = {0, 0, 0, 0, 10} (mean 2), class 1 = {11}: the threshold 10.5
    # separates, but 10 is nearer to the class-1 mean 11 than to 2
    h = np.array([[0.0], [0.0], [0.0], [0.0], [10.0], [11.0]])
    y = np.array([0, 0, 0, 0, 0, 1])
    assert M.linearly_separable(h, y, 2)
    assert float(M.ncm_error(h, y, 2)) == pytest.approx(1 / 6)
    # a tie (equidistant from both means) counts as an error: NCM error 0 must imply
    # strict separation
    h2 = np.array([[0.0], [1.0], [2.0], [1.0]])
    assert float(M.ncm_error(h2, np.array([0, 0, 1, 1]), 2)) == pytest.approx(0.5)


def test_invariances():
    rng = np.random.default_rng(3)
    p = 4
    q, _ = np.linalg.qr(rng.normal(size=(p, p)))
    for n, want in ((8, True), (120, False)):
        h = rng.normal(size=(n, p))
        y = rng.integers(0, 3, size=n)
        y[:3] = [0, 1, 2]
        assert M.linearly_separable(h, y, 3) == want
        perm = rng.permutation(n)
        assert M.linearly_separable(h @ q.T, y, 3) == want
        assert M.linearly_separable(h + 100.0, y, 3) == want
        assert M.linearly_separable(h[perm], y[perm], 3) == want
        assert (M.separation_margin(h @ q.T + 3.0, y, 3) > 1e-6) == want


def test_batches_over_a_leading_axis():
    rng = np.random.default_rng(4)
    h_sep, y = blobs(rng, 3, 10, 2)
    h_rand = rng.normal(size=h_sep.shape)
    batch = np.stack([h_sep, h_rand, h_sep + 5.0])
    np.testing.assert_array_equal(M.linearly_separable(batch, y, 3), [True, False, True])
    ys = np.stack([y, y, rng.permutation(y)])
    got = M.linearly_separable(batch, ys, 3)
    assert got.dtype == bool and list(got[:2]) == [True, False]
    t = M.separation_margin(batch, y, 3)
    assert t.shape == (3,) and t[0] > 0 and abs(t[1]) < 1e-7


def test_degenerate_and_bad_inputs():
    h = np.array([[0.0], [1.0], [2.0]])
    assert M.linearly_separable(h, [0, 0, 0], 1)  # one class: nothing to separate
    assert M.separation_margin(h, [0, 0, 0], 1) == np.inf
    assert M.linearly_separable(h, [0, 2, 2], 3)  # an empty class constrains nothing more
    with pytest.raises(ValueError, match=re.escape("labels must lie in 0..1 (num_classes = 2), got labels[2] = 2")):
        M.linearly_separable(h, [0, 1, 2], 2)
    with pytest.raises(ValueError, match=re.escape("labels must have shape (N,) = (3,)")):
        M.linearly_separable(h, [0, 1], 2)
    with pytest.raises(ValueError, match="features must be a 2-D"):
        M.linearly_separable(np.zeros(3), [0, 1, 1], 2)
    bad = h.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match=re.escape("got nan at sample 1, feature 0")):
        M.separation_margin(bad, [0, 1, 1], 2)
    with pytest.raises(ValueError, match=re.escape("labels must have shape (N,) or (B, N) = (2, 3)")):
        M.linearly_separable(np.stack([h, h]), np.zeros((3, 3), int), 2)
