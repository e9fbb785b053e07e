"""The extension points of "Extending lesde" (docs/extending.md): a gradient model, a
kind of noise and a metric, each one definition plus its registration, usable by name
from a config."""

import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
import yaml
from scipy.integrate import solve_ivp

import lesde
from lesde import runs
from lesde.cli import main
from lesde.metrics import METRICS, register_metric
from lesde.models import GRADIENT_MODELS, NOISES, register_gradient, SCHEDULES


@pytest.fixture
def registries():
    """Registrations made by a test are undone after it."""
    saved = dict(GRADIENT_MODELS), dict(NOISES), dict(SCHEDULES), dict(METRICS)
    yield
    for registry, old in zip((GRADIENT_MODELS, NOISES, SCHEDULES, METRICS), saved):
        registry.clear()
        registry.update(old)


MARGIN = '''
from typing import ClassVar

import jax
import jax.numpy as jnp
from lesde.models import AbstractGradient, register_gradient


@register_gradient
class Margin(AbstractGradient):
    """G(x, k) = -softplus(1 - x_k) e_k: pulls the own logit up to 1."""

    name: ClassVar[str] = "margin"
    is_linear: ClassVar[bool] = False
    head_matrix: None = None

    def __call__(self, x, k, num_classes):
        e = jax.nn.one_hot(k, num_classes, dtype=x.dtype)
        own = jnp.sum(x * e, axis=-1, keepdims=True)
        return -jax.nn.softplus(1 - own) * e
'''
"""The gradient model of docs/extending.md: run in the test (`_define_margin`) and
written as an extension module for the command line (`EXTENSION`)."""

METRIC = '''
import jax.numpy as jnp


def class_mean_norm(t, x, model):
    return jnp.mean(jnp.linalg.norm(model.classes.mean(x), axis=-1))
'''

COMMON = '''
from typing import ClassVar

import jax.numpy as jnp
from lesde.models import AbstractNoise, register_noise


@register_noise
class Common(AbstractNoise):
    """sigma(t) dW on every sample i, one W in R^p for all."""

    name: ClassVar[str] = "common"

    def brownian_shape(self, classes, dim):
        return (1, dim)

    def apply(self, sigma, dw, classes):
        return jnp.broadcast_to(sigma * dw, (classes.num_samples, dw.shape[-1]))
'''
"""The kind of noise of docs/extending.md."""

EXTENSION = MARGIN + COMMON + METRIC + '''
from lesde.metrics import register_metric

register_metric("class_mean_norm", class_mean_norm)
'''


def _run(source: str) -> dict:
    namespace: dict = {}
    exec(source, namespace)
    return namespace


def _define_margin():
    """Defines and registers the Margin gradient model; returns its class."""
    return _run(MARGIN)["Margin"]


class_mean_norm = _run(METRIC)["class_mean_norm"]


CONFIG = {
    "model": {"gradient": "margin", "num_classes": 3, "per_class": 5,
              "impact": {"alpha": 1.0, "beta": 0.0}, "noise": {"independent": 0.01}},
    "sweep": {"axes": [{"impact.alpha": [0.5, 2.0]}], "seeds": 2,
              "metrics": ["class_mean_norm", "accuracy"]},
    "solve": {"t1": 5.0, "dt": 0.1},
}


