"""The tflm target's arena model (edgepack/backends/tflm/arena.py) on hand-made buffers: the ordering TFLM's
GreedyMemoryPlanner uses (the real interpreter's figures are checked in tests/e2e/test_tflm_arena.py)."""
from __future__ import annotations

from edgepack.backends.tflm.arena import Buffer, Graph, arena_bytes, head_buffers, place, tail_bytes


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


def test_arena_is_the_sum_of_head_and_tail_rounded_to_16(monkeypatch):
    from edgepack.backends.tflm import arena

    monkeypatch.setattr(arena, "read_graph", lambda _: _chain(2))
    result = arena_bytes(b"", 4)
    assert result["arena_bytes"] % 16 == 0
    assert result["arena_bytes"] - 16 < result["head_bytes"] + result["tail_bytes"] <= result["arena_bytes"]
