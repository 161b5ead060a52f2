"""Helper for training commands that follow the `mer` fold contract `mer-fold/1`.

`mer` runs a user's training command once per fold in a fresh folder holding `task.json`,
`train.safetensors` and `test.safetensors` (see docs/own-model.md, "The fold contract"). This module
reads that folder and writes the command's answers in the form the worker checks:

    import mer_fold

    task = mer_fold.load()                      # task.json + both tensor files
    task.seed_everything()
    for epoch in range(epochs):
        ...                                     # train on task.train / task.train_labels
        mer_fold.progress(epoch=epoch, epochs=epochs, loss=loss)
        task.write_epoch_predictions(epoch, preds_of_this_epoch)   # optional
    task.write_predictions(preds, probs)        # required: predictions.csv

It needs only the standard library, numpy and `safetensors`; torch is used by
`Task.seed_everything` when it is installed and is never imported otherwise.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.numpy

CONTRACT = "mer-fold/1"
"""The contract version this helper implements (`contract` in task.json and in both tensor files)."""

_SUM_TOLERANCE = 1e-3
"""How far a row of probabilities may sum from 1 (the worker's tolerance)."""

_TASK_KEYS = (
    "method", "params", "seed", "device", "devices", "threads", "scheme", "classes", "fold", "inner",
    "inputs", "train", "test", "predictions", "epoch_predictions",
)
"""The keys of task.json this helper reads (all of them are in every task.json of this contract)."""


class ContractError(ValueError):
    """The task folder does not follow the contract this helper implements."""


@dataclass
class Task:
    """One fold's task as the worker handed it over: settings, training data and unlabelled test data.

    Build it with `load`. Arrays are numpy arrays with the samples on the first axis; `train_ids`,
    `train_subjects`, `test_ids` and `test_subjects` are in the same order as the tensors' rows, and
    predictions are written in the order of `test_ids`.
    """

    folder: Path
    """The task folder (where task.json is)."""
    raw: dict[str, Any] = field(repr=False)
    """task.json as read."""
    method: str
    """The method's name in the experiment."""
    params: dict[str, Any]
    """The method's `params` with this sweep point's values applied."""
    seed: int
    """The task's derived seed."""
    device: str
    """`cuda` when the slot has a GPU, else `cpu`."""
    devices: list[str]
    """The slot's device names."""
    threads: int | None
    """`train.threads`, or None when unset."""
    scheme: str
    """The class scheme's name (e.g. `megc3`)."""
    classes: list[str]
    """Class names in label order: label `i` is `classes[i]`."""
    fold: str
    """The fold (`dataset/subject`, or the held-out part under leave-one-dataset-out)."""
    inner: dict[str, int] | None
    """None, or `{"index": i, "of": k}` for an inner split of nested selection."""
    inputs: list[str]
    """The requested input groups (`flow`, `apex_flow`, `tim10`), each a tensor of both files."""
    train: dict[str, np.ndarray] = field(repr=False)
    """Training tensors by name: every tensor of train.safetensors except `label`."""
    train_labels: np.ndarray = field(repr=False)
    """Training labels, int64 `[N_train]`, each in `range(num_classes)`."""
    train_ids: list[str] = field(repr=False)
    """Training sample ids (the real ones, e.g. `casme2/sub02/EP01_01`)."""
    train_subjects: list[str] = field(repr=False)
    """Training samples' subjects."""
    test: dict[str, np.ndarray] = field(repr=False)
    """Test tensors by name (no labels)."""
    test_ids: list[str] = field(repr=False)
    """Opaque test sample ids (`t0000`, ...), in the files' (shuffled) order."""
    test_subjects: list[str] = field(repr=False)
    """Test samples' subjects."""
    _next_epoch: int = field(default=0, init=False, repr=False)

    @property
    def num_classes(self) -> int:
        """The number of classes, K."""
        return len(self.classes)

    @property
    def predictions_path(self) -> Path:
        """Where `write_predictions` writes (task.json `predictions`)."""
        return self.folder / self.raw["predictions"]

    @property
    def epoch_predictions_path(self) -> Path:
        """Where `write_epoch_predictions` writes (task.json `epoch_predictions`)."""
        return self.folder / self.raw["epoch_predictions"]

    def seed_everything(self) -> int:
        """Seed `random`, numpy and, when installed, torch (CPU and CUDA) with `seed`; returns it.

        When torch is installed and `threads` is set, it also sets torch's intra-op thread count to it.
        """
        random.seed(self.seed)
        np.random.seed(self.seed % 2**32)
        try:
            import torch
        except ImportError:
            return self.seed
        torch.manual_seed(self.seed)
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        return self.seed

    def write_predictions(self, preds: Any, probs: Any = None) -> Path:
        """Write predictions.csv: one class index per test sample, optionally with class probabilities.

        `preds`: `[N_test]` integer class indices in the order of `test_ids` (numpy, list, or a torch
        tensor on any device). `probs`: None, or `[N_test, K]` probabilities (finite, in [0, 1], each row
        summing to 1 within 1e-3). Everything is checked before anything is written (ValueError
        otherwise), and the file is replaced atomically, so the folder never holds a partial file.
        Returns the file's path.
        """
        pred = self._check_preds(preds)
        header = ["sample_id", "pred"]
        prob = None
        if probs is not None:
            prob = self._check_probs(probs)
            header += [f"p{k}" for k in range(self.num_classes)]
        lines = [",".join(header)]
        for i, sample_id in enumerate(self.test_ids):
            row = [sample_id, str(pred[i])]
            if prob is not None:
                row += [format(float(p), ".9g") for p in prob[i]]
            lines.append(",".join(row))
        path = self.predictions_path
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp-")
        try:
            with os.fdopen(fd, "w", newline="\n") as f:
                f.write("\n".join(lines) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def write_epoch_predictions(self, epoch: int, preds: Any) -> Path:
        """Append one epoch's test predictions to epoch_predictions.csv (for the oracle-epoch diagnostic).

        `epoch` must be 0 on the first call of this process and one more than the previous epoch after
        that; epoch 0 (re)creates the file with its header `epoch,sample_id,pred`. `preds` is as in
        `write_predictions`. Returns the file's path.
        """
        if epoch != self._next_epoch:
            raise ValueError(
                f"epoch predictions must come for epochs 0, 1, 2, ... in order: "
                f"expected epoch {self._next_epoch}, got {epoch}"
            )
        pred = self._check_preds(preds)
        rows = "".join(f"{epoch},{sample_id},{p}\n" for sample_id, p in zip(self.test_ids, pred))
        path = self.epoch_predictions_path
        with open(path, "w" if epoch == 0 else "a", newline="\n") as f:
            if epoch == 0:
                rows = "epoch,sample_id,pred\n" + rows
            f.write(rows)
        self._next_epoch += 1
        return path

    def _check_preds(self, preds: Any) -> np.ndarray:
        """`preds` as an int64 `[N_test]` array, or ValueError when it is not one valid class per sample."""
        arr = _to_numpy(preds)
        n = len(self.test_ids)
        if arr.ndim != 1 or arr.shape[0] != n:
            raise ValueError(
                f"predictions: need exactly one prediction per test sample, shape [{n}], "
                f"got shape {list(arr.shape)}"
            )
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"predictions: need integer class indices, got dtype {arr.dtype}")
        bad = np.flatnonzero((arr < 0) | (arr >= self.num_classes))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"predictions: class {arr[i]} of test sample {self.test_ids[i]} is outside "
                f"0..{self.num_classes - 1}"
            )
        return arr.astype(np.int64)

    def _check_probs(self, probs: Any) -> np.ndarray:
        """`probs` as a float64 `[N_test, K]` array, or ValueError when a row is not a distribution."""
        arr = _to_numpy(probs)
        shape = [len(self.test_ids), self.num_classes]
        if list(arr.shape) != shape:
            raise ValueError(f"probabilities: need shape {shape}, got {list(arr.shape)}")
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise ValueError(f"probabilities: need numbers, got dtype {arr.dtype}")
        arr = arr.astype(np.float64)
        for i, row in enumerate(arr):
            where = f"probabilities of test sample {self.test_ids[i]} (row {i})"
            if not np.all(np.isfinite(row)):
                raise ValueError(f"{where}: not finite: {row.tolist()}")
            if np.any(row < 0.0) or np.any(row > 1.0):
                raise ValueError(f"{where}: outside [0, 1]: {row.tolist()}")
            if abs(row.sum() - 1.0) > _SUM_TOLERANCE:
                raise ValueError(f"{where}: sum to {row.sum():.6g}, not 1 (within {_SUM_TOLERANCE})")
        return arr


