"""Real networks whose training the theories describe: data sets that work offline
(`_data`), Equinox networks (`_networks`), optax training vmapped over independent trials
with the logs of both experiments (`_train`)."""


from ._data import (
    corrupt_labels as corrupt_labels,
    Dataset as Dataset,
    digits as digits,
    from_arrays as from_arrays,
    geomnist as geomnist,
    GEOMNIST_CLASSES as GEOMNIST_CLASSES,
    mnist1d as mnist1d,
    split_per_class as split_per_class,
)
from ._networks import (
    AbstractNetwork as AbstractNetwork,
    apply as apply,
    BNMLP as BNMLP,
    LeNet as LeNet,
    make_network as make_network,
    MLP as MLP,
    NETWORKS as NETWORKS,
)
from ._phase import NOISE_AXES as NOISE_AXES, read_phase_diagram as read_phase_diagram
from ._train import (
    log_spaced_steps as log_spaced_steps,
    MEASURES as MEASURES,
    train_separation as train_separation,
    train_sgd as train_sgd,
)
