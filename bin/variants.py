"""The held-out variant table from several seeded corel_heldout runs (issue 17 item 4).

  for v in small small,aug=strong small,aug=strong,epochs=30; do
    python bin/reproduce.py --experiment=corel_heldout:$v --seeds=0,1,2 \
        --workdir=runs/corel_heldout_$(echo $v | tr ',=' '__')
  done
  python bin/variants.py --runs=baseline=runs/corel_heldout_small,\
strong=runs/corel_heldout_small_aug_strong --out=runs/variants_small

A run may also be given by its results.json file, e.g. the copies under docs/results/.

Writes <out>/variants.md (mean ± std over each run's seeds: the validation mAP of the fusion it
chose, which picks the winner, then the held-out query scores and the networks' accuracies),
variants.json and variants.png (`cbir_jax.experiments.variants`).
"""

from absl import app, flags

from cbir_jax._bin import launch

_RUNS = flags.DEFINE_list("runs", None, "label=workdir pairs, one per variant (each a "
                          "bin/reproduce.py --experiment=corel_heldout:... workdir, or its results.json).")
_OUT = flags.DEFINE_string("out", None, "Output folder.")
_K = flags.DEFINE_integer("k", 10, "k of the mAP(Top k) columns.")
flags.mark_flags_as_required(["runs", "out"])


def main(argv):
  del argv
  from cbir_jax.experiments import variants  # pylint: disable=import-outside-toplevel
  workdirs = {}
  for item in _RUNS.value:
    label, sep, workdir = item.partition("=")
    if not sep or not label or not workdir:
      launch.fail("variants", f"--runs takes label=workdir pairs, got {item!r}")
    if label in workdirs:
      launch.fail("variants", f"--runs names the label {label!r} twice")
    workdirs[label] = workdir
  try:
    result = variants.write_variant_table(workdirs, launch.output_dir("variants", "out",
                                                                      _OUT.value), k=_K.value)
  except (FileNotFoundError, ValueError, KeyError) as e:
    launch.fail("variants", launch.one_line(e))
  print(result["markdown"])


def run():
  app.run(main, flags_parser=launch.flags_parser("variants"))


if __name__ == "__main__":
  run()
