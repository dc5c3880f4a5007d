"""The tflm target's arena model (edgepack/backends/tflm/arena.py) on hand-made buffers: the ordering TFLM's
GreedyMemoryPlanner uses (the real interpreter's figures are checked in tests/e2e/test_tflm_arena.py)."""
from __future__ import annotations

from edgepack.backends.tflm.arena import (Buffer, Graph, align, arena_bytes, head_buffers, place, planning_bytes,
                                         prepare_bytes, tail_bytes, temp_tensor_bytes)


def test_equal_sizes_are_placed_later_buffer_first_as_tflm_does():
    """TFLM fills its ordering from the tail and sorts stably, so of two equal buffers the later one gets
    offset 0 (edgepack's C planner keeps forward order: the earlier one)."""
    early, late = Buffer(16, 0, 1), Buffer(16, 0, 1)
    assert place([early, late]) == 32
    assert (late.offset, early.offset) == (0, 16)


def test_larger_buffers_are_placed_first_and_smaller_ones_fill_gaps():
    big_a, big_b, small = Buffer(64, 0, 1), Buffer(64, 2, 3), Buffer(32, 1, 2)
    assert place([small, big_a, big_b]) == 96
    assert (big_b.offset, big_a.offset, small.offset) == (0, 0, 64)


def _chain(ops: int) -> Graph:
    """input -> op 0 -> ... -> output, one 100-byte tensor per edge, one 4-channel weight per op."""
    sizes = [100] * (ops + 1) + [36] * ops
    return Graph(sizes, set(range(ops + 1, 2 * ops + 1)), [0], [ops],
                 [("CONV_2D", [i, ops + 1 + i], [i + 1], 4) for i in range(ops)])


def test_lifetimes_follow_tflm_scopes_and_constants_take_no_arena():
    """Scope 0 holds the graph's inputs, op i is scope i + 1; the output is created by its op and lives to
    the end; sizes are rounded up to 16 bytes."""
    buffers = head_buffers(_chain(3))
    assert [(b.size, b.first, b.last) for b in buffers] == [(112, 0, 1), (112, 1, 2), (112, 2, 3), (112, 3, 3)]


def test_pointer_size_changes_only_pointer_sized_parts():
    graph = _chain(3)
    host, mcu = tail_bytes(graph, 8), tail_bytes(graph, 4)
    assert host["fixed"] == mcu["fixed"]
    assert host["eval_tensors"] == 16 * -(-7 * 24 // 16) and mcu["eval_tensors"] == 16 * -(-7 * 12 // 16)
    assert host["operators"] - mcu["operators"] == 3 * 8 * 4  # eight pointers per node, three nodes


def test_arena_is_the_largest_of_plan_prepare_and_planning_rounded_to_16(monkeypatch):
    """The arena must hold the planned head with the tail, every Prepare, and the planner's own arrays."""
    from edgepack.backends.tflm import arena

    monkeypatch.setattr(arena, "read_graph", lambda _: _chain(2))
    result = arena_bytes(b"", 4)
    assert result["arena_bytes"] % 16 == 0
    need = max(result["head_bytes"] + result["tail_bytes"], result["prepare_bytes"], result["planning_bytes"])
    assert result["arena_bytes"] - 16 < need <= result["arena_bytes"]


def test_mean_scratch_buffers_are_planned_in_their_operator_and_cost_planner_room():
    """TFLM's MEAN asks for scratch buffers in Prepare: each is a buffer alive in its operator only, after
    the tensors, and each takes request, AllocationInfo and planner room while TFLM plans."""
    plain = _chain(2)
    with_mean = _chain(2)
    with_mean.scratch = {1: [64, 16, 4]}
    buffers = head_buffers(with_mean)
    assert [(b.size, b.first, b.last) for b in buffers[-3:]] == [(64, 2, 2), (16, 2, 2), (16, 2, 2)]
    assert len(buffers) == len(head_buffers(plain)) + 3
    grown = planning_bytes(with_mean, len(buffers), 8) - planning_bytes(plain, len(buffers) - 3, 8)
    assert grown >= 3 * (16 + 32 + 40)  # a request, an AllocationInfo and planner arrays per buffer, 64-bit
    assert tail_bytes(with_mean, 8)["scratch_handles"] == 3 * 8 and tail_bytes(plain, 8)["scratch_handles"] == 0


def test_prepare_temporaries_hold_a_zero_point_per_channel_of_weights_and_bias():
    """A per-channel FULLY_CONNECTED's Prepare copies the weights' and the bias's zero points (4 bytes a
    channel each) into the head; one-scale input and output tensors cost the same whatever the width."""
    for pointer_bytes in (4, 8):
        narrow, wide = (temp_tensor_bytes([1, c, c, 1], pointer_bytes) for c in (128, 640))
        assert wide - narrow == 2 * 4 * (640 - 128)
    assert temp_tensor_bytes([1, 640, 640, 1], 4) < temp_tensor_bytes([1, 640, 640, 1], 8)
    assert temp_tensor_bytes([0, 0], 8) < temp_tensor_bytes([1, 1], 8)  # float tensors: no quantization


def _fc_chain(widths: list[int]) -> Graph:
    """A fully connected chain on vectors, per-channel weights and biases (the fc_autoencoder's shape)."""
    n = len(widths) - 1
    acts, weights, biases = list(range(n + 1)), list(range(n + 1, 2 * n + 1)), list(range(2 * n + 1, 3 * n + 1))
    sizes = widths + [widths[i] * widths[i + 1] for i in range(n)] + [4 * w for w in widths[1:]]
    scales = [1] * (n + 1) + widths[1:] + widths[1:]
    ops = [("FULLY_CONNECTED", [acts[i], weights[i], biases[i]], [acts[i + 1]], widths[i + 1]) for i in range(n)]
    return Graph(sizes, set(weights + biases), [0], [n], ops, scales)


def test_a_wide_fully_connected_layer_on_small_vectors_is_bounded_by_its_prepare_not_the_plan(monkeypatch):
    from edgepack.backends.tflm import arena

    monkeypatch.setattr(arena, "read_graph", lambda _: _fc_chain([640, 128, 8, 128, 640]))
    result = arena_bytes(b"", 8)
    assert result["prepare_bytes"] > result["head_bytes"] + result["tail_bytes"]
    assert result["arena_bytes"] == align(result["prepare_bytes"])


def test_per_channel_arrays_of_later_operators_are_not_in_the_tail_during_an_earlier_prepare():
    """TFLM allocates an operator's multipliers and shifts in its own Prepare: the wide layer prepared last
    has the narrow one's arrays in the tail already, prepared first it does not."""
    wide_last, wide_first = _fc_chain([8, 16, 640]), _fc_chain([8, 640, 16])
    assert tail_bytes(wide_last, 8) == tail_bytes(wide_first, 8)
    last, first = (prepare_bytes(g, tail_bytes(g, 8), 8) for g in (wide_last, wide_first))
    assert last - first == 2 * align(4 * 16)  # the narrow layer's int32 multipliers and shifts
