"""``distill-inspect``: summarise a recording and optionally verify it against its teacher."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from distill.recording.schema import summary
from distill.recording.verify import GRAD_TOLERANCE, LOGIT_TOLERANCE, verify_recording
from distill.environment.device import exact_float32, resolve_device
from distill.environment.errors import UserError, cli_entry
from teachers.sb3 import TRUST_HELP


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="distill-inspect",
                                description="Print a recording's summary; --verify recomputes stored logits and "
                                            "gradients with the teacher for a random sample of states.")
    p.add_argument("file", type=Path, help="recording (.h5)")
    p.add_argument("--verify", nargs="?", const="sample", choices=("sample", "all"), default=None,
                   help="check the file and exit 2 if any check fails: row counts and the episode table, finite "
                        "values, unit directions, and logits (tolerance %g absolute) and gradients (relative L2, "
                        "%g for int8, %g for float16, %g for float32) recomputed with the teacher; on --samples random "
                        "states, or with `--verify all` on every state, reading every chunk (and so every checksum)"
                        % (LOGIT_TOLERANCE, GRAD_TOLERANCE["int8"], GRAD_TOLERANCE["float16"],
                           GRAD_TOLERANCE["float32"]))
    p.add_argument("--samples", type=int, default=64, help="states checked by --verify (default 64)")
    p.add_argument("--teacher", default=None, help="teacher to verify with (default: the path stored in the file)")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    p.add_argument("--seed", type=int, default=0, help="which states --verify samples")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.samples < 1:
        raise UserError(f"--samples must be at least 1, got {args.samples}")
    if args.seed < 0:
        raise UserError(f"--seed must be 0 or more, got {args.seed}")
    info = summary(args.file)
    if args.verify:
        exact_float32()  # compare with the teacher at full float32, as it was recorded
        info.update(verify_recording(args.file, args.teacher, None if args.verify == "all" else args.samples,
                                     args.seed, resolve_device(args.device), args.trust_checkpoint))
    if args.json:
        print(json.dumps(info, indent=2))
        return _verdict(args.file, info)
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
        "  checksums  " + ("Fletcher-32 on every chunk" if info["checksums"] else
                            "none (recorded before checksums were written: damage to its data cannot be detected)"),
    ]
    if args.verify:
        grad_err, logit_err = info["max_relative_grad_error"], info["max_abs_logit_error"]
        lines.append(f"  verify     {info['verified_states']} states"
                     + (" (all)" if info["verified_all"] else " (a random sample; --verify all checks every state)")
                     + (": " if logit_err is not None else "")
                     + ("" if grad_err is None else f"max relative gradient error {grad_err:.2e}, ")
                     + ("" if logit_err is None else f"max logit error {logit_err:.2e}"))
        lines += [f"    {name:<14}{outcome}" for name, outcome in info["checks"].items()]
    print("\n".join(lines))
    return _verdict(args.file, info)


def _verdict(path: Path, info: dict) -> int:
    """0 when nothing was verified or every check passed; otherwise a one-line error (exit 2)."""
    failures = info.get("failures", [])
    if failures:
        more = f" (and {len(failures) - 1} more check(s) failed)" if len(failures) > 1 else ""
        raise UserError(f"{path} failed verification: {failures[0]}{more}; record it again (distill-record)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
