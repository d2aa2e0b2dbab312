"""Experiment configs: YAML in, a fully validated and resolved dict out.

    config = load_config("configs/quickstart.yaml", overrides=["methods[1].dims=[512]"])
    layers = build_layers(config["architecture"])       # ntkfeat layer objects

Every key is checked before any work: unknown keys (with a difflib suggestion), wrong types and
out-of-range values raise `ConfigError` naming the key path, e.g.
`methods[2].dims[0]: expected an integer >= 2, got -5`. The resolved config has every default
filled in, `data` as a list and `repeat` blocks of the architecture expanded, so that writing it
back to YAML gives a config that reproduces the run.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib
import inspect
import math
import pathlib
import re

import yaml

import ntkfeat as nf
from ntkfeat.data import DATASET_NAMES, FLIP_MODES
from ntkfeat.data.preprocess import PATCH_DEFAULTS


class ConfigError(ValueError):
    """An invalid config; the message starts with the key path."""


# --------------------------------------------------------------------------- YAML


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML would silently keep the last one)."""


def _mapping_without_duplicates(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def read_yaml(path) -> dict:
    """The top-level mapping of a YAML file; ConfigError for a missing file or bad YAML."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        raw = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys (name, data, architecture, methods, ...), "
                          f"got {type(raw).__name__}")
    return raw


# --------------------------------------------------------------------------- value checks
# A check is check(value, path) -> normalized value, raising ConfigError(f"{path}: ...").


def _fail(path: str, expected: str, value) -> ConfigError:
    return ConfigError(f"{path}: expected {expected}, got {value!r}")


def _as_float(value):
    """YAML 1.1 reads `1e-3` (no dot) as a string: accept numeric strings too."""
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", value.strip()):
        return float(value)
    return value


def integer(minimum: int | None = None, what: str | None = None, maximum: int | None = None):
    expected = what or ("an integer" if minimum is None else
                        "a positive integer" if minimum == 1 else f"an integer >= {minimum}")
    if maximum is not None and what is None:
        expected += f" and <= {maximum}"

    def check(value, path):
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum) or (
                maximum is not None and value > maximum):
            raise _fail(path, expected, value)
        return value

    return check


def number(minimum: float | None = None, exclusive: bool = False, maximum: float | None = None):
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if exclusive else '>='} {minimum:g}")
    if maximum is not None:
        parts.append(f"< {maximum:g}")
    expected = "a finite number" + (" " + " and ".join(parts) if parts else "")

    def check(value, path):
        value = _as_float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _fail(path, expected, value)
        if minimum is not None and (value <= minimum if exclusive else value < minimum):
            raise _fail(path, expected, value)
        if maximum is not None and value >= maximum:
            raise _fail(path, expected, value)
        return float(value)

    return check


def boolean(value, path):
    if not isinstance(value, bool):
        raise _fail(path, "true or false", value)
    return value


def string(value, path):
    if not isinstance(value, str) or not value:
        raise _fail(path, "a non-empty string", value)
    return value


def choice(*options):
    def check(value, path):
        if value not in options:
            hint = _suggest(value, options) if isinstance(value, str) else ""
            raise ConfigError(f"{path}: expected one of {', '.join(map(repr, options))}, got {value!r}{hint}")
        return value

    return check


def optional(check_value):
    def check(value, path):
        return None if value is None else check_value(value, path)

    return check


def _as_is(value, path):
    return value


def degree(value, path):
    """A polynomial degree: a positive integer, or 'auto' (nf.Sketch's default: chosen from the data)."""
    return value if value == "auto" else integer(1, "a positive integer or 'auto'")(value, path)


def list_of(check_item, nonempty: bool = True, what: str = "a list"):
    def check(value, path):
        if not isinstance(value, list) or (nonempty and not value):
            raise _fail(path, f"{'a non-empty ' if nonempty else ''}{what}", value)
        return [check_item(v, f"{path}[{i}]") for i, v in enumerate(value)]

    return check


def int_or_pair(value, path):
    """A positive int or a pair of positive ints (filter shapes, strides, windows), as a list."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return [value, value]
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
        return list(value)
    raise _fail(path, "a positive integer or a pair [height, width] of positive integers", value)


def _suggest(word: str, options) -> str:
    options = list(options)
    lower = {o.lower(): o for o in options}
    close = difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=0.6)
    return f" (did you mean {lower[close[0]]!r}?)" if close else ""


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def check_keys(mapping, path: str, fields: dict, required=(), where: str = "", elsewhere: dict | None = None) -> dict:
    """Checks a mapping against {key: (check, default)}: unknown keys, missing required ones, types.

    Returns a new dict with every field, defaults filled in, in the order of `fields`.
    `elsewhere` maps keys valid in other contexts to where they belong, for a better message.
    """
    if not isinstance(mapping, dict):
        raise _fail(path or "config", "a mapping of keys", mapping)
    for key in mapping:
        if key not in fields:
            label = _join(path, key)
            if not isinstance(key, str):
                raise ConfigError(f"{label}: keys must be strings, got {key!r}")
            hint = _suggest(key, fields)
            if not hint and elsewhere and key in elsewhere:
                hint = f" (it belongs to {elsewhere[key]})"
            if not hint:
                hint = f" (allowed: {', '.join(fields)})"
            raise ConfigError(f"{label}: unknown key{where}{hint}")
    for key in required:
        if key not in mapping:
            raise ConfigError(f"{_join(path, key)}: missing (required{where})")
    out = {}
    for key, (check, default) in fields.items():
        value = mapping.get(key, default)
        out[key] = check(value, _join(path, key)) if key in mapping else default
    return out


# --------------------------------------------------------------------------- architecture

# Layers are ntkfeat's (neural-tangents' names and signatures). Their YAML keys and defaults are
# read from the layer classes themselves; fields that exist only for neural-tangents'
# signatures and take a single value here (axes, parameterization, ...) are not shown.
_HIDDEN_FIELDS = {"batch_axis", "channel_axis", "parameterization", "s", "dimension_numbers", "implementation",
                  "batch_axis_out"}
_LAYER_NAMES = tuple(nf.layers.ACTIVATIONS) + tuple(nf.layers.LINEAR) + ("FanOut", "FanInSum", "FanInProd",
                                                                          "FanInConcat")
_BLOCKS = ("serial", "parallel", "repeat")
_REPEAT_FIELDS = {"times": (integer(1), None), "layers": (_as_is, None)}
# Function-valued fields (ElementwiseNumerical.fn, .df, Elementwise.fn, Aggregate.to_dense) are given by name.
_FUNCTION_MODULES = ("jax.nn", "jax.numpy", "jax.scipy.special")


def _layer_fields(name: str) -> dict:
    """{field: default or inspect.Parameter.empty} of a layer, in signature order."""
    cls = getattr(nf, name)
    if dataclasses.is_dataclass(cls):
        return {f.name: (f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty)
                for f in dataclasses.fields(cls) if f.name not in _HIDDEN_FIELDS}
    return {p.name: p.default for p in inspect.signature(cls).parameters.values()}


def _resolve_function(value, path):
    if callable(value):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", value):
        raise _fail(path, "the name of a function in " + ", ".join(_FUNCTION_MODULES), value)
    module_name, _, attr = value.rpartition(".")
    for module in ((module_name,) if module_name else _FUNCTION_MODULES):
        if module not in _FUNCTION_MODULES:
            break
        fn = getattr(importlib.import_module(module), attr, None)
        if callable(fn):
            return fn
    raise ConfigError(f"{path}: no function {value!r} in {', '.join(_FUNCTION_MODULES)}")


_FUNCTION_FIELDS = {("ElementwiseNumerical", "fn"), ("ElementwiseNumerical", "df"), ("Elementwise", "fn"),
                    ("Aggregate", "to_dense")}
# Functions of the kernel (cov12, var1, var2) that no library function by name stands for: Python only.
_PYTHON_ONLY_FIELDS = {("Elementwise", "nngp_fn"), ("Elementwise", "d_nngp_fn")}


def _layer_item(name: str, args, where: str):
    """The resolved {name: {field: value}} of one layer (every shown field, defaults filled)."""
    fields = _layer_fields(name)
    if args is None:
        args = {}
    elif isinstance(args, list):  # positional, in neural-tangents' order
        if len(args) > len(fields):
            raise ConfigError(f"{where}.{name}: {name} takes at most {len(fields)} positional arguments "
                              f"({', '.join(fields)}), got {len(args)}")
        args = dict(zip(fields, args))
    elif not isinstance(args, dict):
        if len(fields) == 0:
            raise ConfigError(f"{where}.{name}: {name} takes no arguments, got {args!r}")
        args = {next(iter(fields)): args}  # one value: the first argument (FanOut: 2)
    for key in args:
        if key not in fields:
            hint = _suggest(str(key), fields) or (f" (allowed: {', '.join(fields)})" if fields else "")
            raise ConfigError(f"{where}.{name}.{key}: unknown key for {name}{hint}")
    missing = [k for k, d in fields.items() if d is inspect.Parameter.empty and k not in args]
    if missing:
        raise ConfigError(f"{where}.{name}.{missing[0]}: missing (required for {name})")
    resolved = {k: _to_yaml(args[k] if k in args else d) for k, d in fields.items()}
    return {name: resolved} if resolved else name


def _to_yaml(value):
    return [_to_yaml(v) for v in value] if isinstance(value, tuple) else value


def _to_python(value):
    return tuple(_to_python(v) for v in value) if isinstance(value, list) else value


def _build_layer(name: str, args: dict, where: str):
    kwargs = {}
    for key, value in args.items():
        if (name, key) in _PYTHON_ONLY_FIELDS and value is not None:
            raise ConfigError(f"{where}.{name}.{key}: a Python function of (cov12, var1, var2), which a YAML file "
                              "cannot give; leave it out (the features need fn only; without nngp_fn the 'exact' "
                              "method has no kernel: use ElementwiseNumerical(fn, deg) there) or build the layer in "
                              "Python")
        if (name, key) in _FUNCTION_FIELDS and value is not None:
            value = _resolve_function(value, f"{where}.{name}.{key}")
        kwargs[key] = _to_python(value)
    try:
        return getattr(nf, name)(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}.{name}: {e}") from None


def _item_name(item, where: str):
    if isinstance(item, str):
        return item, None
    if isinstance(item, dict) and len(item) == 1:
        return next(iter(item.items()))
    raise ConfigError(f"{where}: a layer is a name (Relu), a one-key mapping ({{Dense: {{W_std: 1.0}}}} or "
                      f"{{Dense: [512, 1.0]}}) or a block (serial, parallel, repeat), got {item!r}")


def _expand_architecture(items, path: str) -> list:
    """Resolved layers with every shown argument, `repeat` blocks expanded:
    [{Name: {args}} | Name | {serial: [...]} | {parallel: [[...], ...]}, ...]."""
    if not isinstance(items, list) or not items:
        raise _fail(path, "a non-empty list of layers", items)
    out = []
    for i, item in enumerate(items):
        where = f"{path}[{i}]"
        name, args = _item_name(item, where)
        if name == "repeat":
            block = check_keys(args, f"{where}.repeat", _REPEAT_FIELDS, required=("times", "layers"))
            inner = _expand_architecture(block["layers"], f"{where}.repeat.layers")
            for _ in range(block["times"]):
                out.extend(copy.deepcopy(inner))  # copies: YAML would write aliases for repeated objects
        elif name == "serial":
            out.append({"serial": _expand_architecture(args, f"{where}.serial")})
        elif name == "parallel":
            if not isinstance(args, list) or not args:
                raise _fail(f"{where}.parallel", "a non-empty list of branches (each a layer or a list of layers)",
                            args)
            out.append({"parallel": [_expand_architecture(b if isinstance(b, list) else [b], f"{where}.parallel[{j}]")
                                     for j, b in enumerate(args)]})
        elif name in _LAYER_NAMES:
            out.append(_layer_item(name, args, where))
        else:
            raise ConfigError(f"{where}: unknown layer {name!r}{_suggest(str(name), _LAYER_NAMES + _BLOCKS)} "
                              f"(layers: {', '.join(_LAYER_NAMES)}; blocks: {', '.join(_BLOCKS)})")
    return out


def build_layers(architecture: list, path: str = "architecture") -> list:
    """ntkfeat layer objects from a resolved architecture."""
    layers = []
    for i, item in enumerate(architecture):
        where = f"{path}[{i}]"
        name, args = (item, {}) if isinstance(item, str) else next(iter(item.items()))
        if name == "serial":
            layers.append(nf.serial(*build_layers(args, f"{where}.serial")))
        elif name == "parallel":
            layers.append(nf.parallel(*[nf.serial(*build_layers(b, f"{where}.parallel[{j}]"))
                                        for j, b in enumerate(args)]))
        else:
            layers.append(_build_layer(name, args, where))
    return layers


# --------------------------------------------------------------------------- data, methods, solver

# data.patches: the options of ntkfeat.data.preprocess.fit_random_patches.
_PATCH_FIELDS = {
    "count": (integer(1), PATCH_DEFAULTS["count"]),
    "size": (integer(1), PATCH_DEFAULTS["size"]),
    "zca": (number(0.0, exclusive=True), PATCH_DEFAULTS["zca"]),
    "threshold": (number(0.0), PATCH_DEFAULTS["threshold"]),
    "samples": (integer(1), PATCH_DEFAULTS["samples"]),
    "contrast_eps": (number(0.0), PATCH_DEFAULTS["contrast_eps"]),
    "seed": (integer(0), PATCH_DEFAULTS["seed"]),
}


def _check_patches(value, path: str) -> dict:
    return check_keys(value, path, _PATCH_FIELDS)


_DATA_FIELDS = {
    "name": (lambda v, p: choice(*DATASET_NAMES)(v.lower() if isinstance(v, str) else v, p), None),
    "label": (optional(string), None),
    "path": (optional(string), None),
    "root": (optional(string), None),
    "split": (integer(0), 0),
    "n_train": (optional(integer(1)), None),
    "n_test": (optional(integer(0)), None),
    "images": (optional(boolean), None),
    "standardize": (boolean, True),
    "task": (optional(choice("regression", "classification")), None),
    "zca": (optional(number(0.0, exclusive=True)), None),  # ZCA regularization eps (images); null: none
    "flip": (optional(choice(*FLIP_MODES)), None),  # horizontal flips (images): augment | average
    "downsample": (optional(integer(1)), None),  # average-pool images over k x k windows first
    # A random-patch input layer (images): {count, size, zca, threshold, samples, contrast_eps, seed}.
    "patches": (optional(_check_patches), None),
}

DIMS = list_of(integer(2), what="list of integers >= 2")
_COMMON_METHOD_FIELDS = {
    "method": (_as_is, None),  # checked first, by _check_method
    "label": (optional(string), None),
    "n_train": (optional(integer(1)), None),
    "n_test": (optional(integer(1)), None),
    "repeats": (integer(1), 1),
    "batch_size": (optional(integer(1)), None),
}
METHOD_FIELDS = {
    "exact": {},
    "ntk_sketch": {"dims": (DIMS, None), "degree": (degree, "auto"),
                   "mode": (choice("auto", "oneshot", "layerwise"), "auto"),
                   "fit": (choice("lstsq", "taylor"), "lstsq"), "width": (optional(integer(2)), None),
                   "renormalize": (boolean, True)},
    "ntk_random_features": {"dims": (DIMS, None), "leverage": (boolean, False), "orthogonal": (boolean, False),
                            "width": (optional(integer(2)), None)},
    "random_fourier": {"dims": (DIMS, None), "bandwidth": (optional(number(0.0, exclusive=True)), None)},
    "nystrom": {"dims": (DIMS, None), "sampling": (choice("uniform", "rls"), "uniform"),
                "reg": (number(0.0, maximum=1.0), 1e-6)},
    "gradient": {"dims": (DIMS, None), "width": (integer(1), 512),
                 "projection": (choice("srht", "gaussian"), "srht")},
}
_KEY_OWNERS = {}
for _method, _fields in METHOD_FIELDS.items():
    for _key in _fields:
        _KEY_OWNERS.setdefault(_key, []).append(_method)
_KEY_OWNERS = {k: "method " + " / ".join(v) for k, v in _KEY_OWNERS.items()}

_SOLVER_FIELDS = {
    # Default 'loo' (exact leave-one-out), measured best of holdout / kfold / gcv / loo on the ten UCI
    # sets for exact kernel ridge and NTK Sketch features alike, at the cost of one eigendecomposition
    # (NOTES.md, "Lambda selection rules"); it keeps the training features in memory (at most 1 GiB),
    # so large streamed runs set holdout. With iterative: true the default is holdout.
    "selection": (choice("holdout", "kfold", "gcv", "loo"), "loo"),
    "val_fraction": (number(0.0, exclusive=True, maximum=1.0), 0.1),
    "folds": (integer(2), 5),
    "lambdas": (optional(list_of(number(0.0), what="list of numbers >= 0")), None),
    "exact_max_train": (integer(2), 4000),
    "iterative": (boolean, False),
    "steps": (integer(1), 1000),
    "learning_rate": (number(0.0, exclusive=True), 1e-2),
}
_EVALUATION_FIELDS = {
    "kernel_error_rows": (integer(0), 300),
    "kernel_batch_size": (optional(integer(1)), None),
    # Exact kernels in float64: a float32 NTK's small eigenvalues are noise, which kernel ridge at a
    # small lambda fits (NOTES.md); false halves the cost where lambda stays large (CIFAR CNTKs).
    "exact_float64": (boolean, True),
}


def _shards_option(value, path):
    if value == "auto" or isinstance(value, bool):
        return value
    raise _fail(path, "auto, true or false", value)


_STORE_FIELDS = {
    # Feature shards in the run folder (ntkfeat.store), which make a run resumable (--resume):
    # 'auto' keeps them when a run's training and test features reach SHARDS_AUTO_BYTES.
    "shards": (_shards_option, "auto"),
    # Rows per shard; null: about 64 MiB of float32 features per shard (256 to 16384 rows).
    "rows": (optional(integer(1)), None),
    # Keep the shards when the run ends (their disk use is printed); false deletes them then.
    "keep": (boolean, True),
}
SHARDS_AUTO_BYTES = 64 << 20

_TOP_FIELDS = {  # data, architecture, methods, solver and evaluation are checked by their own functions
    "name": (string, None),
    "seed": (integer(0, maximum=2**32 - 1), 0),  # a JAX PRNG seed is a uint32: larger ones crash the run
    "data": (_as_is, None),
    "task": (optional(choice("regression", "classification")), None),
    "architecture": (_as_is, None),
    "methods": (_as_is, None),
    "solver": (_as_is, None),
    "evaluation": (_as_is, None),
    "store": (_as_is, None),
    "plots": (boolean, True),
}
_SOLVER_DEFAULTS = {k: d for k, (_, d) in _SOLVER_FIELDS.items()}


def _check_data(value) -> list:
    entries = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not value:
        raise _fail("data", "a dataset mapping or a non-empty list of them", value)
    out = []
    for i, entry in enumerate(entries):
        path = f"data[{i}]" if isinstance(value, list) else "data"
        spec = check_keys(entry, path, _DATA_FIELDS, required=("name",))
        if spec["name"] == "npz" and spec["path"] is None:
            raise ConfigError(f"{path}.path: missing (dataset 'npz' needs the path of an npz file with keys x and y)")
        if spec["label"] is None:
            base = pathlib.Path(spec["path"]).stem if spec["name"] == "npz" else spec["name"]
            spec["label"] = base if spec["split"] == 0 else f"{base}-split{spec['split']}"
        out.append(spec)
    _check_unique_labels(out, "data", "dataset")
    return out


def _check_unique_labels(entries, section: str, what: str) -> None:
    labels = [e["label"] for e in entries]
    for i, label in enumerate(labels):
        if label in labels[:i]:
            raise ConfigError(f"{section}[{i}].label: {label!r} is used by {section}[{labels.index(label)}] too; "
                              f"give each {what} a distinct label")


def _check_method(entry, path: str) -> dict:
    if not isinstance(entry, dict):
        raise _fail(path, "a mapping like {method: ntk_sketch, dims: [1024]}", entry)
    if "method" not in entry:
        raise ConfigError(f"{path}.method: missing (one of {', '.join(METHOD_FIELDS)})")
    method = entry["method"]
    if method not in METHOD_FIELDS:
        hint = _suggest(method, METHOD_FIELDS) if isinstance(method, str) else ""
        raise ConfigError(f"{path}.method: unknown method {method!r}{hint} (methods: {', '.join(METHOD_FIELDS)})")
    fields = dict(_COMMON_METHOD_FIELDS, **METHOD_FIELDS[method])
    required = ("dims",) if "dims" in fields else ()
    spec = check_keys(entry, path, fields, required=required, where=f" for method {method!r}", elsewhere=_KEY_OWNERS)
    if spec["label"] is None:
        spec["label"] = method
    return spec


def _check_methods(value) -> list:
    if not isinstance(value, list) or not value:
        raise _fail("methods", "a non-empty list of methods", value)
    methods = [_check_method(entry, f"methods[{i}]") for i, entry in enumerate(value)]
    _check_unique_labels(methods, "methods", "entry")
    return methods


def _check_solver(value, methods) -> dict | None:
    if value is None or value is False:  # no solve: kernel errors only
        for i, m in enumerate(methods):
            if m["method"] == "exact":
                raise ConfigError(f"methods[{i}]: method 'exact' is kernel ridge and needs a solver "
                                  "(solver is null: kernel errors only)")
        return None
    solver = check_keys(value, "solver", _SOLVER_FIELDS)
    if solver["iterative"] and "selection" not in value:
        solver["selection"] = "holdout"  # the only rule the iterative path has
    if solver["iterative"]:
        if solver["lambdas"] is None:
            raise ConfigError("solver.lambdas: iterative: true needs an explicit list of lambdas (each one costs a "
                              "full optax fit, so the default grid of 21 is not used)")
        if solver["selection"] != "holdout":
            raise ConfigError("solver.selection: iterative: true supports 'holdout' only")
    return solver


def validate(raw: dict, default_name: str = "run") -> dict:
    """The resolved config (defaults filled in) of a raw mapping; ConfigError if anything is off."""
    top = check_keys(raw, "", _TOP_FIELDS, required=("data", "architecture", "methods"))
    name = top["name"] or default_name
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ConfigError(f"name: expected letters, digits, '.', '_' or '-' (it names the output folder), got {name!r}")
    data = _check_data(raw["data"])
    architecture = _expand_architecture(raw["architecture"], "architecture")
    build_layers(architecture)
    methods = _check_methods(raw["methods"])
    solver = _check_solver(raw["solver"] if "solver" in raw else {}, methods)
    evaluation = check_keys(raw.get("evaluation") or {}, "evaluation", _EVALUATION_FIELDS)
    if solver is None and evaluation["kernel_error_rows"] == 0:
        raise ConfigError("evaluation.kernel_error_rows: is 0 and solver is null: there is nothing to compute")
    store = check_keys(raw.get("store") or {}, "store", _STORE_FIELDS)
    return {
        "name": name, "seed": top["seed"], "data": data, "task": top["task"], "architecture": architecture,
        "methods": methods, "solver": solver, "evaluation": evaluation, "store": store, "plots": top["plots"],
    }


# --------------------------------------------------------------------------- overrides


def _parse_path(path: str) -> list:
    parts = []
    for piece in path.split("."):
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)", piece)
        if not m:
            raise ConfigError(f"--set {path}: expected a key path like data.n_train or methods[1].dims")
        parts.append(m.group(1))
        parts.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return parts


def apply_override(raw: dict, assignment: str) -> None:
    """Sets `path=value` (value parsed as YAML) in the raw config, e.g. 'methods[1].dims=[512, 2048]'."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment}: expected PATH=VALUE, e.g. data.n_train=500")
    path, text = assignment.split("=", 1)
    parts = _parse_path(path.strip())
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {assignment}: the value is not valid YAML: {e}") from None
    node, walked = raw, ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise ConfigError(f"--set {assignment}: {walked} has no item [{part}]")
            walked += f"[{part}]"
        else:
            if isinstance(node, list):
                raise ConfigError(f"--set {assignment}: {walked} is a list; give an index, e.g. {walked}[0].{part}")
            if not isinstance(node, dict):
                raise ConfigError(f"--set {assignment}: {walked} is not a mapping")
            walked = _join(walked, part)
            if not last and node.get(part) is None:
                node[part] = {}
        if last:
            node[part] = value
        else:
            node = node[part]


def load_config(path, overrides=()) -> dict:
    """Reads, overrides and validates a YAML config; the run name defaults to the file's stem."""
    raw = read_yaml(path)
    for assignment in overrides:
        apply_override(raw, assignment)
    return validate(raw, default_name=pathlib.Path(path).stem)


def method_defaults(method: str) -> dict:
    """The default value of every key of a method (for documentation and tests)."""
    fields = dict(_COMMON_METHOD_FIELDS, **METHOD_FIELDS[method])
    return {k: d for k, (_, d) in fields.items() if k != "method"}


def layer_defaults() -> dict:
    """The YAML keys of every layer and their defaults (None where required)."""
    return {name: {k: (None if d is inspect.Parameter.empty else d) for k, d in _layer_fields(name).items()}
            for name in _LAYER_NAMES}

