"""BatchNorm folding into the preceding (full, depthwise or pointwise) convolution, or BatchNorm1d into the
Linear before it.

``can_fold`` checks, ``fold`` rewrites (torch.fx's conv+bn fusion, the same arithmetic as
``torch.nn.utils.fusion.fuse_conv_bn_eval``), and ``fold`` asserts no BatchNorm is left.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from edgepack.errors import UnsupportedModelError


FOLDABLE = {nn.BatchNorm2d: nn.Conv2d, nn.BatchNorm1d: nn.Linear}  # BatchNorm -> the layer it folds into


def batchnorm_inputs(model: nn.Module) -> list[tuple[str, str | None]]:
    """(batchnorm name, name of the conv (or Linear) feeding it or None) for every BatchNorm2d (BatchNorm1d)."""
    traced = torch.fx.symbolic_trace(model)
    modules = dict(traced.named_modules())
    pairs = []
    for node in traced.graph.nodes:
        feeder = FOLDABLE.get(type(modules[node.target])) if node.op == "call_module" else None
        if feeder is not None:
            src = node.args[0]
            ok = (
                isinstance(src, torch.fx.Node) and src.op == "call_module"
                and isinstance(modules[src.target], feeder) and len(src.users) == 1
            )
            pairs.append((node.target, src.target if ok else None))
    return pairs


def can_fold(model: nn.Module) -> tuple[bool, str]:
    """True if every BatchNorm2d (BatchNorm1d) directly follows a Conv2d (Linear) whose output nothing else reads."""
    try:
        pairs = batchnorm_inputs(model)
    except Exception as e:  # symbolic tracing failed: data-dependent control flow etc.
        return False, f"model cannot be traced by torch.fx ({type(e).__name__}: {e})"
    orphans = [bn for bn, conv in pairs if conv is None]
    if orphans:
        return False, f"BatchNorm layer(s) {', '.join(orphans)} do not directly follow a Conv2d (a Linear for BatchNorm1d)"
    return True, ""


def fold(model: nn.Module) -> torch.fx.GraphModule:
    """An eval-mode copy of ``model`` with every BatchNorm2d (BatchNorm1d) folded into its conv's (Linear's) weight
    and bias (torch.fx's fuse: fuse_conv_bn_eval, fuse_linear_bn_eval)."""
    from torch.fx.experimental.optimization import fuse

    ok, why = can_fold(model)
    if not ok:
        raise UnsupportedModelError(f"cannot fold BatchNorm: {why}; put each BatchNorm2d right after its Conv2d and "
                                    "each BatchNorm1d right after its Linear")
    folded = fuse(copy.deepcopy(model).eval(), inplace=True)
    left = [n for n, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise UnsupportedModelError(f"BatchNorm layers left after folding: {', '.join(left)}")
    return folded


@torch.no_grad()
def folding_error(model: nn.Module, folded: nn.Module, images: torch.Tensor) -> float:
    """max |logit difference| between the unfolded and the folded model on ``images``."""
    return float((model.eval()(images) - folded(images)).abs().max())
