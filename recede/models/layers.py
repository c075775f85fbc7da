"""Batched MLPs: ``E`` independent networks held as one module, run by one ``baddbmm`` per layer.

The dynamics ensemble (its members), the policies and critics (twin critics, value ensembles,
and seeds trained as one batch) all use :class:`BatchedMLP`, so ``E`` small networks cost about
as many matrix multiplies as one.

Shapes: ``E`` members, ``N`` rows; ``x: (E, N, d_in) -> (E, N, d_out)``. Layer ``l`` holds
``weights[l]: (E, in, out)`` and ``biases[l]: (E, 1, out)``.

Initialisation (``init``):

- ``"linear"``: PyTorch's ``nn.Linear`` default (weights and biases ``U(-1/sqrt(in), 1/sqrt(in))``),
  what CleanRL and stable-baselines3 start their SAC/PPO networks from;
- ``"trunc_normal"``: truncated normal weights with std ``1 / (2 sqrt(in))`` and zero biases (the
  PETS code's and mbrl-lib's ensemble init).

``generators``: one ``torch.Generator`` per member, or one for all. Drawing member ``e``'s weights
from its own generator makes a batch of ``E`` networks equal, member for member, to ``E``
networks built one at a time with those generators (seeds trained as a batch rely on it).
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from recede.errors import InvalidArgumentError

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu, "silu": F.silu, "tanh": torch.tanh, "elu": F.elu,
}
INITS = ("linear", "trunc_normal")


def _draw(shape, fan_in: int, init: str, generator, bias: bool) -> torch.Tensor:
    t = torch.empty(*shape)
    if init == "linear":
        bound = 1.0 / math.sqrt(fan_in)
        t.uniform_(-bound, bound, generator=generator)
    elif bias:
        t.zero_()
    else:
        std = 1.0 / (2.0 * math.sqrt(fan_in))
        torch.nn.init.trunc_normal_(t, std=std, a=-2.0 * std, b=2.0 * std, generator=generator)
    return t


class BatchedMLP(torch.nn.Module):
    """``members`` MLPs with layer sizes ``sizes`` (input, hidden..., output) and ``activation``
    between layers (none after the last); see the module docstring."""

    def __init__(self, members: int, sizes: Sequence[int], *, activation: str = "relu",
                 init: str = "linear",
                 generators: torch.Generator | Sequence[torch.Generator] | None = None):
        super().__init__()
        if isinstance(members, bool) or not isinstance(members, int) or members < 1:
            raise InvalidArgumentError(f"members must be an int >= 1, got {members!r}")
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise InvalidArgumentError(f"sizes must be >= 2 positive layer widths, got {sizes!r}")
        if activation not in ACTIVATIONS:
            raise InvalidArgumentError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if init not in INITS:
            raise InvalidArgumentError(f"init must be one of {INITS}, got {init!r}")
        per_member = isinstance(generators, (list, tuple))
        if per_member and len(generators) != members:
            raise InvalidArgumentError(f"generators must hold one generator per member ({members}), "
                                       f"got {len(generators)}")
        self.members, self.sizes, self.activation = members, tuple(sizes), activation
        self._act = ACTIVATIONS[activation]
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        ws, bs = [], []
        for a, b in zip(sizes[:-1], sizes[1:]):
            if per_member:  # member e's layers come from its own generator, in layer order
                ws.append([None] * members)
                bs.append([None] * members)
            else:
                ws.append(_draw((members, a, b), a, init, generators, bias=False))
                bs.append(_draw((members, 1, b), a, init, generators, bias=True))
        if per_member:
            for e, g in enumerate(generators):
                for l, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
                    ws[l][e] = _draw((a, b), a, init, g, bias=False)
                    bs[l][e] = _draw((1, b), a, init, g, bias=True)
            ws = [torch.stack(w) for w in ws]
            bs = [torch.stack(b) for b in bs]
        for w, b in zip(ws, bs):
            self.weights.append(torch.nn.Parameter(w))
            self.biases.append(torch.nn.Parameter(b))

    def forward(self, x: torch.Tensor, members: Sequence[int] | None = None,
                bf16: bool = False) -> torch.Tensor:
        """x: (E, N, d_in) -> (E, N, d_out) (``E`` = ``len(members)`` when given). ``bf16``: the
        hidden layers in bfloat16 autocast (CPU), the last layer in float32."""
        Ws, bs = list(self.weights), list(self.biases)
        if members is not None:
            Ws = [w[members] for w in Ws]
            bs = [b[members] for b in bs]
        h = x
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            for w, b in zip(Ws[:-1], bs[:-1]):
                h = self._act(torch.baddbmm(b, h, w))
        return torch.baddbmm(bs[-1], h.float() if bf16 else h, Ws[-1])

    def member_state(self, index: int) -> dict[str, torch.Tensor]:
        """Member ``index``'s weights as ``{"layers.l.weight": (in, out), "layers.l.bias": (1, out)}``."""
        out = {}
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            out[f"layers.{l}.weight"] = w.detach()[index]
            out[f"layers.{l}.bias"] = b.detach()[index]
        return out

    def load_member_state(self, index: int, tensors: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for l, (w, b) in enumerate(zip(self.weights, self.biases)):
                w[index].copy_(tensors[f"layers.{l}.weight"])
                b[index].copy_(tensors[f"layers.{l}.bias"])
