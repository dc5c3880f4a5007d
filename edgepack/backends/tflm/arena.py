"""The tensor arena TensorFlow Lite Micro needs for a .tflite, computed the way TFLM lays it out.

TFLM splits the arena in two. The head holds the activations, placed by its GreedyMemoryPlanner; this
module reproduces that plan exactly: every non-constant tensor (and every tensor no op touches, alive
"before" the graph), in tensor order, sizes rounded up to 16 bytes, lifetimes in TFLM's scopes (0: graph
inputs and outputs; op i: i + 1; outputs live to the end), then ordered by size, largest first, where
equal sizes keep the order TFLM's planner gives them: it fills its ordering from the tail and sorts
stably, so the later tensor comes first. Each buffer goes into the first gap wide enough among the
buffers already placed that are alive with it.

The tail holds what lives as long as the interpreter: an eval tensor per tensor, a node per operator,
a TfLiteTensor (with its quantization) per graph input and output, the builtin options and the kernel's
OpData per operator, and the per-channel output multipliers and shifts of convolutions and fully
connected layers (16-byte aligned). These were measured per operator type against the ``tflite-micro``
interpreter (reference kernels, x86-64); pointer-sized fields are taken out for 32-bit targets.

Before the plan exists, each operator's Prepare borrows the head: after room for twelve scratch-buffer
requests, a temporary TfLiteTensor per input and output, with its quantization and a zero-point array as
long as its scales (a per-channel weight or bias: 4 bytes a channel). The tail then holds everything but
the graph's input and output TfLiteTensors (allocated after Prepare) and the per-channel arrays of later
operators. When the activations are small (a fully connected chain) this, not the plan, sets the arena.

Planning borrows the head too: the scratch-buffer requests (twelve spare), an AllocationInfo per tensor and
request, and 40 bytes of planner arrays per planned buffer. Kernels' scratch buffers are planned with the
tensors, alive in their operator only; of the reference kernels edgepack emits, MEAN asks for three.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ALIGNMENT = 16  # MicroArenaBufferAlignment(): every arena buffer and its size
TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8}  # FLOAT32 FLOAT16 INT32 UINT8 INT64 BOOL INT16 INT8 FLOAT64
PER_CHANNEL_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}  # int32 multiplier + shift per output channel
# tail bytes per operator with 64-bit pointers, per-channel arrays apart: node (64) + builtin options + OpData
OP_BYTES_64 = {"CONV_2D": 176, "DEPTHWISE_CONV_2D": 168, "FULLY_CONNECTED": 176, "PAD": 128,
               "AVERAGE_POOL_2D": 136, "MAX_POOL_2D": 136, "RESHAPE": 104, "ADD": 136, "MUL": 120, "MEAN": 152,
               "SOFTMAX": 152, "CONCATENATION": 152, "HARD_SWISH": 96}
UNKNOWN_OP_BYTES_64 = 272  # an operator not measured: the largest OpData seen, plus a node
NODE_POINTERS = 8  # a node's seven pointers and its registration's: 32 bytes fewer per op with 4-byte pointers
FIXED_BYTES_64 = 512  # allocators, planner, subgraph tables (measured; kept for 32-bit, an upper bound there)
MAX_SCRATCH_REQUESTS = 12  # kMaxScratchBuffersPerOp: the head keeps room for this many requests in Prepare
TFLITE_TENSOR_BYTES = {8: 64, 4: 40}  # TfLiteTensor as TFLM builds it (TF_LITE_STATIC_MEMORY)


def align(n: int, to: int = ALIGNMENT) -> int:
    return -(-n // to) * to


@dataclass
class Buffer:
    size: int  # bytes, 16-byte aligned
    first: int  # TFLM allocation scope it is created in
    last: int  # last scope it is used in
    offset: int = -1


def place(buffers: list[Buffer]) -> int:
    """GreedyMemoryPlanner: offsets for every buffer, returns the head size (see the module docstring)."""
    order = sorted(reversed(range(len(buffers))), key=lambda i: -buffers[i].size)  # sorted() is stable
    placed: list[Buffer] = []
    for i in order:
        buf, candidate = buffers[i], 0
        alive = sorted((p for p in placed if p.first <= buf.last and buf.first <= p.last), key=lambda p: p.offset)
        for other in alive:
            if other.offset - candidate >= buf.size:
                break
            candidate = max(candidate, other.offset + other.size)
        buf.offset = candidate
        placed.append(buf)
    return max((b.offset + b.size for b in buffers), default=0)


@dataclass
class Graph:
    """What TFLM's allocator looks at in a .tflite: tensor sizes, which are constant, the ops in order."""
    sizes: list[int]
    constant: set[int]
    inputs: list[int]
    outputs: list[int]
    ops: list[tuple[str, list[int], list[int], int]]  # (name, inputs, outputs, per-channel arrays' channels)
    scales: list[int] = field(default_factory=list)  # quantization scales per tensor (0: none; missing: 1)
    scratch: dict[int, list[int]] = field(default_factory=dict)  # op index -> its scratch buffers' bytes

    def requests(self, before: int | None = None) -> int:
        """Scratch-buffer requests of the operators before op ``before`` (of all, by default)."""
        return sum(len(sizes) for op, sizes in self.scratch.items() if before is None or op < before)


