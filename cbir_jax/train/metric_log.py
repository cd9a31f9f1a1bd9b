"""Training metrics: TensorBoard summaries (clu metric_writers), metrics.jsonl, a progress bar.

Every record goes to clu's default writer (TensorBoard event files in the run's folder, plus
absl logging) and to a JSON-lines file that any tool reads without TensorBoard: one object per
line, `{"step": int, "<name>": float, ...}`.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

from clu import metric_writers
import tqdm


class MetricLog:
  """Appends scalar metrics per step to a JSON-lines file and logs them; one per run.

  Only the writing process (process 0) should create one with `enabled=True`; the others pass
  `enabled=False` and every call is a no-op.

  Args:
    path: the .jsonl file (appended to, so a resumed run continues it).
    total_steps: for the progress bar.
    initial_step: where the bar starts (the resumed step).
    enabled: False: write nothing, show nothing.
    progress: show a tqdm bar on stderr; it is off anyway when stderr is not a terminal.
  """

  def __init__(self, path: str, *, total_steps: int, initial_step: int = 0, enabled: bool = True,
               progress: bool = True):
    self.path = os.fspath(path)
    self.enabled = enabled
    # Kept open for the whole run (closed by `close`); appending continues a resumed run.
    self._file = (open(self.path, "a", encoding="utf-8")  # pylint: disable=R1732
                  if enabled else None)
    # TensorBoard event files beside the .jsonl (clu writes them asynchronously, logs too).
    self._writer = (metric_writers.create_default_writer(os.path.dirname(self.path) or ".")
                    if enabled else None)
    self._bar = tqdm.tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True,
                          disable=not (enabled and progress and sys.stderr.isatty()))

  def write(self, step: int, metrics: dict[str, Any]) -> None:
    """Records `metrics` (scalars) at `step`: one JSON line, one log line, bar postfix."""
    if not self.enabled:
      return
    values = {k: float(v) for k, v in metrics.items()}
    record = {"step": int(step), **{k: (v if math.isfinite(v) else str(v))
                                    for k, v in values.items()}}
    self._file.write(json.dumps(record) + "\n")
    self._file.flush()
    self._writer.write_scalars(int(step), values)  # TensorBoard + absl logging
    shown = {k: f"{v:.4g}" for k, v in values.items() if k in ("loss", "accuracy",
                                                                "eval_accuracy", "images_per_sec")}
    self._bar.set_postfix(shown, refresh=False)

  def advance(self, steps: int = 1) -> None:
    """Moves the progress bar on by `steps`."""
    self._bar.update(steps)

  def close(self) -> None:
    """Closes the bar and the file."""
    self._bar.close()
    if self._file is not None:
      self._file.close()
      self._file = None
    if self._writer is not None:
      self._writer.close()
      self._writer = None


def read_metrics(path: str) -> list[dict[str, Any]]:
  """The records of a metrics.jsonl file, in order (a torn last line is ignored)."""
  records = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        break
  return records
