"""File formats: trajectory logs (and a logger that writes one from any training loop),
run results, output folders, sweep results."""

from ._logs import (
    check_log as check_log,
    LogError as LogError,
    LogWarning as LogWarning,
    make_log as make_log,
    read_csv as read_csv,
    read_log as read_log,
    write_csv as write_csv,
    write_log as write_log,
)
from ._logger import TrajectoryLogger as TrajectoryLogger
from ._outputs import (
    check_output_dir as check_output_dir,
    check_output_file as check_output_file,
    INTERRUPTED as INTERRUPTED,
    output_lock as output_lock,
    OutputError as OutputError,
    remove_stale as remove_stale,
    TERMINATED as TERMINATED,
)
from ._results import versions as versions, write_run as write_run
from ._sweep_io import read_sweep as read_sweep, RESULT_NAME as RESULT_NAME, ResultError as ResultError
from ._netcdf import (
    annotate as annotate,
    COMMON_ATTRS as COMMON_ATTRS,
    CONVENTIONS as CONVENTIONS,
    flag_attrs as flag_attrs,
    open_result as open_result,
    RESULT_FILES as RESULT_FILES,
    write_netcdf as write_netcdf,
)
