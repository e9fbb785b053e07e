"""Runs: the configurations (YAML, validated before any compute) and the pipelines of
lesde's commands, as a Python API. Each `*_command` function is one command of the
`lesde` command line: it reads its config, checks every input and the output folder,
computes, writes its files (summary.json last: its presence marks a complete run),
reports, and returns the command's exit status.

- `simulate_command` (`run_simulation`): one LE-SDE run;
- `sweep_command` (`run_sweep`): a batched parameter sweep, resumable;
- `boundary_command` (`run_boundary`, `BoundaryConfig`): a phase boundary located by a
  batched bracket search, with its width and finite-size scaling;
- `spring_command` (`run_spring`, `spring_theory`): a spring-block model over seeds;
- `train_command` (`run_trajectories`, `run_separation`): training real networks;
- `fit_command` (`build_fit`, `closed_form_estimates`, `run_fit`, `fit_dataset`): a fit
  of an LE-ODE / LE-SDE to a trajectory log;
- `plot_command`: the pictures of a sweep result;
- `configs_command` (`installed_configs`): the configs installed with lesde;
- `import_extensions`: the modules of `--import` (gradient models, metrics of one's own).
"""

from ._config import (
    ConfigError as ConfigError,
    DEFAULT_CONFIG as DEFAULT_CONFIG,
    DEFAULT_SPRING_CONFIG as DEFAULT_SPRING_CONFIG,
    load_config as load_config,
    parse_config as parse_config,
    RunConfig as RunConfig,
    SpringRunConfig as SpringRunConfig,
    SweepConfig as SweepConfig,
)
from ._boundary import (
    boundary_command as boundary_command,
    mean_field_boundary as mean_field_boundary,
    run_boundary as run_boundary,
)
from ._boundary_config import BoundaryConfig as BoundaryConfig
from ._configs import configs_command as configs_command, installed_configs as installed_configs
from ._extensions import import_extensions as import_extensions
from ._fit import (
    closed_form_estimates as closed_form_estimates,
    fit_command as fit_command,
    fit_dataset as fit_dataset,
    run_fit as run_fit,
)
from ._fit_config import (
    build_fit as build_fit,
    FitConfig as FitConfig,
    load_fit_config as load_fit_config,
)
from ._plot import plot_command as plot_command
from ._report import (
    checked as checked,
    flagged_warning as flagged_warning,
    REFUSED as REFUSED,
)
from ._simulate import run_simulation as run_simulation, simulate_command as simulate_command
from ._spring import run_spring as run_spring, spring_command as spring_command, spring_theory as spring_theory
from ._sweep import run_sweep as run_sweep, sweep_command as sweep_command
from ._train import (
    run_separation as run_separation,
    run_trajectories as run_trajectories,
    train_command as train_command,
)
from ._train_config import load_train_config as load_train_config
