"""merge_pretrained: a pretrained trunk in a model with another head, plus a mask of its params."""

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from cbir_jax.models.pretrained.layouts import fmt_shape


def _flatten(tree: Mapping, prefix: tuple = ()) -> dict[tuple, Any]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, Mapping):
      out.update(_flatten(v, prefix + (k,)))
    else:
      out[prefix + (k,)] = v
  return out


def _unflatten(flat: Mapping[tuple, Any]) -> dict:
  tree = {}
  for key, value in flat.items():
    node = tree
    for part in key[:-1]:
      node = node.setdefault(part, {})
    node[key[-1]] = value
  return tree


# Our classifiers: top-level names a trunk never fills (the head, AlexNet's fc8, Inception's aux).
CLASSIFIERS = ("head", "fc8", "aux", "output")  # "output": LeNet-L's


def trunk_mask(params: Mapping, prefix: tuple[str, ...] = (),
               exclude: tuple[str, ...] = CLASSIFIERS) -> dict:
  """A pytree of bools shaped like `params`: True for every leaf under `prefix` outside
  `exclude`, i.e. where `merge_pretrained` puts the trunk (it refuses a trunk that leaves one of
  them unfilled). Needs only the structure, so a restored run rebuilds it without the file."""
  n = len(prefix)
  flat = _flatten(params)
  return _unflatten({key: key[:n] == tuple(prefix) and len(key) > n and key[n] not in exclude
                     for key in flat})


def merge_pretrained(fresh: Mapping, trunk: Mapping, *, prefix: tuple[str, ...] | None = None,
                     exclude: tuple[str, ...] = CLASSIFIERS) -> tuple[dict, dict]:
  """Puts a pretrained trunk into freshly initialised variables of a model with another head.

  For fine-tuning: e.g. `fresh = dfs_resnet50(num_classes=10, backbone_kwargs=p.model_kwargs)`'s
  `init(...)` and `trunk = p.variables` of `load_pretrained(path, "resnet50")` (the backbone
  must be built with the same `variant`: `backbone_kwargs=p.model_kwargs`, or
  `**p.model_kwargs` for a plain model; shapes cannot tell variants apart). Every `params` and
  `batch_stats` leaf of `trunk` outside `exclude` (its classifier) replaces the leaf of `fresh`
  at `prefix + path`; everything else of `fresh` (DFS module, new head) is kept.

  Args:
    fresh: the target model's variables (`{"params": ..., "batch_stats": ...}`).
    trunk: the source model's variables, e.g. `Pretrained.variables`.
    prefix: where the trunk sits in the target; None: `("backbone",)` when the target's params
      have a "backbone" (DFS-Nets) and the trunk's don't, else `()`.
    exclude: top-level names of the trunk not copied (our classifiers: "head", AlexNet's "fc8",
      InceptionV3's "aux").

  Returns:
    `(merged, mask)`: merged variables (same tree, shapes and dtypes as `fresh`), and a pytree
    of Python bools shaped like `merged["params"]`, True where the parameter came from the
    trunk (for `optax.multi_transform` / freezing).

  Raises:
    ValueError: one message listing every trunk leaf with no place (or another shape) in the
      target, and every target leaf under `prefix` (outside `exclude`) the trunk lacks.
  """
  if "params" not in fresh or "params" not in trunk:
    raise ValueError("fresh and trunk must be variables dicts with a 'params' collection")
  if prefix is None:
    prefix = ("backbone",) if ("backbone" in fresh["params"]
                               and "backbone" not in trunk["params"]) else ()
  prefix = tuple(prefix)
  target, source = _flatten(fresh), _flatten(trunk)
  problems, merged, copied = [], dict(target), set()
  for key, value in source.items():
    collection, rel = key[0], key[1:]
    if rel[0] in exclude:
      continue
    dest = (collection, *prefix, *rel)
    where = "/".join(dest)
    if dest not in target:
      problems.append(f"trunk leaf {'/'.join(key)} {fmt_shape(value)} has no place {where} in "
                      f"the target")
    elif target[dest].shape != value.shape:
      problems.append(f"shape mismatch at {where}: trunk {fmt_shape(value)}, target "
                      f"{fmt_shape(target[dest])}")
    else:
      merged[dest] = jnp.asarray(value, target[dest].dtype)
      copied.add(dest)
  n = len(prefix)
  for key in target:
    if key[1:1 + n] == prefix and len(key) > n + 1 and key[1 + n] not in exclude and (
        key not in copied and key[0] in ("params", "batch_stats")):
      problems.append(f"target leaf {'/'.join(key)} {fmt_shape(target[key])} is not in the "
                      f"trunk")
  if problems:
    shown = "\n  ".join(problems)
    raise ValueError(f"the trunk does not fit the target under prefix {prefix}; "
                     f"{len(problems)} leaf/leaves differ, nothing was merged:\n  {shown}")
  return _unflatten(merged), trunk_mask(fresh["params"], prefix, exclude)
