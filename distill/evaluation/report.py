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
    student/teacher ratios. Returns the report and the loaded student."""
    student, info = load_student(run, checkpoint, device)
    config = info["config"]
    if game is not None and atari.canonical_game(game) != config["game"]:
        raise UserError(f"the student in {run} plays {config['game']}, not {game}")
    game = config["game"]
    _stderr(f"evaluating student {run} ({config['student']}, alpha {config['alpha']}, fraction {config['fraction']})")
    report: dict = {"seed": seed, "game": game, "policy": "student", "run": str(run), "checkpoint": checkpoint,
                    "config": config}
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
        distilled_from = info.get("teacher_sha256")
        if distilled_from and loaded.sha256 != distilled_from:
            _stderr(f"warning: the teacher played alongside ({loaded.path}, sha256 {loaded.sha256[:12]}) is not the "
                    f"one this student was distilled from ({distilled_from[:12]}); pass that one with --teacher")
        report["teacher"] = {"path": loaded.path, "sha256": loaded.sha256,
                             "distilled_from": loaded.sha256 == distilled_from,
                             **play_policy(loaded, "teacher", game, episodes, mode, seed, envs, device, echo)}
        report["student_over_teacher"] = (report["mean_return"] / report["teacher"]["mean_return"]
                                          if report["teacher"]["mean_return"] else None)
        report["student_over_teacher_by_mode"] = score_ratios(report["modes"], report["teacher"]["modes"], echo)
    return report, student
