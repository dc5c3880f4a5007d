"""Empirical bias correction (Nagel et al. 2019, "Data-Free Quantization through Weight Equalization and Bias
Correction", arXiv 1906.04721, sec. 4.2's empirical variant; NNCF's fast bias correction; AIMET's bias correction).

Rounding a layer's weights to int8 shifts the mean of its output channels: E[W~x] != E[Wx] when the rounding
error W~ - W does not average out against the inputs, which per-tensor weights on BatchNorm-folded layers make
common. The shift is a per-channel constant, so the bias can take it back: for each conv / fc, in graph order,
measure the mean per output channel of the fp32 model's output and of the same layer with its weights rounded
as PTQ will round them (the quantizer's own weight observer), on the calibration inputs, and add the difference
to the bias. The inputs come from the model whose earlier layers are already rounded and corrected, so a layer
also takes back the mean shift its inputs carry (as NNCF does). Activations stay fp32 here: their rounding is
unbiased, and their clipping is calibrated afterwards on the corrected model.

The model returned keeps its fp32 weights (PTQ rounds them again, identically) and only its biases change.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from edgepack.config import WeightGranularity
from edgepack.errors import StopForward
from edgepack.quantize.quantizer import weight_spec

STATS_BATCH = 32
ONE_PASS_BYTES = 2 << 30  # activations the one-pass correction may hold for the whole calibration set
LIVE_TENSORS = 4
LAYERS = (nn.Conv2d, nn.Linear)  # the modules the quantizer gives int8 weights (quantizer.COMPUTE_OPS)
METHOD = "empirical bias correction on the calibration set (Nagel et al. 2019 sec. 4.2)"


def quantized_weight(weight: torch.Tensor, granularity: WeightGranularity) -> torch.Tensor:
    """``weight`` rounded as PTQ rounds it (int8 symmetric [-127, 127], dequantized): the quantizer's own weight
    observer picks the scale, so the correction sees the very weights the plan will hold."""
    spec = weight_spec(WeightGranularity(granularity), qat=False)
    extra = {} if spec.ch_axis is None else {"ch_axis": spec.ch_axis}
    observer = spec.observer_or_fake_quant_ctr(dtype=spec.dtype, quant_min=spec.quant_min, quant_max=spec.quant_max,
                                               qscheme=spec.qscheme, **extra)  # as prepare_pt2e builds it
    observer(weight.detach())
    scale, zero_point = observer.calculate_qparams()
    if WeightGranularity(granularity) == WeightGranularity.PER_CHANNEL:
        return torch.fake_quantize_per_channel_affine(weight, scale.float(), zero_point.int(), 0, -127, 127)
    return torch.fake_quantize_per_tensor_affine(weight, float(scale), int(zero_point), -127, 127)


def _channel_sums(module: nn.Module, output: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(sum per output channel in float64, values per channel): channels are dim 1 of a conv's (N, C, H, W)
    output and the last dim of a Linear's."""
    out = output.detach().double()
    if isinstance(module, nn.Conv2d):
        out = out.transpose(0, 1).reshape(out.shape[1], -1)
    else:
        out = out.reshape(-1, out.shape[-1]).t()
    return out.sum(1), out.shape[1]


