from ._brownian import FoldInBrownianPath as FoldInBrownianPath
from ._simulate import (
    simulate as simulate,
    SOLVERS as SOLVERS,
    STATUS_NAMES as STATUS_NAMES,
    Trajectory as Trajectory,
)
