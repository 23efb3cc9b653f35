"""The metric zoo: nondecomposable metrics as LPs declared in the DSL (SPEC §6).

Every loss is a :class:`torch.nn.Module` called as ``loss(scores, labels)`` on raw scores,
returning ``1 - estimate`` (0 for a perfect model); ``loss.estimate(scores, labels)`` is the
LP estimate itself and ``loss.problem_for(scores, labels)`` the plain :class:`lpdsl.Problem`
it solves, whose parameter values are ``loss.parameter_values(scores, labels)``::

    prob = loss.problem_for(scores, labels)
    cp_prob, cp_vars = prob.to_cvxpy(*loss.parameter_values(scores, labels))
    report = lpdsl.check(prob, *loss.parameter_values(scores, labels))

See ``docs/metrics.md`` for the models, the degenerate-batch rules and caching.
"""

from lpdsl.metrics.auc import AUCLoss
from lpdsl.metrics.multiclass import MulticlassAUCLoss
from lpdsl.metrics.nmf import NMF
from lpdsl.metrics.ratio import (
    FBetaLoss,
    JaccardLoss,
    PrecisionAtRecallLoss,
    RatioMetricLoss,
    RecallAtPrecisionLoss,
)

__all__ = [
    "NMF",
    "AUCLoss",
    "FBetaLoss",
    "JaccardLoss",
    "MulticlassAUCLoss",
    "PrecisionAtRecallLoss",
    "RatioMetricLoss",
    "RecallAtPrecisionLoss",
]
