"""The rule table: one feature rule per (layer type, method type).

A rule is a pair of functions kept beside the other rules of its kind:

    init(layer, key, spec, ctx) -> (params, spec_out)     # draws parameters; static bookkeeping
    apply(layer, params, spec, features, ctx) -> features_out

`spec` describes the value entering the layer (`Spec`, or a tuple of them between FanOut and a
FanIn); the init's `ctx` says which method and where the layer sits, the apply's `ctx` which
method and what `feature_fn` received beyond the inputs (e.g. a graph's `pattern`).
Parameters are typed pytrees (a NamedTuple per rule).

Rules registered for method None serve every method; the lookup walks the layer's class
hierarchy, so one rule can serve a family (every `Activation`). Adding a layer is one entry:

    register(MyLayer, None, my_init, my_apply)
"""

from __future__ import annotations

from typing import Callable, NamedTuple


class Rule(NamedTuple):
    init: Callable
    apply: Callable


class InitContext(NamedTuple):
    """Static context of a rule's init.

    method: the `Sketch` or `RandomFeatures` description.
    width: the inner feature width (method.width or method.dim).
    dtype: parameter dtype.
    final: the layer is the last activation of the top-level stack and only width-preserving
      layers follow, so its outputs may split the output dimension instead of each taking `width`.
    where: the layer's position for error messages, e.g. "layer 3 (Relu)".
    top: the layer is a direct child of the top-level serial.
    """

    method: object
    width: int
    dtype: object
    final: bool = False
    where: str = "layer"
    top: bool = False


class ApplyContext(NamedTuple):
    """method: the method description; kwargs: feature_fn's extra arguments (e.g. pattern)."""

    method: object
    kwargs: dict


RULES: dict[tuple[type, type | None], Rule] = {}


def register(layer_type: type, method_type: type | None, init: Callable, apply: Callable) -> None:
    """Adds the rule of `layer_type` (and its subclasses) for `method_type` (None: any method)."""
    RULES[(layer_type, method_type)] = Rule(init, apply)


def rule_for(layer, method, where: str = "layer") -> Rule:
    """The rule of the closest class of `layer` registered for `method` or for any method."""
    for cls in type(layer).__mro__:
        for key in ((cls, type(method)), (cls, None)):
            if key in RULES:
                return RULES[key]
    raise NotImplementedError(
        f"{where}: {type(layer).__name__} has no feature rule for {type(method).__name__}"
    )


def init_layer(layer, key, spec, ctx: InitContext):
    """Parameters and output description of one layer."""
    return rule_for(layer, ctx.method, ctx.where).init(layer, key, spec, ctx)


def apply_layer(layer, params, spec, features, ctx: ApplyContext):
    """Features after one layer."""
    return rule_for(layer, ctx.method).apply(layer, params, spec, features, ctx)


__all__ = ["ApplyContext", "InitContext", "RULES", "Rule", "apply_layer", "init_layer", "register", "rule_for"]
