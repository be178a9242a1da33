"""Task-boundary events: what a family's `before_task` / `after_task` hooks report, typed.

Every event is a small frozen dataclass with the task it belongs to and its own fields. The
run format stores them in the manifest as `{"type": kind, "task": t, ...fields}` under
"events", with `"events_format": FORMAT`; `load` reads every format this version knows (runs
without the key hold format 1, the plain dicts of earlier versions) and checks each field's
type, since a manifest is untrusted input.

The pages read events only through this module: `describe()` is the one line the Overview
lists, `marks()` what the Expert timeline writes in an expert's cell (so a family's own
event, such as MVAE's `component_pruned`, reaches the timeline without the page knowing it).
A plugin family defines its own kinds by subclassing `Event` with a new `kind`; a run holding
a kind this process does not know (a plugin not installed here, a newer version) still opens,
its events read as `Other`.

For code written against the dict form, an event also reads like one: `e["type"]`,
`e["expert"]`, `e.get("distances")`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

# The mechanism (base class, registry, stored form, reading) is eventbase's; it is re-exported
# here so that readers and plugins import one module.
from lifelong.eventbase import (  # noqa: F401
    FORMAT,
    KINDS,
    RENAMED,
    Event,
    Mark,
    Other,
    _fmt,
    _short,
    from_hook,
    load,
    parse,
)


# -- mixtures (paper 000 L-MVAE, paper 002 MVAE) ---------------------------------------------
@dataclass(frozen=True)
class Mixing(Event):
    """The mixing weights' Dirichlet parameters a during the task (paper 000 eq. 6; MVAE: the
    mean a(x) of its Dirichlet encoder, paper 002 eq. 8) and which experts train."""

    kind: ClassVar[str] = "mixing"
    alpha: list[float] = field(default_factory=list)
    trainable: list[int] = field(default_factory=list)
    frozen: list[int] = field(default_factory=list)
    dropout_rate: list[float] | None = None

    def describe(self) -> str:
        text = f"Dirichlet a = {_fmt(self.alpha)}; training experts {self.trainable}"
        if self.dropout_rate is not None:
            text += f"; dropout rates {_fmt(self.dropout_rate)}"
        return text


@dataclass(frozen=True)
class Assignment(Event):
    """Paper 000 eqs. 3-5: each expert's loss on the data eq. 3 reads, the probabilities p(c)
    and the expert chosen as the depository."""

    kind: ClassVar[str] = "assignment"
    expert_loss: list[float] = field(default_factory=list)
    p_c: list[float] = field(default_factory=list)
    log_q: list[float] = field(default_factory=list)
    chosen: int = 0

    def describe(self) -> str:
        return (
            f"eq. 3 on task {self.task}'s data: loss per expert {_fmt(self.expert_loss)},"
            f" p(c) {_fmt(self.p_c)} -> expert {self.chosen}"
        )


@dataclass(frozen=True)
class ExpertFrozen(Event):
    """An expert frozen for good as the depository of task `holds_task`."""

    kind: ClassVar[str] = "expert_frozen"
    expert: int = 0
    holds_task: int = 0

    def describe(self) -> str:
        return f"expert {self.expert} frozen as the depository of task {self.holds_task}"

    def marks(self) -> list[Mark]:
        # Alg. 1's reading freezes at the end of the task it holds; the other reading at the
        # start of the next task: either way the expert is frozen from the next task on.
        after = self.holds_task >= self.task
        return [Mark(self.expert, f"frozen: task {self.holds_task}", lasting=True, from_next=after)]


@dataclass(frozen=True)
class ExpertAdded(Event):
    """L-MVAE-Dyn (paper 000 eq. 25): every expert was farther than the threshold from the
    task (eq. 24 `distances`), so an expert was added (or, at task 0, the first one)."""

    kind: ClassVar[str] = "expert_added"
    expert: int = 0
    distances: list[float] | None = None
    threshold: float | None = None

    def describe(self) -> str:
        dist = f" (eq. 24 distances {_fmt(self.distances)})" if self.distances else ""
        return f"expert {self.expert} {self.kind.split('_')[1]}{dist}"

    def marks(self) -> list[Mark]:
        score = f" (S={min(self.distances):.3g})" if self.distances else ""
        return [Mark(self.expert, f"{self.kind.split('_')[1]}{score}")]


@dataclass(frozen=True)
class ExpertReused(ExpertAdded):
    """L-MVAE-Dyn (paper 000 eq. 26): the nearest expert keeps learning the task."""

    kind: ClassVar[str] = "expert_reused"


@dataclass(frozen=True)
class TaskHolder(Event):
    """The expert that holds the finished task (routing accuracy is measured against it)."""

    kind: ClassVar[str] = "task_holder"
    expert: int = 0

    def describe(self) -> str:
        return f"task {self.task} held by expert {self.expert}"

    def marks(self) -> list[Mark]:
        return [Mark(self.expert, "learns this task", note=True)]


@dataclass(frozen=True)
class Routing(Event):
    """Written by the trainer after each snapshot of a mixture: [T][K] the fraction of each
    task's test images eq. 7 routes to each expert."""

    kind: ClassVar[str] = "routing"
    after_task: int = 0
    fractions: list[list[float]] = field(default_factory=list)

    def describe(self) -> str:
        rows = "; ".join(_fmt(r) for r in self.fractions)
        return "test data routed (rows: tasks, columns: experts): " + rows