def load(folder: str | os.PathLike[str] = ".") -> Task:
    """Read the task folder (task.json and both tensor files) into a `Task`.

    Raises ContractError when task.json or a tensor file is not of contract `mer-fold/1` or is not
    consistent (a missing `label` in train.safetensors, a `label` in test.safetensors, a requested input
    missing, ids or subjects not matching the tensors' rows, a label out of range).
    """
    root = Path(folder)
    raw = json.loads((root / "task.json").read_text(encoding="utf-8"))
    if raw.get("contract") != CONTRACT:
        raise ContractError(
            f"task.json: contract is {raw.get('contract')!r}, this mer_fold.py implements {CONTRACT!r}"
        )
    missing = [key for key in _TASK_KEYS if key not in raw]
    if missing:
        raise ContractError(f"task.json: missing {missing}")
    inputs = list(raw["inputs"])
    classes = list(raw["classes"])
    train, train_ids, train_subjects = _read_tensors(root / raw["train"], inputs)
    test, test_ids, test_subjects = _read_tensors(root / raw["test"], inputs)
    if "label" not in train:
        raise ContractError(f"{raw['train']}: has no `label` tensor")
    if "label" in test:
        raise ContractError(f"{raw['test']}: holds a `label` tensor; test labels must never be handed over")
    labels = train.pop("label")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ContractError(
            f"{raw['train']}: `label` must be integer [N], got {labels.dtype} {list(labels.shape)}"
        )
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise ContractError(f"{raw['train']}: labels must be in 0..{len(classes) - 1}")
    if len(set(test_ids)) != len(test_ids):
        raise ContractError(f"{raw['test']}: sample ids are not unique")
    return Task(
        folder=root,
        raw=raw,
        method=raw["method"],
        params=dict(raw["params"] or {}),
        seed=int(raw["seed"]),
        device=raw["device"],
        devices=list(raw["devices"]),
        threads=raw["threads"],
        scheme=raw["scheme"],
        classes=classes,
        fold=raw["fold"],
        inner=raw["inner"],
        inputs=inputs,
        train=train,
        train_labels=labels,
        train_ids=train_ids,
        train_subjects=train_subjects,
        test=test,
        test_ids=test_ids,
        test_subjects=test_subjects,
    )


