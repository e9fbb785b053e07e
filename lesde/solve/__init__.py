from ._brownian import FoldInBrownianPath as FoldInBrownianPath
from ._layout import (
    AbstractLayout as AbstractLayout,
    choose_layout as choose_layout,
    ClassMajor as ClassMajor,
    LAYOUTS as LAYOUTS,
    Natural as Natural,
    SampleMinor as SampleMinor,
)
from .._tsit5 import UnrolledTsit5 as UnrolledTsit5
from ._health import (
    DIVERGED as DIVERGED,
    INACCURATE as INACCURATE,
    PRECISION_BITS as PRECISION_BITS,
    SOLVER_FAILED as SOLVER_FAILED,
    status_counts as status_counts,
    STATUS_NAMES as STATUS_NAMES,
    SUCCESS as SUCCESS,
)
from ._simulate import simulate as simulate, SOLVERS as SOLVERS, Trajectory as Trajectory
from ._ensemble import (
    choose_ensemble_layout as choose_ensemble_layout,
    ENSEMBLE_LAYOUTS as ENSEMBLE_LAYOUTS,
    simulate_ensemble as simulate_ensemble,
)
from ._store import ChunkStore as ChunkStore, StoreError as StoreError
from ._sweep import (
    check_cells as check_cells,
    dim_name as dim_name,
    fingerprint_of as fingerprint_of,
    Grid as Grid,
    member_key as member_key,
    MemberSolver as MemberSolver,
    sweep as sweep,
)