@dataclass(frozen=True)
class ComponentPruned(Event):
    """MVAE-GS / -Gau (paper 002 Sec. V-G): a component whose keep score fell below the
    threshold leaves the mixture for good."""

    kind: ClassVar[str] = "component_pruned"
    expert: int = 0
    epoch: int = 0
    keep_score: float = 0.0
    threshold: float = 0.0

    def describe(self) -> str:
        return (
            f"component {self.expert} pruned at epoch {self.epoch}: keep score"
            f" {self.keep_score:.3g} < {self.threshold:.3g}"
        )

    def marks(self) -> list[Mark]:
        return [Mark(self.expert, f"pruned (keep {self.keep_score:.2g})", lasting=True)]


# -- replay (paper 001 LGM, paper 003 lifelong InfoGAN) -----------------------------------------
@dataclass(frozen=True)
class Replay(Event):
    """The share pi of real images in the task's batches; the rest is replayed."""

    kind: ClassVar[str] = "replay"
    pi: float = 1.0
    replay_fraction: float = 0.0

    def describe(self) -> str:
        return f"real share pi = {self.pi:.3g}, replayed {self.replay_fraction:.3g}"


@dataclass(frozen=True)
class ReplayRecorded(Event):
    """A grid of the replayed images was kept for the Forgetting page."""

    kind: ClassVar[str] = "replay_recorded"
    samples: int = 0

    def describe(self) -> str:
        return f"{self.samples} replayed images kept for the Forgetting page"


@dataclass(frozen=True)
class TeacherSwapped(Event):
    """LGM (paper 001 Sec. 4): the student becomes the frozen teacher."""

    kind: ClassVar[str] = "teacher_swapped"
    teacher_dim: int = 0

    def describe(self) -> str:
        return f"the student became the teacher (z_d with {self.teacher_dim} categories)"


@dataclass(frozen=True)
class DimensionGrown(Event):
    """LGM (paper 001 App. 9.8): a latent block grown by new categories."""

    kind: ClassVar[str] = "dimension_grown"
    block: str = ""
    from_dim: int = 0
    to_dim: int = 0
    init: str = ""

    def describe(self) -> str:
        return f"{self.block} grown from {self.from_dim} to {self.to_dim} ({self.init})"


@dataclass(frozen=True)
class TaskCode(Event):
    """LGM: the z_d category the finished task is encoded to (its mode), and its share."""

    kind: ClassVar[str] = "task_code"
    code: int = 0
    share: float = 0.0
    counts: list[int] = field(default_factory=list)

    def describe(self) -> str:
        return f"task {self.task} encoded to z_d = {self.code} ({self.share:.0%} of its images)"


@dataclass(frozen=True)
class GeneratorFrozen(Event):
    """Lifelong InfoGAN (paper 003 eqs. 3-7): the generator is copied and frozen for replay."""

    kind: ClassVar[str] = "generator_frozen"

    def describe(self) -> str:
        return "the generator was frozen as the replay source"


@dataclass(frozen=True)
class CodeUsage(Event):
    """Lifelong InfoGAN: S's mean distribution of the discrete code d over the task's images."""

    kind: ClassVar[str] = "code_usage"
    probs: list[float] = field(default_factory=list)

    def describe(self) -> str:
        return f"d's distribution on task {self.task}: {_fmt(self.probs)}"


# -- populations (paper 004 CPVAE) and EWC (paper 001 Sec. 5) ------------------------------
@dataclass(frozen=True)
class Populations(Event):
    """CPVAE: the populations a phase learns together and the objective it uses."""

    kind: ClassVar[str] = "populations"
    populations: list[int] = field(default_factory=list)
    objective: str = ""

    def describe(self) -> str:
        return f"populations {self.populations} learnt with {self.objective}"


@dataclass(frozen=True)
class PopulationsLearnt(Event):
    """CPVAE: every population learnt so far."""

    kind: ClassVar[str] = "populations_learnt"
    learnt: list[int] = field(default_factory=list)

    def describe(self) -> str:
        return f"populations learnt so far: {self.learnt}"


@dataclass(frozen=True)
class EwcConsolidated(Event):
    """EWC: the task's diagonal Fisher information added to the penalty."""

    kind: ClassVar[str] = "ewc_consolidated"
    samples: int = 0
    fisher_task_mean: float = 0.0
    fisher_task_max: float = 0.0
    fisher_total_mean: float = 0.0

    def describe(self) -> str:
        return (
            f"Fisher of task {self.task} from {self.samples} images: mean"
            f" {self.fisher_task_mean:.3g}, max {self.fisher_task_max:.3g}"
        )
