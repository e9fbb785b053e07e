from ._config import (
    ConfigError as ConfigError,
    DEFAULT_CONFIG as DEFAULT_CONFIG,
    load_config as load_config,
    parse_config as parse_config,
    RunConfig as RunConfig,
)
from ._results import write_run as write_run
