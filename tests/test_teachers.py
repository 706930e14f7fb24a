"""Teacher loading (every algorithm family), input gradients, the CLIs, and every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from distill.environment import atari
from distill.environment.errors import UserError
from teachers.load import Teacher, load_teacher, read_meta, write_meta


def some_observations(game: str = "Breakout", n: int = 3) -> torch.Tensor:
    venv = atari.make_vec_env(game, n_envs=1, seed=0)
    frames = [venv.reset()]
    for _ in range(n - 1):
        frames.append(venv.step(np.array([1]))[0])
    venv.close()
    return atari.scale_obs(np.concatenate(frames))


def test_actor_critic_logits_match_the_policy_distribution(sb3_models):
    from stable_baselines3 import A2C, PPO

    x = some_observations()
    for key, cls in (("a2c_breakout", A2C), ("ppo_breakout", PPO)):
        teacher = load_teacher(sb3_models[key], game="Breakout")
        assert isinstance(teacher, Teacher) and teacher.kind == "actor_critic" and teacher.n_actions == 4
        model = cls.load(sb3_models[key], device="cpu")
        with torch.no_grad():
            expected = model.policy.get_distribution((x * 255).round()).distribution.logits
            got = torch.log_softmax(teacher(x), dim=1)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_value_based_teachers_give_q_over_temperature(sb3_models):
    from sb3_contrib import QRDQN
    from stable_baselines3 import DQN

    x = some_observations()
    for key, cls in (("dqn_breakout", DQN), ("qrdqn_breakout", QRDQN)):
        teacher = load_teacher(sb3_models[key], game="Breakout", temperature=0.5)
        model = cls.load(sb3_models[key], device="cpu", buffer_size=1)
        with torch.no_grad():
            obs = (x * 255).round()
            if key == "dqn_breakout":
                q = model.q_net(obs)
            else:
                q = model.policy.quantile_net(obs).mean(dim=1)
            torch.testing.assert_close(teacher(x), q / 0.5, atol=1e-4, rtol=1e-4)


def test_teacher_logits_are_differentiable_in_the_scaled_input(sb3_models):
    teacher = load_teacher(sb3_models["a2c_breakout"], game="Breakout").double()
    x = some_observations(n=1).double().requires_grad_(True)
    logits = teacher(x)
    (grad,) = torch.autograd.grad(torch.log_softmax(logits, 1)[0, 2], x)
    assert grad.shape == x.shape and grad.abs().sum() > 0
    assert all(not p.requires_grad for p in teacher.parameters())  # frozen: gradients only wrt the input
    idx = tuple(int(i) for i in torch.nonzero(grad.abs() == grad.abs().max())[0])
    eps = 1e-4
    plus, minus = x.detach().clone(), x.detach().clone()
    plus[idx] += eps
    minus[idx] -= eps
    with torch.no_grad():
        fd = (torch.log_softmax(teacher(plus), 1)[0, 2] - torch.log_softmax(teacher(minus), 1)[0, 2]) / (2 * eps)
    assert fd.item() == pytest.approx(grad[idx].item(), rel=1e-3)


def test_teacher_metadata_catches_the_wrong_game_with_same_action_count(sb3_models, tmp_path):
    path = tmp_path / "pong.zip"
    path.write_bytes(sb3_models["a2c_pong"].read_bytes())
    write_meta(path, {"game": "Pong"})
    assert read_meta(path)["game"] == "Pong"
    assert load_teacher(path).game == "Pong"  # the game comes from the checkpoint
    with pytest.raises(UserError, match="trained on Pong, not SpaceInvaders"):
        load_teacher(path, game="SpaceInvaders")


@pytest.mark.parametrize("key,game,message", [
    ("a2c_pong", "Breakout", "has 6 actions but Breakout has 4"),
    ("ppo_cartpole", "Breakout", "not an Atari policy"),
])
def test_mismatched_checkpoints_are_refused(sb3_models, key, game, message):
    with pytest.raises(UserError, match=message):
        load_teacher(sb3_models[key], game=game)


def test_missing_and_corrupt_checkpoints_are_refused(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_teacher(tmp_path / "nope.zip", game="Breakout")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(UserError, match="not a stable-baselines3 .zip"):
        load_teacher(junk, game="Breakout")


def run_cli(main, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return exc.value.code, err[-1] if err else ""


def test_eval_cli_plays_an_outside_checkpoint_and_writes_json(sb3_models, tmp_path, capsys):
    from distill.cli.evaluate import main

    out = tmp_path / "eval.json"
    assert main(["--teacher", str(sb3_models["a2c_breakout"]), "--game", "Breakout", "--episodes", "2",
                 "--envs", "2", "--mode", "sample", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["episodes"] == 2 and report["game"] == "Breakout"
    assert {"mean_return", "std_return", "episodes"} <= set(report)
    assert len(report["modes"]["sample"]["returns"]) == 2


@pytest.mark.parametrize("argv,message", [
    (["--teacher", "/nonexistent/t.zip", "--game", "Breakout"], "not found"),
    (["--teacher", "Breakuot"], "unknown game"),
    (["--game", "Breakout", "--teacher", "x.zip", "--episodes", "0"], "--episodes must be at least 1"),
])
def test_eval_cli_bad_input_is_one_line_exit_2(argv, message, capsys):
    from distill.cli.evaluate import main

    code, line = run_cli(main, argv, capsys)
    assert code == 2 and message in line and line.startswith("error:")


def test_eval_cli_refuses_wrong_game(sb3_models, capsys):
    from distill.cli.evaluate import main

    code, line = run_cli(main, ["--teacher", str(sb3_models["a2c_pong"]), "--game", "Breakout", "--episodes", "1"],
                         capsys)
    assert code == 2 and "6 actions" in line


def test_teacher_cli_trains_checkpoints_and_resumes(tmp_path, capsys):
    from teachers.cli import main

    out = tmp_path / "t.zip"
    base = ["--game", "breakout", "--envs", "2", "--out", str(out), "--device", "cpu", "--checkpoint-every", "100"]
    assert main(base + ["--steps", "200"]) == 0
    meta = read_meta(out)
    assert meta["game"] == "Breakout" and meta["steps"] >= 200
    run_json = json.loads((tmp_path / "t_run" / "run.json").read_text())
    assert run_json["config"]["hyperparameters"]["learning_rate"] == 7e-4
    code, line = run_cli(main, base + ["--steps", "300"], capsys)  # exists: refuse without --resume/--force
    assert code == 2 and "--resume" in line
    assert read_meta(out)["steps"] == meta["steps"]  # nothing overwritten
    assert main(base + ["--steps", "300", "--resume"]) == 0
    assert read_meta(out)["steps"] >= 300
    segments = sorted((tmp_path / "t_run" / "monitor").iterdir())
    assert len(segments) == 2, "the resumed run keeps the first run's monitor files"
    assert all(len(list(seg.glob("*.monitor.csv"))) == 2 for seg in segments)
    teacher = load_teacher(out)
    assert teacher.game == "Breakout"


@pytest.mark.parametrize("argv,message", [
    (["--game", "Breakout", "--steps", "0"], "--steps must be a positive"),
    (["--game", "NotAGame", "--steps", "10"], "unknown game"),
    (["--game", "Breakout", "--steps", "10", "--out", "x.pt"], "must name a .zip"),
])
def test_teacher_cli_bad_input(argv, message, tmp_path, capsys, monkeypatch):
    from teachers.cli import main

    monkeypatch.chdir(tmp_path)
    code, line = run_cli(main, argv, capsys)
    assert code == 2 and message in line
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.zip"))


def test_subprocess_envs_train_exactly_like_in_process_envs(tmp_path):
    """--vec-env subproc only moves the games into processes: same seed, same weights."""
    from teachers.cli import main

    weights = {}
    for vec in ("dummy", "subproc"):
        out = tmp_path / f"{vec}.zip"
        assert main(["--game", "Breakout", "--envs", "2", "--steps", "40", "--out", str(out), "--device", "cpu",
                     "--vec-env", vec]) == 0
        weights[vec] = load_teacher(out).state_dict()
    for name, tensor in weights["dummy"].items():
        assert torch.equal(tensor, weights["subproc"][name]), name


def test_time_limit_stops_cleanly_and_resume_finishes(tmp_path, capsys):
    from teachers.cli import main

    out = tmp_path / "t.zip"
    base = ["--game", "Breakout", "--envs", "2", "--out", str(out), "--device", "cpu", "--steps", "100"]
    assert main(base + ["--max-minutes", "1e-6"]) == 0
    stopped = read_meta(out)["steps"]
    assert 0 < stopped < 100
    assert "time limit reached" in capsys.readouterr().err
    assert main(base + ["--resume"]) == 0
    assert read_meta(out)["steps"] >= 100
    code, line = run_cli(main, ["--game", "Breakout", "--steps", "10", "--out", str(tmp_path / "u.zip"),
                                "--max-minutes", "0"], capsys)
    assert code == 2 and "--max-minutes must be a positive number" in line


def test_ship_teacher_replaces_the_shipped_file_only_once_the_new_one_loads(sb3_models, tmp_path, monkeypatch, capsys):
    """scripts/ship_teacher.py: a bad checkpoint leaves the shipped teacher in place; a good one replaces it and
    writes its card; shipping the already-shipped file keeps it."""
    import shutil

    from script_helpers import one_line_error, script_module

    module = script_module("ship_teacher")
    shipped, cards = tmp_path / "checkpoints", tmp_path / "cards"
    shipped.mkdir()
    monkeypatch.setattr(module, "SHIPPED_DIR", shipped)
    monkeypatch.setattr(module, "CARDS_DIR", cards)
    old = shipped / "breakout_ppo.zip"  # the teacher shipped before, of another algorithm
    shutil.copyfile(sb3_models["ppo_breakout"], old)
    write_meta(old, {"game": "Breakout", "algo": "ppo"})

    bad = tmp_path / "bad.zip"
    bad.write_text("not a checkpoint")
    one_line_error(module.main, [str(bad), "--episodes", "1", "--envs", "1"], capsys)
    assert old.exists() and not cards.exists()  # nothing replaced, nothing written

    new = tmp_path / "new.zip"
    shutil.copyfile(sb3_models["a2c_breakout"], new)
    write_meta(new, {"game": "Breakout", "algo": "a2c", "steps": 200, "seed": 0})
    assert module.main([str(new), "--episodes", "1", "--envs", "1"]) == 0
    dest = shipped / "breakout_a2c.zip"
    assert sorted(p.name for p in shipped.iterdir()) == ["breakout_a2c.zip"]  # one shipped teacher per game
    card = json.loads((cards / "breakout.json").read_text())
    assert card["game"] == "Breakout" and card["evaluation"]["sample"]["episodes"] == 1
    assert module.main([str(dest), "--episodes", "1", "--envs", "1"]) == 0  # shipping the shipped file again
    assert dest.exists() and load_teacher(dest).game == "Breakout"
