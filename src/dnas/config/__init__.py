"""Typed, validated params: one section per stage, loaded from `params.yaml`; one module per
section (base, common, prepare, search, train) and `params` for the whole file.

Every stage validates the whole file before it does anything, so `-S search.tau_max=abc` or an
unknown key stops with one message that names the key, the bad value and what is allowed.
Numbers are cast here: `dvc exp run -S search.tau_max=10` writes the int 10, PyYAML reads
`3e-4` as a string (docs/architecture.md#the-pipeline), and both end up as floats.
"""

from __future__ import annotations

from dnas.config.base import (  # noqa: F401
    DATASET_NAME_PATTERN,
    DATASETS,
    FLOAT32_MAX,
    IMAGE_DATASETS,
    MAX_BATCH,
    MAX_CHANNELS,
    MAX_LAYERS,
    MAX_LIST,
    TEXT_DATASETS,
    BatchSize,
    Channels,
    DatasetName,
    Fraction,
    Layers,
    NonNegFloat,
    Optim,
    PositiveFloat,
    PositiveInt,
    Section,
    Seed,
    _admits_bool,
    _holds_bool,
    _short_repr,
    _wants_number,
    space_of,
    spaces,
)
from dnas.config.common import (  # noqa: F401
    MAX_THREADS,
    Common,
)
from dnas.config.params import (  # noqa: F401
    ADVANCED_FILE,
    MAX_PARAMS_BYTES,
    MAX_PARAMS_NODES,
    MAX_PROBLEMS_SHOWN,
    REQUIRED_KEYS,
    Params,
    _check_complete,
    _check_tree,
    _describe,
    _DuplicateKey,
    _model_at,
    _require_language_model_knobs,
    _StrictLoader,
    _yaml_problem,
    check_track,
    format_validation_error,
    load_params,
    parse_params,
    read_params_file,
    train_is_language_model,
    with_advanced,
)
from dnas.config.prepare import (  # noqa: F401
    Custom,
    Prepare,
    SplitProtocol,
    is_text,
    text_datasets,
)
from dnas.config.search import (  # noqa: F401
    RnnSearch,
    Search,
)
from dnas.config.train import (  # noqa: F401
    Evaluate,
    Plots,
    RnnTrain,
    Train,
)
