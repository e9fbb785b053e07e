from ._brownian import FoldInBrownianPath as FoldInBrownianPath
from ._layout import (
    AbstractLayout as AbstractLayout,
    choose_layout as choose_layout,
    ClassMajor as ClassMajor,
    LAYOUTS as LAYOUTS,
    Natural as Natural,
    SampleMinor as SampleMinor,
)
from ._tsit5 import UnrolledTsit5 as UnrolledTsit5
from ._simulate import (
    simulate as simulate,
    SOLVERS as SOLVERS,
    STATUS_NAMES as STATUS_NAMES,
    Trajectory as Trajectory,
)
from ._sweep import fingerprint_of as fingerprint_of, Grid as Grid, member_key as member_key, sweep as sweep
