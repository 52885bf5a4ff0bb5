"""Leakage-safe splits: no trial on both sides of any split; SEED-VII's official folds."""

import numpy as np
import pytest

from e2llm.processing.splits import (
    assert_no_trial_leakage,
    check_split,
    leave_one_subject_out,
    seed_vii_fold_of_trial,
    seed_vii_folds,
    split_by_trial,
    trial_keys,
)


@pytest.fixture(scope="module")
def table():
    """3 subjects x 2 sessions x 10 trials x 3 windows, 5 labels (each label on 2 trials per session)."""
    rows = [(s, e, t, (t - 1) % 5) for s in (1, 2, 3) for e in (1, 2) for t in range(1, 11) for _ in range(3)]
    s, e, t, y = (np.array(c) for c in zip(*rows))
    return {"subject": s, "session": e, "trial": t, "emotion": y}


def _trials(table, rows):
    return {tuple(k) for k in trial_keys(table)[rows]}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_split_by_trial_keeps_trials_whole(table, seed):
    train, test = split_by_trial(table, test_size=0.25, seed=seed)
    assert not _trials(table, train) & _trials(table, test)
    assert len(train) + len(test) == len(table["subject"])
    assert set(table["subject"][test]) == {1, 2, 3} and set(table["subject"][train]) == {1, 2, 3}
    share = len(_trials(table, test)) / 60
    assert 0.2 <= share <= 0.3
    assert len(set(table["emotion"][test])) == 5  # stratified


def test_k_fold_by_trial_tests_each_trial_once(table):
    folds = split_by_trial(table, n_folds=4, seed=0)
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(len(table["subject"])))
    for train, test in folds:
        assert not _trials(table, train) & _trials(table, test)


def test_leave_one_subject_out(table):
    folds = list(leave_one_subject_out(table))
    assert len(folds) == 3
    for subject, (train, test) in zip((1, 2, 3), folds):
        assert set(table["subject"][test]) == {subject} and subject not in set(table["subject"][train])


def test_seed_vii_official_folds():
    clips = np.arange(1, 81)
    table = {"subject": np.repeat([1, 2], 160), "session": np.tile(np.repeat((clips - 1) // 20 + 1, 2), 2),
             "trial": np.tile(np.repeat(clips, 2), 2)}
    folds = seed_vii_folds(table)
    assert len(folds) == 4
    for k, (train, test) in enumerate(folds):
        assert not _trials(table, train) & _trials(table, test)
        for subject in (1, 2):
            for session in (1, 2, 3, 4):
                in_test = set(table["trial"][test][(table["subject"][test] == subject)
                                                   & (table["session"][test] == session)])
                first = (session - 1) * 20 + 5 * k + 1
                assert in_test == set(range(first, first + 5))  # 5 clips per session per fold
    assert seed_vii_fold_of_trial(np.array([1, 5, 6, 20, 21, 80])).tolist() == [0, 0, 1, 3, 0, 3]
    with pytest.raises(ValueError, match="clip numbers 1..80"):
        seed_vii_fold_of_trial(np.array([0, 81]))


def test_leakage_is_detected_and_named(table):
    rows = np.arange(len(table["subject"]))
    with pytest.raises(ValueError, match=r"leaks 1 trial\(s\): windows of \(subject=1, session=1, trial=1\)"):
        check_split(table, rows[1:], rows[:1])
    with pytest.raises(ValueError, match="same rows"):
        check_split(table, rows[:5], rows[3:9])
    with pytest.raises(ValueError, match="row positions"):
        check_split(table, rows[:3], np.array([10_000]))
    assert_no_trial_leakage(trial_keys(table)[:3], trial_keys(table)[3:6])


def test_splits_accept_a_datasets_table(table):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({k: v.tolist() for k, v in table.items()})
    train, test = split_by_trial(ds, seed=0)
    assert_no_trial_leakage(ds.select(train), ds.select(test))


def test_bad_tables(table):
    with pytest.raises(ValueError, match="no column 'trial'"):
        trial_keys({"subject": [1], "session": [1]})
    with pytest.raises(ValueError, match="must hold integers"):
        trial_keys({"subject": [1.5], "session": [1], "trial": [1]})
    with pytest.raises(ValueError, match="at least 2 subjects"):
        list(leave_one_subject_out({"subject": [1, 1], "session": [1, 1], "trial": [1, 2]}))
    with pytest.raises(ValueError, match="changes within trial"):
        split_by_trial({"subject": [1, 1, 1], "session": [1, 1, 1], "trial": [1, 1, 2], "emotion": [0, 1, 0]})
    with pytest.raises(ValueError, match="test_size"):
        split_by_trial(table, test_size=1.5)
