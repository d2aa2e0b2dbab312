"""The shared front of the config-driven experiment scripts (graph_depth, finite_width): YAML plus
--set overrides validated by the script's own schema, --check, and a claimed output folder."""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Callable

from ntkfeat.runs import report
from ntkfeat.runs.config import ConfigError, apply_override, read_yaml
from ntkfeat.runs.run import make_output_dir


def load_config(path, overrides, validate: Callable) -> dict:
    """validate(raw, default_name=<file stem>) of the YAML at `path` with `overrides` applied."""
    raw = read_yaml(path)
    for assignment in overrides:
        apply_override(raw, assignment)
    return validate(raw, default_name=pathlib.Path(path).stem)


def start(argv, *, prog: str, doc: str, example: str, set_example: str, load: Callable, describe: Callable,
          check_help: str = "validate the config, print the plan, stop"):
    """Parses the command line, validates the config and claims the output folder (writing
    config.yaml there). Returns (config, out), or an exit code: 0 after --check, 2 on an error."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n")[0])
    parser.add_argument("config", help=f"YAML config (see {example})")
    parser.add_argument("--out", help="output folder (default runs/<name>-<YYYYmmdd-HHMMSS>); must not hold files")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help=f"override a config value, e.g. --set {set_example} (repeatable)")
    parser.add_argument("--check", action="store_true", help=check_help)
    args = parser.parse_args(argv)
    try:
        config = load(args.config, args.overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(describe(config))
        return 0
    try:
        out = make_output_dir(args.out, config["name"])
    except FileExistsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    report.write_yaml(out / "config.yaml", config)
    print(f"writing to {out}", flush=True)
    return config, out
