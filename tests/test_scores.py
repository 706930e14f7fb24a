"""Score ratios: the bootstrap interval covers the true ratio at its stated rate, and the files it reads."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distill.environment.errors import UserError
from distill.evaluation.scores import (difference_interval, difference_interval_by_student, pooled_returns, ratio_interval,
                            ratio_interval_by_student, returns_by_mode, returns_by_policy)

ROOT = Path(__file__).resolve().parents[1]


def test_ratio_is_the_ratio_of_means_and_inside_its_interval():
    r = ratio_interval([10, 20, 30, 40], [50, 70, 90])
    assert r.ratio == pytest.approx(25 / 70)
    assert r.low < r.ratio < r.high
    assert (r.numerator_games, r.denominator_games, r.level) == (4, 3, 0.95)
    assert ratio_interval([10, 20, 30, 40], [50, 70, 90]) == r  # a fixed seed: the same interval every time


def test_interval_narrows_with_more_games_and_widens_with_the_level():
    rng = np.random.default_rng(1)
    few = ratio_interval(rng.gamma(4, 20, 30), rng.gamma(4, 25, 30))
    many = ratio_interval(rng.gamma(4, 20, 600), rng.gamma(4, 25, 600))
    assert many.high - many.low < 0.4 * (few.high - few.low)
    num, den = rng.gamma(4, 20, 30), rng.gamma(4, 25, 30)
    wide, narrow = ratio_interval(num, den, level=0.99), ratio_interval(num, den, level=0.5)
    assert wide.low < narrow.low < narrow.high < wide.high


def test_interval_covers_the_true_ratio_at_about_its_level():
    """Skewed scores as in Atari (gamma, sd half the mean): true ratio 0.8; 95% intervals should cover it ~95%."""
    rng = np.random.default_rng(0)
    trials, covered = 200, 0
    for _ in range(trials):
        r = ratio_interval(rng.gamma(4, 20, 40), rng.gamma(4, 25, 40), resamples=1000, seed=int(rng.integers(1e9)))
        covered += r.low <= 0.8 <= r.high
    assert 0.88 <= covered / trials <= 0.99


def test_constant_scores_give_a_point_interval_and_bad_input_is_refused():
    r = ratio_interval([5, 5, 5], [10, 10])
    assert (r.ratio, r.low, r.high) == (0.5, 0.5, 0.5)
    undefined = ratio_interval([0, 1], [0, 1])  # a resampled teacher can score nothing: no finite interval
    assert undefined.ratio == 1 and not undefined.defined
    assert undefined.as_dict()["low"] is None and "no CI" in str(undefined)
    assert ratio_interval([1, 2, 3], [4, 5, 6]).defined
    with pytest.raises(UserError, match="at least 2 games"):
        ratio_interval([5], [10, 12])
    with pytest.raises(UserError, match="mean score is"):
        ratio_interval([5, 6], [-1, 1])
    with pytest.raises(UserError, match="confidence level"):
        ratio_interval([5, 6], [7, 8], level=95)


def test_resampling_students_widens_the_interval_only_when_students_differ():
    rng = np.random.default_rng(0)
    teacher = rng.gamma(4, 25, 150)
    alike = [rng.gamma(4, 20, 60) for _ in range(3)]  # three students that play alike
    pooled, by_student = ratio_interval(np.concatenate(alike), teacher), ratio_interval_by_student(alike, [teacher])
    assert by_student.ratio == pytest.approx(pooled.ratio)  # equal game counts: the same point estimate
    assert by_student.low < by_student.ratio < by_student.high
    assert by_student.high - by_student.low < 1.5 * (pooled.high - pooled.low)
    apart = [rng.gamma(4, 5, 60), rng.gamma(4, 20, 60), rng.gamma(4, 35, 60)]  # one weak and one strong seed
    pooled, by_student = ratio_interval(np.concatenate(apart), teacher), ratio_interval_by_student(apart, [teacher])
    assert by_student.high - by_student.low > 3 * (pooled.high - pooled.low)
    # each student weighs the same, however many games it played
    assert ratio_interval_by_student([[10, 10], [30, 30, 30, 30]], [[20, 20]]).ratio == pytest.approx(1.0)
    assert ratio_interval_by_student(apart, [teacher]) == ratio_interval_by_student(apart, [teacher])  # fixed seed
    with pytest.raises(UserError, match="at least 2 of them"):
        ratio_interval_by_student([[1, 2, 3]], [teacher])
    with pytest.raises(UserError, match="at least 2 games per student"):
        ratio_interval_by_student([[1, 2], [3]], [teacher])
    # a reference of several students that differ widely is resampled by student too: a wider interval
    one_reference = ratio_interval_by_student(alike, [np.concatenate(apart)])
    three_references = ratio_interval_by_student(alike, apart)
    assert three_references.ratio == pytest.approx(one_reference.ratio)
    assert three_references.high - three_references.low > 2 * (one_reference.high - one_reference.low)


def test_difference_in_points_takes_negative_scores_and_covers_the_truth():
    """Pong-like scores (-21 to 21): a ratio is refused, the difference of means is given with its interval."""
    with pytest.raises(UserError, match="--difference"):
        ratio_interval([3, 5], [-21, -19])
    d = difference_interval([3, 5, 7], [-21, -19])
    assert d.difference == pytest.approx(25.0) and d.low < 25 < d.high
    assert str(d).startswith("+25.0 points")
    assert difference_interval([2, 2], [-1, -1]).as_dict()["low"] == 3.0  # constant scores: a point interval
    rng = np.random.default_rng(0)
    trials, covered = 200, 0
    for _ in range(trials):  # bimodal games, as a Pong student that either wins or loses 0-21: true difference -6
        a = np.where(rng.random(40) < 0.5, 20.0, -20.0) + rng.normal(0, 1, 40)
        b = np.where(rng.random(40) < 0.65, 20.0, -20.0) + rng.normal(0, 1, 40)
        r = difference_interval(a, b, resamples=1000, seed=int(rng.integers(1e9)))
        covered += r.low <= -6 <= r.high
    assert 0.88 <= covered / trials <= 0.99


def test_difference_by_student_weighs_students_equally_and_widens_when_they_differ():
    rng = np.random.default_rng(1)
    reference = [rng.normal(-9, 15, 30) for _ in range(3)]
    alike = [rng.normal(1, 15, 30) for _ in range(3)]
    apart = [rng.normal(-15, 15, 30), rng.normal(1, 15, 30), rng.normal(17, 15, 30)]
    narrow, wide = difference_interval_by_student(alike, reference), difference_interval_by_student(apart, reference)
    assert narrow.low < narrow.difference < narrow.high
    assert wide.high - wide.low > 1.5 * (narrow.high - narrow.low)
    assert difference_interval_by_student([[1, 1], [5, 5, 5, 5]], [[-2, -2]]).difference == pytest.approx(5.0)
    with pytest.raises(UserError, match="at least 2 of them"):
        difference_interval_by_student([[1, 2, 3]], reference)


def _eval_json(path: Path, student: dict, teacher: dict | None = None, run: str | None = None) -> Path:
    def modes(returns_by):
        return {m: {"mode": m, "episodes": len(r), "mean_return": float(np.mean(r)), "returns": r}
                for m, r in returns_by.items()}

    report = {"policy": "student", "modes": modes(student), **({"run": run} if run else {})}
    if teacher is not None:
        report["teacher"] = {"modes": modes(teacher), "sha256": "ab" * 32}
    path.write_text(json.dumps(report))
    return path


def test_files_are_read_pooled_and_checked(tmp_path):
    card = returns_by_mode(ROOT / "teachers" / "cards" / "breakout.json")
    assert set(card) == {"sample", "greedy"} and len(card["sample"]) == 30
    a = _eval_json(tmp_path / "a.json", {"sample": [1, 2], "greedy": [3, 4]}, teacher={"sample": [10, 20]})
    b = _eval_json(tmp_path / "b.json", {"sample": [5, 6, 7]})
    assert returns_by_mode(a, policy="teacher") == {"sample": [10.0, 20.0]}  # the teacher played alongside
    assert returns_by_mode(a) == {"sample": [1.0, 2.0], "greedy": [3.0, 4.0]}
    assert pooled_returns([a, b]) == {"sample": [1.0, 2.0, 5.0, 6.0, 7.0], "greedy": [3.0, 4.0]}
    with pytest.raises(UserError, match="does not exist"):
        returns_by_mode(tmp_path / "missing.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(UserError, match="not a readable JSON"):
        returns_by_mode(tmp_path / "junk.json")
    (tmp_path / "other.json").write_text(json.dumps({"step": 3}))
    with pytest.raises(UserError, match="no per-game scores"):
        returns_by_mode(tmp_path / "other.json")


def test_score_ratio_script_pools_seeds(tmp_path):
    s0 = _eval_json(tmp_path / "s0.json", {"sample": [40, 60], "greedy": [80, 100]})
    s1 = _eval_json(tmp_path / "s1.json", {"sample": [50, 90], "greedy": [90, 130]})
    out = tmp_path / "ratio.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "score_ratio.py"), "--students", str(s0), str(s1),
                           "--teacher", str(ROOT / "teachers" / "cards" / "breakout.json"), "--json", str(out)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    card = returns_by_mode(ROOT / "teachers" / "cards" / "breakout.json")
    assert report["modes"]["sample"]["ratio"] == pytest.approx(60 / np.mean(card["sample"]))
    assert report["modes"]["greedy"]["per_file_ratio"][str(s1)] == pytest.approx(110 / np.mean(card["greedy"]))
    assert "CI" in done.stdout and "students resampled" in done.stdout
    by_student = report["modes"]["sample"]["by_student"]
    assert by_student["ratio"] == pytest.approx(report["modes"]["sample"]["ratio"])
    pong = _eval_json(tmp_path / "pong.json", {"sample": [-21, 5, 21]}, run="pong-s0")
    kl_only = _eval_json(tmp_path / "pong-kl.json", {"sample": [-21, -20, -5]}, run="pong-kl-s0")
    script = [sys.executable, str(ROOT / "scripts" / "score_ratio.py"),
              "--students", str(pong), "--teacher", str(kl_only)]
    refused = subprocess.run(script, capture_output=True, text=True, cwd=tmp_path)
    assert refused.returncode == 2 and "--difference" in refused.stderr and "Traceback" not in refused.stderr
    done = subprocess.run(script + ["--difference", "--json", str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    sample = json.loads(out.read_text())["modes"]["sample"]
    assert sample["difference"] == pytest.approx(5 / 3 + 46 / 3)
    assert sample["per_file_difference"][str(pong)] == pytest.approx(sample["difference"])
    assert "points" in done.stdout
    # students told apart by their run: two files of one run are one student; KL-only seeds as the reference are
    # resampled by student too
    a = _eval_json(tmp_path / "a-sample.json", {"sample": [10, 20]}, run="runs/a")
    a_greedy = _eval_json(tmp_path / "a-greedy.json", {"greedy": [30, 40]}, teacher={"greedy": [50, 60]}, run="runs/a")
    b = _eval_json(tmp_path / "b.json", {"sample": [30, 50], "greedy": [70, 90]}, run="runs/b")
    k = [_eval_json(tmp_path / f"k{i}.json", {"sample": [20 + i, 40 + i]}, run=f"runs/k{i}") for i in range(2)]
    grouped = returns_by_policy([a, a_greedy, b])
    assert grouped == {"run:runs/a": {"sample": [10.0, 20.0], "greedy": [30.0, 40.0]},
                       "run:runs/b": {"sample": [30.0, 50.0], "greedy": [70.0, 90.0]}}
    assert list(returns_by_policy([a_greedy], policy="teacher")) == ["sha256:" + "ab" * 32]
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "score_ratio.py"), "--students", str(a),
                           str(a_greedy), str(b), "--teacher", *map(str, k)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "the reference's students too" in done.stdout
    missing = subprocess.run([sys.executable, str(ROOT / "scripts" / "score_ratio.py"), "--students", "nope.json",
                              "--teacher", str(s0)], capture_output=True, text=True, cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "does not exist" in missing.stderr


def test_score_ratio_script_ends_quietly_when_its_reader_stops(tmp_path):
    """`score_ratio.py ... | head -1` must not end in a BrokenPipeError traceback: here the reader is gone before
    the first line is written, so that the write fails every time rather than depending on timing."""
    s0 = _eval_json(tmp_path / "s0.json", {"sample": [40, 60], "greedy": [80, 100]})
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, str(ROOT / "scripts" / "score_ratio.py"), "--students", str(s0),
                               "--teacher", str(ROOT / "teachers" / "cards" / "breakout.json")],
                              stdout=write_end, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_a_multigame_students_file_is_read_one_game_at_a_time(tmp_path):
    def modes(returns):
        return {"modes": {"sample": {"returns": returns}}}

    path = tmp_path / "three.json"
    path.write_text(json.dumps({"policy": "student", "run": "data/runs/three", "games": {
        "Breakout": {**modes([10, 20]), "teacher": {**modes([100, 120]), "sha256": "b"}},
        "Pong": {**modes([-5, 3]), "teacher": {**modes([20, 21]), "sha256": "p"}}}}))
    assert pooled_returns([path], game="Pong") == {"sample": [-5.0, 3.0]}
    assert pooled_returns([path], policy="teacher", game="Breakout") == {"sample": [100.0, 120.0]}
    with pytest.raises(UserError, match="holds the scores of Breakout, Pong; say which with --game"):
        pooled_returns([path])
    with pytest.raises(UserError, match="not of SpaceInvaders"):
        pooled_returns([path], game="SpaceInvaders")
