"""Write one game of a policy as an animated GIF (the newest frame of each observation, upscaled)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from distill.environment import atari


@torch.no_grad()
def record_gif(policy, game: str, path: str | Path, seed: int = 0, device: torch.device | str = "cpu",
               max_frames: int = 5000, scale: int = 3) -> int:
    """Play one greedy game (at most ``max_frames`` steps) and save it; returns the number of frames."""
    venv = atari.make_vec_env(game, n_envs=1, seed=seed, training=False)
    obs = venv.reset()
    frames = []
    for _ in range(max_frames):
        frame = obs[0, -1]
        frames.append(Image.fromarray(np.kron(frame, np.ones((scale, scale), dtype=np.uint8))))
        action = policy(atari.scale_obs(obs).to(device)).argmax(1).cpu().numpy()
        obs, _, dones, _ = venv.step(action)
        if dones[0]:
            break
    venv.close()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    return len(frames)
