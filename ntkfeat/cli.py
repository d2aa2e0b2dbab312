"""The `ntkfeat` command: subcommands forward their arguments to the runner's tools.

    ntkfeat run CONFIG|NAME [--out DIR] [--set PATH=VALUE ...]   # ntkfeat.runs.run (NAME: built-in config)
    ntkfeat compare RUN_DIR [RUN_DIR ...] [--out DIR]              # ntkfeat.runs.compare
    ntkfeat replot RUN_DIR [--out DIR]                             # ntkfeat.runs.replot
    ntkfeat configs                                                # names of the built-in configs
    ntkfeat --version

`ntkfeat SUBCOMMAND --help` gives each tool's options. `python -m ntkfeat ...` is the same command.
"""

from __future__ import annotations

import importlib
import sys

# Imported only when chosen: `run` imports JAX, `replot` and `compare` need only matplotlib.
COMMANDS = {
    "run": "ntkfeat.runs.run",
    "compare": "ntkfeat.runs.compare",
    "replot": "ntkfeat.runs.replot",
}


def _usage() -> str:
    return __doc__.split("\n\n")[1]


def main(argv=None) -> int:
    """Runs `ntkfeat SUBCOMMAND ARGS...`; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage:\n" + _usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "--version":
        from ntkfeat._version import __version__

        print(f"ntkfeat {__version__}")
        return 0
    if command == "configs":
        from ntkfeat.runs import builtin

        print("\n".join(builtin.names()))
        return 0
    if command not in COMMANDS:
        print(f"ntkfeat: unknown command {command!r} (choose from {', '.join([*COMMANDS, 'configs'])})\n"
              f"usage:\n{_usage()}", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[command]).main(rest)


if __name__ == "__main__":
    sys.exit(main())
