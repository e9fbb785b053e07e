"""Offline data sets: digits, the synthetic shapes, stratified splits, label corruption."""

import re

import jax
import numpy as np
import pytest
from sklearn.datasets import load_digits

from lesde.nets import corrupt_labels, Dataset, digits, from_arrays, geomnist, mnist1d, split_per_class


def half_up(v):
    return int(np.floor(v + 0.5))


def expected_val_count(n, f):
    return min(half_up(f * n), n - 1)


def all_samples(ds):
    x = np.concatenate([np.asarray(ds.x_train), np.asarray(ds.x_val)])
    y = np.concatenate([np.asarray(ds.y_train), np.asarray(ds.y_val)])
    return x, y


def sorted_rows(x):
    flat = x.reshape(len(x), -1)
    return flat[np.lexsort(flat.T[::-1])]


def confusion(old, new, k):
    table = np.zeros((k, k), int)
    np.add.at(table, (np.asarray(old), np.asarray(new)), 1)
    return table


# --- digits --------------------------------------------------------------------------


def test_digits_shapes_ranges_and_stratified_split():
    ds = digits(val_fraction=0.2, seed=0)
    x_ref, y_ref = load_digits(return_X_y=True)
    assert ds.name == "digits" and ds.num_classes == 10 and ds.input_shape == (1, 8, 8)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    assert ds.x_val.dtype == np.float32 and ds.y_val.dtype == np.int32
    assert ds.num_train + ds.num_val == len(y_ref)
    x, y = all_samples(ds)
    assert x.min() == 0.0 and x.max() == 1.0
    # the same images, each exactly once, with their labels
    ref = np.concatenate([x_ref / 16.0, y_ref[:, None]], axis=1)
    got = np.concatenate([x.reshape(len(x), -1), y[:, None]], axis=1)
    np.testing.assert_allclose(sorted_rows(got), sorted_rows(ref), atol=1e-7)
    n_k = np.bincount(y_ref)
    expected = [expected_val_count(n, 0.2) for n in n_k]
    np.testing.assert_array_equal(ds.class_counts("val"), expected)
    np.testing.assert_array_equal(ds.class_counts("train"), n_k - expected)


def test_digits_seed_changes_the_split_only():
    a, b = digits(seed=0), digits(seed=1)
    np.testing.assert_array_equal(a.class_counts("val"), b.class_counts("val"))
    np.testing.assert_array_equal(sorted_rows(all_samples(a)[0]), sorted_rows(all_samples(b)[0]))
    assert not np.array_equal(sorted_rows(np.asarray(a.x_val)), sorted_rows(np.asarray(b.x_val)))


def test_digits_upsampled_keeps_the_corners_and_the_split():
    """size=10: bilinear upsampling with the corner pixels kept, the same split."""
    small, big = digits(seed=2), digits(seed=2, size=10)
    assert big.input_shape == (1, 10, 10) and big.num_train == small.num_train
    np.testing.assert_array_equal(np.asarray(big.y_train), np.asarray(small.y_train))
    a, b = np.asarray(small.x_train), np.asarray(big.x_train)
    for i, j in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        np.testing.assert_allclose(b[:, 0, i, j], a[:, 0, i, j], atol=1e-6)
    assert b.min() >= 0 and b.max() <= 1
    for bad in (7, 9.5, True):
        with pytest.raises(ValueError, match="size"):
            digits(size=bad)


