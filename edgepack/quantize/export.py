"""QDQ ONNX export of the converted PT2E graph (torch.onnx.export, dynamo=True)."""
from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import torch

from edgepack.quantize.ptq import export

# torch.onnx records each node's Python stack trace, with absolute paths (the model's source, site-packages),
# so the file's bytes would depend on where edgepack and torch are installed.
STACK_TRACE = "pkg.torch.onnx.stack_trace"


def export_qdq_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    """Write ``model`` (float or quantized) as ONNX with a dynamic batch; QDQ nodes carry the int8 scheme."""
    import onnx

    ep = export(model, example)
    with warnings.catch_warnings(), _quiet_logs():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(ep, (example,), dynamo=True, verbose=False, optimize=True,
                                    input_names=["input"], output_names=["logits"])
    proto = program.model_proto
    proto.producer_name, proto.producer_version = "edgepack", ""
    _drop_source_locations(proto)
    onnx.checker.check_model(proto)
    Path(path).write_bytes(proto.SerializeToString(deterministic=True))
    return Path(path)


def _drop_source_locations(proto) -> None:
    """Remove the stack-trace metadata (and any doc_string) of every node, in subgraphs and functions too:
    what is left (op names, module scopes) is the same wherever the code lives."""
    graphs = [proto.graph, *proto.functions]
    while graphs:
        for node in graphs.pop().node:
            kept = [prop for prop in node.metadata_props if prop.key != STACK_TRACE]
            del node.metadata_props[:]
            node.metadata_props.extend(kept)
            node.doc_string = ""
            for attr in node.attribute:
                graphs += ([attr.g] if attr.HasField("g") else []) + list(attr.graphs)


class _quiet_logs:
    """torch.onnx prints progress lines through logging and stdout; keep the CLI output ours."""

    def __enter__(self):
        self._level = logging.getLogger("torch.onnx").level
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        import contextlib
        self._redirect = contextlib.redirect_stdout(io.StringIO())
        self._redirect.__enter__()

    def __exit__(self, *exc):
        self._redirect.__exit__(*exc)
        logging.getLogger("torch.onnx").setLevel(self._level)
