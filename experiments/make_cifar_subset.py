"""Writes a small uncompressed CIFAR-10 subset (uint8 images) for machines without the data folder.

    python -m experiments.make_cifar_subset --train 4000 --test 1000 --out .device/cifar_subset.npz

The file holds x (uint8, N x 32 x 32 x 3), y, and test_mask (one column: the split), so that
`ntkfeat.data.load_dataset('npz', path=...)` and the benchmarks read it as it is.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import tempfile

import numpy as np

from ntkfeat.data import load_dataset


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--root", default=None, help="data root (default: NTKFEAT_DATA or ../shared/data)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    ds = load_dataset("cifar10", root=args.root, n_train=args.train, n_test=args.test, seed=args.seed,
                      standardize=False)
    x = np.concatenate([ds.x_train, ds.x_test])
    x = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    y = np.concatenate([ds.y_train, ds.y_test]).astype(np.int64)
    mask = np.zeros((len(x), 1), bool)
    mask[len(ds.x_train):, 0] = True
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".npz")
    os.close(fd)
    np.savez(tmp, x=x, y=y, test_mask=mask)
    os.replace(tmp, out)
    print(f"wrote {out}: {x.shape} images, {mask.sum()} test, {out.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
