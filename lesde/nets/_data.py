"""Classification data sets that work offline (nothing is ever downloaded).

- `Dataset`: training and validation images and integer labels, checked when built;
- `digits`: scikit-learn's 8 x 8 handwritten digits (shipped inside scikit-learn);
- `mnist1d`: MNIST-1D signals generated from templates by the `mnist1d` package;
- `geomnist`: the LE-SDE authors' synthetic shapes (triangle, rectangle, ellipse),
  generated deterministically from a seed;
- `from_arrays`: any user arrays;
- `split_per_class`: a stratified train/validation split;
- `corrupt_labels`: the LE-SDE authors' label corruption (a fraction of each class
  flipped, evenly among the other classes).

Images are float32 and channels-first, (N, C, H, W); labels are int32 in 0..K-1. Both
are stored as JAX arrays. Every function takes an integer `seed` and is deterministic
given it (NumPy's `default_rng`).
"""

from typing import Any

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int

from .._checks import check_labels, check_positive_int, is_concrete, show

GEOMNIST_CLASSES = ("triangle", "rectangle", "ellipse")


# --- input checks --------------------------------------------------------------------


def _features(name: str, x: Any, *, min_ndim: int = 2) -> np.ndarray:
    """A float32 NumPy copy of `x`, shaped (N, *sample_shape); finite, rows named."""
    try:
        a = np.asarray(x)
    except Exception as e:
        raise ValueError(f"{name} must be a numeric array, got {show(x)}") from e
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise ValueError(f"{name} must be a numeric array, got {show(x)}")
    if np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(f"{name} must be real, got dtype {a.dtype}")
    if a.ndim < min_ndim:
        raise ValueError(
            f"{name} must have shape (N, *sample_shape) with at least {min_ndim - 1} sample "
            f"axis (e.g. x[:, None] for scalar features), got shape {a.shape}"
        )
    a = a.astype(np.float32)
    _check_rows_finite(name, a)
    return a


def _check_rows_finite(name: str, a: np.ndarray) -> None:
    """Raise if a row of `a` holds NaN or infinity, naming the first such row."""
    if a.shape[0] == 0:
        return
    bad = ~np.isfinite(a.reshape(a.shape[0], -1))
    rows = bad.any(axis=1)
    if rows.any():
        i = int(np.argmax(rows))
        value = a.reshape(a.shape[0], -1)[i][bad[i]][0]
        raise ValueError(f"{name} must be finite, got {value} in row {i}")


def _labels(name: str, y: Any) -> np.ndarray:
    """An int64 NumPy copy of one-dimensional, integer-valued labels (range unchecked)."""
    try:
        a = np.asarray(y)
    except Exception as e:
        raise ValueError(f"{name} must be an array of integer labels, got {show(y)}") from e
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise ValueError(f"{name} must be an array of integer labels, got {show(y)}")
    if a.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, shape (N,), got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
        if np.issubdtype(a.dtype, np.complexfloating):
            raise ValueError(f"{name} must hold integer labels, got dtype {a.dtype}")
        bad = ~np.isfinite(a) | (a != np.round(a)) if a.size else np.zeros(0, bool)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"{name} must hold integer labels, got {name}[{i}] = {a[i]}")
    return a.astype(np.int64)


def _num_classes(name: str, k: Any) -> int:
    return check_positive_int(name, k)


def _seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {show(seed)}")
    return int(seed)


def _fraction(name: str, v: Any, *, include_one: bool) -> float:
    """A float in [0, 1] (`include_one`) or [0, 1)."""
    if isinstance(v, bool):
        raise ValueError(f"{name} must be a number, got {v!r}")
    try:
        f = float(v)
    except Exception as e:
        raise ValueError(f"{name} must be a number, got {show(v)}") from e
    upper_ok = f <= 1 if include_one else f < 1
    if not (f >= 0 and upper_ok):  # NaN fails both
        interval = "[0, 1]" if include_one else "[0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {f}")
    return f


def _round_half_up(v: float) -> int:
    return int(np.floor(v + 0.5))


# --- the data set ------------------------------------------------------------------


