"""Teacher sources beyond our own zips, and the safety of loading them: nothing from a file runs by default."""

from __future__ import annotations

import base64
import io
import json
import pickle
import shutil
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from distill.environment import atari
from distill.environment.errors import UserError
from teachers.load import load_teacher
from teachers.teacher import Teacher


class MarkerPayload:
    """Unpickling this creates a marker file: the stand-in for code hidden in a checkpoint."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def observations(n: int = 3) -> torch.Tensor:
    venv = atari.make_vec_env("Breakout", n_envs=1, seed=0)
    frames = [venv.reset()]
    for _ in range(n - 1):
        frames.append(venv.step(np.array([1]))[0])
    venv.close()
    return atari.scale_obs(np.concatenate(frames))


def rewrite_zip(src: Path, dest: Path, **members: bytes) -> Path:
    """A copy of an SB3 zip with some members replaced."""
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dest, "w") as new:
        for item in old.infolist():
            new.writestr(item, members.get(item.filename, old.read(item.filename)))
    return dest


def sb3_logits(path: Path, x: torch.Tensor) -> torch.Tensor:
    """The action logits stable-baselines3 itself computes (its own loader, its own forward pass)."""
    from stable_baselines3 import A2C

    model = A2C.load(path, device="cpu")
    with torch.no_grad():
        return model.policy.get_distribution((x * 255).round()).distribution.logits


# ---------------------------------------------------------------- safety of SB3 zips


def test_a_pickle_payload_in_a_teacher_zip_never_runs_by_default(sb3_models, tmp_path):
    marker = tmp_path / "payload-ran"
    src = sb3_models["a2c_breakout"]
    with zipfile.ZipFile(src) as archive:
        data = json.loads(archive.read("data"))
    # the readable fields still say ActorCriticCnnPolicy; the pickle SB3 would unpickle is the payload
    data["policy_class"][":serialized:"] = base64.b64encode(pickle.dumps(MarkerPayload(marker))).decode()
    evil = rewrite_zip(src, tmp_path / "evil.zip", data=json.dumps(data).encode())

    teacher = load_teacher(evil, game="Breakout")
    assert not marker.exists(), "the safe path unpickled the payload"
    x = observations()
    with torch.no_grad():
        torch.testing.assert_close(torch.log_softmax(teacher(x), 1), sb3_logits(src, x), atol=1e-5, rtol=1e-5)

    with pytest.raises(UserError, match="cannot be built"):  # SB3's loader runs it: visibly, only when asked
        load_teacher(evil, game="Breakout", trust_checkpoint=True)
    assert marker.exists()


def test_a_pickle_payload_in_a_student_checkpoint_never_runs(tmp_path):
    from distill.training.runs import load_student

    marker = tmp_path / "payload-ran"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"config": {"student": "paper", "game": "Breakout"}, "n_actions": 4}))
    torch.save({"model": MarkerPayload(marker), "step": 1}, run / "latest.pt")
    with pytest.raises(UserError, match="cannot read the student checkpoint .* safely"):
        load_student(run)
    assert not marker.exists()


def test_a_renamed_or_reshaped_tensor_is_refused(sb3_models, tmp_path):
    src = sb3_models["a2c_breakout"]
    with zipfile.ZipFile(src) as archive:
        state = torch.load(io.BytesIO(archive.read("policy.pth")), weights_only=True)

    def with_state(new_state: dict, name: str) -> Path:
        buffer = io.BytesIO()
        torch.save(new_state, buffer)
        return rewrite_zip(src, tmp_path / name, **{"policy.pth": buffer.getvalue()})

    renamed = {("action_net.w" if k == "action_net.weight" else k): v for k, v in state.items()}
    with pytest.raises(UserError, match="tensor action_net.weight .* is missing"):
        load_teacher(with_state(renamed, "renamed.zip"), game="Breakout")
    reshaped = {**state, "action_net.bias": torch.zeros(7)}
    with pytest.raises(UserError, match=r"action_net.bias has shape \(7,\) in the checkpoint but \(4,\)"):
        load_teacher(with_state(reshaped, "reshaped.zip"), game="Breakout")
    extra = {**state, "extra_head.weight": torch.zeros(2, 2)}
    with pytest.raises(UserError, match="has tensor extra_head.weight"):
        load_teacher(with_state(extra, "extra.zip"), game="Breakout")


class WideCNN(nn.Module):
    """A custom features extractor: only SB3's own loader (running the file's pickles) could rebuild it."""

    def __init__(self, observation_space, features_dim: int = 64):
        super().__init__()
        self.features_dim = features_dim
        self.net = nn.Sequential(nn.Conv2d(4, 8, 8, stride=8), nn.Flatten(), nn.Linear(8 * 10 * 10, features_dim))

    def forward(self, x):
        return self.net(x)


def test_custom_classes_are_refused_naming_the_class_and_the_opt_in(sb3_models, tmp_path):
    from stable_baselines3 import A2C

    from conftest import _atari_vec_env

    model = A2C("CnnPolicy", _atari_vec_env("Breakout", n_envs=1), policy_kwargs={"features_extractor_class": WideCNN},
                device="cpu", seed=0)
    custom = tmp_path / "custom.zip"
    model.save(custom)
    with pytest.raises(UserError, match=r"custom features extractor .*WideCNN.*--trust-checkpoint"):
        load_teacher(custom, game="Breakout")

    with zipfile.ZipFile(sb3_models["a2c_breakout"]) as archive:
        data = json.loads(archive.read("data"))
    data["policy_class"]["__module__"] = "my_lab.policies"
    data["policy_class"]["__init__"] = "<function FancyPolicy.__init__ at 0x0>"
    fancy = rewrite_zip(sb3_models["a2c_breakout"], tmp_path / "fancy.zip", data=json.dumps(data).encode())
    with pytest.raises(UserError, match=r"policy class my_lab.policies.FancyPolicy .*--trust-checkpoint"):
        load_teacher(fancy, game="Breakout")


def test_shipped_teachers_load_safely_and_match_the_trusting_loader():
    x = torch.rand((4, *atari.OBS_SHAPE), generator=torch.Generator().manual_seed(0))
    for game in ("Breakout", "Pong", "SpaceInvaders"):
        safe, trusted = load_teacher(game), load_teacher(game, trust_checkpoint=True)
        assert safe.sha256 == trusted.sha256
        with torch.no_grad():
            assert torch.equal(safe(x), trusted(x)), game


def test_truncated_and_foreign_files_are_one_line_errors(sb3_models, tmp_path):
    data = sb3_models["a2c_breakout"].read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="damaged or incomplete"):
        load_teacher(cut, game="Breakout")
    weights = tmp_path / "weights.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, weights)
    with pytest.raises(UserError, match="not a CleanRL Atari agent's state dict"):
        load_teacher(weights, game="Breakout")


# ---------------------------------------------------------------- CleanRL, written from its published layout


def layer_init(layer: nn.Module, std: float = float(np.sqrt(2))) -> nn.Module:
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, 0.0)
    return layer


class CleanRLAgent(nn.Module):
    """cleanrl/ppo_atari.py's Agent, as published (its forward passes divide pixels by 255)."""

    def __init__(self, n_actions: int):
        super().__init__()
        self.network = nn.Sequential(
            layer_init(nn.Conv2d(4, 32, 8, stride=4)), nn.ReLU(), layer_init(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU(),
            layer_init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU(), nn.Flatten(),
            layer_init(nn.Linear(64 * 7 * 7, 512)), nn.ReLU())
        self.actor = layer_init(nn.Linear(512, n_actions), std=0.01)
        self.critic = layer_init(nn.Linear(512, 1), std=1)

    def get_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.actor(self.network(x / 255.0))


class CleanRLQNetwork(nn.Module):
    """cleanrl/dqn_atari.py's QNetwork, as published."""

    def __init__(self, n_actions: int):
        super().__init__()
        self.network = nn.Sequential(
            nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(),
            nn.Linear(512, n_actions))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x / 255.0)


