"""Study configurations: TOML files loaded into frozen dataclasses, validated whole at load.

A study file has one table per section (``[study]``, ``[data]``, ``[model]``, ``[train]``, ``[attacks]``,
``[diagnostics]``, ``[probe]``, ``[mechanism]``, ``[stats]``, ``[report]``, ``[autoattack]``, ``[detect]``,
``[execution]``, and those study stages declare); every key is optional except ``study.name``.
``experiments/mnist.toml`` documents every key.

Everything a run will need is checked here, through the same registries the run uses (attack names and
options through :func:`serobust.attack`, architectures and SE reductions through the model registry,
dataset names through :data:`serobust.DATASETS`, the device through :func:`serobust.runtime.resolve_device`),
so ``serobust check`` and ``serobust run`` can never disagree about a config. Violations raise
:class:`ConfigError` naming the key (``section.key``) and what is allowed.

The modules, by idea:

- :mod:`.rules`: :class:`ConfigError`, size limits and the rules every key of its kind follows (budgets,
  attack tables, positive counts);
- :mod:`.study`, :mod:`.measures`, :mod:`.reporting`: the section dataclasses (what is studied and where it
  runs; what is measured; how results are judged and shown); ``[train]`` is
  :class:`~serobust.training.config.TrainConfig`;
- :mod:`.study_config`: :class:`StudyConfig` and the section table (:func:`register_section` for stages);
- :mod:`.coerce`: a TOML table -> its section (types, unknown keys); :mod:`.load`: a file or dict -> a
  validated :class:`StudyConfig`.

This face re-exports the public names; code inside serobust imports the defining module.
"""

from __future__ import annotations

from .load import load_study_config, study_config_from_dict
from .measures import (
    AttacksSection,
    AutoAttackSection,
    DetectSection,
    DiagnosticsSection,
    MechanismSection,
    ProbeSection,
)
from .reporting import ReportSection, StatsSection
from .rules import ConfigError
from .study import DataSection, ExecutionSection, ModelSection, StudySection
from .study_config import STAGE_SECTIONS, StudyConfig, register_section

__all__ = ["ConfigError", "StudyConfig", "load_study_config", "study_config_from_dict", "register_section",
           "STAGE_SECTIONS", "StudySection", "DataSection", "ModelSection", "AttacksSection", "DiagnosticsSection",
           "ProbeSection", "MechanismSection", "StatsSection", "ReportSection", "AutoAttackSection",
           "DetectSection", "ExecutionSection"]
