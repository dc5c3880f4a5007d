"""The ONNX file an artifact ships (qdq.onnx / model.onnx) holds no source locations: torch.onnx records each
node's Python stack trace with absolute paths, which made the bytes depend on where edgepack was installed."""
from __future__ import annotations

import onnx
import torch
from torch import nn

from edgepack.quantize.export import STACK_TRACE, export_qdq_onnx


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, 2, 1), nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def test_exported_onnx_names_no_source_file(tmp_path):
    torch.manual_seed(0)
    path = export_qdq_onnx(Tiny().eval(), torch.randn(2, 3, 8, 8), tmp_path / "model.onnx")
    data = path.read_bytes()
    assert __file__.encode() not in data and b"site-packages" not in data
    proto = onnx.load_from_string(data)
    assert proto.graph.node and all(p.key != STACK_TRACE for n in proto.graph.node for p in n.metadata_props)
    assert any(p.key == "namespace" for n in proto.graph.node for p in n.metadata_props)  # the rest is kept