def test_cleanrl_checkpoints_load_and_match_their_own_forward_pass(tmp_path):
    torch.manual_seed(0)
    x = observations()
    pixels = (x * 255).round()
    agent, q_net = CleanRLAgent(4), CleanRLQNetwork(4)
    torch.save(agent.state_dict(), tmp_path / "ppo_atari.cleanrl_model")
    torch.save(q_net.state_dict(), tmp_path / "dqn_atari.cleanrl_model")

    ppo = load_teacher(tmp_path / "ppo_atari.cleanrl_model", game="Breakout")
    dqn = load_teacher(tmp_path / "dqn_atari.cleanrl_model", game="Breakout", temperature=0.5)
    assert (ppo.kind, dqn.kind) == ("cleanrl_ppo", "cleanrl_dqn")
    with torch.no_grad():
        assert (ppo(x) - agent.get_logits(pixels)).abs().max() <= 1e-5
        assert (dqn(x) - q_net(pixels) / 0.5).abs().max() <= 1e-5
    with pytest.raises(UserError, match="does not say which game it plays; pass --game"):
        load_teacher(tmp_path / "ppo_atari.cleanrl_model")
    with pytest.raises(UserError, match="has 4 actions but Pong has 6"):
        load_teacher(tmp_path / "ppo_atari.cleanrl_model", game="Pong")


