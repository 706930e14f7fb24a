"""How sure a score ratio is: student-over-teacher game scores with a bootstrap confidence interval.

Atari game scores vary a lot from game to game (the Breakout teacher's sampled scores have a standard
deviation of about half their mean), so "the student scores 74% of the teacher" over 30 games each
can be anything from about 60% to 90%. A ratio without its interval invites reading noise as signal;
these helpers put the interval next to every ratio the toolkit prints.

Where scores can be negative (Pong runs from -21 to 21) a ratio means nothing; the same intervals are given for
the difference of mean scores in game points (``difference_interval``, ``difference_interval_by_student``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import stats

from distill.environment.errors import UserError


@dataclass(frozen=True)
class RatioInterval:
    """``ratio`` = mean(numerator) / mean(denominator), with a two-sided bootstrap interval at ``level``."""

    ratio: float
    low: float
    high: float
    level: float
    numerator_games: int
    denominator_games: int

    @property
    def defined(self) -> bool:
        """False when resampled reference means reach zero or below, so the ratio's spread has no bound."""
        return bool(np.isfinite(self.low) and np.isfinite(self.high))

    def as_dict(self) -> dict:
        return {"ratio": self.ratio, "low": self.low if self.defined else None,
                "high": self.high if self.defined else None, "level": self.level,
                "numerator_games": self.numerator_games, "denominator_games": self.denominator_games}

    def __str__(self) -> str:
        games = f"{self.numerator_games} against {self.denominator_games} games"
        if not self.defined:
            return f"{100 * self.ratio:.0f}% (no CI: resampled reference games can average 0 or less; {games})"
        return f"{100 * self.ratio:.0f}% ({100 * self.level:.0f}% CI {100 * self.low:.0f}-{100 * self.high:.0f}%, {games})"


@dataclass(frozen=True)
class DifferenceInterval:
    """``difference`` = mean(scores) - mean(reference) in game points, with a two-sided bootstrap interval at
    ``level``: the comparison for games whose scores can be negative (Pong), where a ratio has no meaning."""

    difference: float
    low: float
    high: float
    level: float
    numerator_games: int
    denominator_games: int

    def as_dict(self) -> dict:
        return {"difference": self.difference, "low": self.low, "high": self.high, "level": self.level,
                "numerator_games": self.numerator_games, "denominator_games": self.denominator_games}

    def __str__(self) -> str:
        return (f"{self.difference:+.1f} points ({100 * self.level:.0f}% CI {self.low:+.1f} to {self.high:+.1f}, "
                f"{self.numerator_games} against {self.denominator_games} games)")


