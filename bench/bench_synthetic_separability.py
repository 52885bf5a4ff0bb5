"""How learnable the synthetic EEG is: DE + logistic regression on held-out trials, real vs shuffled labels.

Run: `.venv/bin/python bench/bench_synthetic_separability.py` (3 subjects x 80 clips of 12 s, three split seeds).
Prints JSON: balanced accuracy per split seed for raw-like and preprocessed synthetic data (chance = 1/7).
"""

import json

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from e2llm.processing.features import differential_entropy, window_trial
from e2llm.processing.splits import split_by_trial
from e2llm.processing.synthetic import SyntheticEEGConfig, synthetic_trials


def main() -> dict:
    results = {}
    for preprocessed in (False, True):
        features, labels, keys = [], [], []
        for t in synthetic_trials(3, 12.0, seed=0, config=SyntheticEEGConfig(preprocessed=preprocessed)):
            windows = window_trial(t.recording.data, 200.0, 4.0)
            features.append(differential_entropy(windows, 200.0).reshape(len(windows), -1))
            labels += [t.emotion] * len(windows)
            keys += [(t.subject, t.session, t.trial)] * len(windows)
        x, y, keys = np.concatenate(features), np.array(labels), np.array(keys)
        _, trial_index = np.unique(keys, axis=0, return_inverse=True)
        trial_index = trial_index.ravel()
        per_trial = np.zeros(trial_index.max() + 1, int)
        per_trial[trial_index] = y
        shuffled = np.random.default_rng(0).permutation(per_trial)[trial_index]  # shuffle whole trials
        for name, target in (("real", y), ("shuffled", shuffled)):
            table = {"subject": keys[:, 0], "session": keys[:, 1], "trial": keys[:, 2], "emotion": target}
            scores = []
            for seed in range(3):
                train, test = split_by_trial(table, test_size=0.25, seed=seed)
                model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
                model.fit(x[train], target[train])
                scores.append(float(balanced_accuracy_score(target[test], model.predict(x[test]))))
            key = f"{'preprocessed' if preprocessed else 'raw_like'}/{name}"
            results[key] = {"balanced_accuracy": scores, "mean": float(np.mean(scores))}
    results["chance"] = 1 / 7
    return results


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
