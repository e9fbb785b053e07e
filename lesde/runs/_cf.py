"""The CF attributes of the results that the commands write: long names and units of
every variable and coordinate, from the registries of metrics (`METRIC_ATTRS`) and
parameter names (`lesde.models.parameter_name`), and the flags of a status."""

from collections.abc import Mapping

import numpy as np

from ..io import annotate, COMMON_ATTRS, flag_attrs
from ..metrics import metric_attrs
from ..models import parameter_name
from ..solve import STATUS_NAMES


def status_attrs(dtype=np.int32) -> dict:
    """CF attributes of a per-member status (`lesde.solve.STATUS_NAMES`) as flags."""
    return {
        "long_name": "status of the member",
        "units": "1",
        **flag_attrs({name.replace(" ", "_"): code for code, name in STATUS_NAMES.items()}, dtype),
    }


RESULT_ATTRS: dict[str, dict] = {
    **COMMON_ATTRS,
    # lesde simulate
    "loss": metric_attrs("loss"),
    "accuracy": metric_attrs("accuracy"),
    "min_margin": metric_attrs("min_margin"),
    "within_class_trace": metric_attrs("within_class_trace"),
    "class_means": {"long_name": "class mean of the features", "units": "1"},
    "feature": {"long_name": "feature dimension", "units": "1"},
    # lesde spring
    "positions": {"long_name": "block position x_l", "units": "1"},
    # lesde fit
    "data": {"long_name": "class-mean logit of the training log", "units": "1"},
    "model": {"long_name": "class-mean logit of the fitted model", "units": "1"},
    "count": {"long_name": "rows of the log behind the class mean", "units": "1"},
    "impact": {"long_name": "fitted impact matrix E(t)", "units": "1"},
    "logit": {"long_name": "logit", "units": "1"},
    "heldout": {"long_name": "held out of the fit (1) or fitted (0)", "units": "1"},
    "A_hat": {"long_name": "closed-form integrated intra-class impact Â", "units": "1"},
    "B_hat": {"long_name": "closed-form integrated inter-class impact B̂", "units": "1"},
    "alpha_hat": {"long_name": "closed-form intra-class impact per step α̂", "units": "1"},
    "beta_hat": {"long_name": "closed-form inter-class impact per step β̂", "units": "1"},
    "cf_step": {"long_name": "SGD step of the closed-form estimates", "units": "1"},
    # lesde train (separation)
    "D": {"long_name": "separation fuzziness D (He-Su)", "units": "1"},
    "D_trace": {"long_name": "trace ratio Tr Σ_W / Tr Σ_B", "units": "1"},
    "train_loss": {"long_name": "training loss", "units": "1"},
    "train_acc": {"long_name": "training accuracy", "units": "1"},
    "test_acc": {"long_name": "test accuracy", "units": "1"},
    "correlation": {"long_name": "correlation of log D with the layer", "units": "1"},
    "rho": {"long_name": "decay ratio ρ of D per layer", "units": "1"},
    "curve": {"long_name": "min-max normalised load curve of the separation measure", "units": "1"},
    "stop_epoch": {"long_name": "epochs trained before early stopping", "units": "1"},
    "epoch": {"long_name": "epoch", "units": "1"},
    "layer": {"long_name": "layer", "units": "1"},
    "negative_slope": {"long_name": "negative slope of the leaky ReLU", "units": "1"},
    "data_noise": {"long_name": "data noise s (fraction of labels redrawn, input noise / std)", "units": "1"},
    "learning_rate": {"long_name": "learning rate", "units": "1"},
    "dropout": {"long_name": "dropout rate", "units": "1"},
    "batch_size": {"long_name": "batch size", "units": "1"},
}
"""Name -> CF attributes of the variables and coordinates that the commands write."""


def describe(ds, attrs: Mapping[str, Mapping] = {}):
    """`ds` with `long_name` and `units` on every variable and coordinate: from `attrs`,
    `RESULT_ATTRS`, the metric registry (`metric_attrs`), the parameter names of
    coordinates that carry a `path`, or else the name with blanks (units "1"); a
    `status` variable gets its flags (`status_attrs`)."""
    known = {**RESULT_ATTRS, **attrs}
    for name in ds.variables:
        if name in known:
            continue
        var = ds[name]
        if name == "status":
            known[name] = status_attrs(var.dtype)
        elif "path" in var.attrs:
            known[name] = {"long_name": parameter_name(var.attrs["path"]), "units": "1"}
        else:
            known[name] = metric_attrs(str(name))
    return annotate(ds, known)