def read_graph(tflite_bytes: bytes) -> Graph:
    import tflite

    names = {code: name for name, code in vars(tflite.BuiltinOperator).items() if not name.startswith("_")}
    model = tflite.Model.GetRootAsModel(tflite_bytes, 0)
    graph = model.Subgraphs(0)
    tensors = [graph.Tensors(t) for t in range(graph.TensorsLength())]
    sizes = [int(np.prod(t.ShapeAsNumpy())) * TYPE_BYTES.get(t.Type(), 4) for t in tensors]
    scales = [_scale_count(t) for t in tensors]
    constant = {t for t, tensor in enumerate(tensors) if model.Buffers(tensor.Buffer()).DataLength() > 0}
    ops, scratch = [], {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        ins, outs = [int(t) for t in op.InputsAsNumpy()], [int(t) for t in op.OutputsAsNumpy()]
        channels = int(tensors[outs[0]].ShapeAsNumpy()[-1]) if name in PER_CHANNEL_OPS else 0
        ops.append((name, ins, outs, channels))
        if name == "MEAN":
            scratch[i] = _mean_scratch(tensors[ins[0]], tensors[ins[1]], tensors[outs[0]])
    return Graph(sizes, constant, [int(t) for t in graph.InputsAsNumpy()],
                 [int(t) for t in graph.OutputsAsNumpy()], ops, scales, scratch)


def _mean_scratch(data, axis, output) -> list[int]:
    """TFLM's reference MEAN asks in Prepare for an int32 per output value (int8 / int16 inputs only), an
    int per input dimension and an int per reduced axis."""
    accumulator = [4 * int(np.prod(output.ShapeAsNumpy()))] if data.Type() in (7, 9) else []
    return accumulator + [4 * data.ShapeLength(), 4 * int(np.prod(axis.ShapeAsNumpy()))]


def _scale_count(tensor) -> int:
    """How many scales TFLM copies a zero point for: none unless the tensor has scales and zero points."""
    q = tensor.Quantization()
    if q is None or q.ScaleLength() == 0 or q.ZeroPointLength() == 0:
        return 0
    return q.ScaleLength()


def head_buffers(graph: Graph) -> list[Buffer]:
    """The buffers TFLM's planner gets, in its order, with AllocationInfoBuilder's lifetimes."""
    first: dict[int, int] = {t: 0 for t in graph.inputs + graph.outputs}
    last = dict(first)
    for scope, (_, ins, outs, _) in enumerate(graph.ops, start=1):
        for t in outs:
            first[t] = last[t] = scope
        for t in ins:
            if t >= 0:
                last[t] = scope
    for t in graph.outputs:
        last[t] = len(graph.ops)
    tensors = [Buffer(align(size), first.get(t, -1), last.get(t, -1))
               for t, size in enumerate(graph.sizes) if t not in graph.constant and size > 0]
    return tensors + [Buffer(align(size), op + 1, op + 1)  # after the tensors, as in AllocationInfo
                      for op, sizes in sorted(graph.scratch.items()) for size in sizes]


def tail_bytes(graph: Graph, pointer_bytes: int) -> dict[str, int]:
    """The tail's parts for a target with ``pointer_bytes``-byte pointers (see the module docstring)."""
    saved = (8 - pointer_bytes) * NODE_POINTERS  # OpData's few pointers are not taken out: an upper bound
    per_op = sum(OP_BYTES_64.get(name, UNKNOWN_OP_BYTES_64) - saved
                 + 2 * align(4 * channels) for name, _, _, channels in graph.ops)
    eval_tensors = align(len(graph.sizes) * align(2 * pointer_bytes + 4, pointer_bytes))  # data, dims, type
    # TfLiteTensor (64 / 40 bytes) and its TfLiteAffineQuantization with a one-entry zero point (32 / 20)
    io_tensors = len(graph.inputs + graph.outputs) * (96 if pointer_bytes == 8 else 60)
    fixed = FIXED_BYTES_64
    scratch_handles = pointer_bytes * graph.requests()  # a data pointer per scratch buffer
    return {"eval_tensors": eval_tensors, "io_tensors": io_tensors, "operators": per_op, "fixed": fixed,
            "scratch_handles": scratch_handles}


def requests_bytes(requests: int, pointer_bytes: int) -> int:
    """The head's ScratchBufferRequest slots (bytes, node, subgraph): those made so far and twelve spare."""
    return (requests + MAX_SCRATCH_REQUESTS) * (pointer_bytes + 8)


def planning_bytes(graph: Graph, buffer_count: int, pointer_bytes: int) -> int:
    """Head bytes the allocator needs while it plans: the requests, an AllocationInfo per tensor and request
    and a subgraph offset in temp memory, then (16-byte aligned) the planner's 40 bytes per buffer."""
    allocation_info = 16 + 2 * pointer_bytes  # bytes and output pointer, two lifetimes, offline offset, flag
    requests = graph.requests()
    temp = align(requests_bytes(requests, pointer_bytes), pointer_bytes)
    temp += (len(graph.sizes) + requests) * allocation_info + pointer_bytes
    return align(temp) + 40 * buffer_count


def temp_tensor_bytes(scales: list[int], pointer_bytes: int, requests: int = 0) -> int:
    """Head bytes of one Prepare's temporary TfLiteTensors, laid out one after another as AllocateTemp does
    after the scratch-buffer requests: each tensor, then its TfLiteAffineQuantization (two pointers, an
    int) and zero-point TfLiteIntArray."""
    end = requests_bytes(requests, pointer_bytes)
    for count in scales:
        end = align(end, pointer_bytes) + TFLITE_TENSOR_BYTES.get(pointer_bytes, 64)
        if count:
            end = align(end, pointer_bytes) + align(2 * pointer_bytes + 4, pointer_bytes) + 4 + 4 * count
    return end


def prepare_bytes(graph: Graph, tail: dict[str, int], pointer_bytes: int) -> int:
    """The arena each operator's Prepare needs (its temporaries in the head, the tail as it then is); the
    largest. Per-channel arrays are counted from their operator on, as TFLM allocates them in Prepare."""
    later = sum(2 * align(4 * channels) for _, _, _, channels in graph.ops)
    tail_now = sum(tail.values()) - tail["io_tensors"] - later
    need = 0
    tail_now -= tail["scratch_handles"]  # allocated after the last Prepare
    for op, (_, ins, outs, channels) in enumerate(graph.ops):
        tail_now += 2 * align(4 * channels)
        scales = [graph.scales[t] if t < len(graph.scales) else 1 for t in ins + outs if t >= 0]
        need = max(need, align(temp_tensor_bytes(scales, pointer_bytes, graph.requests(op))) + tail_now)
    return need


def arena_bytes(tflite_bytes: bytes, pointer_bytes: int = 4) -> dict:
    """The tensor arena TFLM needs for the model, with its parts, for ``pointer_bytes``-byte pointers."""
    graph = read_graph(tflite_bytes)
    buffers = head_buffers(graph)
    head, tail = place(buffers), tail_bytes(graph, pointer_bytes)
    prepare = prepare_bytes(graph, tail, pointer_bytes)
    # planning runs before the graph's input and output TfLiteTensors are allocated in the tail
    planning = planning_bytes(graph, len(buffers), pointer_bytes) + sum(tail.values()) - tail["io_tensors"]
    return {"arena_bytes": align(max(head + sum(tail.values()), prepare, planning)), "head_bytes": head,
            "tail_bytes": sum(tail.values()), "tail_parts": tail, "prepare_bytes": prepare,
            "planning_bytes": planning, "naive_head_bytes": sum(b.size for b in buffers),
            "pointer_bytes": pointer_bytes}
