"""Phase boundaries located instead of gridded: for each cell of the outer axes (and each
horizon), where an order parameter (a registered metric reduced over seeds) crosses a
threshold along one inner axis, by a batched bracket search whose rounds advance every
cell's bracket at once (one compiled solve for the whole search), with a confidence
interval from the seeds of the probes; then the width of the transition and its
finite-size scaling.

- `OrderParameter`: a metric, its reduction over seeds (mean with a t-interval, or a
  fraction of seeds with a Clopper-Pearson interval) and the threshold;
- `bracket_search`: the search itself, on any `evaluate(cell, x, probe_id)`;
- `locate_boundary`: the search on members of a model (built as for `lesde.sweep`),
  solved by `lesde.solve.MemberSolver`, as an `xarray.Dataset`; `InnerAxis` the segment
  searched along;
- `transition_width` (a logistic fit or the interval between two thresholds),
  `power_law_fit` and `finite_size_scaling` (the width's power law in T, n or K, with
  the exponent's standard error);
- `CELL_STATUS`: located, not_bracketed, non_monotone, flagged, per cell;
  `search_rounds` and `grid_points`: the cost of a search and of the grid of the same
  resolution.
"""

from ._order import OrderParameter as OrderParameter, REDUCTIONS as REDUCTIONS
from ._search import (
    bracket_search as bracket_search,
    CELL_STATUS as CELL_STATUS,
    grid_points as grid_points,
    search_rounds as search_rounds,
)
from ._locate import (
    GAP_NAME as GAP_NAME,
    InnerAxis as InnerAxis,
    locate_boundary as locate_boundary,
)
from ._scaling import (
    finite_size_scaling as finite_size_scaling,
    logistic as logistic,
    power_law_fit as power_law_fit,
    transition_width as transition_width,
    WIDTH_METHODS as WIDTH_METHODS,
)
