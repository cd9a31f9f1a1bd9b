"""The held-out variant table (cbir_jax.experiments.variants, bin/variants.py)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cbir_jax.experiments import variants

REPO = Path(__file__).resolve().parents[2]


def _run(val_map: float, al: float, *, new: bool = True) -> dict:
  table = {f: {"metrics": {"paper_map@10": al - i * 0.1, "map": al}}
           for i, f in enumerate(variants.FEATURES)}
  if new:
    train = {t: {"eval_accuracy": 0.7, "val_accuracy": 0.7, "test_accuracy": 0.6}
             for t in variants.NETWORKS.values()}
  else:  # Before selection on validation: eval_accuracy was the query accuracy.
    train = {t: {"eval_accuracy": 0.55} for t in variants.NETWORKS.values()}
  out = {"experiment": "corel_heldout", "table1": table, "train": train,
         "fusion_choice": {"variant": "l2", "validation_scores": {"l2": val_map,
                                                                 "concat": 0.0}}}
  if new:
    out["expansion"] = {"table": {"with": {"metrics": {"paper_map@10": al + 0.05}}}}
  return out


def _write(folder: Path, payload: dict) -> str:
  folder.mkdir(parents=True)
  (folder / "results.json").write_text(json.dumps(payload))
  return str(folder)


def test_winner_is_chosen_on_validation_not_on_queries(tmp_path):
  # "b" has the better query numbers but the worse validation mAP: "a" wins.
  a = _write(tmp_path / "a", {"runs": {"0": _run(0.60, 0.50), "1": _run(0.62, 0.54)}})
  b = _write(tmp_path / "b", {"runs": {"0": _run(0.55, 0.90), "1": _run(0.57, 0.92)}})
  old = _write(tmp_path / "old", _run(0.40, 0.70, new=False))
  # A results.json file itself (the copies under docs/results/) works as well as its folder.
  old = str(Path(old) / "results.json")
  result = variants.write_variant_table({"a": a, "b": b, "old": old}, str(tmp_path / "out"))
  assert result["winner"] == "a"
  saved = json.loads((tmp_path / "out" / "variants.json").read_text())
  assert saved["rows"]["a"]["val_map"] == [0.60, 0.62]
  assert saved["rows"]["b"]["AL top10"] == [0.90, 0.92]
  assert np.isnan(saved["rows"]["old"]["lenet val acc"][0])  # no validation accuracy
  assert saved["rows"]["old"]["lenet query acc"] == [0.55]
  # Runs with the expansion stage report AL re-ranked; older ones show "-".
  assert saved["rows"]["a"]["AL+exp top10"] == pytest.approx([0.55, 0.59])
  assert np.isnan(saved["rows"]["old"]["AL+exp top10"][0])
  md = (tmp_path / "out" / "variants.md").read_text()
  assert "AL + DBA/alpha-QE mAP(Top10), queries" in md
  assert "| **a** | 2 | 0.6100 ± 0.0100 |" in md and "| old | 1 | 0.4000 ± 0.0000 |" in md
  assert (tmp_path / "out" / "variants.png").read_bytes()[:4] == b"\x89PNG"


def test_launcher_names_bad_input(tmp_path):
  def launch(*args):
    return subprocess.run([sys.executable, str(REPO / "bin" / "variants.py"), *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
  proc = launch("--runs=nolabel", f"--out={tmp_path / 'o'}")
  assert proc.returncode != 0 and "label=workdir pairs, got 'nolabel'" in proc.stderr
  proc = launch(f"--runs=x={tmp_path / 'missing'}", f"--out={tmp_path / 'o'}")
  assert proc.returncode != 0 and "results.json not found" in proc.stderr
  with pytest.raises(FileNotFoundError):
    variants.variant_rows({"x": str(tmp_path / "missing")})
