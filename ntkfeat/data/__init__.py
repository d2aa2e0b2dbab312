"""Benchmark data: scikit-learn sets, UCI regression splits, MNIST, CIFAR-10 and any npz file.

    from ntkfeat.data import load_dataset
    ds = load_dataset("protein", split=0)       # ds.x_train (41157, 9) float32, standardized
    ds = load_dataset("digits", images=True)    # NHWC (1438, 8, 8, 1), no data folder needed

Files live under `data_root()`: $NTKFEAT_DATA, else `<repository>/../shared/data`.
"""

from ntkfeat.data.datasets import DATASET_NAMES, Dataset, data_root, load_dataset

__all__ = ["DATASET_NAMES", "Dataset", "data_root", "load_dataset"]