class Dataset(eqx.Module):
    """Training and validation samples of a K-class classification problem (final).

    **Fields:** `x_train` (N, *shape) float32; `y_train` (N,) int32 in 0..K-1; `x_val`
    (M, *shape) float32 (M = 0 allowed); `y_val` (M,) int32; `num_classes` K; `name`.
    Arrays are stored as JAX arrays; the constructor accepts anything array-like.

    Checked when built: the leading lengths of x and y agree, train and validation
    samples have one shape, labels are integers in 0..K-1, every x is finite (the first
    bad row is named), and every class has at least one training sample.
    """

    x_train: Float[Array, "N *shape"]
    y_train: Int[Array, " N"]
    x_val: Float[Array, "M *shape"]
    y_val: Int[Array, " M"]
    num_classes: int = eqx.field(static=True)
    name: str = eqx.field(static=True)

    def __init__(self, x_train, y_train, x_val, y_val, num_classes: int, name: str = "dataset"):
        self.num_classes = _num_classes("num_classes", num_classes)
        if not isinstance(name, str):
            raise ValueError(f"name must be a string, got {show(name)}")
        self.name = name
        self.x_train = jnp.asarray(_features("x_train", x_train))
        self.x_val = jnp.asarray(_features("x_val", x_val))
        ytr, yv = _labels("y_train", y_train), _labels("y_val", y_val)
        check_labels("y_train", ytr, num_classes=self.num_classes)
        check_labels("y_val", yv, num_classes=self.num_classes)
        self.y_train = jnp.asarray(ytr.astype(np.int32))
        self.y_val = jnp.asarray(yv.astype(np.int32))

    def __check_init__(self):
        if not is_concrete(self.x_train, self.y_train, self.x_val, self.y_val):
            return
        for x_name, y_name, x, y in (
            ("x_train", "y_train", self.x_train, self.y_train),
            ("x_val", "y_val", self.x_val, self.y_val),
        ):
            if x.ndim < 2:
                raise ValueError(
                    f"{x_name} must have shape (N, *sample_shape), got shape {tuple(x.shape)}"
                )
            if y.ndim != 1 or y.shape[0] != x.shape[0]:
                raise ValueError(
                    f"{y_name} must have shape ({x.shape[0]},) to match {x_name} of shape "
                    f"{tuple(x.shape)}, got shape {tuple(y.shape)}"
                )
            if not jnp.issubdtype(y.dtype, jnp.integer):
                raise ValueError(f"{y_name} must hold integer labels, got dtype {y.dtype}")
            check_labels(y_name, np.asarray(y), num_classes=self.num_classes)
            _check_rows_finite(x_name, np.asarray(x))
        if self.x_val.shape[1:] != self.x_train.shape[1:]:
            raise ValueError(
                f"x_val must have samples of shape {tuple(self.x_train.shape[1:])} like "
                f"x_train, got {tuple(self.x_val.shape[1:])}"
            )
        counts = np.bincount(np.asarray(self.y_train), minlength=self.num_classes)
        if (counts == 0).any():
            k = int(np.argmin(counts))
            raise ValueError(
                f"y_train must contain every class 0..{self.num_classes - 1} (num_classes = "
                f"{self.num_classes}), got no training sample of class {k}"
            )

    @property
    def num_train(self) -> int:
        """N, the number of training samples."""
        return int(self.x_train.shape[0])

    @property
    def num_val(self) -> int:
        """M, the number of validation samples."""
        return int(self.x_val.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample, e.g. (1, 8, 8)."""
        return tuple(int(s) for s in self.x_train.shape[1:])

    def class_counts(self, split: str = "train") -> np.ndarray:
        """Samples per class, shape (K,), of the 'train' or 'val' split."""
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        y = self.y_train if split == "train" else self.y_val
        return np.bincount(np.asarray(y), minlength=self.num_classes)

    def with_train_labels(self, y: Any) -> "Dataset":
        """A copy with training labels `y` (checked like `y_train`), e.g. corrupted ones."""
        return Dataset(self.x_train, y, self.x_val, self.y_val, self.num_classes, self.name)


# --- splits and user arrays -----------------------------------------------------------


def _split(
    x: np.ndarray, y: np.ndarray, val_fraction: float, seed: int, num_classes: int, name: str
) -> Dataset:
    """`split_per_class` on checked NumPy inputs."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for k in range(num_classes):
        idx = rng.permutation(np.flatnonzero(y == k))
        n_val = min(_round_half_up(val_fraction * idx.size), idx.size - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    train = rng.permutation(np.concatenate(train))
    val = rng.permutation(np.concatenate(val))
    return Dataset(x[train], y[train], x[val], y[val], num_classes, name)


def _check_xy(x_name: str, y_name: str, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = _features(x_name, x), _labels(y_name, y)
    if ya.shape[0] != xa.shape[0]:
        raise ValueError(
            f"{y_name} must have one label per row of {x_name} ({xa.shape[0]}), got "
            f"{ya.shape[0]} labels"
        )
    return xa, ya


def _check_all_present(y_name: str, y: np.ndarray, num_classes: int) -> None:
    counts = np.bincount(y, minlength=num_classes)
    if (counts == 0).any():
        k = int(np.argmin(counts))
        raise ValueError(
            f"{y_name} must contain every class 0..{num_classes - 1} (num_classes = "
            f"{num_classes}), got no sample of class {k}"
        )


def split_per_class(
    x: Any,
    y: Any,
    val_fraction: float,
    *,
    seed: int,
    num_classes: int | None = None,
    name: str = "arrays",
) -> Dataset:
    """Split samples into training and validation sets, class by class (stratified).

    With `rng = numpy.random.default_rng(seed)`, each class k in turn (k = 0..K-1) is
    shuffled and its first round(val_fraction * n_k) samples (rounded half up, at most
    n_k - 1, so each class keeps a training sample) go to validation, the rest to
    training; the training and validation sets are then each put in random order.
    `val_fraction` = 0 gives an empty validation set of shape (0, *sample_shape).

    **Arguments:** `x` (N, *sample_shape) numeric, finite; `y` (N,) integer labels;
    `val_fraction` in [0, 1); `seed` a non-negative integer; `num_classes` K (default
    max(y) + 1), every class must occur in `y`; `name` of the data set.
    """
    val_fraction = _fraction("val_fraction", val_fraction, include_one=False)
    seed = _seed(seed)
    xa, ya = _check_xy("x", "y", x, y)
    k = _infer_num_classes("y", ya, num_classes)
    check_labels("y", ya, num_classes=k)
    _check_all_present("y", ya, k)
    return _split(xa, ya, val_fraction, seed, k, name)


def _infer_num_classes(y_name: str, y: np.ndarray, num_classes: Any) -> int:
    if num_classes is not None:
        return _num_classes("num_classes", num_classes)
    if y.size == 0:
        raise ValueError(f"{y_name} must hold at least one label, got shape {y.shape}")
    if y.min() < 0:
        i = int(np.argmin(y))
        raise ValueError(f"{y_name} must hold labels >= 0, got {y_name}[{i}] = {int(y[i])}")
    return int(y.max()) + 1


def from_arrays(
    x: Any,
    y: Any,
    *,
    num_classes: int | None = None,
    x_val: Any = None,
    y_val: Any = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    name: str = "arrays",
) -> Dataset:
    """A `Dataset` from user arrays.

    With `x_val` and `y_val` given, (x, y) is the training set and (x_val, y_val) the
    validation set as they are; otherwise (x, y) is split with `split_per_class`
    (`val_fraction`, `seed`).

    **Arguments:** `x` (N, *sample_shape) real numbers, finite (the first row holding NaN
    or infinity is named); `y` (N,) integer-valued labels (1.5 or NaN are rejected) in
    0..K-1; `num_classes` K (default: the largest label + 1, over `y` and `y_val`);
    `x_val`, `y_val` both or neither; `val_fraction` in [0, 1); `seed`; `name`.
    """
    xa, ya = _check_xy("x", "y", x, y)
    if (x_val is None) != (y_val is None):
        raise ValueError(
            f"x_val and y_val must be given together, got x_val = "
            f"{'None' if x_val is None else 'an array'} and y_val = "
            f"{'None' if y_val is None else 'an array'}"
        )
    if x_val is None:
        k = _infer_num_classes("y", ya, num_classes)
        check_labels("y", ya, num_classes=k)
        _check_all_present("y", ya, k)
        val_fraction = _fraction("val_fraction", val_fraction, include_one=False)
        return _split(xa, ya, val_fraction, _seed(seed), k, name)
    xv, yv = _check_xy("x_val", "y_val", x_val, y_val)
    if xv.shape[1:] != xa.shape[1:]:
        raise ValueError(
            f"x_val must have samples of shape {xa.shape[1:]} like x, got {xv.shape[1:]}"
        )
    k = _infer_num_classes("y", np.concatenate([ya, yv]), num_classes)
    check_labels("y", ya, num_classes=k)
    check_labels("y_val", yv, num_classes=k)
    _check_all_present("y", ya, k)
    return Dataset(xa, ya, xv, yv, k, name)


# --- offline data sets ---------------------------------------------------------------


def digits(*, val_fraction: float = 0.2, seed: int = 0, size: int = 8) -> Dataset:
    """scikit-learn's handwritten digits (`sklearn.datasets.load_digits`, 1797 images,
    shipped with scikit-learn): images (N, 1, size, size) channels-first, grey levels
    0..16 divided by 16 into [0, 1], K = 10, split with `split_per_class(val_fraction,
    seed)`.

    `size` > 8 upsamples the 8 x 8 images by bilinear interpolation
    (`scipy.ndimage.zoom`, order 1, corners aligned), e.g. `size=10` for the 10 x 10
    inputs of the spring-block authors' MNIST; it adds no information."""
    val_fraction = _fraction("val_fraction", val_fraction, include_one=False)
    seed = _seed(seed)
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 8:
        raise ValueError(f"size must be an int >= 8 (the images are 8 x 8); got {show(size)}")
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = x.reshape(-1, 1, 8, 8) / 16.0
    if size > 8:
        from scipy.ndimage import zoom

        x = zoom(x, (1, 1, size / 8, size / 8), order=1, grid_mode=False)
    return _split(x.astype(np.float32), y.astype(np.int64), val_fraction, seed, 10, "digits")


def mnist1d(n_per_class: int = 500, *, val_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """MNIST-1D (S. Greydanus, "Scaling down deep learning", 2020): 1-D signals of
    length 40 generated from ten hand-drawn digit templates by the `mnist1d` package
    (padding, dilation, scaling, translation, correlated and iid noise, shear; no
    download), K = 10, `n_per_class` signals per class, split with
    `split_per_class(val_fraction, seed)`. Inputs (N, 40), standardised over the whole
    set (as the package does).

    The signals are the package's `make_dataset` with its default arguments and its
    seed 42 (the standard MNIST-1D for `n_per_class=500`); only the split depends on
    `seed`. The generator seeds NumPy's and Python's global random state: both are
    restored afterwards.

    Example: 2560 training signals, as the spring-block authors' MNIST subset:
    `mnist1d(500, val_fraction=0.488)` (256 per class for training, 244 to validate).
    """
    n = check_positive_int("n_per_class", n_per_class)
    val_fraction = _fraction("val_fraction", val_fraction, include_one=False)
    seed = _seed(seed)
    if n < 2:
        raise ValueError(f"n_per_class must be >= 2 (a training and a validation sample); got {n}")
    import random

    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 10 * n
    args.train_split = 1.0
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x = np.asarray(data["x"], np.float32)
    y = np.asarray(data["y"], np.int64)
    return _split(x, y, val_fraction, seed, 10, "mnist1d")


def _pixel_coordinates(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates relative to the image centre: u to the right (columns),
    v upwards (rows), shapes (1, size) and (size, 1)."""
    c = np.arange(size) + 0.5 - size / 2
    return c[None, :], -c[:, None]


def _raster(label: int, px: np.ndarray, py: np.ndarray, scale: float, rho) -> np.ndarray:
    """Membership of body-frame coordinates (px, py) in shape `label` (at size 32 units
    times `scale`); `rho` broadcasts against px for the ellipse."""
    if label == 0:  # isosceles triangle, base 16 at the bottom, height 16, centroid at 0
        base_y, apex_y = -16 / 3 * scale, 32 / 3 * scale
        return (py >= base_y) & (np.abs(px) <= (apex_y - py) / 2)
    if label == 1:  # rectangle 9 wide, 17 tall
        return (np.abs(px) <= 4.5 * scale) & (np.abs(py) <= 8.5 * scale)
    r = rho * scale  # ellipse with radii rho (horizontal) and 2 rho (vertical)
    return (px / r) ** 2 + (py / (2 * r)) ** 2 <= 1


def geomnist(
    n_per_class: int = 200, *, val_fraction: float = 0.2, seed: int = 0, size: int = 32
) -> Dataset:
    r"""The LE-SDE authors' synthetic shapes: grey images (N, 1, size, size), K = 3.

    Label 0 is a triangle, 1 a rectangle, 2 an ellipse; `n_per_class` images each. In
    units of pixels of a 32 x 32 image (every length, offsets and blur included, is
    multiplied by size / 32 for other sizes), about the shape's centre:

    - triangle: isosceles, base 16 (horizontal, at the bottom) and height 16, with its
      centroid at the centre: vertices (-8, -16/3), (8, -16/3), (0, 32/3), area 128;
    - rectangle: 9 wide and 17 tall, area 153;
    - ellipse: radii rho (horizontal) and 2 rho (vertical), rho ~ U[5, 7] per image,
      area 2 pi rho^2.

    Image i = 0..n-1 of a class is rotated counter-clockwise by 176 i / n degrees about
    the shape's centre, which sits at the image centre plus an offset ~ U[-1, 1]^2 px.
    A pixel is 1 if its centre, carried back by the inverse rotation and offset, lies in
    the shape, else 0; the image is then blurred by `scipy.ndimage.gaussian_filter` with
    sigma ~ U(0.9, 1.1) px (zero outside the image) and divided by its maximum, so
    values lie in [0, 1] with maximum 1. The images are split (and shuffled) with
    `split_per_class(val_fraction)`.

    Deterministic given `seed` (`numpy.random.default_rng(seed)` draws, class by class,
    the offsets, the radii and the blurs, then the seed of the split).

    **Arguments:** `n_per_class` >= 1; `val_fraction` in [0, 1); `seed` a non-negative
    integer; `size` >= 8 pixels.
    """
    n = check_positive_int("n_per_class", n_per_class)
    val_fraction = _fraction("val_fraction", val_fraction, include_one=False)
    seed = _seed(seed)
    size = check_positive_int("size", size)
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    scale = size / 32
    u, v = _pixel_coordinates(size)
    theta = np.deg2rad(176.0 * np.arange(n) / n)[:, None, None]
    cos, sin = np.cos(theta), np.sin(theta)
    images, labels = [], []
    for label in range(len(GEOMNIST_CLASSES)):
        offset = rng.uniform(-1.0, 1.0, size=(n, 2)) * scale
        rho = rng.uniform(5.0, 7.0, size=n)[:, None, None] if label == 2 else None
        sigma = rng.uniform(0.9, 1.1, size=n) * scale
        du = u - offset[:, 0, None, None]
        dv = v - offset[:, 1, None, None]
        px = cos * du + sin * dv  # rotate by -theta into the shape's frame
        py = -sin * du + cos * dv
        masks = _raster(label, px, py, scale, rho).astype(np.float64)
        for mask, s in zip(masks, sigma):
            img = ndimage.gaussian_filter(mask, s, mode="constant")
            top = img.max()
            images.append(img / top if top > 0 else img)
        labels.append(np.full(n, label))
    x = np.stack(images)[:, None].astype(np.float32)
    y = np.concatenate(labels)
    split_seed = int(rng.integers(2**32))
    return _split(x, y, val_fraction, split_seed, len(GEOMNIST_CLASSES), "geomnist")


# --- label corruption ----------------------------------------------------------------


def corrupt_labels(
    labels: Any, fraction: float, num_classes: int, *, seed: int
) -> tuple[Int[Array, " N"], Bool[Array, " N"]]:
    """The LE-SDE authors' label corruption.

    With `rng = numpy.random.default_rng(seed)`, for each class k = 0..K-1 in turn,
    m_k = round(p n_k) of its n_k samples (rounded half up), chosen uniformly at random,
    get a new label: the m_k are split evenly among the K - 1 other classes, each
    receiving floor(m_k / (K-1)) and a randomly chosen m_k mod (K-1) of them one more
    (for K = 3: half to each other class), assigned in random order. p = (K-1)/K makes
    the labels independent of the inputs: each original class ends up with about
    n_k / K samples under every label.

    **Arguments:** `labels` (N,) integers in 0..K-1; `fraction` p in [0, 1];
    `num_classes` K (>= 2 when p > 0); `seed` a non-negative integer.

    **Returns:** `(new_labels, corrupted)`: int32 labels and the boolean mask of the
    samples whose label changed.
    """
    p = _fraction("fraction", fraction, include_one=True)
    k_classes = _num_classes("num_classes", num_classes)
    if p > 0 and k_classes < 2:
        raise ValueError(
            f"num_classes must be >= 2 to corrupt labels (fraction = {p}), got {k_classes}"
        )
    seed = _seed(seed)
    y = _labels("labels", labels)
    check_labels("labels", y, num_classes=k_classes)
    rng = np.random.default_rng(seed)
    new = y.copy()
    for k in range(k_classes):
        idx = np.flatnonzero(y == k)
        m = _round_half_up(p * idx.size)
        if m == 0:
            continue
        chosen = rng.choice(idx, size=m, replace=False)
        others = np.delete(np.arange(k_classes), k)
        counts = np.full(k_classes - 1, m // (k_classes - 1))
        counts[rng.choice(k_classes - 1, size=m % (k_classes - 1), replace=False)] += 1
        new[chosen] = rng.permutation(np.repeat(others, counts))
    return jnp.asarray(new.astype(np.int32)), jnp.asarray(new != y)
