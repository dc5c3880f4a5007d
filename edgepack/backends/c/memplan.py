"""Static memory plan: every tensor the generated C keeps gets a fixed offset in one arena.

A buffer lives from the step that writes it (``first``) to the last step that reads it
(``last``), both inclusive. Two buffers may share bytes only if their lifetimes are disjoint.
A residual tensor lives until its add reads it, so graphs (not chains) get greedy-by-size alone.
Two planners run and the smaller arena wins (both sizes are reported):
  - greedy-by-size, TFLite Micro's GreedyMemoryPlanner: buffers are placed largest first, each
    at the lowest offset where it overlaps no already-placed buffer alive at the same time
    (first fit into the gaps); works for any lifetimes;
  - ping-pong, for chains (layer i's output lives over steps i..i+1, scratch over step i):
    even outputs at the bottom of the arena, odd ones at the top, a layer's scratch between
    its input and output. The arena is then exactly the lower bound, max over steps of the live
    bytes (largest input + output + scratch), so it is optimal. Greedy-by-size reaches it for
    plain chains but can lose to it once scratch buffers take part.
The lower bound and the naive sum (no reuse at all) are reported with the arena.

The model input and output are the caller's buffers (edgepack_invoke's arguments), not arena
tensors: layer 0 reads the input in place and the last layer writes the output in place. A plan with several
outputs has each output layer write its segment of the output buffer (where later layers read it), so no
output is ever in the arena: each stays intact to the end of the invoke.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgepack.backends.c.codegen import C_LOWERINGS, layer_kernel
from edgepack.plan.plan import Plan

ALIGNMENT = 8  # bytes; arena offsets and sizes are multiples of it (word/double-word loads)


@dataclass
class Buffer:
    name: str
    size: int  # bytes actually used
    first: int  # first step (layer index) that touches it
    last: int  # last step that touches it
    offset: int = -1

    @property
    def padded(self) -> int:
        return align(self.size)

    def alive_with(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class MemoryPlan:
    buffers: list[Buffer]
    arena_bytes: int
    naive_bytes: int
    lower_bound_bytes: int
    planner: str
    candidates: dict[str, int]  # planner -> arena bytes it needed
    portable_layers: dict[int, str] = field(default_factory=dict)  # layer -> why a fast build runs it portable

    def kernels_of(self, i: int, kernels: str) -> str:
        """The kernel set layer i runs with: portable where fit_arena dropped its fast scratch."""
        return "portable" if i in self.portable_layers else kernels

    def offset(self, name: str) -> int:
        return next(b.offset for b in self.buffers if b.name == name)

    def to_json(self) -> dict:
        return {"planner": self.planner, "candidates": self.candidates, "alignment": ALIGNMENT,
                "arena_bytes": self.arena_bytes, "naive_bytes": self.naive_bytes,
                "lower_bound_bytes": self.lower_bound_bytes,
                "saved_bytes": self.naive_bytes - self.arena_bytes,
                "buffers": [asdict(b) for b in self.buffers],
                "scratch_fallbacks": {str(i): why for i, why in self.portable_layers.items()}}


def align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def greedy_by_size(buffers: list[Buffer]) -> int:
    """Assign ``offset`` to every buffer; return the arena size. Deterministic: ties keep list order."""
    placed: list[Buffer] = []
    for buf in sorted(buffers, key=lambda b: -b.padded):  # sorted() is stable
        candidate = 0
        for other in sorted((p for p in placed if p.alive_with(buf)), key=lambda p: p.offset):
            if other.offset - candidate >= buf.padded:
                break  # the gap before `other` is big enough
            candidate = max(candidate, other.offset + other.padded)
        buf.offset = candidate
        placed.append(buf)
    return max((b.offset + b.padded for b in buffers), default=0)


def check_no_overlap(buffers: list[Buffer], arena_bytes: int) -> None:
    """Raise AssertionError if two simultaneously live buffers share a byte or one leaves the arena."""
    for i, a in enumerate(buffers):
        if a.offset < 0 or a.offset % ALIGNMENT or a.offset + a.size > arena_bytes:
            raise AssertionError(f"buffer {a.name} at {a.offset}+{a.size} is outside the {arena_bytes}-byte arena")
        for b in buffers[i + 1:]:
            if a.alive_with(b) and a.offset < b.offset + b.size and b.offset < a.offset + a.size:
                raise AssertionError(f"buffers {a.name} and {b.name} are alive together and overlap")


def lower_bound(buffers: list[Buffer]) -> int:
    steps = {s for b in buffers for s in (b.first, b.last)}
    return max((sum(b.padded for b in buffers if b.first <= s <= b.last) for s in steps), default=0)


def is_chain(buffers: list[Buffer]) -> bool:
    """Activations t0..tk with lifetimes [i, i + 1], scratch buffers s<i> over [i, i] only."""
    acts = [b for b in buffers if b.last > b.first]
    return all(b.last == b.first + 1 and b.first == i for i, b in enumerate(acts)) and \
        all(b.first == b.last for b in buffers if b.last == b.first)


def ping_pong(buffers: list[Buffer]) -> int:
    """Two-ended placement of a chain (see the module docstring); returns the arena size."""
    arena = lower_bound(buffers)
    acts = {b.first: b for b in buffers if b.last > b.first}
    for i, b in acts.items():
        b.offset = 0 if i % 2 == 0 else arena - b.padded
    for b in buffers:
        if b.last == b.first:  # scratch of step i, between t(i-1) and t(i): above whichever is at the bottom
            bottom = [t for t in (acts.get(b.first - 1), acts.get(b.first)) if t is not None and t.offset == 0]
            b.offset = bottom[0].padded if bottom else 0
    return arena


def plan_buffers(buffers: list[Buffer]) -> MemoryPlan:
    candidates: dict[str, tuple[int, list[int]]] = {}
    arena = greedy_by_size(buffers)
    check_no_overlap(buffers, arena)
    candidates["greedy-by-size"] = (arena, [b.offset for b in buffers])
    if is_chain(buffers):
        arena = ping_pong(buffers)
        check_no_overlap(buffers, arena)
        candidates["ping-pong"] = (arena, [b.offset for b in buffers])
    best = min(candidates, key=lambda k: candidates[k][0])  # ties: greedy-by-size (inserted first)
    arena, offsets = candidates[best]
    for b, off in zip(buffers, offsets):
        b.offset = off
    check_no_overlap(buffers, arena)
    return MemoryPlan(buffers, arena, sum(b.padded for b in buffers), lower_bound(buffers), best,
                      {k: v[0] for k, v in candidates.items()})


def scratch_bytes(layer, kernels: str) -> int:
    """The scratch of the kernel the ``kernels`` set runs ``layer`` with (codegen.C_LOWERINGS chooses it)."""
    return layer_kernel(layer, kernels)[1]


def tensor_buffers(plan: Plan, kernels: str, portable_layers=()) -> list[Buffer]:
    """The arena's buffers: layer i's output lives from step i to its last reader (i + 1 in a chain;
    a residual input until its add); the layers in ``portable_layers`` keep no scratch."""
    outputs, last_reader = set(plan.output_layers), plan.last_readers()
    buffers = []
    for i, layer in enumerate(plan.layers):
        if i not in outputs:  # a plan output lives in the caller's output buffer to the end
            size = 1
            for d in layer.output_shape:
                size *= int(d)
            buffers.append(Buffer(f"t{i}", size, i, last_reader.get(i, i)))
        scratch = scratch_bytes(layer, "portable" if i in portable_layers else kernels)
        if scratch:
            buffers.append(Buffer(f"s{i}", scratch, i, i))
    return buffers


def plan_memory(plan: Plan, kernels: str, portable_layers: dict[int, str] | None = None) -> MemoryPlan:
    C_LOWERINGS.check(plan)  # an op kind the C executor lacks is refused by name, not as a missing table entry
    memory = plan_buffers(tensor_buffers(plan, kernels, portable_layers or {}))
    memory.portable_layers = dict(portable_layers or {})
    return memory


def _peak_steps(buffers: list[Buffer]) -> list[int]:
    """The steps where the live bytes (padded) reach their maximum: where the arena's lower bound is set."""
    steps = sorted({s for b in buffers for s in (b.first, b.last)})
    live = {s: sum(b.padded for b in buffers if b.first <= s <= b.last) for s in steps}
    top = max(live.values(), default=0)
    return [s for s in steps if live[s] == top]


def fit_arena(plan: Plan, kernels: str, limit: int) -> MemoryPlan:
    """The memory plan of a ``kernels`` build whose arena must not exceed ``limit`` bytes (what the target's RAM
    budget leaves for it): while it does, the layers at the peak steps drop their fast kernel's scratch and run
    the portable kernel (which needs none; bit-identical, slower), each recorded with the reason. Stops when it
    fits or a peak step has no scratch left to drop (then nothing here helps and the budget check refuses)."""
    forced: dict[int, str] = {}
    memory = plan_memory(plan, kernels)
    start = memory.arena_bytes
    while memory.arena_bytes > limit:
        peaks = _peak_steps(memory.buffers)
        scratch = {b.first: b.size for b in memory.buffers if b.name.startswith("s")}
        if not peaks or any(s not in scratch for s in peaks):
            break
        for s in peaks:
            forced[s] = (f"RAM budget: the fast kernel's {scratch[s]:,} B scratch would make the arena {start:,} B, over the "
                         f"{limit:,} B the target's ram_bytes leaves for it; portable kernel (no scratch)")
        memory = plan_memory(plan, kernels, forced)
    return memory
