"""The model summary: every layer the visualizer accepts, with its output shape."""
from __future__ import annotations

import torch
from torch import nn

CONTAINERS = (nn.Sequential, nn.ModuleDict, nn.ModuleList)


def layer_table(net: nn.Module, input_shape: tuple[int, int, int]) -> list[dict]:
    """One row per leaf layer (module name, type, output shape for one image, parameter count),
    in execution order, from a single forward pass of a blank image."""
    rows: dict[str, dict] = {}
    handles = []
    for name, module in net.named_modules():
        if not name or isinstance(module, CONTAINERS):
            continue

        def hook(mod, inp, out, name=name):
            shape = list(out.shape[1:]) if isinstance(out, torch.Tensor) else None
            rows[name] = {"name": name, "type": type(mod).__name__, "output_shape": shape,
                          "params": sum(p.numel() for p in mod.parameters(recurse=False))}
        handles.append(module.register_forward_hook(hook))
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            param = next(net.parameters(), None)
            device = param.device if param is not None else "cpu"
            net(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    return list(rows.values())


def format_layer_table(rows: list[dict], title: str = "") -> str:
    total = sum(r["params"] for r in rows)
    width = max([len(r["name"]) for r in rows] + [10])
    lines = [title] if title else []
    lines.append(f"{'layer (use as layer=...)':<{max(width, 24)}}  {'type':<12} {'output shape':<16} {'params':>9}")
    for r in rows:
        shape = "x".join(map(str, r["output_shape"])) if r["output_shape"] else "-"
        lines.append(f"{r['name']:<{max(width, 24)}}  {r['type']:<12} {shape:<16} {r['params']:>9,}")
    lines.append(f"total parameters: {total:,}")
    return "\n".join(lines)
