"""Which fp32 module call each int8 plan layer stands for: debug compares a layer with that call's tensors, and
compile records the calls' module paths (``features.3.1.0``) in the manifest once, so bench, report and debug
name a layer alike without rebuilding the model (a bench imports no torch)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from edgepack import ops
from edgepack.errors import ConfigError
from edgepack.plan.plan import Plan
from edgepack.quantize.layers import FUNCTIONAL_KINDS, PLAN_KIND_MODULES

ACTIVATIONS = (nn.ReLU, nn.ReLU6)
FUNCTIONAL_ACTIVATIONS = {"relu": torch.relu, "relu6": lambda t: t.clamp(0, 6)}  # a fused clamp's fp32 twin
MISMATCH_FIX = "pass the model the artifact was compiled from"


def _module_calls(folded: nn.Module, images: np.ndarray, name: str) -> list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]]:
    """(module path, module, input, output) of every leaf module call, in call order."""
    paths = {m: p for p, m in folded.named_modules()}
    calls = []
    hooks = [m.register_forward_hook(lambda m, i, o: calls.append((paths[m], m, i[0].detach(), o.detach())))
             for m in folded.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            folded(torch.from_numpy(images))
    except Exception as e:  # the user's model, not edgepack: its own words, one line
        raise ConfigError(f"model {name} cannot run the artifact's {tuple(images.shape[1:])} inputs ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:200]}): {MISMATCH_FIX}") from None
    finally:
        for h in hooks:
            h.remove()
    return calls


def fp32_layer_io(folded: nn.Module, plan: Plan, images: np.ndarray,
                  name: str | None = None) -> list[tuple[np.ndarray, np.ndarray, str] | None]:
    """(input, output, module path) of the fp32 counterpart of each plan layer, matched by call order; None for
    a layer no module call makes (an add's tensor sum, a functional pool). A model that cannot run the plan's
    inputs, or whose layers do not line up with the plan's, is a ConfigError naming the layer."""
    name = name or type(folded).__name__
    calls = _module_calls(folded, images, name)
    pairs, pos = [], 0
    for layer in plan.layers:
        if ops.get(layer.kind).arity > 1:  # e.g. an add: a tensor sum, not a module call, so no hook sees it
            pairs.append(None)
            continue
        modules, start = PLAN_KIND_MODULES.get(layer.kind, ()), pos
        while pos < len(calls) and not isinstance(calls[pos][1], modules):
            pos += 1
        if pos == len(calls) and layer.kind in FUNCTIONAL_KINDS:  # e.g. F.max_pool2d: no module to hook
            pairs.append(None)
            pos = start
            continue
        if pos == len(calls):
            raise ConfigError(f"model {name} does not match the artifact: plan layer {layer.name} ({layer.kind}) has no "
                              f"counterpart among its modules: {MISMATCH_FIX}")
        path, _, x, y = calls[pos]
        pos += 1
        if layer.activation != "none" and pos < len(calls) and isinstance(calls[pos][1], ACTIVATIONS):
            y = calls[pos][3]
            pos += 1
        elif layer.activation in FUNCTIONAL_ACTIVATIONS:  # torch.relu / F.relu6 in forward: no module to hook
            y = FUNCTIONAL_ACTIVATIONS[layer.activation](y)
        if (x[0].numel(), y[0].numel()) != (int(np.prod(layer.input_shape)), int(np.prod(layer.output_shape))):
            raise ConfigError(f"model {name} does not match the artifact: plan layer {layer.name} ({layer.kind}) maps "
                              f"{tuple(layer.input_shape)} to {tuple(layer.output_shape)}, the model's layer maps "
                              f"{tuple(x.shape[1:])} to {tuple(y.shape[1:])}: {MISMATCH_FIX}")
        pairs.append((x.numpy(), y.numpy(), path))
    return pairs


def module_paths(folded: nn.Module, plan: Plan) -> list[str] | None:
    """Each plan layer's module path ("" for a layer no module call makes: an add, a functional pool), from one
    zero-image probe of the folded model the plan was quantized from: what compile records in the manifest
    (plan.module_paths). None when the model's calls do not line up with the plan's layers: the plan's own
    names then stay, as for an imported .tflite (a layer's name is no reason to fail a compile)."""
    probe = np.zeros((1, *plan.input_shape), np.float32)
    try:
        return [io[2] if io else "" for io in fp32_layer_io(folded, plan, probe)]
    except ConfigError:
        return None
