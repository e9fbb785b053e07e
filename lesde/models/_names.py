"""Human-readable names of parameters, for result files (`long_name`) and figure axes.

A parameter is named by its path in the model pytree (`impact.alpha.value`,
`noise.terms.independent.sigma.value`, `friction.mu_fwd`) or by a config's name for it
(`impact.alpha`, `noise.independent`, `mu_fwd`); both give the same long name.
"""

import re

PARAMETER_NAMES: dict[str, str] = {
    "alpha": "intra-class impact α",
    "beta": "inter-class impact β",
    "impact.schedule": "impact matrix E",
    "noise.independent": "independent noise σ",
    "noise.shared": "class-shared noise σ_sh",
    "num_classes": "number of classes K",
    "per_class": "samples per class n",
    "num_blocks": "number of blocks L",
    "stiffness": "spring stiffness k",
    "load": "load y",
    "mu_fwd": "friction μ_fwd",
    "mu_back": "friction μ_back",
    "mu_ratio": "friction asymmetry μ_back / μ_fwd",
    "noise": "noise level s",
    "eta": "step size η",
    "mass": "block mass m",
    "damping": "damping γ",
    "decay": "noise decay",
    "smoothing": "friction smoothing",
}
"""Name or path -> long name. A path is looked up by its longest known part (see
`parameter_name`); `register_parameter_name` adds names."""

_GENERIC = ("value", "sigma", "terms", "friction", "chain")  # containers, not quantities


def register_parameter_name(name: str, long_name: str) -> None:
    """Give the parameter `name` (a field name such as `theta`, or a path such as
    `noise.common`) the human-readable `long_name` used in result files and figures.

    Example: `register_parameter_name("theta", "mean-reversion rate θ")`."""
    if not isinstance(long_name, str) or not long_name.strip():
        raise ValueError(f"the long name of {name!r} must be a non-empty string, got {long_name!r}")
    PARAMETER_NAMES[name] = long_name


def parameter_name(path: str) -> str:
    """The long name of the parameter at `path` (a model path or a config's name).

    The generic parts of a path (a schedule's `value`, a noise term's `sigma`, the
    `terms`, `friction` and `chain` containers) are skipped; the longest leading part
    that has a name gives it, the rest follows after a comma, and an index stays an
    index. A path with no known part is its own name.

    Examples: `impact.alpha` and `impact.alpha.value` -> "intra-class impact α";
    `impact.alpha.r` -> "intra-class impact α, r"; `impact.schedule.value[0,1]` ->
    "impact matrix E[0,1]"; `noise.terms.common.sigma.value` -> "common noise σ";
    `friction.mu_fwd` -> "friction μ_fwd"."""
    match = re.fullmatch(r"(.*?)(\[[^\]]*\])?", path)
    body, index = match.group(1), match.group(2) or ""
    parts = [p for p in body.split(".") if p and p not in _GENERIC]
    for i in range(len(parts), 0, -1):
        key = ".".join(parts[:i])
        name = PARAMETER_NAMES.get(key) or PARAMETER_NAMES.get(parts[i - 1])
        if name is None and i == 2 and parts[0] == "noise":  # a registered kind of noise
            name = f"{parts[1]} noise σ"
        if name is not None:
            rest = ".".join(parts[i:])
            return name + index + (f", {rest}" if rest else "")
    return path