def test_mnist1d_balanced_deterministic_and_leaves_the_global_random_state():
    import random

    np.random.seed(123)
    random.seed(123)
    before = np.random.get_state()[1].copy(), random.getstate()
    ds = mnist1d(30, val_fraction=0.5, seed=1)
    assert np.array_equal(np.random.get_state()[1], before[0]) and random.getstate() == before[1]
    assert ds.name == "mnist1d" and ds.num_classes == 10 and ds.input_shape == (40,)
    np.testing.assert_array_equal(ds.class_counts("train"), [15] * 10)
    np.testing.assert_array_equal(ds.class_counts("val"), [15] * 10)
    x = np.concatenate([np.asarray(ds.x_train), np.asarray(ds.x_val)])
    assert abs(x.mean()) < 1e-5 and abs(x.std() - 1) < 1e-3  # standardised over the set
    again = mnist1d(30, val_fraction=0.5, seed=1)
    np.testing.assert_array_equal(np.asarray(again.x_train), np.asarray(ds.x_train))
    other = mnist1d(30, val_fraction=0.5, seed=2)  # another split of the same signals
    a = np.sort(np.asarray(ds.x_train)[:, 0])
    assert not np.array_equal(np.sort(np.asarray(other.x_train)[:, 0]), a)
    np.testing.assert_allclose(np.sort(x[:, 0]), np.sort(np.concatenate([np.asarray(other.x_train), np.asarray(other.x_val)])[:, 0]))
    with pytest.raises(ValueError, match="n_per_class"):
        mnist1d(1)


# --- geomnist -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes():
    return geomnist(200, val_fraction=0.2, seed=0)


def test_geomnist_shapes_dtypes_ranges_and_balance(shapes):
    ds = shapes
    assert ds.name == "geomnist" and ds.num_classes == 3 and ds.input_shape == (1, 32, 32)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
    x, y = all_samples(ds)
    assert x.min() >= 0.0
    np.testing.assert_allclose(x.max(axis=(1, 2, 3)), 1.0, rtol=1e-6)  # rescaled by the max
    np.testing.assert_array_equal(ds.class_counts("val"), [40, 40, 40])
    np.testing.assert_array_equal(ds.class_counts("train"), [160, 160, 160])
    # the border stays nearly dark: the shapes fit inside the image
    border = np.concatenate([x[:, 0, 0], x[:, 0, -1], x[:, 0, :, 0], x[:, 0, :, -1]], axis=1)
    assert border.max() < 0.6 and np.median(border.max(axis=1)) < 0.05


def test_geomnist_other_sizes():
    ds = geomnist(5, size=16, val_fraction=0.0)
    assert ds.input_shape == (1, 16, 16) and ds.num_val == 0 and ds.x_val.shape == (0, 1, 16, 16)


def test_geomnist_is_deterministic_for_a_seed():
    a, b, c = geomnist(20, seed=3), geomnist(20, seed=3), geomnist(20, seed=4)
    for field in ("x_train", "y_train", "x_val", "y_val"):
        np.testing.assert_array_equal(np.asarray(getattr(a, field)), np.asarray(getattr(b, field)))
    assert not np.allclose(sorted_rows(all_samples(a)[0]), sorted_rows(all_samples(c)[0]))


def test_geomnist_pixel_mass_matches_the_areas(shapes):
    """Blurring (zero outside) keeps the mass, and the max is ~1 inside large shapes, so
    an image's total grey level is close to the shape's area."""
    x, y = all_samples(shapes)
    mass = x.sum(axis=(1, 2, 3))
    triangle, rectangle, ellipse = (mass[y == k] for k in range(3))
    assert triangle.mean() < rectangle.mean() < ellipse.mean()
    np.testing.assert_allclose(triangle.mean(), 16 * 16 / 2, rtol=0.05)
    np.testing.assert_allclose(rectangle.mean(), 9 * 17, rtol=0.05)
    # rho ~ U[5, 7]: E[pi rho (2 rho)] = 2 pi (36 + 1/3)
    np.testing.assert_allclose(ellipse.mean(), 2 * np.pi * (36 + 1 / 3), rtol=0.05)
    assert ellipse.min() > 0.85 * 2 * np.pi * 5**2 and ellipse.max() < 1.15 * 2 * np.pi * 7**2
    assert ellipse.std() > 5 * rectangle.std()  # the radius varies, the rectangle does not
    np.testing.assert_allclose(rectangle, 153, rtol=0.15)
    np.testing.assert_allclose(triangle, 128, rtol=0.15)