def test_a_registered_gradient_model_and_metric_run_from_a_config(registries, tmp_path):
    with pytest.raises(runs.ConfigError, match=r"model.gradient: Input should be .* \(got 'margin'\)"):
        runs.parse_config(CONFIG, schema=runs.SweepConfig)
    margin = _define_margin()
    with pytest.raises(runs.ConfigError, match=r"unknown \['class_mean_norm'\]"):
        runs.parse_config(CONFIG, schema=runs.SweepConfig)
    register_metric("class_mean_norm", class_mean_norm)
    path = tmp_path / "margin.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    assert runs.sweep_command(path, tmp_path / "out", progress=False) == 0
    with xr.open_dataset(tmp_path / "out" / "sweep.nc") as ds:
        norm, acc = ds["class_mean_norm"].values, ds["accuracy"].values
    # with beta = 0 each class mean moves along its own e_k only: its own logit u obeys
    # du/dt = (alpha/K) softplus(1 - u), u(0) = 0 (up to the initial spread 0.05/sqrt(5)
    # and the noise), and |mean| ~ u
    for i, alpha in enumerate((0.5, 2.0)):
        u = solve_ivp(lambda t, u: alpha / 3 * np.logaddexp(0.0, 1 - u), (0, 5), [0.0],
                      rtol=1e-10, atol=1e-12).y[0, -1]
        np.testing.assert_allclose(norm[i], u, rtol=0.05)
    assert np.all(acc == 1.0)
    # the same numbers as the model built directly, with the gradient model by name
    model = lesde.LESDE(lesde.LocallyElastic(2.0, 0.0), "margin", lesde.Classes.balanced(3, 5),
                        noise=lesde.Noise(0.01))
    assert isinstance(model.gradient, margin)
    traj = lesde.simulate(model, t1=5.0, dt=0.1, key=lesde.solve.member_key(0, 1, 0),
                          fn=lambda t, x, m: {"n": class_mean_norm(t, x, m)})
    np.testing.assert_allclose(norm[1, 0], float(traj.ys["n"][-1]), rtol=1e-5)


def test_a_registered_noise_runs_from_a_config(registries, tmp_path):
    # E = 0 and X(0) = 0: sample i is sigma W(t) + s W_i(t), one W in R^p for all and
    # one W_i per sample (independent noise s), so the mean of a class of n samples is
    # sigma W(t) + s (sum of n W_i) / n and |class mean|^2 has mean (sigma^2 + s^2/n) p t
    # (the metric averages the norms of the K class means, which differ only by the
    # small independent part)
    cfg = {
        "model": {"gradient": "identity", "num_classes": 3, "per_class": 4,
                  "impact": {"alpha": 0.0, "beta": 0.0},
                  "noise": {"independent": 0.05, "common": 0.1}, "init": {"std": 0.0}},
        "sweep": {"axes": [{"noise.common": [0.1, 0.3]}], "seeds": 400,
                  "metrics": ["class_mean_norm"]},
        "solve": {"t1": 2.0, "dt": 0.5},
    }
    with pytest.raises(runs.ConfigError, match=r"unknown noise 'common'"):
        runs.parse_config(cfg, schema=runs.SweepConfig)
    _run(COMMON)
    register_metric("class_mean_norm", class_mean_norm)
    by_path = {**cfg, "sweep": {**cfg["sweep"],
                                "axes": [{"noise.terms.common.sigma.value": [0.1, 0.3]}]}}
    norms = []
    for name, c in (("spec", cfg), ("path", by_path)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(c))
        assert runs.sweep_command(path, tmp_path / name, progress=False) == 0
        with xr.open_dataset(tmp_path / name / "sweep.nc") as ds:
            norms.append(ds["class_mean_norm"].values)
    np.testing.assert_array_equal(*norms)  # the same parameter under its two names
    for i, sigma in enumerate((0.1, 0.3)):
        # the mean of 400 draws of chi^2_3 / 3 has relative standard deviation 0.041
        want = (sigma**2 + 0.05**2 / 4) * 3 * 2.0
        np.testing.assert_allclose(np.mean(norms[0][i] ** 2), want, rtol=0.2)
    with pytest.raises(runs.ConfigError, match=r"noise.common sigma must be >= 0, got -0.1"):
        runs.parse_config({**cfg, "model": {**cfg["model"], "noise": {"common": -0.1}}},
                          schema=runs.SweepConfig)


