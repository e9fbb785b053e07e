from ._config import (
    ConfigError as ConfigError,
    DEFAULT_CONFIG as DEFAULT_CONFIG,
    load_config as load_config,
    parse_config as parse_config,
    RunConfig as RunConfig,
    SpringRunConfig as SpringRunConfig,
    SweepConfig as SweepConfig,
)
from ._logs import (
    check_log as check_log,
    class_mean_logits as class_mean_logits,
    LogError as LogError,
    make_log as make_log,
    read_csv as read_csv,
    read_log as read_log,
    write_csv as write_csv,
    write_log as write_log,
)
from ._outputs import (
    check_output_dir as check_output_dir,
    check_output_file as check_output_file,
    INTERRUPTED as INTERRUPTED,
    output_lock as output_lock,
    OutputError as OutputError,
    remove_stale as remove_stale,
)
from ._results import versions as versions, write_run as write_run
from ._sweep_io import read_sweep as read_sweep, ResultError as ResultError, run_sweep as run_sweep
from ._fit_config import (
    build_fit as build_fit,
    FitConfig as FitConfig,
    load_fit_config as load_fit_config,
)
