"""A tiny, dependency-free training job for the runctl sandbox: fits ``y = 3x + 2`` by gradient descent.

It behaves like a real job under the bot's runner: checkpoints go to ``$RUNCTL_CHECKPOINT`` (default
``./checkpoints``) every ``--checkpoint-every`` steps as ``step-NNNNNN.ckpt`` (JSON), ``--resume-from``
continues from the newest checkpoint there (the runner downloads it first), the loss is printed as it
goes, and the last line is ``Training complete``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

TRUE_W = 3.0
TRUE_B = 2.0
FORMAT = "runctl-demo/1"


@dataclass(frozen=True)
class Checkpoint:
    step: int
    w: float
    b: float
    loss: float | None

    @property
    def filename(self) -> str:
        return f"step-{self.step:06d}.ckpt"

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} checkpoint")
        loss = data.get("loss")
        step, w, b = int(data["step"]), float(data["w"]), float(data["b"])
        return cls(step, w, b, None if loss is None else float(loss))


def dataset(size: int = 64, seed: int = 7) -> list[tuple[float, float]]:
    """Noisy samples of the line the model has to find (seeded: every run sees the same data)."""
    rng = random.Random(seed)
    points = []
    for _ in range(size):
        x = rng.uniform(-1.0, 1.0)
        points.append((x, TRUE_W * x + TRUE_B + rng.gauss(0.0, 0.05)))
    return points


def descend(w: float, b: float, data: Sequence[tuple[float, float]], lr: float) -> tuple[float, float, float]:
    """One full-batch gradient step on the mean squared error; returns new w, b and the loss before it."""
    grad_w = grad_b = loss = 0.0
    for x, y in data:
        error = w * x + b - y
        loss += error * error
        grad_w += 2.0 * error * x
        grad_b += 2.0 * error
    n = float(len(data))
    return w - lr * grad_w / n, b - lr * grad_b / n, loss / n


def train(
    steps: int,
    *,
    lr: float = 0.02,
    every: int = 100,
    start: Checkpoint | None = None,
    data: Sequence[tuple[float, float]] | None = None,
) -> Iterator[Checkpoint]:
    """Train up to ``steps`` (counted from zero, so a resumed run stops at the same place); yield a
    checkpoint every ``every`` steps and at the end."""
    if steps < 1 or every < 1:
        raise ValueError("steps and checkpoint interval must be positive")
    points = list(data) if data is not None else dataset()
    current = start or Checkpoint(0, 0.0, 0.0, None)
    w, b = current.w, current.b
    for step in range(current.step + 1, steps + 1):
        w, b, loss = descend(w, b, points, lr)
        if step % every == 0 or step == steps:
            yield Checkpoint(step, w, b, loss)


def latest(directory: Path) -> Checkpoint | None:
    found = sorted(directory.glob("step-*.ckpt"))
    return Checkpoint.from_json(found[-1].read_text(encoding="utf-8")) if found else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--resume-from", default=None, help="where the checkpoint came from (informational)")
    args = parser.parse_args(argv)
    directory = Path(os.environ.get("RUNCTL_CHECKPOINT") or "checkpoints")
    directory.mkdir(parents=True, exist_ok=True)
    start = latest(directory) if args.resume_from else None
    if start is not None:
        sys.stdout.write(f"resuming from step {start.step} ({args.resume_from})\n")
    for checkpoint in train(args.steps, lr=args.lr, every=args.checkpoint_every, start=start):
        (directory / checkpoint.filename).write_text(checkpoint.to_json(), encoding="utf-8")
        loss = f"{checkpoint.loss:.6f}" if checkpoint.loss is not None else "-"
        weights = f"w {checkpoint.w:.4f}  b {checkpoint.b:.4f}"
        sys.stdout.write(f"step {checkpoint.step:>6}  loss {loss}  {weights}\n")
        sys.stdout.flush()
    sys.stdout.write("Training complete\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
