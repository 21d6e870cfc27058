"""Rank analysis (ReXNet paper, section 3): estimators, rank along a network, random-layer and
design-space studies. See ``tools/rank_analysis.py`` and ``tools/rank_study.py``."""
from .estimators import (CENTRINGS, DEFAULT_RTOL, ESTIMATORS, batched_estimates, effective_rank,  # noqa: F401
                         estimates_from_singular_values, feature_matrix, is_row_capped, measure, nuclear_rank,
                         numerical_rank, rank_estimates, rank_ratios, singular_values, stable_rank)
from .network import analyse_models, build_model, find_layers, rank_profile  # noqa: F401
from .single_layer import NONLINEARITIES, single_layer_study  # noqa: F401
from .single_layer_report import paper_claims  # noqa: F401
from .design_space import SPACES, design_space_study, space_summary  # noqa: F401