# ---------------------------------------------------------------- modules and TorchScript


def test_any_module_becomes_a_teacher_and_is_checked_against_its_game():
    torch.manual_seed(0)
    agent = CleanRLQNetwork(4)  # a network that expects pixel values
    teacher = Teacher.from_module(agent, game="breakout", outputs="q", input_scale=255.0, temperature=0.1)
    x = observations()
    with torch.no_grad():
        assert (teacher(x) - agent(x * 255.0) / 0.1).abs().max() <= 1e-5
    assert teacher.game == "Breakout" and len(teacher.sha256) == 64
    assert teacher.sha256 == Teacher.from_module(agent, game="Breakout", outputs="q").sha256  # hash of the weights
    with pytest.raises(UserError, match=r"outputs shape \(4,\) per state but Pong has 6 actions"):
        Teacher.from_module(agent, game="Pong")


class ScaledLogits(nn.Module):
    """What a TorchScript teacher must be: scaled frame stacks in, logits out."""

    def __init__(self, agent: CleanRLAgent):
        super().__init__()
        self.agent = agent

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.agent.actor(self.agent.network(x))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch 2.13 deprecates TorchScript; files still load
def test_torchscript_files_load_only_when_trusted(tmp_path):
    torch.manual_seed(0)
    agent = CleanRLAgent(4)
    path = tmp_path / "scripted.pt"
    torch.jit.script(ScaledLogits(agent)).save(str(path))
    with pytest.raises(UserError, match="TorchScript program.*--trust-checkpoint"):
        load_teacher(path, game="Breakout")
    teacher = load_teacher(path, game="Breakout", trust_checkpoint=True)
    x = observations()
    with torch.no_grad():
        assert (teacher(x) - agent.get_logits((x * 255).round())).abs().max() <= 1e-5


# ---------------------------------------------------------------- rl-baselines3-zoo and hub folders


def zoo_run_folder(root: Path, model_zip: Path, env_id: str = "BreakoutNoFrameskip-v4",
                   wrapper_kwargs: dict | None = None) -> Path:
    """The folder rl-baselines3-zoo's train.py writes (logs/<algo>/<env>_<n>/), its YAML dumped the zoo's way."""
    import yaml

    run = root / "logs" / "a2c" / f"{env_id}_1"
    params = run / env_id
    params.mkdir(parents=True)
    shutil.copyfile(model_zip, run / f"{env_id}.zip")
    wrapper = "stable_baselines3.common.atari_wrappers.AtariWrapper"
    config = OrderedDict([("env_wrapper", [{wrapper: wrapper_kwargs}] if wrapper_kwargs else [wrapper]),
                          ("frame_stack", 4), ("n_envs", 16), ("policy", "CnnPolicy"),
                          ("policy_kwargs", "dict(optimizer_class=RMSpropTFLike, optimizer_kwargs=dict(eps=1e-5))")])
    (params / "config.yml").write_text(yaml.dump(config))
    (params / "args.yml").write_text(yaml.dump(OrderedDict([("algo", "a2c"), ("env", env_id), ("seed", 0)])))
    (params / "env_kwargs.yml").write_text(yaml.dump({}))
    return run


