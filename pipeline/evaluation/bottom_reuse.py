"""The randomization cascade's shared bottom: leaf modules below the first randomized layer are
unchanged, so their outputs are computed once per input and reused at every cascade step.

The cascade (:mod:`pipeline.evaluation.sanity`) re-initializes a model's layers from the top
down; at each step it recomputes every map on a model whose bottom -- the leaf modules registered
before the first randomized one (registration order is the forward order for the project's
models, as :func:`~pipeline.evaluation.sanity.parameter_layers` assumes) -- is the trained model's.
:class:`BottomReuse` patches the ``forward`` of those leaves in one model copy (``with
reuse.active(work, randomized):``) with a memo shared by every copy of the cascade (keyed by the
module's name): an input seen before returns the stored output.

What stays exact:

* the module's ``__call__`` still runs, so its forward hooks fire and see the same objects as
  before (a hit returns the very tensor stored, so the next leaf finds it by identity; a CAM's
  receptive-field trace follows that chain);
* an input is recognised by its content (``torch.equal`` after a checksum bucket), never by a
  guess; an in-place change of a stored output (its version counter) retires the entry;
* under autograd (an input that requires grad: the input-gradient methods), the output is stored
  with its graph from a detached leaf, and handed out through :class:`_Bridge`, whose backward runs
  the stored graph (``retain_graph``): the gradient is the one the module's own backward gives;
* leaves in train mode or with ``inplace=True`` are never memoized.

Memory: the stored outputs (and their graphs) stay until the reuse object is dropped; past
``max_bytes`` new inputs are computed without being stored (``stats`` counts hits and misses).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

__all__ = ["BottomReuse", "leaf_names"]


def leaf_names(model: nn.Module) -> list[str]:
    """The model's leaf modules (no children), in registration order."""
    return [name for name, m in model.named_modules() if name and next(m.children(), None) is None]


@dataclass
class _Entry:
    inp: torch.Tensor            # the input as first seen (kept: identity and content checks)
    out: torch.Tensor            # the output (with its graph from ``leaf`` when ``graph``)
    leaf: torch.Tensor | None    # the detached input the graph starts from
    version: int                 # out._version when stored
    plain: torch.Tensor          # what a caller without autograd gets: out itself, or out detached once

    @property
    def graph(self) -> bool:
        return self.leaf is not None


class _Bridge(torch.autograd.Function):
    """A stored output handed to a new input: backward runs the stored graph to the stored leaf."""

    @staticmethod
    def forward(ctx, x, entry):  # noqa: D401 - autograd signature
        ctx.entry = entry
        return entry.out.detach().clone()

    @staticmethod
    def backward(ctx, grad):
        e = ctx.entry
        with torch.enable_grad():
            gx, = torch.autograd.grad(e.out, e.leaf, grad, retain_graph=True)
        return gx, None


class BottomReuse:
    """One cascade's memo of the unchanged bottom leaves (see the module docstring).

    ``BottomReuse(model)`` reads the leaf order from ``model`` (any copy: names are used);
    ``with reuse.active(work, randomized):`` memoizes, in ``work``, the leaves before the first one
    at or under a module named in ``randomized``."""

    def __init__(self, model: nn.Module, max_bytes: int = 2 << 30):
        self.leaves = leaf_names(model)
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self.stats = {"hits": 0, "misses": 0, "unstored": 0}
        self._by_id: dict[tuple[str, int], _Entry] = {}
        self._by_sum: dict[tuple, list[_Entry]] = {}

    def bottom(self, randomized: Iterable[str]) -> list[str]:
        """The leaves registered before the first leaf that is, or lies under, a randomized module."""
        rand = [r.rstrip(".") for r in randomized]
        out = []
        for name in self.leaves:
            if any(name == r or name.startswith(r + ".") for r in rand):
                break
            out.append(name)
        return out

    @contextmanager
    def active(self, work: nn.Module, randomized: Iterable[str]):
        patched = []
        try:
            for name in self.bottom(randomized):
                m = work.get_submodule(name)
                if m.training or getattr(m, "inplace", False) or "forward" in m.__dict__:
                    continue
                m.forward = self._memo(name, type(m).forward.__get__(m))
                patched.append(m)
            yield self
        finally:
            for m in patched:
                del m.__dict__["forward"]

    # -- the memo ---------------------------------------------------------------------------------
    def _memo(self, name: str, forward):
        def memo(*args, **kwargs):
            if len(args) != 1 or kwargs or not isinstance(args[0], torch.Tensor):
                return forward(*args, **kwargs)
            x = args[0]
            if torch.is_inference_mode_enabled() or x.is_inference():
                return forward(x)  # no version counters there: nothing is stored
            graph = torch.is_grad_enabled() and x.requires_grad
            entry = self._find(name, x, graph)
            if entry is None:
                self.stats["misses"] += 1
                entry = self._store(name, x, graph, forward)
                if entry is None:
                    self.stats["unstored"] += 1
                    return forward(x)
            else:
                self.stats["hits"] += 1
            return _Bridge.apply(x, entry) if graph else entry.plain
        return memo

    @staticmethod
    def _checksum(name: str, x: torch.Tensor) -> tuple:
        return (name, tuple(x.shape), x.dtype, x.device, float(x.detach().sum(dtype=torch.float64)))

    def _find(self, name: str, x: torch.Tensor, graph: bool) -> _Entry | None:
        e = self._by_id.get((name, id(x)))
        if e is not None and e.inp is x and self._usable(e, graph):
            return e
        if e is not None and e.inp is x and e.out._version != e.version:
            self._by_id.pop((name, id(x)), None)
        for e in self._by_sum.get(self._checksum(name, x), ()):
            if self._usable(e, graph) and torch.equal(e.inp, x.detach()):
                return e
        return None

    @staticmethod
    def _usable(e: _Entry, graph: bool) -> bool:
        return e.out._version == e.version and (e.graph or not graph)

    def _store(self, name: str, x: torch.Tensor, graph: bool, forward) -> _Entry | None:
        if graph:
            leaf = x.detach().requires_grad_(True)
            with torch.enable_grad():
                out = forward(leaf)
        else:
            leaf, out = None, forward(x)
        if not isinstance(out, torch.Tensor):
            return None
        size = out.numel() * out.element_size() * (2 if graph else 1)
        if self.bytes + size > self.max_bytes:
            return None
        self.bytes += size
        plain = out.detach() if graph else out
        e = _Entry(inp=x.detach() if graph else x, out=out, leaf=leaf, version=out._version, plain=plain)
        if not graph:
            self._by_id[(name, id(x))] = e
        self._by_sum.setdefault(self._checksum(name, x), []).append(e)
        return e