EXPONENTIAL = '''
from typing import ClassVar

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, Float
from lesde.models import AbstractSchedule, check_positive, register_schedule


@register_schedule
class Exponential(AbstractSchedule):
    """f(t) = c exp(-t / tau)."""

    name: ClassVar[str] = "exponential"
    c: Float[Array, ""]
    tau: Float[Array, ""]

    def __init__(self, c, tau=1.0):
        self.c, self.tau = jnp.asarray(c, float), jnp.asarray(tau, float)

    def __check_init__(self):
        check_positive("tau", self.tau)

    def __call__(self, t):
        return self.c * jnp.exp(-t / self.tau)

    def integral(self, t):
        return self.c * self.tau * (1 - jnp.exp(-t / self.tau))

    @property
    def shape(self):
        return ()

    def check_nonnegative(self, name):
        if self.c < 0:
            raise ValueError(f"{name} must be >= 0, got c = {self.c}")

    def time_scaled(self, stretch, amplitude):
        return Exponential(amplitude * self.c, self.tau / stretch)
'''


def test_a_registered_schedule_is_built_and_swept_from_a_config(registries):
    cfg = {"model": {"gradient": "identity", "num_classes": 3, "per_class": 4,
                     "impact": {"alpha": {"exponential": {"c": 1.0, "tau": 2.0}}, "beta": 0.2},
                     "noise": {"shared": {"exponential": 0.1}}},
           "sweep": {"axes": [{"impact.alpha.tau": [1.0, 4.0]}]},
           "solve": {"t1": 1.0, "dt": 0.1}}
    with pytest.raises(runs.ConfigError, match=r"unknown schedule 'exponential'"):
        runs.parse_config(cfg, schema=runs.SweepConfig)
    _run(EXPONENTIAL)
    config = runs.parse_config(cfg, schema=runs.SweepConfig)
    assert config.model.sweepable() == [
        "impact.alpha.c", "impact.alpha.tau", "impact.beta", "noise.shared", "noise.shared.tau",
        "init.mean", "init.std"]
    model = config.build({"impact.alpha.tau": 4.0})
    t = 3.0
    assert float(model.impact.alpha(t)) == pytest.approx(np.exp(-t / 4.0), rel=1e-6)
    assert float(model.noise.level("shared")(t)) == pytest.approx(0.1 * np.exp(-t), rel=1e-6)
    # the LE-ODE of the class means with this alpha(t) follows the identity model's
    # closed form, which reads A(t) = int_0^t alpha from the schedule's own integral
    ode = lesde.LEODE(model.impact, "identity", 3)
    xbar0 = jnp.asarray(np.random.default_rng(0).normal(size=(3, 3)), jnp.float32)
    traj = lesde.simulate(ode, t1=t, dt=0.01, y0=xbar0)
    np.testing.assert_allclose(np.asarray(traj.ys[-1]),
                               np.asarray(lesde.models.closed_form(ode, xbar0, t)), rtol=1e-4)
    for bad, match in (({"exponential": {"c": 1.0, "tau": -1.0}}, "tau must be > 0, got -1.0"),
                       ({"exponential": {"c": 1.0, "rate": 1.0}},
                        r"exponential has no argument 'rate'; it takes \['c', 'tau'\]")):
        with pytest.raises(runs.ConfigError, match=rf"model.impact.alpha: {match}"):
            runs.parse_config({**cfg, "model": {**cfg["model"], "impact": {"alpha": bad, "beta": 0.2}}},
                              schema=runs.SweepConfig)
    with pytest.raises(runs.ConfigError, match=r"sweep.axes: cell 0 \(impact.alpha.tau = -1\): "
                                               r"tau must be > 0, got -1.0"):
        runs.parse_config({**cfg, "sweep": {"axes": [{"impact.alpha.tau": [-1.0]}]}},
                          schema=runs.SweepConfig)


