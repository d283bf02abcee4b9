"""The stages of a study, one module each (see DESIGN.md, "Adding a stage").

Every module of this package registers one :class:`~serobust.study.stages.base.Stage` when imported; this
package imports them all, so a new stage is one new file here. :func:`serobust.pipeline.plan` plans the
registered stages in their reading order (``Stage.order``); the executors read their priority and
:func:`serobust.study.results.collect` their tables from :data:`STAGES`.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import STAGES, Planning, Stage, ordered, register_stage

__all__ = ["Stage", "STAGES", "register_stage", "ordered", "Planning"]

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")
