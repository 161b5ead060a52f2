"""A `mer-fold/1` training command: OFF-ApexNet in plain PyTorch.

OFF-ApexNet (Gan, Liong, Yau, Huang, Tan, "OFF-ApexNet on micro-expression recognition system", Signal
Processing: Image Communication 74 (2019) 129-139; arXiv 1805.08699) reads the onset->apex optical
flow: the horizontal component u and the vertical component v (channels 0 and 1 of the `apex_flow`
input group; the strain channel is not used) each go through their own, separately weighted LeNet-like
stream

    conv 5x5, 1 -> 6, padding 2 -> ReLU -> max-pool 2x2 -> conv 5x5, 6 -> 16, padding 2 -> ReLU
    -> max-pool 2x2

whose flattened outputs (16 x 7 x 7 each at 28 x 28) are concatenated and classified by

    dense -> ReLU -> dropout -> dense -> ReLU -> dropout -> linear to the classes.

Training as `mer`'s built-in OFF-ApexNet: Adam, softmax cross-entropy, a fixed number of epochs, and
the network after the last epoch gives the predictions (no epoch selection of any kind). It is written
independently of the built-in, so running both on the same folds compares two implementations.

Params (all optional; defaults as the built-in's): `epochs` (3000), `batch_size` (256), `lr` (1e-4, Adam),
`dense` (1024 units in each hidden dense layer), `dropout` (0.5), `shuffle` (true: reshuffle the
training samples every epoch), `eval_every` (1: write each epoch's test predictions to
epoch_predictions.csv, only for the oracle-epoch diagnostic; 0: do not).
"""

import time

import numpy as np
import torch
from torch import nn

import mer_fold


class Stream(nn.Module):
    """One flow component's feature extractor: two conv + ReLU + 2x2 max-pool stages (6, then 16 maps)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features `[B, 16 * (S // 4) ** 2]` of one component `[B, 1, S, S]`."""
        return self.layers(x)


class OffApexNet(nn.Module):
    """The two streams (u, v) and the dense head; returns logits (the softmax is in the loss)."""

    def __init__(self, size: int, classes: int, dense: int, dropout: float) -> None:
        super().__init__()
        self.u = Stream()
        self.v = Stream()
        features = 2 * 16 * (size // 4) ** 2
        self.head = nn.Sequential(
            nn.Linear(features, dense),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(dense, dense),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(dense, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits `[B, classes]` of flows `[B, 2, S, S]` (channel 0 = u, channel 1 = v)."""
        return self.head(torch.cat([self.u(x[:, 0:1]), self.v(x[:, 1:2])], dim=1))


def uv(flow: np.ndarray, device: torch.device) -> torch.Tensor:
    """The u and v channels of `apex_flow` `[N, 3, S, S]` as a float32 tensor `[N, 2, S, S]` on `device`."""
    return torch.from_numpy(np.ascontiguousarray(flow[:, :2], dtype=np.float32)).to(device)


@torch.no_grad()
def predict(model: OffApexNet, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Softmax probabilities `[N, classes]` of `x`, in eval mode (no dropout; the model stays in it)."""
    model.eval()
    return torch.cat([model(x[i : i + batch_size]).softmax(dim=1) for i in range(0, len(x), batch_size)])


def main() -> None:
    """Load the fold, train for the fixed epoch budget, report progress, write the predictions."""
    task = mer_fold.load()
    params = task.params
    epochs = int(params.get("epochs", 3000))
    batch_size = int(params.get("batch_size", 256))
    lr = float(params.get("lr", 1e-4))
    dense = int(params.get("dense", 1024))
    dropout = float(params.get("dropout", 0.5))
    shuffle = bool(params.get("shuffle", True))
    eval_every = int(params.get("eval_every", 1))
    if eval_every not in (0, 1):
        raise ValueError("eval_every must be 0 or 1: the contract wants the predictions of every epoch")
    if "apex_flow" not in task.train:
        raise ValueError(f"OFF-ApexNet reads the `apex_flow` input; the task has {task.inputs}")
    flow = task.train["apex_flow"]
    if flow.ndim != 4 or flow.shape[1] < 2 or flow.shape[2] != flow.shape[3] or flow.shape[2] < 4:
        raise ValueError(f"`apex_flow` must be [N, >=2, S, S] with S >= 4, got {list(flow.shape)}")

    seed = task.seed_everything()
    device = torch.device(task.device)
    x_train = uv(flow, device)
    y_train = torch.from_numpy(task.train_labels).to(device)
    x_test = uv(task.test["apex_flow"], device)

    model = OffApexNet(flow.shape[2], task.num_classes, dense, dropout).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    order_rng = torch.Generator().manual_seed(seed)
    n = len(x_train)

    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=order_rng) if shuffle else torch.arange(n)
        order = order.to(device)
        total_loss = torch.zeros((), device=device)
        for i in range(0, n, batch_size):
            batch = order[i : i + batch_size]
            loss = loss_fn(model(x_train[batch]), y_train[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * len(batch)
        mean_loss = total_loss.item() / n
        mer_fold.progress(
            epoch=epoch,
            epochs=epochs,
            loss=mean_loss,
            samples_per_s=n / max(time.perf_counter() - start, 1e-9),
        )
        if eval_every:
            task.write_epoch_predictions(epoch, predict(model, x_test, batch_size).argmax(dim=1))

    probs = predict(model, x_test, batch_size)
    task.write_predictions(probs.argmax(dim=1), probs)


if __name__ == "__main__":
    main()
