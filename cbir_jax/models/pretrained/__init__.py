"""Import published ImageNet checkpoints (torchvision .pth/.safetensors, Keras .h5) into our models.

`load_pretrained(path, "resnet50")` reads the file, picks the variant of our model that computes
exactly what the source framework computes (`ResNet(variant="torchvision")` etc.), converts every
tensor (layouts, names, AlexNet's fc6 flatten order) and returns the variables together with the
input preprocessing the weights expect. `merge_pretrained` puts such a trunk into a model with a
different head (DFS-Nets, another class count) and says which parameters came from it.
"""

from cbir_jax.models.pretrained.loader import MODELS, Pretrained, load_pretrained
from cbir_jax.models.pretrained.merge import merge_pretrained, trunk_mask
from cbir_jax.models.pretrained.preprocessing import (CAFFE, INCEPTION, TORCHVISION,
                                                      Preprocessing)
from cbir_jax.models.pretrained.readers import FORMATS, detect_format, file_sha256

__all__ = ["CAFFE", "FORMATS", "INCEPTION", "MODELS", "TORCHVISION", "Preprocessing",
           "Pretrained", "detect_format", "file_sha256", "load_pretrained", "merge_pretrained", "trunk_mask"]
