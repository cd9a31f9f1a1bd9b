"""PNG figures people look at: ranked contact sheets, mAP vs k, recall vs returned, PR curves."""

from __future__ import annotations

from typing import Mapping, Sequence

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np

from cbir_jax import atomic

_GOOD = "#1a9850"
_BAD = "#d73027"


def _figure(**kwargs) -> Figure:
  """A figure drawn by Agg (PNG files, no display). Built without pyplot, so no backend is
  chosen or switched (a notebook's backend is left alone) and no figure stays registered."""
  fig = Figure(**kwargs)
  FigureCanvasAgg(fig)
  return fig


def _save_atomic(fig: Figure, path: str, dpi: int) -> str:
  """Writes `fig` as PNG to `path` atomically (cbir_jax.atomic); returns the path."""
  with atomic.atomic_write(path, "wb") as f:
    fig.savefig(f, dpi=dpi, format="png", bbox_inches="tight")
  return path


def _show(ax: Axes, image: np.ndarray) -> None:
  img = np.asarray(image)
  if img.ndim == 3 and img.shape[-1] == 1:
    img = img[..., 0]
  ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
  ax.set_xticks([])
  ax.set_yticks([])


def _border(ax: Axes, color: str, width: float = 4.0) -> None:
  for spine in ax.spines.values():
    spine.set_edgecolor(color)
    spine.set_linewidth(width)


def contact_sheet(path: str, query_images: np.ndarray, query_labels: np.ndarray,
                  result_images: np.ndarray, result_labels: np.ndarray,
                  distances: np.ndarray, result_ids: np.ndarray | None = None,
                  class_names: Sequence[str] | None = None, title: str = "",
                  dpi: int = 100) -> str:
  """Draws one row per query: the query, then its ranked results with green/red borders.

  Args:
    path: output PNG, written atomically.
    query_images: uint8[q, h, w, c] (c = 1 or 3).
    query_labels: int[q]; a label < 0 means "unknown" (e.g. a user's photo): borders are grey.
    result_images: uint8[q, k, h, w, c]; result_labels: int[q, k]; distances: [q, k].
    result_ids: optional int[q, k] database ids printed under each result.
    class_names: optional names for labels.
  Returns:
    `path`.
  """
  q, k = np.asarray(result_labels).shape
  name = (lambda c: class_names[c] if class_names is not None and 0 <= c < len(class_names)
          else str(c))
  fig = _figure(figsize=(1.3 * (k + 1), 1.55 * q), layout="constrained")
  axes = fig.subplots(q, k + 1, squeeze=False)
  for i in range(q):
    ax = axes[i, 0]
    _show(ax, query_images[i])
    _border(ax, "black")
    qlab = int(query_labels[i])
    ax.set_title("query" + (f"\n{name(qlab)}" if qlab >= 0 else ""), fontsize=7)
    for j in range(k):
      ax = axes[i, j + 1]
      _show(ax, result_images[i, j])
      lab = int(result_labels[i, j])
      color = "grey" if qlab < 0 else (_GOOD if lab == qlab else _BAD)
      _border(ax, color)
      sub = f"#{j + 1} d={float(distances[i, j]):.3g}\n{name(lab)}"
      if result_ids is not None:
        sub += f" id={int(result_ids[i, j])}"
      ax.set_title(sub, fontsize=6)
  if title:
    fig.suptitle(title, fontsize=9)
  return _save_atomic(fig, path, dpi)


def curves(path: str, x: np.ndarray, series: Mapping[str, np.ndarray], *, xlabel: str,
           ylabel: str, title: str = "", reference: Mapping[str, np.ndarray] | None = None,
           dpi: int = 110) -> str:
  """Line plot of several named series over a shared x (mAP vs k, recall vs returned, ...).

  `reference` series (e.g. a paper's published numbers) are drawn dashed.
  """
  fig = _figure(figsize=(5.5, 3.8))
  ax = fig.subplots()
  for label, y in series.items():
    ax.plot(x, y, marker="o" if len(x) <= 20 else None, label=label)
  for label, y in (reference or {}).items():
    ax.plot(x, y, linestyle="--", marker="x" if len(x) <= 20 else None, label=label)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  if title:
    ax.set_title(title, fontsize=10)
  return _save_atomic(fig, path, dpi)


def pr_curves(path: str, curves_by_name: Mapping[str, tuple[np.ndarray, np.ndarray]],
              title: str = "", dpi: int = 110) -> str:
  """Precision (y) against recall (x) for each named (precision, recall) pair."""
  fig = _figure(figsize=(5, 4))
  ax = fig.subplots()
  for label, (precision, recall) in curves_by_name.items():
    ax.plot(recall, precision, label=label)
  ax.set_xlabel("recall")
  ax.set_ylabel("precision")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1.02)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  if title:
    ax.set_title(title, fontsize=10)
  return _save_atomic(fig, path, dpi)


def bars(path: str, groups: Sequence[str], series: Mapping[str, tuple[Sequence[float],
                                                                      Sequence[float]]], *,
         ylabel: str, title: str = "", dpi: int = 110) -> str:
  """Grouped bars with error bars: one group per name in `groups`, one bar per series
  (`series[name] = (means, stds)`, one value per group; NaN: no bar)."""
  fig = _figure(figsize=(max(5.5, 1.3 * len(groups) + 2), 3.8))
  ax = fig.subplots()
  width = 0.8 / max(len(series), 1)
  x = np.arange(len(groups))
  for i, (label, (means, stds)) in enumerate(series.items()):
    ax.bar(x + (i - (len(series) - 1) / 2) * width, np.asarray(means, float), width,
           yerr=np.asarray(stds, float), capsize=3, label=label)
  ax.set_xticks(x)
  ax.set_xticklabels(list(groups), fontsize=7, rotation=15, ha="right")
  ax.set_ylabel(ylabel)
  ax.grid(alpha=0.3, axis="y")
  ax.legend(fontsize=8)
  if title:
    ax.set_title(title, fontsize=10)
  return _save_atomic(fig, path, dpi)
