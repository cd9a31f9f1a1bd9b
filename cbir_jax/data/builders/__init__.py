"""tfds builders that read a manual directory; nothing downloads.

Importing this package registers corel1k, cifar10_local, caltech256 and image_folder with tfds.
"""

from cbir_jax.data.builders import caltech256
from cbir_jax.data.builders import cifar10_local
from cbir_jax.data.builders import corel1k
from cbir_jax.data.builders import image_folder