def orientation_degrees(images):
    """The long axis's angle in [0, 180), counter-clockwise from the horizontal (y up)."""
    size = images.shape[-1]
    c = np.arange(size) + 0.5 - size / 2
    u, v = c[None, :], -c[:, None]
    m = images.sum(axis=(1, 2))
    mu_u = (images * u).sum(axis=(1, 2)) / m
    mu_v = (images * v).sum(axis=(1, 2)) / m
    du, dv = u - mu_u[:, None, None], v - mu_v[:, None, None]
    cuu, cvv, cuv = ((images * a * b).sum(axis=(1, 2)) / m for a, b in ((du, du), (dv, dv), (du, dv)))
    return np.rad2deg(0.5 * np.arctan2(2 * cuv, cuu - cvv)) % 180


@pytest.mark.parametrize("label", [1, 2])
def test_geomnist_rotation_spans_176_degrees(shapes, label):
    x, y = all_samples(shapes)
    phi = orientation_degrees(x[y == label, 0])
    n = len(phi)
    # unrotated, the long axis is vertical; image i is turned by 176 i / n degrees
    expected = (90 + 176 * np.arange(n) / n) % 180
    bins = np.linspace(0, 180, 7)
    np.testing.assert_allclose(np.histogram(phi, bins)[0], np.histogram(expected, bins)[0], atol=3)
    resultant = abs(np.exp(2j * np.deg2rad(phi)).mean())
    assert resultant < 0.1  # an unrotated class would give 1


def test_geomnist_triangles_differ_from_each_other(shapes):
    x, y = all_samples(shapes)
    tri = x[y == 0, 0]
    mean_image = tri.mean(axis=0)
    # a single triangle is far from the class mean, which is blurred into a disc
    assert np.abs(tri - mean_image).sum(axis=(1, 2)).mean() > 0.3 * tri.sum(axis=(1, 2)).mean()


# --- splits --------------------------------------------------------------------------


def make_arrays(counts, shape=(2, 3)):
    y = np.repeat(np.arange(len(counts)), counts)
    rng = np.random.default_rng(123)
    y = y[rng.permutation(len(y))]
    x = np.arange(len(y), dtype=float)[:, None, None] * np.ones((1, *shape))
    return x, y


def test_split_per_class_counts_are_exact_and_samples_kept_once():
    counts = [7, 12, 5, 1, 30]
    x, y = make_arrays(counts)
    ds = split_per_class(x, y, 0.3, seed=5)
    val = [expected_val_count(n, 0.3) for n in counts]
    np.testing.assert_array_equal(ds.class_counts("val"), val)
    np.testing.assert_array_equal(ds.class_counts("train"), np.array(counts) - val)
    assert ds.num_classes == 5 and ds.input_shape == (2, 3)
    xs, ys = all_samples(ds)
    ids = xs[:, 0, 0].astype(int)
    np.testing.assert_array_equal(np.sort(ids), np.arange(len(y)))
    np.testing.assert_array_equal(ys, y[ids])  # labels travel with their samples
    assert np.any(np.diff(np.asarray(ds.y_train)) < 0)  # not sorted by class


def test_split_per_class_seeds_and_empty_validation():
    x, y = make_arrays([20, 20, 20])
    a, b, c = (split_per_class(x, y, 0.25, seed=s) for s in (1, 1, 2))
    np.testing.assert_array_equal(np.asarray(a.x_val), np.asarray(b.x_val))
    assert not np.array_equal(np.sort(np.asarray(a.x_val)[:, 0, 0]), np.sort(np.asarray(c.x_val)[:, 0, 0]))
    empty = split_per_class(x, y, 0.0, seed=0)
    assert empty.x_val.shape == (0, 2, 3) and empty.y_val.shape == (0,) and empty.num_train == 60
    # each class keeps a training sample however large the fraction
    ones = split_per_class(*make_arrays([2, 2]), 0.99, seed=0)
    np.testing.assert_array_equal(ones.class_counts("train"), [1, 1])


