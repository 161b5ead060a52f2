"""Tests of mer_fold.py and of the example training commands in examples/own_model/.

Run from the repository root: `.venv/bin/python -m unittest python/test_mer_fold.py`.

Each test builds a task folder the way the worker does under contract `mer-fold/1` (task.json, train and
test safetensors with string metadata, mer_fold.py and the command's file copied in) in a temporary
directory. The example commands run as subprocesses there and their predictions.csv (and
epoch_predictions.csv) are checked against the contract's rules by a reader written here, apart from
the helper's own checks.
"""

import contextlib
import csv
import importlib.util
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np
import safetensors.numpy

PYTHON_DIR = Path(__file__).resolve().parent
EXAMPLES = PYTHON_DIR.parent / "examples" / "own_model"
sys.path.insert(0, str(PYTHON_DIR))

import mer_fold  # noqa: E402

CLASSES = ["negative", "positive", "surprise"]
N_TRAIN = 24
N_TEST = 7
SIZE = 28


def make_task(folder: Path, params: dict, inputs=("tim10", "apex_flow"), label_in_test=False) -> list[str]:
    """Write task.json, train.safetensors and test.safetensors of a small 3-class fold into `folder`.

    The apex flows carry a class-dependent offset so that the classes are learnable. Returns the test ids.
    """
    rng = np.random.default_rng(0)
    train_labels = np.arange(N_TRAIN, dtype=np.int64) % len(CLASSES)
    test_labels = rng.integers(0, len(CLASSES), N_TEST)

    def tensors(labels: np.ndarray) -> dict[str, np.ndarray]:
        n = len(labels)
        out = {}
        if "apex_flow" in inputs:
            flow = rng.normal(size=(n, 3, SIZE, SIZE)).astype(np.float32)
            flow[:, 0] += labels[:, None, None].astype(np.float32)
            out["apex_flow"] = flow
        if "tim10" in inputs:
            out["tim10"] = rng.integers(0, 256, size=(n, 10, 8, 8), dtype=np.uint8)
        return out

    train_ids = [f"casme2/sub{2 + i % 4:02d}/EP{i:02d}_01" for i in range(N_TRAIN)]
    train_subjects = [i.rsplit("/", 1)[0] for i in train_ids]
    test_ids = [f"t{i:04d}" for i in range(N_TEST)]

    def metadata(ids: list[str], subjects: list[str]) -> dict[str, str]:
        return {
            "contract": mer_fold.CONTRACT,
            "sample_ids": json.dumps(ids),
            "subjects": json.dumps(subjects),
            "inputs": json.dumps(list(inputs)),
        }

    train = tensors(train_labels) | {"label": train_labels}
    test = tensors(test_labels)
    if label_in_test:
        test["label"] = test_labels.astype(np.int64)
    test_subjects = ["casme2/sub01"] * N_TEST
    files = {"train": (train, train_ids, train_subjects), "test": (test, test_ids, test_subjects)}
    for name, (data, ids, subjects) in files.items():
        path = str(folder / f"{name}.safetensors")
        safetensors.numpy.save_file(data, path, metadata=metadata(ids, subjects))
    task = {
        "contract": mer_fold.CONTRACT,
        "method": "my_net",
        "params": params,
        "seed": 1234567,
        "device": "cpu",
        "devices": ["cpu"],
        "threads": 1,
        "scheme": "megc3",
        "classes": CLASSES,
        "fold": "casme2/sub01",
        "inner": None,
        "inputs": list(inputs),
        "train": "train.safetensors",
        "test": "test.safetensors",
        "predictions": "predictions.csv",
        "epoch_predictions": "epoch_predictions.csv",
        "timeout_minutes": 60,
    }
    (folder / "task.json").write_text(json.dumps(task))
    return test_ids


def read_predictions(path: Path, test_ids: list[str], k: int) -> dict[str, int]:
    """Check predictions.csv by the contract's rules (independently of the helper); returns id -> pred."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    assert header in (["sample_id", "pred"], ["sample_id", "pred"] + [f"p{c}" for c in range(k)]), header
    preds = {}
    for row in rows[1:]:
        assert len(row) == len(header), row
        sample_id, pred = row[0], int(row[1])
        assert sample_id in test_ids and sample_id not in preds, sample_id
        assert 0 <= pred < k, row
        probs = [float(p) for p in row[2:]]
        assert all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in probs), row
        assert not probs or abs(sum(probs) - 1.0) <= 1e-3, row
        preds[sample_id] = pred
    assert sorted(preds) == sorted(test_ids)
    return preds


def read_epoch_predictions(path: Path, test_ids: list[str], k: int) -> int:
    """Check epoch_predictions.csv (each test sample once per epoch, epochs 0, 1, ...); returns the epochs."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["epoch", "sample_id", "pred"], rows[0]
    by_epoch: dict[int, list[str]] = {}
    for epoch, sample_id, pred in rows[1:]:
        assert 0 <= int(pred) < k
        by_epoch.setdefault(int(epoch), []).append(sample_id)
    assert list(by_epoch) == list(range(len(by_epoch))), list(by_epoch)
    for ids in by_epoch.values():
        assert sorted(ids) == sorted(test_ids)
    return len(by_epoch)


