"""CUDA graphs for the engine's fixed-shape work, one per batch-size bucket.

A step's shapes depend only on how many sessions it holds (the layout fixes every slot
count), so, as gpt-fast does for decode, each shape is captured once and replayed: a
trunk append of B sessions x M rows, and a flow-head draw of B frames. B is rounded up to
a bucket (1, 2, 4, 8, ...) so a handful of graphs serve any batch; padding rows compute
on zeros, write their keys into the pool's scratch slot, and are dropped.

What stays eager: token sampling (each session draws from its own CPU generator, which
keeps a session reproducible whatever it is batched with), forced outputs, and the
Python that chooses which sessions speak; and mixture-of-experts trunks, whose routing
has data-dependent shapes. `EagerRunner` replays by calling the function again: the
same padding and bucketing on CPU, which is how the tests check them without a GPU.
"""

from __future__ import annotations

from typing import Callable, Protocol

import torch

from ..model.trunk import KVStep

Replay = Callable[[], torch.Tensor]


def buckets(max_sessions: int) -> tuple[int, ...]:
    """Powers of two up to the first that holds `max_sessions`."""
    out = [1]
    while out[-1] < max_sessions:
        out.append(out[-1] * 2)
    return tuple(out)


def bucket_for(n: int, sizes: tuple[int, ...]) -> int:
    for size in sizes:
        if size >= n:
            return size
    raise ValueError(f"{n} sessions: more than the largest graph bucket ({sizes[-1]})")


class Runner(Protocol):
    def capture(self, fn: Replay) -> Replay:
        """Record `fn` (which reads only its static inputs); the returned call replays it."""


class EagerRunner:
    """Replays by calling `fn` again: the CPU stand-in for a CUDA graph."""

    def __init__(self) -> None:
        self.captures = 0

    def capture(self, fn: Replay) -> Replay:
        self.captures += 1
        return fn


class CudaGraphRunner:
    """torch.cuda.CUDAGraph capture after a warm-up on a side stream; all graphs share one
    memory pool (they never run at once)."""

    def __init__(self, warmup: int = 2) -> None:
        self.warmup, self.captures, self._pool = warmup, 0, None

    def capture(self, fn: Replay) -> Replay:  # pragma: no cover - needs a GPU
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(self.warmup):
                fn()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool):
            out = fn()
        self._pool = graph.pool()
        self.captures += 1

        def replay() -> torch.Tensor:
            graph.replay()
            return out
        return replay


def pad_rows(t: torch.Tensor, rows: int) -> torch.Tensor:
    """t [n, ...] -> [rows, ...], zeros below."""
    if t.shape[0] == rows:
        return t
    return torch.cat([t, t.new_zeros(rows - t.shape[0], *t.shape[1:])])


def padded_step(kv: KVStep, bucket: int, rows: int,
                scratch: int) -> tuple[list[torch.Tensor], bool]:
    """The tensors of `kv` (n sessions x `rows` rows) for a bucket of sessions, and whether
    the pool is read as a view (sessions in slots 0 .. n-1) rather than gathered.

    Every row of the bucket writes: a real token to its key slot, anything else (padding
    sessions, rows of tokens that do not exist this turn) to slot `scratch`, index 0."""
    n = kv.slots.numel()
    dev = kv.slots.device
    view = kv.first_slot == 0
    slots = torch.arange(bucket, device=dev) if view else pad_rows(kv.slots, bucket)
    if not view:
        slots[n:] = scratch
    write_slot = torch.full((bucket * rows,), scratch, dtype=torch.long, device=dev)
    write_index = torch.zeros(bucket * rows, dtype=torch.long, device=dev)
    real = kv.write_b * rows + kv.write_m
    write_slot[real] = kv.slots[kv.write_b] if kv.write_slot is None else kv.write_slot
    write_index[real] = kv.write_index
    tensors = [slots, write_slot, write_index, pad_rows(kv.bias, bucket), pad_rows(kv.cos, bucket),
               pad_rows(kv.sin, bucket)]
    return tensors, view


def static_step(kv: KVStep, tensors: list[torch.Tensor], view: bool, rows: int) -> KVStep:
    """A KVStep over the static tensors of `padded_step` (what a captured graph reads)."""
    slots, write_slot, write_index, bias, cos, sin = tensors
    bucket = slots.numel()
    dev = slots.device
    return KVStep(k=kv.k, v=kv.v, slots=slots, first_slot=0 if view else None,
                  positions=kv.positions,
                  write_b=torch.arange(bucket, device=dev).repeat_interleave(rows),
                  write_m=torch.arange(rows, device=dev).repeat(bucket), write_index=write_index,
                  bias=bias, cos=cos, sin=sin, write_slot=write_slot)


class GraphCache:
    """One captured replay per (what, bucket, shapes); inputs are copied into its statics."""

    def __init__(self, runner: Runner, sizes: tuple[int, ...]) -> None:
        self.runner, self.sizes = runner, sizes
        self._graphs: dict[tuple, tuple[list[torch.Tensor], Replay]] = {}

    def __len__(self) -> int:
        return len(self._graphs)

    def run(self, what: tuple, fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor],
            n: int) -> torch.Tensor:
        """fn(*statics) over inputs padded to a bucket; the first n rows of its output."""
        key = what + tuple((tuple(t.shape), t.dtype) for t in inputs)
        entry = self._graphs.get(key)
        if entry is None:
            statics = [t.clone() for t in inputs]
            entry = self._graphs[key] = (statics, self.runner.capture(lambda: fn(*statics)))
        else:
            for static, t in zip(entry[0], inputs):
                static.copy_(t)
        return entry[1]()[:n].clone()

    def append(self, trunk: torch.nn.Module, x: torch.Tensor, kv: KVStep,
               scratch: int) -> torch.Tensor:
        """trunk.step(x, kv) for x [n, M, d] through the bucket's graph."""
        n, rows = x.shape[:2]
        bucket = bucket_for(n, self.sizes)
        tensors, view = padded_step(kv, bucket, rows, scratch)

        def fn(x_s: torch.Tensor, *kv_s: torch.Tensor) -> torch.Tensor:
            return trunk.step(x_s, static_step(kv, list(kv_s), view, rows))
        return self.run(("append", view), fn, [pad_rows(x, bucket)] + tensors, n)

    def flow(self, flow: torch.nn.Module, cond: torch.Tensor, steps: int,
             x0: torch.Tensor) -> torch.Tensor:
        """flow.sample(cond, steps, x0) for n rows through the bucket's graph."""
        n = cond.shape[0]
        bucket = bucket_for(n, self.sizes)
        return self.run(("flow", steps), lambda c, x: flow.sample(c, steps, x),
                        [pad_rows(cond, bucket), pad_rows(x0, bucket)], n)