def progress(
    epoch: int | None = None,
    epochs: int | None = None,
    loss: float | None = None,
    samples_per_s: float | None = None,
    stage: str | None = None,
) -> None:
    """Print one `MER-PROGRESS {json}` line on stdout (and flush) for `mer status` and the training log.

    Only the given fields go into the line; `epoch` is 0-based, as the built-in methods report it. A
    non-finite `loss` or `samples_per_s` (NaN, inf) is left out.
    """
    fields: dict[str, Any] = {}
    if stage is not None:
        fields["stage"] = str(stage)
    if epoch is not None:
        fields["epoch"] = int(epoch)
    if epochs is not None:
        fields["epochs"] = int(epochs)
    for name, value in (("loss", loss), ("samples_per_s", samples_per_s)):
        if value is not None and math.isfinite(float(value)):
            fields[name] = float(value)
    print("MER-PROGRESS " + json.dumps(fields, allow_nan=False), flush=True)


def softmax(logits: Any, axis: int = -1) -> np.ndarray:
    """Softmax of `logits` along `axis` as float64 (numerically stable: the maximum is subtracted)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - np.max(z, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def _to_numpy(x: Any) -> np.ndarray:
    """`x` as a numpy array; torch tensors (any device, with or without grad) are copied to the CPU."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _read_tensors(
    path: Path, inputs: list[str]
) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """One tensor file's tensors, sample ids and subjects, checked against the contract and `inputs`."""
    with safetensors.safe_open(str(path), "np") as f:
        meta = f.metadata() or {}
    if meta.get("contract") != CONTRACT:
        raise ContractError(f"{path.name}: contract is {meta.get('contract')!r}, expected {CONTRACT!r}")
    try:
        ids = [str(s) for s in json.loads(meta["sample_ids"])]
        subjects = [str(s) for s in json.loads(meta["subjects"])]
    except (KeyError, json.JSONDecodeError) as e:
        raise ContractError(
            f"{path.name}: metadata `sample_ids` / `subjects` missing or not JSON: {e}"
        ) from e
    tensors = safetensors.numpy.load_file(str(path))
    missing = [name for name in inputs if name not in tensors]
    if missing:
        raise ContractError(f"{path.name}: requested input(s) {missing} missing (has {sorted(tensors)})")
    if len(subjects) != len(ids):
        raise ContractError(f"{path.name}: {len(ids)} sample ids but {len(subjects)} subjects")
    for name, array in tensors.items():
        if array.ndim == 0 or array.shape[0] != len(ids):
            raise ContractError(
                f"{path.name}: tensor `{name}` has shape {list(array.shape)}, expected {len(ids)} rows"
            )
    return tensors, ids, subjects
