from .._checks import (
    check_finite as check_finite,
    check_nonnegative as check_nonnegative,
    check_positive as check_positive,
    require as require,
)
from ._base import AbstractDynamics as AbstractDynamics, AbstractMap as AbstractMap
from ._classes import Classes as Classes
from ._closed_form import (
    closed_form as closed_form,
    identity_rates as identity_rates,
    projected_coordinates as projected_coordinates,
    projected_euler_factors as projected_euler_factors,
    projected_rates as projected_rates,
)
from ._gradient import (
    AbstractGradient as AbstractGradient,
    CrossEntropy as CrossEntropy,
    GRADIENT_MODELS as GRADIENT_MODELS,
    gradient_model as gradient_model,
    Identity as Identity,
    LinearCE as LinearCE,
    Projected as Projected,
    register_gradient as register_gradient,
    simplex_directions as simplex_directions,
)
from ._impact import AbstractImpact as AbstractImpact, General as General, LocallyElastic as LocallyElastic
from ._le_sde import LEODE as LEODE, LESDE as LESDE
from ._names import (
    parameter_name as parameter_name,
    PARAMETER_NAMES as PARAMETER_NAMES,
    register_parameter_name as register_parameter_name,
)
from ._noise import (
    AbstractNoise as AbstractNoise,
    Independent as Independent,
    Noise as Noise,
    noise_kind as noise_kind,
    NOISES as NOISES,
    NoiseTerm as NoiseTerm,
    register_noise as register_noise,
    Shared as Shared,
)
from ._paths import (
    check_tree as check_tree,
    get_at as get_at,
    leaf_paths as leaf_paths,
    parse_path as parse_path,
    set_at as set_at,
    set_paths as set_paths,
)
from ._schedule import (
    AbstractSchedule as AbstractSchedule,
    as_schedule as as_schedule,
    Constant as Constant,
    Function as Function,
    PiecewiseLinear as PiecewiseLinear,
    PowerLaw as PowerLaw,
    register_schedule as register_schedule,
    Scaled as Scaled,
    schedule_kind as schedule_kind,
    SCHEDULES as SCHEDULES,
)
from ._spring import (
    AbstractSpringBlock as AbstractSpringBlock,
    Chain as Chain,
    Friction as Friction,
    SpringBlockMap as SpringBlockMap,
    SpringBlockSDE as SpringBlockSDE,
)
from ._spring_theory import (
    mean_field_gains as mean_field_gains,
    rectified_velocity as rectified_velocity,
    spring_equilibrium as spring_equilibrium,
    stationary_gains as stationary_gains,
)