def test_a_zoo_run_folder_names_its_game_and_reports_preprocessing(sb3_models, tmp_path):
    run = zoo_run_folder(tmp_path, sb3_models["a2c_breakout"])
    assert "!!python/object/apply:collections.OrderedDict" in (run / "BreakoutNoFrameskip-v4" / "config.yml").read_text()
    teacher = load_teacher(run)  # no --game: the folder names it
    assert teacher.game == "Breakout" and teacher.notes == []
    x = observations()
    with torch.no_grad():
        torch.testing.assert_close(torch.log_softmax(teacher(x), 1), sb3_logits(sb3_models["a2c_breakout"], x),
                                   atol=1e-5, rtol=1e-5)

    other = zoo_run_folder(tmp_path / "b", sb3_models["a2c_breakout"], wrapper_kwargs={"terminal_on_life_loss": False})
    noted = load_teacher(other)
    assert noted.notes == ["AtariWrapper terminal_on_life_loss=False (ours: True)"]
    assert "terminal_on_life_loss=False" in noted.describe()


def test_a_zoo_folder_of_another_game_is_refused(sb3_models, tmp_path):
    run = zoo_run_folder(tmp_path, sb3_models["a2c_breakout"], env_id="SpaceInvadersNoFrameskip-v4")
    with pytest.raises(UserError, match="trained on SpaceInvaders, not Breakout"):
        load_teacher(run, game="Breakout")


def test_a_hub_folder_loads_from_its_file_names(sb3_models, tmp_path):
    import yaml

    hub = tmp_path / "ppo-BreakoutNoFrameskip-v4"
    hub.mkdir()
    shutil.copyfile(sb3_models["ppo_breakout"], hub / "ppo-BreakoutNoFrameskip-v4.zip")
    (hub / "config.yml").write_text(yaml.dump(OrderedDict([("env_wrapper", ["stable_baselines3.common.atari_wrappers.AtariWrapper"]), ("frame_stack", 4)])))
    (hub / "env_kwargs.yml").write_text(yaml.dump({}))
    (hub / "train_eval_metrics.zip").write_bytes(b"PK\x05\x06" + bytes(18))  # the hub ships it beside the model
    teacher = load_teacher(hub)
    assert teacher.game == "Breakout" and teacher.kind == "actor_critic" and teacher.notes == []


def test_eval_cli_plays_a_cleanrl_teacher_and_refuses_a_payload_zip_cleanly(sb3_models, tmp_path, capsys):
    from distill.cli.evaluate import main

    torch.manual_seed(0)
    path = tmp_path / "agent.cleanrl_model"
    torch.save(CleanRLAgent(4).state_dict(), path)
    out = tmp_path / "eval.json"
    assert main(["--teacher", str(path), "--game", "Breakout", "--episodes", "1", "--envs", "1", "--mode", "greedy",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["episodes"] == 1
    cut = tmp_path / "cut.zip"
    cut.write_bytes(sb3_models["a2c_breakout"].read_bytes()[:5000])
    with pytest.raises(SystemExit) as exc:
        main(["--teacher", str(cut), "--game", "Breakout", "--episodes", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and err[-1].startswith("error:") and "damaged or incomplete" in err[-1]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_readme_bring_your_own_teacher_commands_run_as_written(sb3_models, tmp_path, monkeypatch):
    """Every line of the README's "Bring your own teacher" block, on files built where the lines expect them."""
    import re
    import shlex

    import yaml

    from distill.cli.evaluate import main

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"<!-- byo-commands.*?-->\n```bash\n(.*?)```", readme, flags=re.S).group(1)
    lines = [line.split(" # ")[0].strip() for line in block.splitlines() if line.strip()]
    assert len(lines) == 5

    monkeypatch.chdir(tmp_path)
    shutil.copyfile(sb3_models["a2c_breakout"], "my_model.zip")
    zoo_run_folder(tmp_path, sb3_models["a2c_breakout"])
    hub = Path("downloads/ppo-BreakoutNoFrameskip-v4")
    hub.mkdir(parents=True)
    shutil.copyfile(sb3_models["ppo_breakout"], hub / "ppo-BreakoutNoFrameskip-v4.zip")
    (hub / "config.yml").write_text(yaml.dump(OrderedDict([("frame_stack", 4), ("env_wrapper", [
        "stable_baselines3.common.atari_wrappers.AtariWrapper"])])))
    torch.manual_seed(0)
    agent = CleanRLAgent(4)
    Path("runs/breakout").mkdir(parents=True)
    torch.save(agent.state_dict(), "runs/breakout/ppo_atari.cleanrl_model")
    torch.jit.script(ScaledLogits(agent)).save("policy.ts")

    for line in lines:
        words = shlex.split(line)
        assert words[0] == "distill-eval"
        assert main(words[1:]) == 0, line
