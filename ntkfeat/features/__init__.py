"""Feature rules, one per (layer type, method type), found in `table.RULES`.

- `linear`: Dense, Conv, pooling, Flatten, Identity, Dropout, LayerNorm, Aggregate (every method);
- `branching`: serial, parallel, FanOut, FanInSum, FanInProd, FanInConcat (every method);
- `sketch`: activations under `Sketch`; `oneshot`: the one-shot sketch of a whole FC stack (a
  polynomial fit for homogeneous stacks, `oneshot_general` the variance-dependent series otherwise);
- `random_features`: activations under `RandomFeatures`.
"""

from ntkfeat.features import branching, linear, random_features, sketch  # noqa: F401 (they register their rules)
from ntkfeat.features.table import RULES, ApplyContext, InitContext, Rule, register, rule_for

__all__ = ["ApplyContext", "InitContext", "RULES", "Rule", "register", "rule_for"]
