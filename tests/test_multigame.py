"""Multi-game students: one student for two games with different action counts, per-game metrics, and resume."""

from __future__ import annotations

import json

import pytest
import torch

from distill.recording.writer import RecordConfig, record
from distill.training.multigame import multigame_config, train_multigame
from test_recording import TinyTeacher


@pytest.fixture(scope="module")
def pong_recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec-pong") / "pong-test.h5"
    record(RecordConfig(game="Pong", states=400, envs=4, seed=0, epsilon=0.5, codec="lzf"), TinyTeacher("Pong", 6),
           path, progress=False)
    return path


def test_two_games_train_per_game_and_resume_to_the_same_student(recording, pong_recording, tmp_path):
    options = dict(student="small", steps=6, batch_size=8, eval_every=3, test_cap=64, fraction=0.5, alpha=1.0,
                   lr_schedule="constant", lr_warmup=0.0)
    cfg = multigame_config([recording, pong_recording], **options)
    straight = train_multigame(cfg, tmp_path / "straight", torch.device("cpu"), progress=False)
    assert set(straight["games"]) == {"Breakout", "Pong"}
    assert straight["test_kl"] == pytest.approx((straight["games"]["Breakout"]["test_kl"]
                                                 + straight["games"]["Pong"]["test_kl"]) / 2)
    info = json.loads((tmp_path / "straight" / "config.json").read_text())
    assert [g["n_actions"] for g in info["games"]] == [4, 6] and [g["batch_share"] for g in info["games"]] == [4, 4]

    short = multigame_config([recording, pong_recording], **{**options, "steps": 3})
    train_multigame(short, tmp_path / "resumed", torch.device("cpu"), progress=False)
    resumed = train_multigame(cfg, tmp_path / "resumed", torch.device("cpu"), resume=True, progress=False)
    assert resumed["test_kl"] == pytest.approx(straight["test_kl"], rel=1e-6)