class FolderTest(unittest.TestCase):
    """A fresh temporary folder per test."""

    def setUp(self) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        self.folder = Path(self._tmp.name)

    def tearDown(self) -> None:
        self._tmp.cleanup()


class HelperTest(FolderTest):
    """mer_fold's reading, progress lines and checked writing."""

    def test_load_reads_the_folder(self) -> None:
        test_ids = make_task(self.folder, {"epochs": 5})
        task = mer_fold.load(self.folder)
        self.assertEqual(task.params, {"epochs": 5})
        self.assertEqual(task.num_classes, 3)
        self.assertEqual(task.classes, CLASSES)
        self.assertEqual(task.test_ids, test_ids)
        self.assertEqual(sorted(task.train), ["apex_flow", "tim10"])
        self.assertEqual(sorted(task.test), ["apex_flow", "tim10"])
        self.assertEqual(task.train["apex_flow"].shape, (N_TRAIN, 3, SIZE, SIZE))
        self.assertEqual(task.test["tim10"].dtype, np.uint8)
        self.assertEqual(task.train_labels.dtype, np.int64)
        self.assertEqual(len(task.train_ids), N_TRAIN)
        self.assertEqual(task.train_subjects[0], "casme2/sub02")
        self.assertEqual(task.test_subjects, ["casme2/sub01"] * N_TEST)
        self.assertIsNone(task.inner)
        self.assertEqual(task.seed_everything(), 1234567)

    def test_load_refuses_other_contracts_and_labels(self) -> None:
        make_task(self.folder, {})
        raw = json.loads((self.folder / "task.json").read_text())
        (self.folder / "task.json").write_text(json.dumps(raw | {"contract": "mer-fold/2"}))
        with self.assertRaisesRegex(mer_fold.ContractError, "mer-fold/2"):
            mer_fold.load(self.folder)

        make_task(self.folder, {}, label_in_test=True)
        with self.assertRaisesRegex(mer_fold.ContractError, "label"):
            mer_fold.load(self.folder)

        make_task(self.folder, {})
        safetensors.numpy.save_file(
            {"apex_flow": np.zeros((2, 3, 4, 4), np.float32), "tim10": np.zeros((2, 10, 8, 8), np.uint8)},
            str(self.folder / "train.safetensors"),
            metadata={"contract": mer_fold.CONTRACT, "sample_ids": '["a", "b"]', "subjects": '["s", "s"]'},
        )
        with self.assertRaisesRegex(mer_fold.ContractError, "no `label`"):
            mer_fold.load(self.folder)

    def test_progress_prints_only_finite_given_fields(self) -> None:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            mer_fold.progress(epoch=np.int64(3), epochs=100, loss=np.float32(0.5))
            mer_fold.progress(stage="fit", loss=float("nan"), samples_per_s=float("inf"))
        lines = out.getvalue().splitlines()
        self.assertEqual(lines[0], 'MER-PROGRESS {"epoch": 3, "epochs": 100, "loss": 0.5}')
        self.assertEqual(lines[1], 'MER-PROGRESS {"stage": "fit"}')

    def test_write_predictions_checks_before_writing(self) -> None:
        make_task(self.folder, {})
        task = mer_fold.load(self.folder)
        good_probs = np.full((N_TEST, 3), 1 / 3)
        bad_row = good_probs.copy()
        bad_row[4] = [0.5, 0.2, 0.2]
        nan_row = good_probs.copy()
        nan_row[0, 0] = np.nan
        negative = good_probs.copy()
        negative[1] = [1.2, -0.2, 0.0]
        preds = np.zeros(N_TEST, dtype=np.int64)
        cases = [
            ("sum to 0.9", lambda: task.write_predictions(preds, bad_row)),
            ("not finite", lambda: task.write_predictions(preds, nan_row)),
            (r"outside \[0, 1\]", lambda: task.write_predictions(preds, negative)),
            ("shape", lambda: task.write_predictions(preds, good_probs[:, :2])),
            ("one prediction per test sample", lambda: task.write_predictions(preds[:-1])),
            ("one prediction per test sample", lambda: task.write_predictions(np.append(preds, 0))),
            ("outside 0..2", lambda: task.write_predictions(np.full(N_TEST, 3))),
            ("integer", lambda: task.write_predictions(np.zeros(N_TEST))),
        ]
        for message, call in cases:
            with self.subTest(message), self.assertRaisesRegex(ValueError, message):
                call()
        # Nothing written, no temporary file left behind.
        inputs = ["task.json", "test.safetensors", "train.safetensors"]
        self.assertEqual(sorted(os.listdir(self.folder)), inputs)

        probs = mer_fold.softmax(np.random.default_rng(1).normal(size=(N_TEST, 3)).astype(np.float32))
        task.write_predictions(probs.argmax(axis=1), probs)
        preds_read = read_predictions(self.folder / "predictions.csv", task.test_ids, 3)
        self.assertEqual([preds_read[i] for i in task.test_ids], probs.argmax(axis=1).tolist())
        self.assertEqual(sorted(os.listdir(self.folder)), ["predictions.csv"] + inputs)

    def test_epoch_predictions_come_in_order(self) -> None:
        make_task(self.folder, {})
        task = mer_fold.load(self.folder)
        preds = np.arange(N_TEST) % 3
        with self.assertRaisesRegex(ValueError, "expected epoch 0, got 1"):
            task.write_epoch_predictions(1, preds)
        task.write_epoch_predictions(0, preds)
        task.write_epoch_predictions(1, preds)
        with self.assertRaisesRegex(ValueError, "expected epoch 2, got 3"):
            task.write_epoch_predictions(3, preds)
        self.assertEqual(read_epoch_predictions(self.folder / "epoch_predictions.csv", task.test_ids, 3), 2)