def _ratio_of_means(numerator: np.ndarray, denominator: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(numerator, axis=axis) / np.mean(denominator, axis=axis)


def _difference_of_means(numerator: np.ndarray, denominator: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(numerator, axis=axis) - np.mean(denominator, axis=axis)


def _bootstrap(num: np.ndarray, den: np.ndarray, level: float, resamples: int, seed: int,
               method: str, statistic) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # BCa's acceleration on tiny samples; NaN is handled below
        res = stats.bootstrap((num, den), statistic, paired=False, vectorized=True, n_resamples=resamples,
                              confidence_level=level, method=method, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _bca_or_percentile(num: np.ndarray, den: np.ndarray, level: float, resamples: int, seed: int,
                       statistic) -> tuple[float, float]:
    """BCa interval, or the percentile one where BCa needs a non-degenerate jackknife it lacks (a few games)."""
    low, high = _bootstrap(num, den, level, resamples, seed, "BCa", statistic)
    if not (np.isfinite(low) and np.isfinite(high)):
        low, high = _bootstrap(num, den, level, resamples, seed, "percentile", statistic)
    return low, high


def _games(numerator: Sequence[float], denominator: Sequence[float], level: float) -> tuple[np.ndarray, np.ndarray]:
    """Both samples as arrays, refused when an interval cannot be computed from them."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    if num.size < 2 or den.size < 2:
        raise UserError(f"a score comparison needs at least 2 games on each side, got {num.size} and {den.size}")
    if not 0 < level < 1:
        raise UserError(f"the confidence level must be in (0, 1), got {level}")
    return num, den


def ratio_interval(numerator: Sequence[float], denominator: Sequence[float], level: float = 0.95,
                   resamples: int = 9999, seed: int = 0) -> RatioInterval:
    """Ratio of mean scores with a BCa bootstrap interval.

    The two lists are independent samples of games (different policies play different games), so each
    is resampled on its own (``paired=False``). A fixed ``seed`` makes the printed interval reproducible.
    """
    num, den = _games(numerator, denominator, level)
    if den.mean() <= 0:
        raise UserError(f"the reference policy's mean score is {den.mean():g}; a ratio to it means nothing: compare "
                        f"the difference in points instead (score_ratio.py --difference)")
    ratio = float(num.mean() / den.mean())
    if np.ptp(num) == 0 and np.ptp(den) == 0:  # every game scored the same: nothing to resample
        return RatioInterval(ratio, ratio, ratio, level, num.size, den.size)
    low, high = _bca_or_percentile(num, den, level, resamples, seed, _ratio_of_means)
    if not (np.isfinite(low) and np.isfinite(high)):
        low = high = float("nan")  # some resampled reference means are <= 0: no finite interval exists
    return RatioInterval(ratio, low, high, level, num.size, den.size)


def difference_interval(scores: Sequence[float], reference: Sequence[float], level: float = 0.95,
                        resamples: int = 9999, seed: int = 0) -> DifferenceInterval:
    """Difference of mean scores (``scores`` minus ``reference``) with a BCa bootstrap interval; each side is
    resampled on its own, as in ``ratio_interval``, and any sign of score is allowed."""
    num, den = _games(scores, reference, level)
    difference = float(num.mean() - den.mean())
    if np.ptp(num) == 0 and np.ptp(den) == 0:
        return DifferenceInterval(difference, difference, difference, level, num.size, den.size)
    low, high = _bca_or_percentile(num, den, level, resamples, seed, _difference_of_means)
    return DifferenceInterval(difference, low, high, level, num.size, den.size)


def _two_level_means(groups: list[np.ndarray], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """``resamples`` bootstrap means of the policies' mean scores: the policies are resampled, then each drawn policy's
    games (a policy drawn twice in one replicate gets two independent resamples). One policy: its games only."""
    n = len(groups)
    game_means = np.stack([g[rng.integers(0, g.size, (resamples, n, g.size))].mean(axis=2) for g in groups])
    drawn = rng.integers(0, n, (resamples, n)) if n > 1 else np.zeros((resamples, 1), dtype=np.int64)
    return game_means[drawn, np.arange(resamples)[:, None], np.arange(n)[None, :]].mean(axis=1)


def _policies(groups: Sequence[Sequence[float]], reference: Sequence[Sequence[float]],
              level: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each policy's games as an array, refused when a two-level interval cannot be computed from them."""
    groups = [np.asarray(g, dtype=np.float64) for g in groups]
    reference = [np.asarray(g, dtype=np.float64) for g in reference]
    if len(groups) < 2:
        raise UserError(f"resampling students needs at least 2 of them, got {len(groups)}")
    if not reference or min(g.size for g in groups + reference) < 2:
        raise UserError("a score comparison needs at least 2 games per student and per reference policy")
    if not 0 < level < 1:
        raise UserError(f"the confidence level must be in (0, 1), got {level}")
    return groups, reference


def ratio_interval_by_student(groups: Sequence[Sequence[float]], reference: Sequence[Sequence[float]],
                              level: float = 0.95, resamples: int = 9999, seed: int = 0) -> RatioInterval:
    """Ratio of the students' mean score (each student weighted equally) to the reference policies', with a two-level
    percentile bootstrap: the students are resampled, then each drawn student's games; the same on the reference
    side, which is one group (a teacher: its games only) or several (KL-only students of three seeds).

    ``ratio_interval`` on pooled games answers "how sure are we about *these* students"; this one answers "about
    students trained this way", so that seed-to-seed differences (a lucky seed) widen the interval as they should.
    With few students (3 seeds) it is coarse: it cannot see a spread the students do not show.
    """
    groups, reference = _policies(groups, reference, level)
    reference_mean = float(np.mean([g.mean() for g in reference]))
    if reference_mean <= 0:
        raise UserError(f"the reference policies' mean score is {reference_mean:g}; a ratio to it means nothing: "
                        f"compare the difference in points instead (score_ratio.py --difference)")
    rng = np.random.default_rng(seed)
    ratio = float(np.mean([g.mean() for g in groups]) / reference_mean)
    numerator, denominator = _two_level_means(groups, resamples, rng), _two_level_means(reference, resamples, rng)
    if (denominator <= 0).any():  # some resampled reference means are <= 0: no finite interval exists
        low = high = float("nan")
    else:
        low, high = (float(q) for q in np.quantile(numerator / denominator, [(1 - level) / 2, (1 + level) / 2]))
    return RatioInterval(ratio, low, high, level, int(sum(g.size for g in groups)), int(sum(g.size for g in reference)))


def difference_interval_by_student(groups: Sequence[Sequence[float]], reference: Sequence[Sequence[float]],
                                   level: float = 0.95, resamples: int = 9999,
                                   seed: int = 0) -> DifferenceInterval:
    """``ratio_interval_by_student`` for the difference of mean scores in points (each student weighted equally; the
    students, then their games, resampled on both sides): for games whose scores can be negative."""
    groups, reference = _policies(groups, reference, level)
    rng = np.random.default_rng(seed)
    difference = float(np.mean([g.mean() for g in groups]) - np.mean([g.mean() for g in reference]))
    spread = _two_level_means(groups, resamples, rng) - _two_level_means(reference, resamples, rng)
    low, high = (float(q) for q in np.quantile(spread, [(1 - level) / 2, (1 + level) / 2]))
    return DifferenceInterval(difference, low, high, level, int(sum(g.size for g in groups)),
                              int(sum(g.size for g in reference)))


def _read_score_file(path: Path, policy: str = "auto", game: str | None = None) -> dict:
    """The JSON of a score file, narrowed to ``game`` in a multi-game student's file and to the teacher played
    alongside when ``policy="teacher"`` asks for it."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist; write one with `distill-eval ... --json {path}`") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not a readable JSON file ({exc})") from None
    if isinstance(data.get("games"), dict):  # distill-eval of a multi-game student: one report per game
        if game not in data["games"]:
            raise UserError(f"{path} holds the scores of {', '.join(data['games'])}; "
                            f"{'say which with --game' if game is None else f'not of {game}'}")
        data = {**data["games"][game], "policy": data.get("policy"), "run": data.get("run")}
    if policy == "teacher" and isinstance(data.get("teacher"), dict):
        data = data["teacher"]
    return data


def _modes(data: dict, path: Path) -> dict[str, list[float]]:
    modes = data.get("modes") or data.get("evaluation")
    if not isinstance(modes, dict) or not all(isinstance(m, dict) and "returns" in m for m in modes.values()):
        raise UserError(f"{path} holds no per-game scores: expected a distill-eval --json file or a teacher card")
    return {mode: [float(r) for r in summary["returns"]] for mode, summary in modes.items()}


def _identity(data: dict, path: Path) -> str:
    if data.get("policy") == "student" and data.get("run"):
        return f"run:{data['run']}"
    return f"sha256:{data.get('sha256', path)}"


def returns_by_mode(path: Path, policy: str = "auto", game: str | None = None) -> dict[str, list[float]]:
    """Per-game scores, by action-selection mode, from any JSON the toolkit writes about game play.

    Understands ``distill-eval --json`` files (the evaluated policy, or with ``policy="teacher"`` the
    teacher played alongside a student) and teacher cards (``teachers/cards/*.json``); in a multi-game student's
    file, the scores of ``game``.
    """
    return _modes(_read_score_file(path, policy, game), path)


def policy_identity(path: Path, policy: str = "auto") -> str:
    """Which policy played the games of a score file: ``run:DIR`` for a student (its training run), ``sha256:H`` for a
    teacher (card, teacher evaluation, or the teacher played alongside a student with ``policy="teacher"``)."""
    return _identity(_read_score_file(path, policy), path)


def returns_by_policy(paths: Sequence[Path], policy: str = "auto",
                      game: str | None = None) -> dict[str, dict[str, list[float]]]:
    """Scores per mode of each distinct policy in ``paths`` (files of one student or one teacher pooled), in order."""
    grouped: dict[str, dict[str, list[float]]] = {}
    for path in paths:
        data = _read_score_file(path, policy, game)  # read once for both the scores and whose they are
        modes = grouped.setdefault(_identity(data, path), {})
        for mode, returns in _modes(data, path).items():
            modes.setdefault(mode, []).extend(returns)
    return grouped


def pooled_returns(paths: Sequence[Path], policy: str = "auto", game: str | None = None) -> dict[str, list[float]]:
    """Scores of several files (e.g. one per seed, or a teacher's sampled and greedy evaluations) pooled per mode;
    a mode holds the games of every file that has it."""
    pooled: dict[str, list[float]] = {}
    for path in paths:
        for mode, returns in returns_by_mode(path, policy, game).items():
            pooled.setdefault(mode, []).extend(returns)
    if not pooled:
        raise UserError("the files given hold no games")
    return pooled
