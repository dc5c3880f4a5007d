"""Model report: per-layer output shape, parameters and Mult-Adds, totals and per-type shares.

Counting follows the paper: Mult-Adds are the multiply-accumulates of conv and FC layers;
params are conv and FC weights plus FC bias (BatchNorm is reported apart: it folds away).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

LAYER_TYPES = ("Conv 1x1", "Conv DW 3x3", "Conv DW 5x5", "Conv 3x3", "Fully Connected")  # the shares' order


@dataclass(frozen=True)
class LayerProfile:
    name: str
    type: str
    output_shape: tuple[int, ...]
    params: int
    macs: int


def layer_type(m: nn.Module) -> str:
    if isinstance(m, nn.Linear):
        return "Fully Connected"
    k = "x".join(map(str, m.kernel_size))
    if m.groups > 1 and m.groups == m.in_channels:
        return f"Conv DW {k}"
    return f"Conv {k}"


@torch.no_grad()
def profile(model: nn.Module, input_shape: tuple[int, int, int]) -> list[LayerProfile]:
    rows: list[LayerProfile] = []
    names = {m: n for n, m in model.named_modules()}

    def hook(m, _inp, out):
        if isinstance(m, nn.Conv2d):
            per_output = (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
            macs, params = out.numel() * per_output, m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
        else:
            macs, params = m.in_features * m.out_features, m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
        rows.append(LayerProfile(names[m], layer_type(m), tuple(out.shape[1:]), params, macs))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        was_training = model.training
        model.eval()(torch.zeros(1, *input_shape))
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return rows


def batchnorm_params(model: nn.Module) -> int:
    return sum(m.weight.numel() + m.bias.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.affine)


def summary(model: nn.Module, input_shape: tuple[int, int, int]) -> dict:
    rows = profile(model, input_shape)
    params, macs = sum(r.params for r in rows), sum(r.macs for r in rows)
    shares = {}
    for t in sorted({r.type for r in rows}, key=lambda t: (LAYER_TYPES.index(t) if t in LAYER_TYPES else 99, t)):
        p, m = sum(r.params for r in rows if r.type == t), sum(r.macs for r in rows if r.type == t)
        shares[t] = {"macs": m, "params": p, "macs_share": m / macs, "params_share": p / params}
    return {
        "params": params, "macs": macs, "batchnorm_params": batchnorm_params(model),
        "input_shape": list(input_shape), "by_type": shares,
        "layers": [{**asdict(r), "output_shape": list(r.output_shape)} for r in rows],
    }


def _amount(n: int, decimals: int) -> str:
    """The paper's millions (569M, 4.2M) for a MobileNet; exact thousands for a small model (82,944, not 0M)."""
    return f"{n / 1e6:.{decimals}f}M" if n >= 1e6 else f"{n:,}"


def format_summary(s: dict, title: str) -> str:
    w = max([22] + [len(r["name"]) + 1 for r in s["layers"]])  # MobileNetV3's squeeze-excite names are longer
    lines = [title, f"{'layer':<{w}}{'type':<17}{'output':>16}{'params':>12}{'Mult-Adds':>14}"]
    for r in s["layers"]:
        lines.append(f"{r['name']:<{w}}{r['type']:<17}{'x'.join(map(str, r['output_shape'])):>16}{r['params']:>12,}{r['macs']:>14,}")
    lines.append(f"{'total':<{w + 33}}{s['params']:>12,}{s['macs']:>14,}")
    lines.append(f"= {_amount(s['macs'], 0)} Mult-Adds, {_amount(s['params'], 1)} parameters "
                 f"(+{s['batchnorm_params']:,} BatchNorm, folded away at compile)")
    lines.append(f"\n{'type (paper Table 2)':<22}{'Mult-Adds':>12}{'params':>12}")
    for t, v in s["by_type"].items():
        lines.append(f"{t:<22}{v['macs_share']:>11.2%}{v['params_share']:>12.2%}")
    return "\n".join(lines)
