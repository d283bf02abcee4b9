"""PGD in the L2 ball (Madry et al. 2018): normalized-gradient steps, projection on the L2 ball of radius
eps (pixel units; may exceed 1). Same options and defaults as :mod:`~serobust.attacks.pgd`; the white-box
reference the masking diagnostics compare L2 attacks with."""

from __future__ import annotations

import torchattacks

from .base import register_attack
from .pgd import PGD


@register_attack
class PGDL2(PGD):
    """Projected gradient descent on the CE loss, L2 ball (torchattacks.PGDL2)."""

    name = "pgd_l2"
    title = "PGD-L2"  # PGD-L2-10; cheap options as PGD's
    norm = "L2"
    torchattack = torchattacks.PGDL2
