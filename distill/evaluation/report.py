"""One evaluation of a teacher or a trained student: game scores by playing, the teacher alongside, held-out metrics.

``distill-eval`` and :func:`distill.evaluate` both build their report here, so the command and the Python API give
the same numbers under the same keys.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import torch

from distill.environment import atari
from distill.environment.errors import UserError
from distill.evaluation.heldout import heldout_metrics
from distill.evaluation.rollout import MODES, play
from distill.evaluation.scores import ratio_interval
from distill.training.runs import load_student

Echo = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def play_policy(policy, name: str, game: str, episodes: int, mode: str = "both", seed: int = 0, envs: int = 4,
                device: torch.device | str = "cpu", echo: Echo = print) -> dict:
    """Play ``episodes`` whole games per action-selection mode (``sample``, ``greedy`` or ``both``); the first
    mode's summary at the top level, every mode's under ``modes``."""
    modes = MODES if mode == "both" else (mode,)
    summaries = {}
    for m in modes:
        s = play(policy, game, episodes, mode=m, seed=seed, envs=envs, device=device).summary()
        summaries[m] = s
        echo(f"{game} {name:7s} {m:6s}: mean {s['mean_return']:.1f} ± {s['std_return']:.1f} "
             f"(min {s['min_return']:.0f}, max {s['max_return']:.0f}) over {s['episodes']} games")
    primary = summaries[modes[0]]
    return {"mean_return": primary["mean_return"], "std_return": primary["std_return"],
            "episodes": primary["episodes"], "mode": primary["mode"], "modes": summaries}


def score_ratios(student_modes: dict, teacher_modes: dict, echo: Echo = print) -> dict:
    """Student-over-teacher score per mode with its bootstrap interval: 30 games each leave a wide one."""
    ratios = {}
    for mode, summary in student_modes.items():
        if teacher_modes[mode]["mean_return"] <= 0 or summary["episodes"] < 2:
            continue
        ratio = ratio_interval(summary["returns"], teacher_modes[mode]["returns"])
        ratios[mode] = ratio.as_dict()
        echo(f"student / teacher, {mode}: {ratio}")
    return ratios


def evaluate_teacher(teacher: str | Path | None, game: str | None = None, episodes: int = 30, mode: str = "both",
                     seed: int = 0, envs: int = 4, temperature: float = 0.01, device: torch.device | str = "cpu",
                     echo: Echo = print, trust_checkpoint: bool = False) -> tuple[dict, torch.nn.Module]:
    """Game scores of a teacher (a shipped one by game name, or a checkpoint path); returns the report and the
    loaded teacher."""
    from teachers.load import load_teacher

    if teacher is None and game is None:
        raise UserError("say what to evaluate: --teacher GAME_OR_PATH (e.g. --teacher Breakout) or --student RUNDIR")
    loaded = load_teacher(teacher if teacher is not None else game, game=game, temperature=temperature, device=device,
                          trust_checkpoint=trust_checkpoint)
    _stderr(f"evaluating {loaded.describe()}")
    report = {"seed": seed, "game": loaded.game, "policy": "teacher", "path": loaded.path, "sha256": loaded.sha256}
    report.update(play_policy(loaded, "teacher", loaded.game, episodes, mode, seed, envs, device, echo))
    return report, loaded


def evaluate_student(run: str | Path, checkpoint: str = "latest", episodes: int = 30, mode: str = "both",
                     seed: int = 0, envs: int = 4, held_out: bool = True, dataset: str | Path | None = None,
                     teacher: str | Path | None = None, with_teacher: bool = True, game: str | None = None,
                     temperature: float = 0.01, device: torch.device | str = "cpu",
                     echo: Echo = print, trust_checkpoint: bool = False) -> tuple[dict, torch.nn.Module]:
    """Evaluate a ``distill-train`` run: held-out action error and KL on its recording (if it still exists, or on
    ``dataset``), game scores over ``episodes`` games per mode (0: none), and the teacher's scores alongside with
    student/teacher ratios. A multi-game run plays each of its games (or only ``game``), each with its own teacher,
    and reports each game under ``games``. Returns the report and the loaded student."""
    student, info = load_student(run, checkpoint, device)
    config = info["config"]
    _stderr(f"evaluating student {run} ({config['student']}, alpha {config['alpha']}, fraction {config['fraction']})")
    report: dict = {"seed": seed, "game": config["game"], "policy": "student", "run": str(run),
                    "checkpoint": checkpoint, "config": config}
    play = dict(episodes=episodes, mode=mode, seed=seed, envs=envs, held_out=held_out, with_teacher=with_teacher,
                temperature=temperature, device=device, echo=echo, trust_checkpoint=trust_checkpoint)
    if "games" not in info:
        if game is not None and atari.canonical_game(game) != config["game"]:
            raise UserError(f"the student in {run} plays {config['game']}, not {game}")
        report.update(_one_game(student, config, info.get("teacher_sha256"), dataset, teacher, **play))
        return report, student

    games = info["games"]
    names = [g["game"] for g in games]
    if game is not None:
        if atari.canonical_game(game) not in names:
            raise UserError(f"the student in {run} plays {', '.join(names)}, not {game}; pass one of them to --game "
                            "or leave --game out to play them all")
        games = [g for g in games if g["game"] == atari.canonical_game(game)]
    if dataset is not None and len(games) > 1:
        raise UserError(f"--dataset names one recording, and {run} is a student for {', '.join(names)}; pass "
                        "--game with it to say which game it is of")
    teachers = str(teacher).split(",") if teacher is not None else [None] * len(games)
    if len(teachers) != len(games):
        raise UserError(f"--teacher names {len(teachers)} teacher(s) for the {len(games)} games played "
                        f"({', '.join(g['game'] for g in games)}); pass one per game, comma-separated, in that order")
    report["games"] = {}
    for g, spec in zip(games, teachers):
        echo(f"--- {g['game']}")
        config_g = {**config, "dataset": g["dataset"], "game": g["game"]}
        report["games"][g["game"]] = _one_game(student.for_game(g["game"]), config_g, g.get("teacher_sha256"),
                                               dataset, spec, **play)
    ratios = [r.get("student_over_teacher") for r in report["games"].values()]
    if ratios and all(r is not None for r in ratios):
        report["mean_student_over_teacher"] = sum(ratios) / len(ratios)
        echo(f"student / teacher, mean over {len(ratios)} games: {report['mean_student_over_teacher']:.3f}")
    return report, student


def _one_game(student: torch.nn.Module, config: dict, distilled_from: str | None, dataset: str | Path | None,
              teacher: str | Path | None, episodes: int, mode: str, seed: int, envs: int, held_out: bool,
              with_teacher: bool, temperature: float, device: torch.device | str, echo: Echo,
              trust_checkpoint: bool) -> dict:
    """One game of a student: its scores, held-out metrics and the teacher alongside (``config`` is that game's)."""
    game = config["game"]
    report: dict = {"game": game}
    if episodes > 0:
        report.update(play_policy(student, "student", game, episodes, mode, seed, envs, device, echo))
    recording = Path(dataset or config["dataset"])
    teacher_spec = teacher or game
    if dataset is not None or recording.exists():
        if held_out:
            report["held_out"] = heldout_metrics(student, config, device, recording)
            h = report["held_out"]
            echo(f"held-out on {recording}: action error {h['test_action_error']:.4f}, KL {h['test_kl']:.4f} nats "
                 f"over {h['test_states']} states")
        from distill.recording.schema import open_recording

        with open_recording(recording) as f:
            teacher_spec = teacher or str(f.attrs["teacher_path"])
    if with_teacher and episodes > 0:
        from teachers.load import load_teacher

        loaded = load_teacher(teacher_spec, game=game, temperature=temperature, device=device,
                              trust_checkpoint=trust_checkpoint)
        if distilled_from and loaded.sha256 != distilled_from:
            _stderr(f"warning: the {game} teacher played alongside ({loaded.path}, sha256 {loaded.sha256[:12]}) is "
                    f"not the one this student was distilled from ({distilled_from[:12]}); pass that one with "
                    "--teacher")
        report["teacher"] = {"path": loaded.path, "sha256": loaded.sha256,
                             "distilled_from": loaded.sha256 == distilled_from,
                             **play_policy(loaded, "teacher", game, episodes, mode, seed, envs, device, echo)}
        report["student_over_teacher"] = (report["mean_return"] / report["teacher"]["mean_return"]
                                          if report["teacher"]["mean_return"] else None)
        report["student_over_teacher_by_mode"] = score_ratios(report["modes"], report["teacher"]["modes"], echo)
    return report
