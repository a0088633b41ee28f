"""Sanity checks for saliency maps (Adebayo et al., 2018): cascading model randomization.

A map that explains the MODEL must change when the model's weights are destroyed. Starting
from the top layer and going down, the layers of a deep copy of the model are re-initialized
one after the other (cumulatively), the attribution is recomputed, and its per-image
Spearman rank correlation with the trained model's map is reported. A method whose
correlation stays high (e.g. an edge detector, or a map that ignores the model) fails.

:func:`spearman` uses average ranks for ties (the textbook Spearman rho, as
``scipy.stats.spearmanr``) and returns 0 for a row that is constant in either input.
"""
from __future__ import annotations

import contextlib
import copy
import math
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from pipeline.evaluation.bottom_reuse import BottomReuse

__all__ = ["rankdata", "spearman", "parameter_layers", "randomization_cascade", "head_cascades",
           "merge_cascades"]

AttributeFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
REUSE_BYTES = 2 << 30  # the cascade's stored bottom outputs, at most (2 GiB; see bottom_reuse)

HeadsAttributeFn = Callable[[nn.Module, torch.Tensor, Mapping[str, torch.Tensor]], Mapping[str, torch.Tensor]]


def rankdata(values: torch.Tensor) -> torch.Tensor:
    """Average ranks (1-based, ties share the mean of their positions) along dim 1 of a
    ``[N, P]`` tensor, in float64."""
    if values.ndim != 2:
        raise ValueError(f"rankdata expects [N, P], got {tuple(values.shape)}")
    n, p = values.shape
    if p == 0:
        return torch.empty(n, 0, dtype=torch.float64, device=values.device)
    sorted_vals, order = torch.sort(values, dim=1, stable=True)
    pos = torch.arange(p, device=values.device).expand(n, p)
    change = sorted_vals[:, 1:] != sorted_vals[:, :-1]
    true_col = torch.ones(n, 1, dtype=torch.bool, device=values.device)
    starts = torch.cat([true_col, change], 1)     # first element of a tie group
    ends = torch.cat([change, true_col], 1)       # last element of a tie group
    first = torch.where(starts, pos, torch.zeros_like(pos)).cummax(1).values
    last = torch.where(ends, pos, torch.full_like(pos, p - 1)).flip(1).cummin(1).values.flip(1)
    avg = (first + last).to(torch.float64) / 2 + 1
    return torch.empty_like(avg).scatter_(1, order, avg)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per row ``[N]`` of two ``[N, ...]`` tensors, flattened.

    Average ranks for ties; a row constant in ``a`` or in ``b`` gives 0 (never NaN).
    Inputs should be finite. Computed in float64, returned as float32.
    """
    a = torch.as_tensor(a)
    b = torch.as_tensor(b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.ndim < 2:
        raise ValueError(f"expected [N, ...] with at least 2 dims, got {tuple(a.shape)}")
    ra = rankdata(a.detach().flatten(1))
    rb = rankdata(b.detach().to(a.device).flatten(1))
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    num = (ra * rb).sum(1)
    den = torch.sqrt((ra * ra).sum(1) * (rb * rb).sum(1))
    ok = den > 0
    rho = torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))
    return rho.clamp(-1.0, 1.0).float()


def parameter_layers(model: nn.Module, prefixes: Sequence[str] | None = None) -> list[str]:
    """Names of the sub-modules that own parameters (``recurse=False``), in registration
    order, which for the project's models is the forward order (bottom to top). The root
    module's own parameters, if any, are not listed.

    ``prefixes`` keeps only the layers under those module names, e.g.
    ``("features", "heads.angle")`` for one head of the multihead model (the other heads
    cannot change that head's map, so a cascade through them shows correlation 1)."""
    keep = None if prefixes is None else [p.rstrip(".") for p in ([prefixes] if isinstance(prefixes, str) else prefixes)]
    return [name for name, mod in model.named_modules()
            if name and next(mod.parameters(recurse=False), None) is not None
            and (keep is None or any(name == p or name.startswith(p + ".") for p in keep))]


def _reinitialize(module: nn.Module) -> None:
    """Fresh parameters for ``module``: its ``reset_parameters()`` (batch norm: also its
    running statistics), else a PyTorch-default-like uniform init of its own parameters."""
    if hasattr(module, "reset_running_stats"):
        module.reset_running_stats()
    if callable(getattr(module, "reset_parameters", None)):
        module.reset_parameters()
        return
    with torch.no_grad():
        for param in module.parameters(recurse=False):
            fan_in = param[0].numel() if param.ndim >= 2 else param.numel()
            bound = 1.0 / math.sqrt(max(fan_in, 1))
            param.uniform_(-bound, bound)


def randomization_cascade(model: nn.Module, attribute_fn: AttributeFn, x: torch.Tensor,
                          targets: torch.Tensor, seed: int = 0,
                          layers: list[str] | None = None, reuse_bytes: int = REUSE_BYTES) -> list[dict]:
    """Cascading randomization, top layer first, on a deep copy of ``model``.

    ``attribute_fn(model_copy, x, targets) -> maps [N, H, W]``. ``layers`` (default
    :func:`parameter_layers`) is ordered bottom to top; step ``k`` (1-based) re-initializes
    ``layers[-k]`` under ``torch.manual_seed(seed + k)`` (the caller's RNG state is saved
    and restored), keeping the ``k - 1`` layers above it randomized.

    Returns ``steps + 1`` dicts: ``{"layer", "randomized", "spearman" [N], "spearman_abs"
    [N] (of |map|), "mean" (of "spearman"), "maps" [N, H, W]}``; step 0 has ``layer
    "none"`` and is the trained model (correlation 1, or 0 for a constant map). ``model``
    itself is never modified; the copy keeps its train/eval mode.

    ``reuse_bytes`` > 0: the leaves below the first randomized layer compute each input once and
    serve every later step (:class:`~pipeline.evaluation.bottom_reuse.BottomReuse`, storing at most
    that many bytes); 0 recomputes the whole model at every step. The maps are the same.
    """
    names = parameter_layers(model) if layers is None else list(layers)
    _check_layers(model, names)

    work = copy.deepcopy(model)
    cuda_devices = sorted({p.device.index or 0 for p in work.parameters() if p.device.type == "cuda"})
    reuse = BottomReuse(model, reuse_bytes) if reuse_bytes > 0 else None
    randomized: list[str] = []

    def attribute() -> torch.Tensor:
        with torch.enable_grad(), _reusing(reuse, work, randomized):
            maps = attribute_fn(work, x, targets)
        return torch.as_tensor(maps).detach()

    reference = attribute()
    results = [_step("none", [], reference, reference)]
    for k, name in enumerate(reversed(names), start=1):
        module = work.get_submodule(name)
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(seed + k)
            _reinitialize(module)
        randomized.append(name)
        results.append(_step(name, randomized, attribute(), reference))
    return results


def _reusing(reuse: BottomReuse | None, work: nn.Module, randomized: Sequence[str]):
    return reuse.active(work, randomized) if reuse is not None else contextlib.nullcontext()


def _step(layer: str, randomized: list[str], maps: torch.Tensor, reference: torch.Tensor) -> dict:
    """One step of a cascade: the maps and their rank correlations with the trained model's."""
    rho = spearman(maps, reference)
    return {
        "layer": layer,
        "randomized": list(randomized),
        "spearman": rho,
        "spearman_abs": spearman(maps.abs(), reference.abs()),
        "mean": float(rho.mean()) if rho.numel() else float("nan"),
        "maps": maps,
    }


def _check_layers(model: nn.Module, names: Sequence[str]) -> None:
    available = dict(model.named_modules())
    for name in names:
        if name not in available:
            raise ValueError(f"unknown layer {name!r}; layers with parameters: {parameter_layers(model)}")
        if next(available[name].parameters(recurse=False), None) is None:
            raise ValueError(f"layer {name!r} has no parameters of its own")


def head_cascades(model: nn.Module, attribute_fn: HeadsAttributeFn, x: torch.Tensor,
                  targets: Mapping[str, torch.Tensor], layers: Mapping[str, Sequence[str]],
                  seeds: Sequence[int], reuse_bytes: int = REUSE_BYTES) -> dict[str, list[list[dict]]]:
    """:func:`randomization_cascade` for several heads and seeds at once: ``{head: [one cascade
    per seed]}``, each equal to ``randomization_cascade(model, fn_head, x, targets[head],
    seed, layers[head])`` with ``fn_head`` the one-head view of ``attribute_fn``.

    ``attribute_fn(model_copy, x, {head: targets}) -> {head: maps [N, H, W]}`` computes every
    head's maps in one call (a multi-head model's methods share the forward pass). Step ``k``
    re-initializes ``layers[h][-k]`` of every head ``h`` under ``torch.manual_seed(seed + k)``
    -- the modules and seeds of each head's own cascade -- so one model serves every head at
    that step. This is exact when a head's maps depend only on the modules in its own list
    (e.g. ``("features", "heads.<h>")`` of the multi-head model: the other heads' layers are
    randomized too, but they do not feed head ``h``). A module listed for several heads must stand
    at the same step (distance from the top) in each list; heads for which it does not run in
    separate passes.

    The trained model's maps (step 0) are computed once and shared by every seed; all maps of a
    step run in one ``attribute_fn`` call. ``model`` is never modified. ``reuse_bytes``: as in
    :func:`randomization_cascade` (the bottom's outputs are shared by every seed and step).
    """
    heads = list(targets)
    if not heads or set(heads) != set(layers):
        raise ValueError(f"targets {heads} and layers {list(layers)} must name the same heads")
    names = {h: list(layers[h]) for h in heads}
    groups: list[tuple[list[str], dict[str, int]]] = []  # heads whose shared layers stand at the same step
    for h in heads:
        _check_layers(model, names[h])
        mine = {name: k for k, name in enumerate(reversed(names[h]), start=1)}
        for members, step_of in groups:
            if all(step_of.get(name, k) == k for name, k in mine.items()):
                members.append(h)
                step_of.update(mine)
                break
        else:
            groups.append(([h], mine))
    out: dict[str, list[list[dict]]] = {}
    for members, _ in groups:
        out.update(_head_cascades(model, attribute_fn, x, {h: targets[h] for h in members},
                                  {h: names[h] for h in members}, seeds, reuse_bytes))
    return {h: out[h] for h in heads}


def _head_cascades(model, attribute_fn, x, targets, names, seeds, reuse_bytes) -> dict[str, list[list[dict]]]:
    heads = list(targets)
    depth = max(len(v) for v in names.values())
    reuse = BottomReuse(model, reuse_bytes) if reuse_bytes > 0 else None
    reference = _attribute(attribute_fn, copy.deepcopy(model), x, targets, reuse, [])
    first = {h: _step("none", [], reference[h], reference[h]) for h in heads}
    out: dict[str, list[list[dict]]] = {h: [] for h in heads}
    for seed in seeds:
        work = copy.deepcopy(model)
        cuda_devices = sorted({p.device.index or 0 for p in work.parameters() if p.device.type == "cuda"})
        runs = {h: [first[h]] for h in heads}
        randomized: list[str] = []
        for k in range(1, depth + 1):
            for name in dict.fromkeys(names[h][-k] for h in heads if k <= len(names[h])):
                with torch.random.fork_rng(devices=cuda_devices):
                    torch.manual_seed(seed + k)
                    _reinitialize(work.get_submodule(name))
                randomized.append(name)
            live = [h for h in heads if k <= len(names[h])]
            maps = _attribute(attribute_fn, work, x, {h: targets[h] for h in live}, reuse, randomized)
            for h in live:
                runs[h].append(_step(names[h][-k], names[h][-k:][::-1], maps[h], reference[h]))
        for h in heads:
            out[h].append(runs[h])
    return out


def _attribute(attribute_fn, work, x, targets, reuse=None, randomized=()) -> dict[str, torch.Tensor]:
    with torch.enable_grad(), _reusing(reuse, work, randomized):
        maps = attribute_fn(work, x, targets)
    return {h: torch.as_tensor(maps[h]).detach() for h in targets}


def merge_cascades(runs: Sequence[list[dict]]) -> list[dict]:
    """One cascade from several :func:`randomization_cascade` runs over the same images and
    layers with different seeds (independent re-initializations).

    A single random draw is a noisy statistic -- for a one-unit head, re-initializing the top
    layer draws one random weight vector, whose sign alone can decide the correlation. Per step:
    ``"spearman"`` / ``"spearman_abs"`` are the runs' per-image values concatenated (``[R * N]``),
    ``"mean"`` their mean, ``"run_means"`` each run's own mean, ``"maps"`` the first run's maps.
    """
    runs = list(runs)
    if not runs:
        raise ValueError("merge_cascades needs at least one cascade")
    layers = [[step["layer"] for step in run] for run in runs]
    if any(names != layers[0] for names in layers[1:]):
        raise ValueError(f"the cascades randomized different layers: {layers}")
    merged = []
    for i, first in enumerate(runs[0]):
        rho = torch.cat([run[i]["spearman"] for run in runs])
        merged.append({
            "layer": first["layer"],
            "randomized": list(first["randomized"]),
            "spearman": rho,
            "spearman_abs": torch.cat([run[i]["spearman_abs"] for run in runs]),
            "mean": float(rho.mean()) if rho.numel() else float("nan"),
            "run_means": [run[i]["mean"] for run in runs],
            "maps": first["maps"],
        })
    return merged
