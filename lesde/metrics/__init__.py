from ._basic import (
    accuracy as accuracy,
    cross_entropy as cross_entropy,
    margins as margins,
    observables as observables,
)