class ExampleTest(FolderTest):
    """The example commands run in a task folder as the worker runs them and write valid predictions."""

    def run_example(self, script: str, params: dict, inputs=("tim10", "apex_flow")) -> tuple[list[str], str]:
        """Run examples/own_model/`script` in a fresh task folder; returns the test ids and its stdout."""
        test_ids = make_task(self.folder, params, inputs)
        shutil.copy(PYTHON_DIR / "mer_fold.py", self.folder)
        shutil.copy(EXAMPLES / script, self.folder)
        env = os.environ | {"CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        done = subprocess.run(
            [sys.executable, script], cwd=self.folder, env=env, capture_output=True, text=True, timeout=120
        )
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        return test_ids, done.stdout

    def progress_lines(self, stdout: str) -> list[dict]:
        """The JSON objects of the `MER-PROGRESS` lines of `stdout`."""
        prefix = "MER-PROGRESS "
        return [json.loads(line[len(prefix) :]) for line in stdout.splitlines() if line.startswith(prefix)]

    def test_template(self) -> None:
        test_ids, stdout = self.run_example("template_fold.py", {"epochs": 4})
        read_predictions(self.folder / "predictions.csv", test_ids, 3)
        self.assertEqual(read_epoch_predictions(self.folder / "epoch_predictions.csv", test_ids, 3), 4)
        self.assertEqual([p["epoch"] for p in self.progress_lines(stdout)], [0, 1, 2, 3])

    def test_logreg(self) -> None:
        test_ids, stdout = self.run_example("logreg_fold.py", {"C": 0.5}, inputs=("apex_flow",))
        preds = read_predictions(self.folder / "predictions.csv", test_ids, 3)
        self.assertTrue((self.folder / "predictions.csv").read_text().startswith("sample_id,pred,p0,p1,p2"))
        self.assertEqual(len(preds), N_TEST)
        self.assertEqual([p["stage"] for p in self.progress_lines(stdout)], ["fit", "predict"])

    def test_offapexnet(self) -> None:
        params = {"epochs": 2, "dense": 16, "batch_size": 8}
        test_ids, stdout = self.run_example("offapexnet_fold.py", params, inputs=("apex_flow",))
        read_predictions(self.folder / "predictions.csv", test_ids, 3)
        self.assertEqual(read_epoch_predictions(self.folder / "epoch_predictions.csv", test_ids, 3), 2)
        lines = self.progress_lines(stdout)
        self.assertEqual([(p["epoch"], p["epochs"]) for p in lines], [(0, 2), (1, 2)])
        self.assertTrue(all(math.isfinite(p["loss"]) for p in lines))

    def test_offapexnet_has_the_papers_size(self) -> None:
        """2,664,475 parameters at 28 x 28, 1,024 dense units and 3 classes, as the built-in has."""
        spec = importlib.util.spec_from_file_location("offapexnet_fold", EXAMPLES / "offapexnet_fold.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        model = module.OffApexNet(size=28, classes=3, dense=1024, dropout=0.5)
        self.assertEqual(sum(p.numel() for p in model.parameters()), 2_664_475)


if __name__ == "__main__":
    unittest.main()
