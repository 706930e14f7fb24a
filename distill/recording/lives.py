"""Lives left after every recorded state, and which states come just before a lost life.

Held-out action error and KL weigh every state alike, but a game's score is decided in the few steps before a life
is lost (docs/figure4.md, "Why sampled play falls short"): there the students imitate their teacher worst. Knowing
those states lets training weigh them more (``distill-train --life-loss-weight``).

New recordings store ``lives`` directly. For older ones, :func:`replay_lives` recovers it exactly: a recording
started once (never resumed) is a deterministic function of its seed and its stored actions, so replaying the
actions in identically seeded games reproduces every frame, which it checks frame by frame before trusting the
lives counts it reads.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from distill.environment import atari
from distill.recording.schema import has_checksums, open_recording
from distill.environment.errors import UserError
from distill.recording.schema import LIVES_MEANING

LIVES_DATASET = "lives"


def _by_episode(episode: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row order sorted by episode, then time; and, in that order, whether each row continues the previous one's
    episode. Recordings interleave their games, so an episode's rows are not contiguous."""
    order = np.lexsort((np.arange(len(episode)), episode))
    ep = np.asarray(episode)[order]
    same_episode = np.zeros(len(order), dtype=bool)
    same_episode[1:] = ep[1:] == ep[:-1]
    return order, same_episode


def _losses_by_episode(lives: np.ndarray, episode: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_by_episode`'s order and episode continuation, and in that order whether each state's action lost a
    life (the count after it is below the one after the episode's previous state)."""
    order, same_episode = _by_episode(episode)
    lv = np.asarray(lives)[order].astype(np.int64)
    lost = np.zeros(len(order), dtype=bool)
    lost[1:] = same_episode[1:] & (lv[1:] < lv[:-1])
    return order, same_episode, lost


def life_losses(lives: np.ndarray, episode: np.ndarray) -> np.ndarray:
    """Which states' actions lost a life: the count after them is below the one after the episode's previous state."""
    order, _, lost = _losses_by_episode(lives, episode)
    out = np.zeros(len(order), dtype=bool)
    out[order] = lost
    return out


def before_life_loss(lives: np.ndarray, episode: np.ndarray, window: int) -> np.ndarray:
    """Which states lie among the last ``window`` states of their episode up to and including one that lost a life
    (``lives[n]`` is the count after state n's action)."""
    if window < 1:
        raise UserError(f"--life-loss-window must be at least 1, got {window}")
    order, same_episode, lost = _losses_by_episode(lives, episode)
    position = np.arange(len(order))
    first_of_episode = np.maximum.accumulate(np.where(~same_episode, position, 0))
    marked = np.zeros(len(order), dtype=bool)
    for end in np.flatnonzero(lost):
        marked[max(first_of_episode[end], end - window + 1):end + 1] = True
    out = np.zeros(len(order), dtype=bool)
    out[order] = marked
    return out


def read_lives(path: str | Path) -> np.ndarray:
    """The ``lives`` dataset of a recording, or a one-line error saying how to add it."""
    with open_recording(path) as f:
        if LIVES_DATASET not in f:
            raise UserError(f"{path} stores no lives counts; add them with `distill-add-lives {path}` "
                            "(replays the recorded actions, a few minutes)")
        n = int(f["committed"][0])
        return f[LIVES_DATASET][:n]


def replay_lives(path: str | Path, progress: bool = True) -> np.ndarray:
    """Replay a recording's actions in identically seeded games and return the lives left after every state.

    Every replayed frame is compared with the recorded one; the first mismatch stops with an error (the recording
    is then not reproducible and no lives are returned).
    """
    with open_recording(path) as f:
        attrs = dict(f.attrs)
        n = int(f["committed"][0])
        actions = f["actions"][:n]
    if int(attrs.get("resumes", 0)) > 0:
        raise UserError(f"{path} was resumed {int(attrs['resumes'])} time(s); its games cannot be replayed "
                        "(only recordings made in one go can); record it again to get lives counts")
    envs, seed, game = int(attrs["envs"]), int(attrs["seed"]), str(attrs["game"])
    venv = atari.make_vec_env(game, n_envs=envs, seed=seed, training=False, subprocesses=False)
    lives = np.zeros(n, dtype=np.int16)
    bar = tqdm(total=n, desc=f"replay {game}", unit="state", unit_scale=True, disable=not progress,
               dynamic_ncols=True, mininterval=1.0)
    block = 4096 - 4096 % envs  # recorded frames read per block, a whole number of steps
    try:
        with open_recording(path) as f:
            obs = venv.reset()
            done_rows = 0
            while done_rows < n:
                stored = f["obs"][done_rows:min(n, done_rows + block)]
                for offset in range(0, len(stored), envs):
                    row = done_rows + offset
                    take = min(envs, n - row)
                    if not np.array_equal(obs[:take], stored[offset:offset + take]):
                        raise UserError(f"{path}: replaying its actions does not reproduce state {row} (the games "
                                        "differ from the recording's); record it again to get lives counts")
                    step_actions = np.zeros(envs, dtype=np.int64)
                    step_actions[:take] = actions[row:row + take]
                    obs, _, _, infos = venv.step(step_actions)
                    lives[row:row + take] = [int(info.get("lives", 0)) for info in infos[:take]]
                    bar.update(take)
                done_rows += len(stored)
    finally:
        bar.close()
        venv.close()
    return lives


def write_lives(path: str | Path, lives: np.ndarray, force: bool = False) -> None:
    """Store ``lives`` in a complete recording; refuses to replace existing counts unless ``force``."""
    with open_recording(path) as f:
        n = int(f["committed"][0])
        present = LIVES_DATASET in f
    if len(lives) != n:
        raise UserError(f"{len(lives)} lives counts for a recording of {n} states")
    if present and not force:
        raise UserError(f"{path} already stores lives counts; pass --force to replace them")
    try:
        with h5py.File(path, "a", libver="latest") as f:
            if present:
                del f[LIVES_DATASET]
            ds = f.create_dataset(LIVES_DATASET, data=np.asarray(lives, dtype=np.int16), maxshape=(None,),
                                  chunks=(4096,), fletcher32=has_checksums(f.attrs))
            ds.attrs["meaning"] = LIVES_MEANING
    except OSError as exc:
        raise UserError(f"cannot write to {path} ({exc}); is it read-only or open in another program?") from None
