"""Benchmark data: scikit-learn sets, UCI regression splits, MNIST, CIFAR-10 and any npz file.

    from ntkfeat.data import load_dataset
    ds = load_dataset("protein", split=0)       # ds.x_train (41157, 9) float32, standardized
    ds = load_dataset("digits", images=True)    # NHWC (1438, 8, 8, 1), no data folder needed
    ds = load_dataset("cifar10", zca=0.1, flip="augment")   # ZCA-whitened, mirrored training rows

Files live under `data_root()`: $NTKFEAT_DATA, else `<repository>/../shared/data`.
"""

from ntkfeat.data.datasets import DATASET_NAMES, Dataset, data_root, load_dataset
from ntkfeat.data.flips import FLIP_MODES, augment_flips, flip_averaged, flip_averaged_kernel, flip_images
from ntkfeat.data.preprocess import Zca, apply_zca, fit_zca, zca_whiten

__all__ = ["DATASET_NAMES", "FLIP_MODES", "Dataset", "Zca", "apply_zca", "augment_flips", "data_root", "fit_zca",
           "flip_averaged", "flip_averaged_kernel", "flip_images", "load_dataset", "zca_whiten"]
