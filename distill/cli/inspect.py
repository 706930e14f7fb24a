"""``distill-inspect``: summarise a recording and optionally verify it against its teacher."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from distill.recording.schema import has_gradients, open_recording, summary
from distill.environment.device import exact_float32, resolve_device
from distill.environment.errors import UserError, cli_entry
from teachers.sb3 import TRUST_HELP


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="distill-inspect",
                                description="Print a recording's summary; --verify recomputes stored logits and "
                                            "gradients with the teacher for a random sample of states.")
    p.add_argument("file", type=Path, help="recording (.h5)")
    p.add_argument("--verify", action="store_true", help="recompute logits and gradients for a sample of states")
    p.add_argument("--samples", type=int, default=64, help="states checked by --verify (default 64)")
    p.add_argument("--teacher", default=None, help="teacher to verify with (default: the path stored in the file)")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    p.add_argument("--seed", type=int, default=0, help="which states --verify samples")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


def verify(path: Path, teacher_spec: str | None, samples: int, seed: int, device: torch.device,
           trust_checkpoint: bool = False) -> dict:
    """Largest relative errors of stored gradients (per state, L2) and largest absolute logit error."""
    from distill.sobolev import input_gradients
    from teachers.load import load_teacher

    with open_recording(path, require_complete=False) as f:
        n = int(f["committed"][0])
        if n == 0:
            raise UserError(f"{path} holds no states yet")
        teacher = load_teacher(teacher_spec or str(f.attrs["teacher_path"]), game=str(f.attrs["game"]), device=device,
                               trust_checkpoint=trust_checkpoint)
        if teacher.sha256 != str(f.attrs["teacher_sha256"]):
            raise UserError(f"teacher {teacher.path} has sha256 {teacher.sha256[:12]}, but {path} was recorded with "
                            f"{str(f.attrs['teacher_sha256'])[:12]}; pass the recording's teacher with --teacher")
        idx = np.sort(np.random.default_rng(seed).choice(n, size=min(samples, n), replace=False))
        obs, logits = f["obs"][idx], f["logits"][idx]
        dirs, grads = (f["proj_dirs"][idx], f["proj_grads"][idx]) if has_gradients(f.attrs) else (None, None)
    x = torch.as_tensor(obs).float().div(255).to(device).requires_grad_(True)
    fresh_logits = teacher(x)
    logit_err = np.abs(fresh_logits.detach().cpu().numpy() - logits).max()
    rel = None  # a gradient-free recording (K = 0) has only logits to verify
    if dirs is not None:
        fresh = input_gradients(torch.log_softmax(fresh_logits.float(), 1), x, torch.as_tensor(dirs).to(device),
                                create_graph=False).cpu().double()
        stored = torch.as_tensor(grads.astype(np.float64))
        rel = ((stored - fresh).flatten(2).norm(dim=2) / fresh.flatten(2).norm(dim=2).clamp_min(1e-12)).max().item()
    return {"verified_states": int(len(idx)), "max_relative_grad_error": rel, "max_abs_logit_error": float(logit_err)}


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    info = summary(args.file)
    if args.verify:
        exact_float32()  # compare with the teacher at full float32, as it was recorded
        info.update(verify(args.file, args.teacher, args.samples, args.seed, resolve_device(args.device),
                           args.trust_checkpoint))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    mean = info["mean_score_complete_episodes"]
    lines = [
        f"{info['path']}: {info['game']}, {'complete' if info['complete'] else 'INCOMPLETE'} "
        f"({info['states']} of {info['target_states']} states)",
        f"  teacher    {info['teacher_path']} (sha256 {info['teacher_sha256'][:16]})",
        f"  episodes   {info['episodes']} ({info['complete_episodes']} complete; mean score "
        f"{'n/a' if mean is None else f'{mean:.1f}'}), behaviour {info['behaviour']}; lives "
        f"{'stored' if info['lives_stored'] else 'not stored (distill-add-lives FILE adds them)'}",
        (f"  gradients  K={info['projections']} projections, {info['grad_dtype']}" if info["projections"] else
         "  gradients  none (K=0): Sobolev training draws them from the live teacher (distill-train --teacher)"),
        f"  size       {info['file_bytes'] / 2**20:.1f} MiB, {info['bytes_per_state'] / 1024:.1f} KiB/state; "
        f"{info['codec']} compression: frames {info['compression_obs']:.0f}x"
        + (f", gradients {info['compression_grads']:.2f}x" if info["compression_grads"] is not None else ""),
    ]
    if args.verify:
        grad_err = info["max_relative_grad_error"]
        lines.append(f"  verify     {info['verified_states']} states: "
                     + ("" if grad_err is None else f"max relative gradient error {grad_err:.2e}, ")
                     + f"max logit error {info['max_abs_logit_error']:.2e}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