def test_from_arrays_split_or_given_validation():
    x, y = make_arrays([10, 10, 10])
    ds = from_arrays(x, y.astype(float), seed=0, name="mine")
    assert ds.num_classes == 3 and ds.name == "mine" and ds.y_train.dtype == np.int32
    np.testing.assert_array_equal(ds.class_counts("val"), [2, 2, 2])
    given = from_arrays(x, y, x_val=x[:4], y_val=[2, 0, 1, 2])
    assert given.num_classes == 3
    assert given.num_val == 4 and given.num_train == 30
    np.testing.assert_array_equal(np.asarray(given.x_train), x.astype(np.float32))
    with pytest.raises(ValueError, match="y must contain every class 0..5.*class 3"):
        from_arrays(x, y, x_val=x[:1], y_val=[5])
    assert from_arrays(x, y, num_classes=3, x_val=x[:1], y_val=[2]).num_classes == 3


def test_dataset_properties_pytree_and_new_labels():
    x, y = make_arrays([6, 6])
    ds = from_arrays(x, y, val_fraction=0.5)
    assert ds.num_train == 6 and ds.num_val == 6 and ds.input_shape == (2, 3)
    assert len(jax.tree_util.tree_leaves(ds)) == 4
    flipped = ds.with_train_labels(1 - np.asarray(ds.y_train))
    np.testing.assert_array_equal(np.asarray(flipped.y_train), 1 - np.asarray(ds.y_train))
    np.testing.assert_array_equal(np.asarray(flipped.x_train), np.asarray(ds.x_train))
    assert flipped.y_train.dtype == np.int32 and flipped.name == ds.name
    with pytest.raises(ValueError, match=re.escape("y_train[0] = 2")):
        ds.with_train_labels(np.full(6, 2))
    with pytest.raises(ValueError, match="y_train must have shape \\(6,\\)"):
        ds.with_train_labels([0, 1])


# --- label corruption ------------------------------------------------------------------


