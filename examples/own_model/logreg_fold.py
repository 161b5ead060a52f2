"""A `mer-fold/1` training command: scikit-learn logistic regression on the onset->apex flow.

A quick, non-deep reference method for `mer`'s own-method runs (seconds per fold). It reads the
`apex_flow` input group (u, v and optical strain, `[N, 3, S, S]`), flattens each sample, standardises the
features with a StandardScaler fitted on the training samples only, fits a multinomial
LogisticRegression, and writes the test predictions with their class probabilities.

Params (all optional): `max_iter` (1000), `C` (1.0, the inverse regularisation strength).
"""

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

import mer_fold


def main() -> None:
    """Load the fold, fit the scaler and the classifier on the training samples, write the predictions."""
    task = mer_fold.load()
    seed = task.seed_everything()
    if "apex_flow" not in task.train:
        raise ValueError(f"this method reads the `apex_flow` input; the task has {task.inputs}")
    x_train = task.train["apex_flow"].reshape(len(task.train_ids), -1)
    x_test = task.test["apex_flow"].reshape(len(task.test_ids), -1)
    y_train = task.train_labels

    mer_fold.progress(stage="fit")
    scaler = StandardScaler().fit(x_train)
    x_train = scaler.transform(x_train)
    x_test = scaler.transform(x_test)

    probs = np.zeros((len(task.test_ids), task.num_classes))
    present = np.unique(y_train)
    if len(present) == 1:
        # One class in the training set (a tiny inner split): LogisticRegression cannot fit it.
        probs[:, present[0]] = 1.0
    else:
        clf = LogisticRegression(
            C=float(task.params.get("C", 1.0)),
            max_iter=int(task.params.get("max_iter", 1000)),
            random_state=seed % 2**32,
        ).fit(x_train, y_train)
        # predict_proba has a column per class seen in training; classes absent there get 0.
        probs[:, clf.classes_] = clf.predict_proba(x_test)
    mer_fold.progress(stage="predict")
    task.write_predictions(np.argmax(probs, axis=1), probs)


if __name__ == "__main__":
    main()
