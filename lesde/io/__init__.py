from ._config import (
    ConfigError as ConfigError,
    DEFAULT_CONFIG as DEFAULT_CONFIG,
    load_config as load_config,
    parse_config as parse_config,
    RunConfig as RunConfig,
    SpringRunConfig as SpringRunConfig,
    SweepConfig as SweepConfig,
)
from ._results import versions as versions, write_run as write_run
from ._sweep_io import run_sweep as run_sweep
