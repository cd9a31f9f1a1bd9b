"""Data: offline tfds builders (manual_dir), scikit-learn digits, in-memory arrays and batches."""
