"""Scatter, separation fuzziness, neural collapse: exact values, the fast formula against
the dense pseudo-inverse, invariances, jit/vmap, inside a solve, degenerate inputs."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lesde
from lesde import metrics as M


def blobs(rng, K, n, p, spread=1.0, sep=3.0, counts=None):
    """Gaussian blobs: class means sep * N(0, I), unit within-class spread."""
    counts = [n] * K if counts is None else counts
    y = np.repeat(np.arange(K), counts)
    centres = sep * rng.normal(size=(K, p))
    return centres[y] + spread * rng.normal(size=(len(y), p)), y


def dense_fuzziness(h, y, K, global_mean="samples", unweighted=False):
    """Tr(Sigma_W pinv(Sigma_B)) with p x p matrices, in float64 NumPy, from the
    definitions (loops over classes; numpy.linalg.pinv with its default rcond)."""
    h = np.asarray(h, np.float64)
    N, p = h.shape
    mus = np.stack([h[y == k].mean(0) for k in range(K)])
    counts = np.array([(y == k).sum() for k in range(K)])
    mu_g = h.mean(0) if global_mean == "samples" else mus.mean(0)
    sw = np.zeros((p, p))
    for k in range(K):
        z = h[y == k] - mus[k]
        sw += z.T @ z
    sw /= N
    c = mus - mu_g
    w = np.full(K, 1 / K) if unweighted else counts / N
    sb = (c * w[:, None]).T @ c
    return np.trace(sw @ np.linalg.pinv(sb)), sw, sb


# One shared data set (and its shapes) for most tests: compiled functions are reused.
K0, P0 = 3, 5
H0, Y0 = blobs(np.random.default_rng(0), K0, None, P0, counts=[6, 10, 8])
H0 = H0.astype(np.float32)
W0 = np.random.default_rng(1).normal(size=(K0, P0)).astype(np.float32)
B0 = np.random.default_rng(2).normal(size=K0).astype(np.float32)


def simplex_etf(K, p, rng, scale=2.0, offset=0.0):
    """K class means forming a simplex ETF (scaled rows e_k - 1/K, rotated into R^p)."""
    q, _ = np.linalg.qr(rng.normal(size=(p, K)))  # orthonormal columns
    d = np.eye(K) - 1.0 / K
    return offset + scale * d @ q.T


# ------------------------------------------------------------------------ exact values


def test_two_class_1d_by_hand():
    # class 0: {0, 2} (mean 1), class 1: {4, 6} (mean 5), mu_G = 3
    h, y = np.array([[0.0], [2.0], [4.0], [6.0]]), np.array([0, 0, 1, 1])
    s = M.scatter(h, y, 2)
    np.testing.assert_allclose(s.within, [[1.0]], rtol=1e-6)  # (1+1+1+1)/4
    np.testing.assert_allclose(s.between, [[4.0]], rtol=1e-6)  # (2*4 + 2*4)/4
    np.testing.assert_allclose(s.means, [[1.0], [5.0]], rtol=1e-6)
    np.testing.assert_allclose(s.global_mean, [3.0], rtol=1e-6)
    np.testing.assert_allclose(s.counts, [2, 2])
    np.testing.assert_allclose(M.separation_fuzziness(h, y, 2), 0.25, rtol=1e-6)
    np.testing.assert_allclose(M.trace_ratio(h, y, 2), 0.25, rtol=1e-6)
    np.testing.assert_allclose(M.nc1(h, y, 2), 0.125, rtol=1e-6)
    np.testing.assert_allclose(M.class_means(h, y, 2), [[1.0], [5.0]], rtol=1e-6)


def test_imbalanced_1d_by_hand_and_global_mean_choice():
    # class 0: {0, 2} (mean 1), class 1: {5}; Sigma_W = (1 + 1 + 0)/3 = 2/3
    h, y = np.array([[0.0], [2.0], [5.0]]), np.array([0, 0, 1])
    # samples: mu_G = 7/3, Sigma_B = (2 (4/3)^2 + (8/3)^2)/3 = 32/9, D = (2/3)/(32/9) = 3/16
    s = M.scatter(h, y, 2)
    np.testing.assert_allclose(s.within, [[2 / 3]], rtol=1e-6)
    np.testing.assert_allclose(s.between, [[32 / 9]], rtol=1e-6)
    np.testing.assert_allclose(s.global_mean, [7 / 3], rtol=1e-6)
    np.testing.assert_allclose(M.separation_fuzziness(h, y, 2), 3 / 16, rtol=1e-5)
    np.testing.assert_allclose(M.trace_ratio(h, y, 2), 3 / 16, rtol=1e-5)
    # mean of class means: mu_G = 3, Sigma_B = (2 * 4 + 1 * 4)/3 = 4, D = 1/6
    s = M.scatter(h, y, 2, global_mean="classes")
    np.testing.assert_allclose(s.between, [[4.0]], rtol=1e-6)
    np.testing.assert_allclose(s.global_mean, [3.0], rtol=1e-6)
    np.testing.assert_allclose(M.separation_fuzziness(h, y, 2, global_mean="classes"), 1 / 6, rtol=1e-5)
    np.testing.assert_allclose(M.trace_ratio(h, y, 2, global_mean="classes"), 1 / 6, rtol=1e-5)
    # equinorm of the centred means: |1 - 7/3| = 4/3, |5 - 7/3| = 8/3 -> std/mean = 1/3
    np.testing.assert_allclose(M.nc2_equinorm(h, y, 2), 1 / 3, rtol=1e-5)
    np.testing.assert_allclose(M.nc2_equinorm(h, y, 2, global_mean="classes"), 0.0, atol=1e-6)


@pytest.mark.parametrize("K, p", [(4, 6)])
def test_simplex_etf_is_collapsed(K, p):
    rng = np.random.default_rng(K)
    means = simplex_etf(K, p, rng, scale=3.0, offset=rng.normal(size=p))
    y = np.repeat(np.arange(K), 4)
    h = means[y]  # zero within-class spread
    assert float(M.separation_fuzziness(h, y, K)) == pytest.approx(0.0, abs=1e-9)
    assert float(M.nc1(h, y, K)) == pytest.approx(0.0, abs=1e-9)
    assert float(M.trace_ratio(h, y, K)) == pytest.approx(0.0, abs=1e-9)
    for f in (M.nc2_equinorm, M.nc2_equiangularity, M.nc2_max_angle):
        assert float(f(h, y, K)) == pytest.approx(0.0, abs=1e-5)
    w = 0.7 * (means - means.mean(0))  # self-dual head; the bias absorbs the offset
    b = -w @ means.mean(0)
    for f in (M.equinorm, M.equiangularity, M.max_angle):
        assert float(f(w)) == pytest.approx(0.0, abs=1e-5)
    assert float(M.nc3(h, y, K, w)) == pytest.approx(0.0, abs=1e-6)
    assert float(M.nc4(h, y, K, w, b)) == 0.0
    assert float(M.ncm_error(h, y, K)) == 0.0
    out = M.collapse(h, y, K, w, b)
    for key, value in out.items():
        assert float(value) == pytest.approx(0.0, abs=1e-5), key
    # a head pointing elsewhere is not self-dual; the opposite head maximises NC3 (= 4)
    assert float(M.nc3(h, y, K, -w)) == pytest.approx(4.0, rel=1e-5)


def test_nc2_of_known_vectors():
    # equal norms 1, 1, 2 -> std/mean = (sqrt(2)/3) / (4/3)
    v = np.array([[1.0, 0.0], [0.0, 1.0], [-2.0, 0.0]])
    np.testing.assert_allclose(M.equinorm(v), np.sqrt(2) / 4, rtol=1e-6)
    # cosines of the pairs: 0, -1, 0 (each twice): std = sqrt(2)/3, |cos + 1/2| = 1/2 each
    np.testing.assert_allclose(M.equiangularity(v), np.sqrt(2) / 3, rtol=1e-6)
    np.testing.assert_allclose(M.max_angle(v), 0.5, rtol=1e-6)


def test_nc4_counts_disagreements_and_uses_bias():
    # 1-D, means 0 (class 0) and 10 (class 1); head logits (0, h) -> predicts 1 iff h > 0
    h = np.array([[-1.0], [1.0], [9.0], [11.0]])
    y = np.array([0, 0, 1, 1])
    w = np.array([[0.0], [1.0]])
    assert float(M.nc4(h, y, 2, w)) == pytest.approx(0.25)  # h = 1: head 1, nearest 0
    assert float(M.nc4(h, y, 2, w, bias=np.array([0.0, -5.0]))) == 0.0
    assert float(M.collapse(h, y, 2, w)["nc4"]) == pytest.approx(0.25)


def test_d_is_k_nc1_and_matches_papyan_unweighted_formula(x64):
    rng = np.random.default_rng(1)
    K = 5
    h, y = blobs(rng, K, 12, 7)
    d = float(M.separation_fuzziness(h, y, K))
    np.testing.assert_allclose(d, K * float(M.nc1(h, y, K)), rtol=1e-12)
    papyan, _, _ = dense_fuzziness(h, y, K, unweighted=True)  # Sigma_B = (1/K) sum_k ...
    np.testing.assert_allclose(float(M.nc1(h, y, K)), papyan / K, rtol=1e-9)


# --------------------------------------------------------------- fast against dense


@pytest.mark.parametrize("global_mean", ["samples", "classes"])
def test_fast_equals_dense_pinv_small_p(x64, global_mean):
    rng = np.random.default_rng(2)
    K, p = 4, 8
    h, y = blobs(rng, K, None, p, counts=[5, 9, 13, 7])
    want, sw, sb = dense_fuzziness(h, y, K, global_mean)
    s = M.scatter(h, y, K, global_mean=global_mean)
    np.testing.assert_allclose(s.within, sw, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(s.between, sb, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(M.separation_fuzziness(h, y, K, global_mean=global_mean), want, rtol=1e-9)
    np.testing.assert_allclose(
        M.trace_ratio(h, y, K, global_mean=global_mean), np.trace(sw) / np.trace(sb), rtol=1e-10
    )


def test_fast_equals_dense_rank_deficient_between(x64):
    # K = 4 class means on a line (Sigma_B of rank 1), and p < K (rank <= p)
    rng = np.random.default_rng(3)
    K, p = 4, 6
    direction = rng.normal(size=p)
    centres = np.array([0.0, 1.0, 2.5, 4.0])[:, None] * direction
    y = np.repeat(np.arange(K), 10)
    h = centres[y] + 0.3 * rng.normal(size=(40, p))
    h -= np.stack([h[y == k].mean(0) for k in range(K)])[y] - centres[y]  # exact means
    want, _, sb = dense_fuzziness(h, y, K)
    assert np.linalg.matrix_rank(sb) == 1
    np.testing.assert_allclose(M.separation_fuzziness(h, y, K), want, rtol=1e-8)
    h2, y2 = blobs(rng, 5, 8, 2)  # p = 2 < K - 1 = 4
    want2, _, _ = dense_fuzziness(h2, y2, 5)
    np.testing.assert_allclose(M.separation_fuzziness(h2, y2, 5), want2, rtol=1e-9)


def test_fast_in_2000_dims_equals_dense_in_50(x64):
    rng = np.random.default_rng(4)
    K, p_low, p_high = 10, 50, 2000
    h_low, y = blobs(rng, K, 20, p_low)
    q, _ = np.linalg.qr(rng.normal(size=(p_high, p_low)))  # orthonormal embedding R^50 -> R^2000
    h_high = h_low @ q.T + 5.0  # embedded and translated
    want, _, _ = dense_fuzziness(h_low, y, K)
    np.testing.assert_allclose(M.separation_fuzziness(h_high, y, K), want, rtol=1e-8)
    np.testing.assert_allclose(M.nc1(h_high, y, K), want / K, rtol=1e-8)


# --------------------------------------------------------------------------- invariances


def feature_metrics(K):
    """The metrics of (features, labels) alone, by name."""
    return {
        "D": lambda h, y: M.separation_fuzziness(h, y, K),
        "D_tr": lambda h, y: M.trace_ratio(h, y, K),
        "nc1": lambda h, y: M.nc1(h, y, K),
        "nc2_equinorm": lambda h, y: M.nc2_equinorm(h, y, K),
        "nc2_equiangularity": lambda h, y: M.nc2_equiangularity(h, y, K),
        "nc2_max_angle": lambda h, y: M.nc2_max_angle(h, y, K),
        "ncm_error": lambda h, y: M.ncm_error(h, y, K),
    }


def test_rotation_translation_permutation_invariance():
    rng = np.random.default_rng(5)
    K, h, y, w = K0, H0, Y0, W0
    q, _ = np.linalg.qr(rng.normal(size=(P0, P0)))
    q = q.astype(np.float32)
    perm = rng.permutation(len(y))
    variants = {
        "rotated": (h @ q.T, y),
        "translated": (h + 50.0 * rng.normal(size=P0).astype(np.float32), y),
        "permuted": (h[perm], y[perm]),
    }
    fns = feature_metrics(K)
    base = {name: float(f(h, y)) for name, f in fns.items()}
    for how, (h2, y2) in variants.items():
        for name, f in fns.items():
            np.testing.assert_allclose(float(f(h2, y2)), base[name], rtol=2e-4, err_msg=f"{name} {how}")
    # the head-dependent metrics: rotate the head with the features; permute samples
    for name, f in {"nc3": M.nc3, "nc4": M.nc4}.items():
        want = float(f(h, y, K, w))
        np.testing.assert_allclose(float(f(h @ q.T, y, K, w @ q.T)), want, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(float(f(h[perm], y[perm], K, w)), want, rtol=1e-5, atol=1e-6)


def test_large_offset_does_not_create_spurious_rank():
    # float32: features at a large offset; the null direction of A is projected out
    rng = np.random.default_rng(6)
    K = 3
    h, y = blobs(rng, K, 30, 4)
    d0 = float(M.separation_fuzziness(h, y, K))
    d1 = float(M.separation_fuzziness((h + 1e4).astype(np.float32), y, K))
    np.testing.assert_allclose(d1, d0, rtol=2e-2)


# ---------------------------------------------------------------------------- jit / vmap


def test_jit_and_vmap_match_unbatched_calls():
    rng = np.random.default_rng(7)
    K, B = K0, 3
    hs, ys = [], []
    for i in range(B):  # B feature sets of the shared shapes, samples in another order
        perm = rng.permutation(len(Y0))
        hs.append(H0[perm] + 0.5 * i * rng.normal(size=H0.shape).astype(np.float32))
        ys.append(Y0[perm])
    H, Y = jnp.asarray(np.stack(hs)), jnp.asarray(np.stack(ys), jnp.int32)
    W, b = jnp.asarray(W0), jnp.asarray(B0)
    fns = {
        **feature_metrics(K),
        "nc3": lambda h, y: M.nc3(h, y, K, W),
        "nc4": lambda h, y: M.nc4(h, y, K, W, b),
        "min_margin": lambda h, y: M.min_margin(M.head_logits(h, W, b), y),
        "loss": lambda h, y: M.cross_entropy(M.head_logits(h, W, b), y),
        "collapse": lambda h, y: M.collapse(h, y, K, W, b),
        "scatter": lambda h, y: M.scatter(h, y, K),
        "class_means": lambda h, y: M.class_means(h, y, K),
    }

    def everything(h, y):
        return {name: f(h, y) for name, f in fns.items()}

    batched = jax.jit(jax.vmap(everything))(H, Y)  # labels batched too
    shared = jax.jit(jax.vmap(everything, in_axes=(0, None)))(H, Y[0])  # one label vector
    for i in range(B):
        for name, f in fns.items():
            for out, y in ((batched, Y[i]), (shared, Y[0])):
                jax.tree.map(
                    lambda a, s: np.testing.assert_allclose(a[i], s, rtol=1e-5, atol=1e-6, err_msg=name),
                    out[name], f(H[i], y),  # unbatched, not under jit
                )


def test_gradient_through_fuzziness_is_finite():
    h, y = H0, Y0
    g = jax.grad(lambda h: M.separation_fuzziness(h, y, K0))(jnp.asarray(h))
    assert g.shape == h.shape and bool(jnp.all(jnp.isfinite(g)))


# ------------------------------------------------------------------------ inside a solve


def test_metrics_inside_a_solve_match_saved_states():
    classes = lesde.Classes.balanced(num_classes=3, per_class=6)
    model = lesde.LESDE(
        lesde.LocallyElastic(alpha=1.0, beta=0.2), "ce", classes,
        noise=lesde.Noise(independent=0.05),
    )
    ts = jnp.linspace(0.0, 4.0, 3)
    key = jax.random.key(0)
    traj = lesde.simulate(
        model, t1=4.0, dt=0.1, key=key, ts=ts,
        fn=lambda t, x, model: {
            "nc1": lesde.metrics.nc1(x, model.classes.labels, model.num_classes),
            "D": lesde.metrics.separation_fuzziness(x, model.classes.labels, model.num_classes),
        },
    )
    states = lesde.simulate(model, t1=4.0, dt=0.1, key=key, ts=ts).ys
    for i in range(len(ts)):
        x = states[i]
        np.testing.assert_allclose(traj.ys["nc1"][i], M.nc1(x, classes.labels, 3), rtol=1e-4)
        np.testing.assert_allclose(traj.ys["D"][i], M.separation_fuzziness(x, classes.labels, 3), rtol=1e-4)
        want, _, _ = dense_fuzziness(np.asarray(x), np.asarray(classes.labels), 3)
        np.testing.assert_allclose(traj.ys["D"][i], want, rtol=2e-3)


# ------------------------------------------------------------------------ degenerate inputs


def test_one_class_has_infinite_fuzziness():
    rng = np.random.default_rng(9)
    h, y = rng.normal(size=(5, 3)), np.zeros(5, int)
    assert float(M.separation_fuzziness(h, y, 1)) == np.inf
    assert float(M.trace_ratio(h, y, 1)) == np.inf
    assert float(M.nc1(h, y, 1)) == np.inf
    np.testing.assert_allclose(M.scatter(h, y, 1).between, np.zeros((3, 3)), atol=1e-6)
    assert float(M.ncm_error(h, y, 1)) == 0.0
    for f in (M.nc2_equinorm, M.nc2_equiangularity, M.nc2_max_angle):
        with pytest.raises(ValueError, match="needs num_classes >= 2, got num_classes = 1"):
            f(h, y, 1)
    with pytest.raises(ValueError, match="needs num_classes >= 2"):
        M.nc3(h, y, 1, np.ones((1, 3)))
    # all class means equal (K = 2): no between-class scatter either
    h2 = np.array([[0.0], [2.0], [1.0], [1.0]])
    assert float(M.separation_fuzziness(h2, np.array([0, 0, 1, 1]), 2)) == np.inf
    assert float(M.trace_ratio(h2, np.array([0, 0, 1, 1]), 2)) == np.inf


def test_empty_class():
    h, y = H0, Y0
    # class 3 of K = 4 is empty: D, D_tr and scatter ignore it (n_k = 0) ...
    np.testing.assert_allclose(M.separation_fuzziness(h, y, 4), M.separation_fuzziness(h, y, 3), rtol=1e-5)
    np.testing.assert_allclose(M.trace_ratio(h, y, 4), M.trace_ratio(h, y, 3), rtol=1e-5)
    s = M.scatter(h, y, 4)
    assert s.counts[3] == 0 and bool(jnp.all(jnp.isnan(s.means[3])))
    # ... the metrics that average over classes name it ...
    msg = re.escape("class(es) [3] of num_classes = 4 are empty in labels")
    for f in (M.nc1, M.nc2_equinorm, M.nc2_equiangularity, M.ncm_error, M.class_means):
        with pytest.raises(ValueError, match=msg):
            f(h, y, 4)
    with pytest.raises(ValueError, match=msg):
        M.nc4(h, y, 4, np.ones((4, P0)))
    # ... and give NaN under jit
    for f in (M.nc1, M.nc2_equinorm, M.ncm_error):
        assert bool(jnp.isnan(jax.jit(lambda h, y: f(h, y, 4))(h, y)))
    assert bool(jnp.isnan(jax.jit(lambda h, y: M.nc4(h, y, 4, jnp.ones((4, P0))))(h, y)))


def test_fewer_samples_than_classes():
    h, y = np.array([[0.0, 1.0], [2.0, 0.0]]), np.array([0, 2])
    with pytest.raises(ValueError, match=re.escape("(N = 2 < num_classes = 3)")):
        M.nc1(h, y, 3)
    assert float(M.separation_fuzziness(h, y, 3)) == pytest.approx(0.0, abs=1e-6)  # Sigma_W = 0


def test_nan_features():
    h, y = H0.copy(), Y0
    h[7, 2] = np.nan
    h[9, 0] = np.inf
    msg = re.escape("features must be finite, got nan at sample 7, feature 2 (features[7, 2])")
    fns = [
        lambda h, y: M.separation_fuzziness(h, y, 3),
        lambda h, y: M.trace_ratio(h, y, 3),
        lambda h, y: M.nc1(h, y, 3),
        lambda h, y: M.nc2_equinorm(h, y, 3),
        lambda h, y: M.ncm_error(h, y, 3),
        lambda h, y: M.nc4(h, y, 3, jnp.ones((3, 5))),
        lambda h, y: M.collapse(h, y, 3, jnp.ones((3, 5)))["nc4"],
        lambda h, y: M.scatter(h, y, 3).within,
    ]
    for f in fns:
        with pytest.raises(ValueError, match=msg):
            f(h, y)
        assert bool(jnp.all(jnp.isnan(jax.jit(f)(h, y))))
    with pytest.raises(ValueError, match="features must be finite"):
        M.linearly_separable(h, y, 3)


def test_bad_shapes_and_values_are_named():
    h, y = H0, Y0
    with pytest.raises(ValueError, match=re.escape("labels must have shape (N,) = (24,) to match features, got shape (23,)")):
        M.separation_fuzziness(h, y[:-1], 3)
    y_bad = y.copy()
    y_bad[5] = 3
    with pytest.raises(ValueError, match=re.escape("labels must lie in 0..2 (num_classes = 3), got labels[5] = 3")):
        M.nc1(h, y_bad, 3)
    y_neg = y.copy()
    y_neg[0] = -1
    with pytest.raises(ValueError, match=re.escape("got labels[0] = -1")):
        M.trace_ratio(h, y_neg, 3)
    with pytest.raises(ValueError, match="labels must be integers"):
        M.nc1(h, y + 0.5, 3)
    with pytest.raises(ValueError, match=re.escape("features must be a 2-D (N, p) array, got shape (24,)")):
        M.nc1(h[:, 0], y, 3)
    with pytest.raises(ValueError, match="num_classes must be a positive integer, got 0"):
        M.nc1(h, y, 0)
    with pytest.raises(ValueError, match=re.escape("head must have shape (num_classes, p) = (3, 5)")):
        M.nc3(h, y, 3, np.ones((5, 3)))  # W transposed
    with pytest.raises(ValueError, match=re.escape("bias must have shape (num_classes,) = (3,)")):
        M.nc4(h, y, 3, np.ones((3, 5)), np.ones(5))
    with pytest.raises(ValueError, match="global_mean must be one of"):
        M.separation_fuzziness(h, y, 3, global_mean="median")
    with pytest.raises(ValueError, match="rtol must be a number in"):
        M.separation_fuzziness(h, y, 3, rtol=-1.0)
    with pytest.raises(ValueError, match=re.escape("vectors must be a 2-D (K, p) array")):
        M.equinorm(np.ones(3))
    with pytest.raises(ValueError, match="labels must be integers"):
        jax.jit(lambda h, y: M.nc1(h, y, 3))(h, y.astype(np.float32))


def test_rank_tolerance_argument(x64):
    # K = 3 class means with the third a tiny step off the line of the other two: Sigma_B
    # has one O(1) and one tiny eigenvalue; rtol decides whether the tiny one counts
    rng = np.random.default_rng(13)
    c = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 1e-4]])
    y = np.repeat(np.arange(3), 5)
    h = c[y] + 0.1 * rng.normal(size=(15, 2))
    h -= np.stack([h[y == k].mean(0) for k in range(3)])[y] - c[y]  # exact class means
    _, sw, sb = dense_fuzziness(h, y, 3)
    for rtol in (None, 1e-2):
        # the cut s_j <= rtol s_max on A is rcond = rtol^2 on the eigenvalues of Sigma_B
        rcond = 1e-15 if rtol is None else rtol**2
        want = np.trace(sw @ np.linalg.pinv(sb, rcond=rcond, hermitian=True))
        np.testing.assert_allclose(M.separation_fuzziness(h, y, 3, rtol=rtol), want, rtol=1e-6)
    assert float(M.separation_fuzziness(h, y, 3, rtol=1e-2)) < 1e-3 * float(M.separation_fuzziness(h, y, 3))


def test_cross_entropy_and_accuracy_through_a_head():
    h, y, w, b = H0.astype(np.float64), Y0, W0.astype(np.float64), B0.astype(np.float64)
    n = len(y)
    z = h @ w.T + b
    np.testing.assert_allclose(M.head_logits(h, w, b), z, rtol=1e-5, atol=1e-5)
    want = np.mean(np.log(np.sum(np.exp(z), 1)) - z[np.arange(n), y])
    np.testing.assert_allclose(M.cross_entropy(M.head_logits(h, w, b), y), want, rtol=1e-5)
    np.testing.assert_allclose(M.accuracy(M.head_logits(h, w, b), y), np.mean(z.argmax(1) == y))
    zs = np.sort(np.where(np.eye(3, dtype=bool)[y], -np.inf, z), 1)[:, -1]
    np.testing.assert_allclose(M.min_margin(z, y), np.min(z[np.arange(n), y] - zs), rtol=1e-5)
