"""A plain PyTorch training script, as people write them: a small regression network trained on CSV
files (the last column is the target). Run: python train.py --data DIR --lr 0.003 --hidden 64."""

import argparse
import csv
import os

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hpsearch.trainables import Trained


class CsvDataset(Dataset):
    def __init__(self, path):
        with open(path) as f:
            rows = [[float(v) for v in row] for row in list(csv.reader(f))[1:] if row]
        table = torch.tensor(rows)
        self.x, self.y = table[:, :-1], table[:, -1:]

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def make_model(features, hidden, dropout):
    return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))


def evaluate(model, loader):
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            total += nn.functional.mse_loss(model(x), y, reduction="sum").item()
            n += len(y)
    return total / n


def main(config, data, epochs, report, seed=0, resume=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args([f"--{k}={v}" for k, v in {**config, "epochs": epochs, "seed": seed}.items()])
    torch.manual_seed(args.seed)
    train_set = CsvDataset(os.path.join(args.data, "train.csv"))
    train_loader = DataLoader(train_set, batch_size=32, shuffle=True)
    val_loader = DataLoader(CsvDataset(os.path.join(args.data, "val.csv")), batch_size=256)
    model = make_model(train_set.x.shape[1], args.hidden, args.dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    if resume:  # a restored trial continues from its last checkpoint
        model.load_state_dict(resume["model"]), optimizer.load_state_dict(resume["optimizer"])
    for epoch in range((resume or {"epoch": 0})["epoch"] + 1, args.epochs + 1):
        model.train()
        for x, y in train_loader:
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
        report({"val_mse": evaluate(model, val_loader)}, {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict()})
    test_loader = DataLoader(CsvDataset(os.path.join(args.data, "test.csv")), batch_size=256)
    return Trained(model, lambda m: {"test_mse": evaluate(m, test_loader)})
