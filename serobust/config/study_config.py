"""A whole study's configuration (:class:`StudyConfig`) and the table of its sections: the built-in ones
(:data:`SECTIONS`) and those study stages declare (:func:`register_section`, :data:`STAGE_SECTIONS`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..training.config import TrainConfig
from .measures import (
    AttacksSection,
    AutoAttackSection,
    DetectSection,
    DiagnosticsSection,
    MechanismSection,
    ProbeSection,
)
from .reporting import ReportSection, StatsSection
from .study import DataSection, ExecutionSection, ModelSection, StudySection

__all__ = ["StudyConfig", "STAGE_SECTIONS", "SECTIONS", "register_section"]


@dataclass(frozen=True)
class StudyConfig:
    """A whole study: what to train, attack, probe and report. Build with :func:`load_study_config`."""

    study: StudySection
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    attacks: AttacksSection = field(default_factory=AttacksSection)
    diagnostics: DiagnosticsSection = field(default_factory=DiagnosticsSection)
    probe: ProbeSection = field(default_factory=ProbeSection)
    mechanism: MechanismSection = field(default_factory=MechanismSection)
    stats: StatsSection = field(default_factory=StatsSection)
    report: ReportSection = field(default_factory=ReportSection)
    autoattack: AutoAttackSection = field(default_factory=AutoAttackSection)
    detect: DetectSection = field(default_factory=DetectSection)
    execution: ExecutionSection = field(default_factory=ExecutionSection)
    source: str = ""  # the file it came from (not part of the hash)
    eps_labels: dict = field(default_factory=dict, compare=False)  # budget -> how the file wrote it ("8/255")
    sections: dict = field(default_factory=dict)  # name -> the given sections of stages that declare one

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source", None)
        d.pop("eps_labels", None)
        if not d["sections"]:
            d.pop("sections")
        else:
            d.update(d.pop("sections"))
        return d

    def section(self, name: str) -> Any:
        """The section a stage declared (:data:`STAGE_SECTIONS`) as given, or its defaults when absent."""
        if name in self.sections:
            return self.sections[name]
        if name not in STAGE_SECTIONS:
            raise KeyError(f"no stage declares a config section [{name}]; declared: {', '.join(STAGE_SECTIONS)}")
        return STAGE_SECTIONS[name]()


#: config sections declared by study stages (``Stage.section``, serobust/study/stages): name -> frozen dataclass
STAGE_SECTIONS: dict[str, type] = {}


def register_section(name: str, cls: type) -> None:
    """Declare the config section ``[name]`` (a frozen dataclass of its keys and defaults) for a stage."""
    if name in SECTIONS or STAGE_SECTIONS.get(name, cls) is not cls:
        raise ValueError(f"config section [{name}] is already declared")
    STAGE_SECTIONS[name] = cls


SECTIONS: dict[str, type] = {
    "study": StudySection,
    "data": DataSection,
    "model": ModelSection,
    "train": TrainConfig,
    "attacks": AttacksSection,
    "diagnostics": DiagnosticsSection,
    "probe": ProbeSection,
    "mechanism": MechanismSection,
    "stats": StatsSection,
    "report": ReportSection,
    "autoattack": AutoAttackSection,
    "detect": DetectSection,
    "execution": ExecutionSection,
}
