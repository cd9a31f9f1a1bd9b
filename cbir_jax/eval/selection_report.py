"""Reports of `compare.compare_selection` rows: Markdown, JSON payload and a mAP-vs-b figure.

The rows are those `compare.compare_selection` returns: dicts with "method" (one of
`compare.METHODS`), "bits", "map", "paper_map@<k>" and, for random_euclidean, "map_std".
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cbir_jax import atomic
from cbir_jax.eval import plots
from cbir_jax.eval import selection as compare

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
FIGURE = "map_vs_bits.png"


def check_rows(rows: Sequence[Mapping[str, Any]], metric: str = "map") -> None:
  """Raises ValueError unless `rows` hold one full_euclidean row and a finite `metric` in [0, 1]
  for every row, with methods from `compare.METHODS`."""
  if not rows:
    raise ValueError("rows must not be empty")
  for row in rows:
    if row.get("method") not in compare.METHODS:
      raise ValueError(f"row method must be one of {list(compare.METHODS)}, got "
                       f"{row.get('method')!r}")
    value = row.get(metric)
    if value is None or not np.isfinite(value) or not 0.0 <= value <= 1.0:
      raise ValueError(f"row {row['method']} b={row.get('bits')} needs {metric} in [0, 1], "
                       f"got {value!r}")
  full = [r for r in rows if r["method"] == "full_euclidean"]
  if len(full) != 1:
    raise ValueError(f"rows must hold exactly one full_euclidean row, got {len(full)}")


def paper_metric(rows: Sequence[Mapping[str, Any]]) -> str | None:
  """The "paper_map@<k>" key present in the rows, or None."""
  keys = sorted({key for r in rows for key in r if key.startswith("paper_map@")})
  return keys[0] if keys else None


def bits_of(rows: Sequence[Mapping[str, Any]]) -> list[int]:
  """The b values compared (sorted), full_euclidean excluded."""
  return sorted({int(r["bits"]) for r in rows if r["method"] != "full_euclidean"})


def to_markdown(rows: Sequence[Mapping[str, Any]], *, title: str, description: str = "",
                command: str = "", figure: str = "") -> str:
  """A Markdown section: heading, description, command, mAP table, paper-mAP table, random std.

  Args:
    rows: `compare.compare_selection` rows (checked with `check_rows`).
    title: heading text (written as `### <title>`).
    description: a paragraph under the heading (scale, data set, timing); "" for none.
    command: the shell command that produced the rows, shown in a code block; "" for none.
    figure: a path or link of the mAP-vs-b figure, embedded as an image; "" for none.
  """
  check_rows(rows)
  lines = [f"### {title}", ""]
  if description:
    lines += [description, ""]
  if command:
    lines += ["```", command, "```", ""]
  lines += ["mAP over the whole ranking (`map`):", "", compare.format_table(rows, "map"), ""]
  paper = paper_metric(rows)
  if paper:
    lines += [f"Seed 000's mAP(Top {paper.split('@')[1]}) (`{paper}`):", "",
              compare.format_table(rows, paper), ""]
  spread = {int(r["bits"]): r["map_std"] for r in rows
            if r["method"] == "random_euclidean" and "map_std" in r}
  if spread:
    lines += ["random_euclidean `map` standard deviation over the random draws: " + ", ".join(
        f"b={b}: {s:.4f}" for b, s in sorted(spread.items())), ""]
  if figure:
    lines += [f"![mAP vs b]({figure})", ""]
  return "\n".join(lines)


def plot_map_vs_bits(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], *,
                     metric: str = "map", title: str = "") -> str:
  """PNG of `metric` vs b: one line per method, the all-dimensions value dashed (horizontal).

  Returns the path written (atomically, by `cbir_jax.eval.plots.curves`).
  """
  check_rows(rows, metric)
  bits = bits_of(rows)
  if not bits:
    raise ValueError("rows hold no b <= d: nothing to plot against b")
  cell = {(r["method"], int(r["bits"])): r[metric] for r in rows}
  series = {}
  for method in compare.METHODS[1:]:
    values = [cell.get((method, b), np.nan) for b in bits]
    if not all(np.isnan(values)):
      series[method] = np.asarray(values, np.float64)
  full = next(r for r in rows if r["method"] == "full_euclidean")
  reference = {f"full_euclidean (all {full['bits']} dims)":
               np.full(len(bits), full[metric], np.float64)}
  return plots.curves(os.fspath(path), np.asarray(bits), series, xlabel="b (dimensions = bits)",
                      ylabel=metric, title=title, reference=reference)


def write_report(out_dir: str | os.PathLike, rows: Sequence[Mapping[str, Any]], *,
                 title: str, metadata: Mapping[str, Any], command: str = "",
                 description: str = "") -> dict[str, str]:
  """Writes results.json (metadata + rows), results.md and map_vs_bits.png into `out_dir`.

  Every file is written atomically. Returns {"json": ..., "markdown": ..., "figure": ...} paths.
  """
  check_rows(rows)
  out_dir = os.fspath(out_dir)
  paths = {"json": os.path.join(out_dir, RESULTS_JSON),
           "markdown": os.path.join(out_dir, RESULTS_MD),
           "figure": os.path.join(out_dir, FIGURE)}
  plot_map_vs_bits(paths["figure"], rows, title=title)
  atomic.write_text(paths["markdown"], to_markdown(
      rows, title=title, description=description, command=command, figure=FIGURE))
  atomic.write_json(paths["json"], {**dict(metadata), "title": title, "command": command,
                                    "rows": [dict(r) for r in rows]})
  return paths