def layers_in_order(model: nn.Module, example: torch.Tensor) -> tuple[list[str], list[str]]:
    """(the conv / fc modules called once, in the order one forward pass calls them; those called more than once,
    whose one bias serves several inputs and is left alone)."""
    calls: list[str] = []
    handles = [m.register_forward_hook(lambda _m, _i, _o, name=name: calls.append(name))
               for name, m in model.named_modules() if isinstance(m, LAYERS)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    shared = sorted({n for n in calls if calls.count(n) > 1})
    return [n for i, n in enumerate(calls) if n not in shared and n not in calls[:i]], shared


@torch.no_grad()
def output_means(model: nn.Module, names: list[str], images: np.ndarray, stop_after: str | None = None) -> dict:
    """The mean per output channel (float64) of each named layer's output over ``images``; with ``stop_after``,
    each forward pass ends once that layer has run."""
    modules = dict(model.named_modules())
    sums: dict = {}

    def hook(name):
        def record(module, _inputs, output):
            total, count = _channel_sums(module, output)
            old_total, old_count = sums.get(name, (0, 0))
            sums[name] = (old_total + total, old_count + count)
            if name == stop_after:
                raise StopForward
        return record

    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    try:
        for start in range(0, len(images), STATS_BATCH):
            try:
                model(torch.from_numpy(np.ascontiguousarray(images[start:start + STATS_BATCH])))
            except StopForward:
                pass
    finally:
        for h in handles:
            h.remove()
    return {name: total / count for name, (total, count) in sums.items()}


def _add_to_bias(module: nn.Module, shift: torch.Tensor) -> None:
    """bias += shift (a layer without a bias gets one: its int32 bias is then the correction)."""
    channels = module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
    if module.bias is None:
        module.bias = nn.Parameter(torch.zeros(channels, dtype=module.weight.dtype), requires_grad=False)
    module.bias.add_(shift.to(module.bias.dtype))


def _shift_outputs(module: nn.Module, outputs: list, shift: torch.Tensor) -> list:
    """Each chunk's output plus the per-channel ``shift`` (what the corrected bias would have given)."""
    shape = (1, -1, 1, 1) if isinstance(module, nn.Conv2d) else (-1,)
    return [out + shift.to(out.dtype).view(shape) for out in outputs]


def _run_node(node: torch.fx.Node, model: torch.fx.GraphModule, modules: dict, env: dict, chunks: int) -> list:
    """``node``'s value for every chunk of the calibration set."""
    if node.op == "get_attr":
        value = model
        for part in node.target.split("."):
            value = getattr(value, part)
        return [value] * chunks
    outputs = []
    for i in range(chunks):
        args, kwargs = torch.fx.node.map_arg((node.args, node.kwargs), lambda n: env[n][i])
        if node.op == "call_module":
            outputs.append(modules[node.target](*args, **kwargs))
        elif node.op == "call_method":
            outputs.append(getattr(args[0], node.target)(*args[1:], **kwargs))
        else:
            outputs.append(node.target(*args, **kwargs))
    return outputs


def _one_pass(model: torch.fx.GraphModule, names: list[str], reference: dict, images: np.ndarray) -> dict:
    """The corrections from one pass over the graph, node by node over the whole calibration set (in chunks):
    a layer's outputs exist for every image before the next node runs, so its correction is measured and applied
    to them at once, and later layers read corrected inputs. Weights are already rounded."""
    modules, wanted, shifts = dict(model.named_modules()), set(names), {}
    chunks = [torch.from_numpy(np.ascontiguousarray(images[s:s + STATS_BATCH]))
              for s in range(0, len(images), STATS_BATCH)]
    readers = {node: len(node.users) for node in model.graph.nodes}
    env: dict = {}
    for node in model.graph.nodes:
        if node.op == "output":
            break
        env[node] = chunks if node.op == "placeholder" else _run_node(node, model, modules, env, len(chunks))
        if node.op == "call_module" and node.target in wanted:
            module = modules[node.target]
            sums = [_channel_sums(module, out) for out in env[node]]
            mean = sum(total for total, _ in sums) / sum(count for _, count in sums)
            shifts[node.target] = reference[node.target] - mean
            _add_to_bias(module, shifts[node.target])
            env[node] = _shift_outputs(module, env[node], shifts[node.target])
        for source in node.all_input_nodes:  # free what no later node reads
            readers[source] -= 1
            if readers[source] == 0:
                del env[source]
    return shifts


def _layer_by_layer(model: nn.Module, names: list[str], reference: dict, images: np.ndarray) -> dict:
    """The corrections from one partial forward pass per layer (any module; slower: about a third of a full
    pass per layer). Weights are already rounded."""
    modules, shifts = dict(model.named_modules()), {}
    for name in names:  # in graph order: each layer reads the rounded, corrected layers before it
        shifts[name] = reference[name] - output_means(model, [name], images, stop_after=name)[name]
        _add_to_bias(modules[name], shifts[name])
    return shifts


def _fits_one_pass(model: nn.Module, images: np.ndarray) -> bool:
    """A torch.fx graph whose activations for the whole calibration set stay under ONE_PASS_BYTES (the one pass
    keeps every live tensor for every image: about LIVE_TENSORS of the largest layer output)."""
    if not isinstance(model, torch.fx.GraphModule):
        return False
    largest = []
    handles = [m.register_forward_hook(lambda _m, _i, out: largest.append(out[0].numel()))
               for m in model.modules() if isinstance(m, LAYERS)]
    try:
        model(torch.from_numpy(np.ascontiguousarray(images[:1])))
    finally:
        for h in handles:
            h.remove()
    return max(largest, default=0) * 4 * LIVE_TENSORS * len(images) <= ONE_PASS_BYTES


@torch.no_grad()
def correct_biases(model: nn.Module, images: np.ndarray,
                   granularity: WeightGranularity = WeightGranularity.PER_CHANNEL) -> tuple[nn.Module, dict]:
    """A copy of the folded (and equalized) ``model`` whose conv / fc biases absorb the mean output shift that
    rounding the weights to int8 causes on ``images`` (the calibration inputs), and the manifest's record."""
    model = copy.deepcopy(model).eval()
    modules = dict(model.named_modules())
    names, shared = layers_in_order(model, torch.from_numpy(np.ascontiguousarray(images[:2])))
    reference = output_means(model, names, images)
    originals = {name: modules[name].weight.detach().clone() for name in names}
    one_pass = _fits_one_pass(model, images)
    try:
        for name in names:
            modules[name].weight.copy_(quantized_weight(modules[name].weight, granularity))
        shifts = (_one_pass if one_pass else _layer_by_layer)(model, names, reference, images)
    finally:
        for name, weight in originals.items():
            modules[name].weight.copy_(weight)
    record = _record(shifts, shared, len(images), granularity)
    record["passes"] = "one pass over the graph" if one_pass else "one partial pass per layer"
    return model, record


def _record(shifts: dict, shared: list[str], images: int, granularity: WeightGranularity) -> dict:
    """What the manifest keeps: how many layers, the largest shift and where, the layers left alone."""
    largest = {name: float(s.abs().max()) for name, s in shifts.items() if len(s)}
    worst = max(largest, key=largest.get) if largest else None
    return {
        "applied": True, "method": METHOD, "weights": WeightGranularity(granularity).value,
        "calibration_images": images, "layers": len(shifts),
        "max_abs_bias_shift": round(largest[worst], 6) if worst else 0.0, "max_shift_layer": worst,
        "mean_abs_bias_shift": round(float(torch.cat([s.abs() for s in shifts.values()]).mean()), 6) if shifts else 0.0,
        "skipped_shared_layers": shared,
    }
