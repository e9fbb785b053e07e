"""Fitting LE-SDE models to logged training trajectories.

- Closed-form estimators (`_estimators`): the LE-SDE authors' inversion of the
  identity-model solution for any K, a projected-model inversion for any K,
  Savitzky-Golay rates, the tail index and a power-law fit of alpha_hat(t).
- Class-mean logits of a log (`_logits`): the windowed means the estimators read.
- The tangent-kernel impact of a log as a schedule (`_kernel`).
- Data (`_data`): class means, class moments and dense snapshots, from arrays or logs.
- Parameters (`_params`): the model to fit, its free parameters, the change of time unit.
- Losses (`_losses`): class-mean trajectory loss through the solver, moment matching of
  a simulated ensemble, Euler-Maruyama transition likelihood.
- `fit` (`_fit`): optax through diffrax, one jitted step, early stopping.
- Reports (`_report`): uncertainty (curvature or bootstrap), goodness of fit, held-out
  prediction.
"""

from ._data import (
    check_varies as check_varies,
    ClassMeans as ClassMeans,
    ClassMoments as ClassMoments,
    FitDataError as FitDataError,
    Snapshots as Snapshots,
)
from ._estimators import (
    identity_inversion as identity_inversion,
    power_law_fit as power_law_fit,
    PowerLawFit as PowerLawFit,
    projected_inversion as projected_inversion,
    savgol_rates as savgol_rates,
    tail_index as tail_index,
)
from ._kernel import kernel_impact_schedule as kernel_impact_schedule
from ._logits import class_mean_logits as class_mean_logits, window_rows as window_rows
from ._fit import fit as fit, FitResult as FitResult, loss_value as loss_value
from ._losses import (
    AbstractLeastSquares as AbstractLeastSquares,
    AbstractLoss as AbstractLoss,
    ClassMeanLoss as ClassMeanLoss,
    MomentLoss as MomentLoss,
    TransitionLoss as TransitionLoss,
)
from ._params import (
    check_knots as check_knots,
    free_parameters as free_parameters,
    impact_schedule as impact_schedule,
    nonnegative_noise as nonnegative_noise,
    parameter_names as parameter_names,
    Parameters as Parameters,
    rescale_time as rescale_time,
)
from ._report import (
    bootstrap as bootstrap,
    Curvature as Curvature,
    curvature as curvature,
    fit_report as fit_report,
    impact_matrices as impact_matrices,
    parameter_covariance as parameter_covariance,
)