def _docs_block(marker: str) -> str:
    """The Python code block of docs/extending.md that contains `marker`."""
    text = (Path(__file__).parents[1] / "docs" / "extending.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    (block,) = [b for b in blocks if marker in b]
    return block


def test_a_new_model_family_simulates_and_sweeps_by_path():
    ns = _run(_docs_block("class OrnsteinUhlenbeck"))
    ou, set_paths = ns["OrnsteinUhlenbeck"], ns["set_paths"]
    # Euler-Maruyama for dX = -theta X dt + sigma dW is exactly X_n = a X_{n-1} + sigma
    # sqrt(dt) Z_n with a = 1 - theta dt: mean a^n x0, variance sigma^2 dt (1 - a^2n) /
    # (1 - a^2)
    theta, sigma, dt, n = 2.0, 0.5, 0.01, 100
    a = 1 - theta * dt
    model = ou(jnp.asarray(theta), jnp.asarray(sigma), jnp.ones(40_000))
    x = np.asarray(lesde.simulate(model, t1=n * dt, dt=dt, key=jax.random.key(0)).ys[-1])
    var = sigma**2 * dt * (1 - a ** (2 * n)) / (1 - a**2)
    assert abs(x.mean() - a**n) < 5 * np.sqrt(var / x.size)
    np.testing.assert_allclose(x.var(), var, rtol=5 * np.sqrt(2 / x.size))
    # the page's sweep by the path `theta`: each cell's mean over 4 x 100 draws
    ds = ns["ds"]
    assert ds["theta"].attrs["path"] == "theta" and ds["status"].values.max() == 0
    for th in (1.0, 2.0):
        a = 1 - th * dt
        sd = np.sqrt(sigma**2 * dt * (1 - a ** (2 * n)) / (1 - a**2) / 400)
        assert abs(float(ds["mean"].sel(theta=th).mean()) - a**n) < 5 * sd
    with pytest.raises(ValueError, match="theta must be > 0, got -1.0"):
        set_paths(model, {"theta": -1.0})
    with pytest.raises(ValueError, match=r"cell 1 \(theta = -1\): theta must be > 0, got -1.0"):
        lesde.solve.check_cells(lambda p: set_paths(model, p),
                                lesde.solve.Grid([{"theta": [1.0, -1.0]}]))


def test_registration_is_checked(registries):
    margin = _define_margin()
    assert register_gradient(margin) is margin  # registering the same class again is fine

    class Other(margin):
        pass

    with pytest.raises(ValueError, match="a gradient model named 'margin' is registered already"):
        register_gradient(Other)
    with pytest.raises(ValueError, match="takes a subclass of AbstractGradient"):
        register_gradient(int)
    with pytest.raises(ValueError, match="a metric name must be an identifier"):
        register_metric("class mean", class_mean_norm)
    with pytest.raises(ValueError, match="family must be one of"):
        register_metric("x", class_mean_norm, family="nets")
    with pytest.raises(ValueError, match="a le_sde metric named 'loss' is registered already"):
        register_metric("loss", class_mean_norm)
    # the LE-ODE refuses a gradient model that is not linear, by name
    with pytest.raises(ValueError, match="'margin'"):
        lesde.LEODE(lesde.LocallyElastic(1.0, 0.0), "margin", 3)


def test_the_command_line_imports_extensions(tmp_path):
    ext = tmp_path / "margin_ext.py"
    ext.write_text(EXTENSION)
    cfg = tmp_path / "margin.yaml"
    config = {**CONFIG, "model": {**CONFIG["model"], "noise": {"independent": 0.01, "common": 0.01}}}
    cfg.write_text(yaml.safe_dump(config))
    run = subprocess.run(
        [sys.executable, "-m", "lesde.cli", "sweep", str(cfg), "--out", str(tmp_path / "out"),
         "--quiet", "--import", str(ext)], capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "class_mean_norm (mean over seeds" in run.stdout
    with xr.open_dataset(tmp_path / "out" / "sweep.nc") as ds:
        assert np.isfinite(ds["class_mean_norm"].values).all()


def test_a_bad_extension_is_refused_before_anything_runs(tmp_path, capsys):
    broken = tmp_path / "broken.py"
    broken.write_text("def f(:\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    for ext, match in ((tmp_path / "missing.py", "FileNotFoundError: no such file"),
                       (broken, "SyntaxError"), ("no_such_module_xyz", "ModuleNotFoundError")):
        code = main(["sweep", str(cfg), "--out", str(tmp_path / "o"), "--import", str(ext)])
        err = capsys.readouterr().err
        assert code == 2 and f"lesde sweep: --import {ext}: {match}" in err, err
    assert not (tmp_path / "o").exists()
