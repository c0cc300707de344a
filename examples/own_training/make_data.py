"""Write a small regression data set as CSV files (train.csv, val.csv, test.csv; the last column is the
target) into the folder given: python make_data.py data"""

import csv
import os
import sys

import numpy as np


def write(folder: str, samples: int = 1200, features: int = 8, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, features))
    weights = rng.normal(size=features)
    y = np.sin(x @ weights / 2) + 0.1 * x[:, 0] ** 2 + rng.normal(scale=0.05, size=samples)
    os.makedirs(folder, exist_ok=True)
    parts = {
        "train": slice(0, samples * 6 // 10),
        "val": slice(samples * 6 // 10, samples * 8 // 10),
        "test": slice(samples * 8 // 10, samples),
    }
    for name, rows in parts.items():
        with open(os.path.join(folder, f"{name}.csv"), "w", newline="") as f:
            out = csv.writer(f)
            out.writerow([f"x{i}" for i in range(features)] + ["y"])
            out.writerows(np.column_stack([x[rows], y[rows]]).round(6).tolist())


if __name__ == "__main__":
    write(sys.argv[1] if len(sys.argv) > 1 else "data")
