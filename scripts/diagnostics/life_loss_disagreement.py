#!/usr/bin/env python
"""Does a student disagree with its teacher more in the moments just before it loses a life?

A student can match its teacher on almost every state and still score much less, if its few errors fall on the
states that decide the game. In games with lives (Breakout, SpaceInvaders) the decisive moments are the last steps
before a life is lost. This plays whole games with the student in control (and, as the control, the teacher in
control), queries both networks on every state, and splits the states into the ``--window`` agent steps before
each lost life and all the others: action disagreement and ``KL(pi* || pi)`` in each part. Disagreement much
higher before lost lives than elsewhere, when the student plays, means its errors concentrate where they cost
points; the teacher-controlled row tells whether those moments are simply hard for the student anyway.

    python scripts/diagnostics/life_loss_disagreement.py data/figure4/breakout-t5.75M-cos8k/runs/f0.1-a1-s0 --episodes 12

Teachers load through the safe path (nothing from the file is run; docs/usage.md, "Bring your own teacher").
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


from distill.environment.errors import UserError, cli_entry
from distill.recording.lives import before_life_loss
from distill.evaluation.rollout import play
from distill.training.runs import load_student
from diagnostics_common import add_play_arguments, add_window_argument, checked_window, write_reports


def mark_before_losses(lives: np.ndarray, window: int) -> np.ndarray:
    """For one game's per-step lives counts (read after each step; index 0 holds the game's starting lives), which
    steps lie in the ``window`` steps up to and including a step on which a life was lost."""
    return before_life_loss(lives, np.zeros(len(lives), dtype=np.int64), window)


class LifeLossProbe:
    """The policy in control for :func:`distill.rollout.play`, recording per game and step the disagreement of the
    two networks and the lives left, and keeping the games that play counts."""

    def __init__(self, student: torch.nn.Module, teacher: torch.nn.Module, student_plays: bool, window: int):
        self.student, self.teacher, self.student_plays, self.window = student, teacher, student_plays, window
        self.games: dict[int, list[tuple[int, float, int]]] = {}  # env -> per step: error, KL, lives after it
        self.start_lives: dict[int, int] = {}
        self.errors, self.kls, self.before = [], [], []

    @torch.no_grad()
    def __call__(self, obs_scaled: torch.Tensor) -> torch.Tensor:
        s_logits, t_logits = self.student(obs_scaled), self.teacher(obs_scaled)
        t_log = F.log_softmax(t_logits, 1)
        self.kl = (t_log.exp() * (t_log - F.log_softmax(s_logits, 1))).sum(1)
        self.wrong = s_logits.argmax(1) != t_logits.argmax(1)
        return s_logits if self.student_plays else t_logits

    def on_step(self, dones: np.ndarray, infos: list[dict], counted: np.ndarray) -> None:
        for i, (done, info) in enumerate(zip(dones, infos)):
            lives = int(info.get("lives", 0))
            self.start_lives.setdefault(i, lives)  # after a game's first step: no life lost yet
            game = self.games.setdefault(i, [])
            game.append((int(self.wrong[i]), float(self.kl[i]), lives))
            if done:
                if counted[i]:
                    all_lives = np.array([self.start_lives[i]] + [g[2] for g in game])
                    self.before.append(mark_before_losses(all_lives, self.window)[1:])
                    self.errors.append(np.array([g[0] for g in game]))
                    self.kls.append(np.array([g[1] for g in game]))
                del self.games[i], self.start_lives[i]


def play_and_split(student: torch.nn.Module, teacher: torch.nn.Module, student_plays: bool, game: str,
                   episodes: int, mode: str, window: int, seed: int, envs: int) -> dict:
    """Play ``episodes`` games; disagreement before lost lives and elsewhere, and the scores."""
    probe = LifeLossProbe(student, teacher, student_plays, window)
    result = play(probe, game, episodes, mode=mode, seed=seed, envs=envs, progress=False, on_step=probe.on_step)
    scores, before, errors, kls = result.returns, probe.before, probe.errors, probe.kls
    before_all, err_all, kl_all = np.concatenate(before), np.concatenate(errors), np.concatenate(kls)
    if not before_all.any():
        raise UserError(f"no life was lost in {episodes} games of {game}: nothing to compare (a game with lives?)")

    def part(mask: np.ndarray) -> dict:
        return {"states": int(mask.sum()), "action_error": float(err_all[mask].mean()) if mask.any() else None,
                "kl": float(kl_all[mask].mean()) if mask.any() else None}

    return {"before_lost_life": part(before_all), "elsewhere": part(~before_all), "all": part(np.ones_like(before_all)),
            "mean_return": float(np.mean(scores)), "std_return": float(np.std(scores)), "games": len(scores)}


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="distill-train run directories")
    add_play_arguments(p)
    add_window_argument(p)
    p.add_argument("--json", type=Path, default=None, help="also write the reports here")
    args = p.parse_args(argv)
    checked_window(args.window)
    from teachers.load import load_teacher

    reports = []
    for run in args.runs:
        student, info = load_student(run)
        game = info["config"]["game"]
        teacher = load_teacher(args.teacher, game).eval()
        student.eval()
        report = {"run": str(run), "game": game, "mode": args.mode, "window": args.window, "seed": args.seed}
        print(f"\n{run} ({args.mode} actions, {args.episodes} games each, {args.window} steps before each lost life)")
        print("| in control | part | states | action error | KL(pi* || pi) | game score |")
        print("|---|---|---|---|---|---|")
        for name, student_plays in (("student", True), ("teacher", False)):
            r = play_and_split(student, teacher, student_plays, game, args.episodes, args.mode, args.window,
                               args.seed, args.envs)
            report[name] = r
            for part in ("before_lost_life", "elsewhere"):
                q = r[part]
                print(f"| {name} | {part.replace('_', ' ')} | {q['states']} | {q['action_error']:.3f} | "
                      f"{q['kl']:.4f} | {r['mean_return']:.1f} ± {r['std_return']:.1f} |")
        reports.append(report)
    return write_reports(args.json, reports)


if __name__ == "__main__":
    raise SystemExit(main())