def test_corrupt_labels_three_classes_exact_counts():
    counts = np.array([50, 61, 47])
    _, y = make_arrays(counts)
    new, mask = corrupt_labels(y, 0.3, 3, seed=0)
    new, mask = np.asarray(new), np.asarray(mask)
    assert new.dtype == np.int32 and mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, new != y)
    table = confusion(y, new, 3)
    for k, n in enumerate(counts):
        m = half_up(0.3 * n)
        assert table[k, k] == n - m
        off = np.delete(table[k], k)
        assert off.sum() == m and sorted(off) == [m // 2, m - m // 2]


def test_corrupt_labels_at_two_thirds_makes_labels_independent():
    counts = np.array([60, 61, 62])
    _, y = make_arrays(counts)
    new, _ = corrupt_labels(y, 2 / 3, 3, seed=1)
    table = confusion(y, np.asarray(new), 3)
    np.testing.assert_allclose(table, np.repeat(counts[:, None] / 3, 3, axis=1), atol=1)


def test_corrupt_labels_zero_and_one():
    _, y = make_arrays([9, 4, 7])
    new, mask = corrupt_labels(y, 0.0, 3, seed=0)
    np.testing.assert_array_equal(np.asarray(new), y)
    assert not np.asarray(mask).any()
    new, mask = corrupt_labels(y, 1.0, 3, seed=0)
    assert np.asarray(mask).all() and np.all(np.asarray(new) != y)
    new, _ = corrupt_labels(y, 1.0, 4, seed=0)  # a class without samples is allowed
    assert np.all(np.asarray(new) != y)


def test_corrupt_labels_ten_classes_even_split():
    _, y = make_arrays(np.full(10, 100))
    new, _ = corrupt_labels(y, 0.45, 10, seed=2)  # 45 per class, 5 to each other class
    table = confusion(y, np.asarray(new), 10)
    np.testing.assert_array_equal(table, np.where(np.eye(10, dtype=bool), 55, 5))
    new, _ = corrupt_labels(y, 0.5, 10, seed=2)  # 50 = 9 * 5 + 5: five get one more
    table = confusion(y, np.asarray(new), 10)
    off = table[~np.eye(10, dtype=bool)].reshape(10, 9)
    assert np.all(np.diag(table) == 50) and np.all((off == 5) | (off == 6))
    np.testing.assert_array_equal((off == 6).sum(axis=1), 5)


def test_corrupt_labels_randomness():
    _, y = make_arrays([40, 40, 40])  # 10 flipped per class
    masks = [np.asarray(corrupt_labels(y, 0.25, 3, seed=s)[1]) for s in range(2)]
    assert not np.array_equal(*masks)
    np.testing.assert_array_equal(masks[0], np.asarray(corrupt_labels(y, 0.25, 3, seed=0)[1]))
    # round(0.5 * 6) = 3 flipped per class: the odd one goes to either other class
    _, y = make_arrays([6, 6, 6])
    extra = set()
    for s in range(20):
        table = confusion(y, np.asarray(corrupt_labels(y, 0.5, 3, seed=s)[0]), 3)
        extra.add(int(np.argmax(table[0, 1:])))
    assert extra == {0, 1}


# --- errors ----------------------------------------------------------------------------


def good():
    y = np.tile([2, 0, 1], 3)
    return np.arange(9.0)[:, None, None] * np.ones((1, 2, 3)), y


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(y_train=[0, 1]), "y_train must have shape (9,)"),
        (dict(x_val=np.zeros((2, 4))), "x_val must have samples of shape (2, 3)"),
        (dict(y_train=np.full(9, 3)), "y_train[0] = 3"),
        (dict(y_val=[0, -1]), "y_val[1] = -1"),
        (dict(y_train=np.r_[0.0, 1.5, np.zeros(7)]), "y_train[1] = 1.5"),
        (dict(y_train=np.r_[np.nan, np.zeros(8)]), "y_train[0] = nan"),
        (dict(y_train=np.zeros(9)), "no training sample of class 1"),
        (dict(x_train=np.r_[np.zeros((4, 2, 3)), np.full((1, 2, 3), np.inf), np.zeros((4, 2, 3))]), "x_train must be finite, got inf in row 4"),
        (dict(x_val=np.full((2, 2, 3), np.nan)), "x_val must be finite, got nan in row 0"),
        (dict(x_train=np.zeros(9)), "x_train must have shape (N, *sample_shape)"),
        (dict(x_train=np.array(["a"] * 9)), "x_train must be a numeric array"),
        (dict(num_classes=0), "num_classes must be a positive integer, got 0"),
        (dict(num_classes=2.5), "num_classes must be a positive integer, got 2.5"),
        (dict(name=3), "name must be a string, got 3"),
    ],
)
def test_dataset_errors(kwargs, match):
    x, y = good()
    args = dict(x_train=x, y_train=y, x_val=x[:2], y_val=[0, 1], num_classes=3, name="t")
    args.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(match)):
        Dataset(**args)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x, y: split_per_class(x, y, 1.0, seed=0), "val_fraction must lie in [0, 1), got 1.0"),
        (lambda x, y: split_per_class(x, y, -0.1, seed=0), "val_fraction must lie in [0, 1), got -0.1"),
        (lambda x, y: split_per_class(x, y, float("nan"), seed=0), "val_fraction must lie in [0, 1), got nan"),
        (lambda x, y: split_per_class(x, y, "a", seed=0), "val_fraction must be a number, got 'a'"),
        (lambda x, y: split_per_class(x, y, 0.2, seed=-1), "seed must be a non-negative integer, got -1"),
        (lambda x, y: split_per_class(x, y, 0.2, seed=1.5), "seed must be a non-negative integer, got 1.5"),
        (lambda x, y: split_per_class(x, y, 0.2, seed=0, num_classes=4), "got no sample of class 3"),
        (lambda x, y: split_per_class(x, y, 0.2, seed=0, num_classes=2), "y[0] = 2"),
        (lambda x, y: from_arrays(x, np.r_[1.5, y[1:]]), "y must hold integer labels, got y[0] = 1.5"),
        (lambda x, y: from_arrays(x, np.r_[y[:2], np.nan, y[3:]]), "y must hold integer labels, got y[2] = nan"),
        (lambda x, y: from_arrays(x, np.r_[y[:4], -1, y[5:]]), "y must hold labels >= 0, got y[4] = -1"),
        (lambda x, y: from_arrays(x, y, num_classes=2), "y must lie in 0..1 (num_classes = 2), got y[0] = 2"),
        (lambda x, y: from_arrays(np.r_[x[:3], np.nan * x[:1], x[4:]], y), "x must be finite, got nan in row 3"),
        (lambda x, y: from_arrays(x, y[:5]), "y must have one label per row of x (9), got 5 labels"),
        (lambda x, y: from_arrays(x, y[:, None]), "y must be one-dimensional, shape (N,), got shape (9, 1)"),
        (lambda x, y: from_arrays([["a"]] * 9, y), "x must be a numeric array"),
        (lambda x, y: from_arrays(x + 1j, y), "x must be real, got dtype complex128"),
        (lambda x, y: from_arrays(x, y, x_val=x), "x_val and y_val must be given together"),
        (lambda x, y: from_arrays(x, y, x_val=x[:2, :1], y_val=[0, 1]), "x_val must have samples of shape (2, 3) like x, got (1, 3)"),
        (lambda x, y: from_arrays(x, y, x_val=x[:2], y_val=[0, 3], num_classes=3), "y_val must lie in 0..2 (num_classes = 3), got y_val[1] = 3"),
        (lambda x, y: from_arrays(x, y, x_val=x[:2], y_val=[0]), "y_val must have one label per row of x_val (2), got 1 labels"),
        (lambda x, y: from_arrays(x, y, val_fraction=1.2), "val_fraction must lie in [0, 1), got 1.2"),
        (lambda x, y: corrupt_labels(y, float("nan"), 3, seed=0), "fraction must lie in [0, 1], got nan"),
        (lambda x, y: corrupt_labels(y, -0.1, 3, seed=0), "fraction must lie in [0, 1], got -0.1"),
        (lambda x, y: corrupt_labels(y, 1.5, 3, seed=0), "fraction must lie in [0, 1], got 1.5"),
        (lambda x, y: corrupt_labels(y, 0.2, 2, seed=0), "labels must lie in 0..1 (num_classes = 2), got labels[0] = 2"),
        (lambda x, y: corrupt_labels(np.zeros(4), 0.2, 1, seed=0), "num_classes must be >= 2 to corrupt labels (fraction = 0.2), got 1"),
        (lambda x, y: corrupt_labels(y, 0.2, 0, seed=0), "num_classes must be a positive integer, got 0"),
        (lambda x, y: corrupt_labels(y, 0.2, 3, seed=-2), "seed must be a non-negative integer, got -2"),
        (lambda x, y: corrupt_labels(y + 0.5, 0.2, 3, seed=0), "labels must hold integer labels, got labels[0] = 2.5"),
        (lambda x, y: geomnist(0), "n_per_class must be a positive integer, got 0"),
        (lambda x, y: geomnist(5, size=4), "size must be >= 8 pixels, got 4"),
        (lambda x, y: geomnist(5, val_fraction=1.0), "val_fraction must lie in [0, 1), got 1.0"),
        (lambda x, y: geomnist(5, seed=None), "seed must be a non-negative integer, got None"),
        (lambda x, y: digits(val_fraction=-1), "val_fraction must lie in [0, 1), got -1.0"),
    ],
)
def test_bad_inputs_are_named(call, match):
    x, y = good()
    with pytest.raises(ValueError, match=re.escape(match)):
        call(x, y)
