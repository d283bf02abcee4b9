"""Published and user-trained pairs: members loaded from a model library or a file instead of trained here.

A member is named by its source (:data:`SOURCES`):

- ``timm:<name>`` (``resnet50.a1_in1k``), ``torchvision:<name>`` (``regnet_y_400mf``), ``pytorchcv:<name>``
  (``seresnet20_cifar10``), ``robustbench:<dataset>/<threat>/<name>``: the library's architecture with its
  pretrained weights, loaded through the library's own loader (its hub cache, or ``weights_dir`` offline);
- the same with ``weights = "file"``: the architecture built without weights, then a weights-only state
  dict (``.pt``/``.pth``/``.bin`` through ``torch.load(weights_only=True)``, or ``.safetensors``) loaded
  into it; this is how a user's own checkpoints enter a study;
- ``torchscript:<file>``: a TorchScript model (a baseline only: its modules carry no Python class, so the
  probe cannot find SE blocks in it).

Preprocessing travels with the weights (:func:`preprocess`): the resize, crop and interpolation of the
model's pretrained configuration (timm's ``pretrained_cfg``, torchvision's weights transforms) are applied
when the images are decoded, to [0, 1] tensors at the model's input size; its mean and std go inside the
model (:class:`ExternalModel`), so attacks see [0, 1] images and eps is in [0, 1] pixels of that input.

The modules, by idea: :mod:`.specs` (what names a member or pair; the errors), :mod:`.sources` (the model
libraries: install hints, registry checks), :mod:`.parse` (config form -> specs), :mod:`.preprocessing`
(a member's image geometry and normalization; a pair's shared geometry), :mod:`.weights` (where weights
live; state-dict files), :mod:`.load` (members and pairs as models). This face re-exports the public names;
code inside serobust imports the defining module.
"""

from __future__ import annotations

from .load import ExternalModel, check_se_member, load_member, load_pair
from .parse import parse_member, parse_pair
from .preprocessing import Preprocess, member_preprocess, pair_geometry, preprocess, resize_crop
from .sources import INSTALL_HINTS
from .specs import SOURCES, MemberError, MemberSpec, PairSpec, WeightsNotFoundError
from .weights import missing_weights, weights_file

__all__ = ["SOURCES", "MemberError", "WeightsNotFoundError", "MemberSpec", "PairSpec", "Preprocess",
           "parse_member", "parse_pair", "preprocess", "pair_geometry", "weights_file", "missing_weights",
           "load_member", "load_pair", "check_se_member", "member_preprocess", "ExternalModel", "resize_crop",
           "INSTALL_HINTS"]
