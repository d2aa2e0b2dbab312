"""Which lambda selection rule to default to: holdout, kfold, gcv and loo on the same rows.

    python -m experiments.lambda_rules [--config configs/lambda_rules.yaml] [--splits 0,1,2]
                                       [--rules holdout,kfold,gcv,loo] [--out DIR]
    python -m experiments.lambda_rules --summarize DIR          # the tables again, from DIR

Runs the experiment runner once per (split, rule), with `--set solver.selection=<rule>` and every
data entry's split set, into DIR/split<k>-<rule>/ (default DIR: runs/lambda_rules-<time>), then
prints markdown tables: per dataset and rule, the test RMSE (original units, mean over splits) of
exact kernel ridge and of each feature method; and a summary per rule: the geometric mean over
datasets and splits of RMSE / (the best rule's RMSE on that dataset and split), the number of
(dataset, split) pairs where the rule is best (ties count for each), and the seconds spent in
selection and solve (solve_seconds summed).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import math
import pathlib
import re
import sys

RULES = ("holdout", "kfold", "gcv", "loo")


def run_all(config: str, splits, rules, out: pathlib.Path, data_entries: int) -> None:
    from ntkfeat.runs import run

    for split in splits:
        for rule in rules:
            overrides = [f"solver.selection={rule}"] + [f"data[{i}].split={split}" for i in range(data_entries)]
            args = [config, "--out", str(out / f"split{split}-{rule}"), "--quiet"]
            for o in overrides:
                args += ["--set", o]
            print(f"\n=== split {split}, selection {rule}", flush=True)
            if run.main(args) != 0:
                raise SystemExit(f"the runner failed for split {split}, rule {rule}")


def load(out: pathlib.Path):
    """{(dataset, split, label, rule): record} from every DIR/split<k>-<rule>/results.json."""
    records = {}
    for path in sorted(out.glob("split*-*/results.json")):
        split, rule = re.fullmatch(r"split(\d+)-(\w+)", path.parent.name).groups()
        for r in json.loads(path.read_text())["records"]:
            dataset = re.sub(r"-split\d+$", "", r["dataset"])
            records[(dataset, int(split), r["label"], rule)] = r
    return records


def summarize(out: pathlib.Path) -> str:
    records = load(out)
    if not records:
        raise SystemExit(f"no split<k>-<rule>/results.json under {out}")
    datasets = list(dict.fromkeys(k[0] for k in records))
    splits = sorted({k[1] for k in records})
    labels = list(dict.fromkeys(k[2] for k in records))
    rules = [r for r in RULES if any(k[3] == r for k in records)]
    lines = [f"Test RMSE (original units), mean over splits {', '.join(map(str, splits))}:", ""]
    header = "| dataset | " + " | ".join(f"{label} {rule}" for label in labels for rule in rules) + " |"
    lines += [header, "|" + " --- |" * (1 + len(labels) * len(rules))]
    for d in datasets:
        cells = []
        for label in labels:
            for rule in rules:
                values = [records[(d, s, label, rule)]["test_rmse"] for s in splits if (d, s, label, rule) in records]
                cells.append(f"{sum(values) / len(values):.4g}" if values else "-")
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    lines += ["", "Summary over datasets x splits (ratio: geometric mean of RMSE / best rule's RMSE; wins: "
              "best or tied best; seconds: solve_seconds summed; lambda: geometric mean of lambda / "
              "holdout's lambda):", ""]
    lines += ["| method | rule | ratio to best | wins | seconds | lambda / holdout's |",
              "| --- | --- | --- | --- | --- | --- |"]
    for label in labels:
        logs, wins, seconds, lam = (collections.defaultdict(list) for _ in range(4))
        for d in datasets:
            for s in splits:
                got = {rule: records.get((d, s, label, rule)) for rule in rules}
                if any(v is None or v["test_rmse"] is None for v in got.values()):
                    continue
                best = min(v["test_rmse"] for v in got.values())
                for rule, v in got.items():
                    logs[rule].append(math.log(v["test_rmse"] / best))
                    wins[rule].append(v["test_rmse"] <= best * (1 + 1e-9))
                    seconds[rule].append(v["solve_seconds"] or 0.0)
                    lam[rule].append(math.log(v["lambda"] / got["holdout"]["lambda"]) if "holdout" in got else 0.0)
        for rule in rules:
            if logs[rule]:
                lines.append(f"| {label} | {rule} | {math.exp(sum(logs[rule]) / len(logs[rule])):.4f} | "
                             f"{sum(wins[rule])}/{len(wins[rule])} | {sum(seconds[rule]):.0f} | "
                             f"{math.exp(sum(lam[rule]) / len(lam[rule])):.3g} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.lambda_rules", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="configs/lambda_rules.yaml")
    parser.add_argument("--splits", default="0", help="comma-separated split numbers, e.g. 0,1,2")
    parser.add_argument("--rules", default=",".join(RULES), help=f"comma-separated, from {','.join(RULES)}")
    parser.add_argument("--out", help="output folder (default runs/lambda_rules-<YYYYmmdd-HHMMSS>)")
    parser.add_argument("--summarize", metavar="DIR", help="print the tables of an earlier run and stop")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.summarize:
        print(summarize(pathlib.Path(args.summarize)))
        return 0
    from ntkfeat.runs.config import load_config

    rules = [r.strip() for r in args.rules.split(",") if r.strip()]
    unknown = sorted(set(rules) - set(RULES))
    if unknown:
        parser.error(f"unknown rules {unknown}; choose from {RULES}")
    splits = [int(s) for s in args.splits.split(",")]
    entries = len(load_config(args.config)["data"])
    out = pathlib.Path(args.out or f"runs/lambda_rules-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    run_all(args.config, splits, rules, out, entries)
    print()
    print(summarize(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
