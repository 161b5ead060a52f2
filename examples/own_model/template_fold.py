"""Template of a training command for `mer`'s fold contract `mer-fold/1` (copy it and put your model in).

`mer` runs it once per fold (as the `command` of a `[methods.<name>]` table whose `files` ship this
file, e.g. `["python", "template_fold.py"]`) in a fresh folder that holds task.json,
train.safetensors, test.safetensors and mer_fold.py, the helper it imports (docs/own-model.md).

As it stands it trains a linear softmax classifier with mini-batch gradient descent in numpy on the
first requested input group (flattened and standardised), so it runs anywhere and shows every part of
the contract: reading the task, seeding, a training loop that reports progress, optional per-epoch
test predictions and the final predictions with probabilities. Replace the three marked parts (features,
model, training step) with your own; keep the rest.

Params (all optional): `epochs` (30), `lr` (0.05), `batch_size` (32), `eval_every` (1: write the
test predictions of every epoch for the oracle-epoch diagnostic; 0: do not).
"""

import time

import numpy as np

import mer_fold


def features(x: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None):
    """YOUR FEATURES. Flattened samples, standardised with the training set's `mean` and `std`.

    Called on the training set without `mean`/`std` (they are computed there and returned) and on the
    test set with the training set's, so nothing is fitted on the test samples.
    """
    flat = x.reshape(len(x), -1).astype(np.float64)
    if mean is None:
        mean = flat.mean(axis=0)
        std = flat.std(axis=0) + 1e-6
    return (flat - mean) / std, mean, std


def main() -> None:
    """Load the fold, train, report progress, write the predictions."""
    task = mer_fold.load()
    rng = np.random.default_rng(task.seed_everything())
    epochs = int(task.params.get("epochs", 30))
    lr = float(task.params.get("lr", 0.05))
    batch_size = int(task.params.get("batch_size", 32))
    eval_every = int(task.params.get("eval_every", 1))
    if eval_every not in (0, 1):
        raise ValueError("eval_every must be 0 or 1: the contract wants the predictions of every epoch")

    # Inputs: task.inputs lists the requested groups (`apex_flow`, `flow`, `tim10`); the labels are only on
    # the training side. Fit any preprocessing on the training samples only.
    group = task.inputs[0]
    x_train, mean, std = features(task.train[group])
    x_test, _, _ = features(task.test[group], mean, std)
    y_train = task.train_labels
    k = task.num_classes

    # YOUR MODEL, built from task.params: here the weights and bias of a linear softmax classifier.
    weights = np.zeros((x_train.shape[1], k))
    bias = np.zeros(k)

    for epoch in range(epochs):
        start = time.perf_counter()
        order = rng.permutation(len(x_train))
        total_loss = 0.0
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            # YOUR TRAINING STEP: softmax cross-entropy and one gradient step.
            p = mer_fold.softmax(x_train[batch] @ weights + bias)
            total_loss += -np.log(p[np.arange(len(batch)), y_train[batch]] + 1e-12).sum()
            p[np.arange(len(batch)), y_train[batch]] -= 1.0
            weights -= lr * x_train[batch].T @ p / len(batch)
            bias -= lr * p.mean(axis=0)
        seconds = time.perf_counter() - start
        mer_fold.progress(
            epoch=epoch,
            epochs=epochs,
            loss=total_loss / len(order),
            samples_per_s=len(order) / max(seconds, 1e-9),
        )
        # Optional: the test predictions of this epoch, only for the oracle-epoch diagnostic. Never use
        # them (or anything computed from the test samples) to choose an epoch or a setting.
        if eval_every:
            task.write_epoch_predictions(epoch, np.argmax(x_test @ weights + bias, axis=1))

    # Required: the final model's predictions for every test sample, in task.test_ids order.
    probs = mer_fold.softmax(x_test @ weights + bias)
    task.write_predictions(np.argmax(probs, axis=1), probs)


if __name__ == "__main__":
    main()
