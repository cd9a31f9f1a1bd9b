"""The jobs behind the file-based launchers: extract a split, hash feature files, build an index.

Each launcher in bin/ parses its flags and calls one function here:

  extract_split       bin/extract.py, bin/compare.py: restore a training run -> check the
                      endpoint -> load the split its config names -> features .npy + sidecars;
  hash_feature_files  bin/hash.py: fit a `HashEncoder` on database features, encode every file;
  build_index         bin/index.py build: a FloatIndex / BinaryIndex from a features or codes
                      file, with the provenance record, labels and class names of its sidecar;
  augment_index       bin/index.py augment: database-side augmentation of a saved float index
                      into a cosine index;
  streaming.build_index_streaming
                      bin/index.py build --images: a folder or ArrayRecord tfds set streamed
                      through extraction into an index in resumable chunks, on every local
                      device and every jax.distributed process;
  evaluate_files      bin/evaluate.py: score saved features or a saved index.

Every feature or code file carries a JSON sidecar with the provenance record
(`cbir_jax.features.provenance`) of its vectors, so an index built by the chain
extract -> [hash ->] index build is searchable by image (`cbir_jax.query`) like the demo's.
Launcher-level: nothing in the library imports this package.
"""

from cbir_jax.jobs.evaluation import (ComparisonReport, compare_feature_files, evaluate_files,
                                      load_labeled)
from cbir_jax.jobs.indexing import (augment_index, build_index, hash_feature_files,
                                    search_index_file)
from cbir_jax.jobs.networks import (DATASET_OVERRIDES, Restored, check_endpoint,
                                    dataset_config, dataset_from_flags, dataset_record,
                                    extract_split, import_weights, index_metadata, restore)

__all__ = ["DATASET_OVERRIDES", "ComparisonReport", "Restored", "augment_index", "build_index",
           "check_endpoint", "compare_feature_files", "dataset_config", "dataset_from_flags",
           "dataset_record", "evaluate_files", "extract_split", "hash_feature_files",
           "import_weights", "index_metadata", "load_labeled", "restore", "search_index_file"]
