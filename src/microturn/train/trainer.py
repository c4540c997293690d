"""The trainer: AdamW, warmup + cosine, clipping, per-stream losses, resumable checkpoints.

Everything a step does is a function of (seed, step): which episodes it reads and the flow
head's noise for each sequence. So a run killed and resumed from its last checkpoint
continues with the very same losses, and the same batch split over `torchrun` processes
(FSDP2, one shard of the batch each) gives the losses of one process up to float rounding.

One training checkpoint file holds the model, the optimiser and the step; it is written
to a temporary file and renamed, so a crash never leaves half of one. `model.safetensors`
beside it is the plain model checkpoint the engine loads; each evaluation also keeps one
(`model-STEP.safetensors`) beside the curves, to pick from by how the models behave.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
import zlib
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors import safe_open
from tqdm import tqdm

from ..config import Config
from ..errors import CheckpointError
from ..model.checkpoint import atomic_save, config_diff, save_model
from ..model.interaction import InteractionModel
from ..streams.turns import TurnBatch
from . import exposure
from .curves import plot_curves
from .data import PlainNorm, RecordingData, WorldData, collate
from .scores import sequence_scores

STREAMS = ("control", "text", "audio", "transcript")
TRAIN_FORMAT = "microturn-train-state/1"
NORM_FIT_EPISODES = 32


@dataclass
class StepLog:
    step: int
    loss: float
    control: float
    text: float
    audio: float
    transcript: float
    lr: float
    tokens: int
    wall_s: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.wall_s, 1e-9)


def lr_at(step: int, cfg) -> float:
    """Linear warmup to cfg.lr, then cosine down to cfg.lr * cfg.min_lr_ratio."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (
        cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
    )


class Trainer:
    def __init__(self, cfg: Config, out: str | Path, progress: bool = True) -> None:
        self.cfg, self.tc, self.out = cfg, cfg.train, Path(out)
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.tc.batch_size % self.world:
            raise CheckpointError(
                f"train.batch_size={self.tc.batch_size} must divide by WORLD_SIZE={self.world}"
            )
        self.device = (
            torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.progress = progress and self.rank == 0
        self.data = (
            RecordingData(cfg.model.layout, self.tc)
            if self.tc.data
            else WorldData(cfg.model.layout, self.tc)
        )
        self.eval_data = (
            WorldData(cfg.model.layout, self.tc, "eval") if self.tc.eval_episodes else None
        )
        torch.manual_seed(self.tc.seed)  # the same initial weights on every rank
        train_cfg = dataclasses.replace(cfg.model, batch_invariant=not self.tc.fast_gemm)
        self.model = InteractionModel(train_cfg).to(self.device)
        self.step = 0
        self.ckpt = self.out / "train_state.safetensors"
        state = self._read_state() if self.ckpt.exists() else None
        if state is None and self.tc.init_from:
            self._init_from(self.tc.init_from)
        elif state is None:
            self._fit_norm()
        self._shard()
        self.opt = torch.optim.AdamW(self._param_groups(), lr=self.tc.lr, betas=(0.9, 0.95))
        if state is not None:
            self._load_state(*state)
        # the training step's forward, compiled on request: a fixed batch shape compiles once
        # (minutes), then each step runs ~1.3x faster (benchmarks/train_speed.py)
        self.forward = torch.compile(self.model) if self.tc.compile else self.model

    # ---- set-up ---------------------------------------------------------------------------
    def _episodes(self) -> int:
        return len(self.data.items) if isinstance(self.data, RecordingData) else self.tc.episodes

    def _fit_norm(self) -> None:
        """Per-channel statistics of the model's own voice, from the first episodes."""
        n = min(NORM_FIT_EPISODES, self._episodes())
        if isinstance(self.data, WorldData) and self.rank == 0:
            self.data.ensure(range(n), self.progress)
        self._barrier()
        items = [self.data.get(i) for i in range(n)]
        mel = torch.cat(
            [
                it["audio_out"][it["control"] == 1]
                .float()
                .reshape(-1, self.cfg.model.layout.mel_channels)
                for it in items
            ]
        )
        if len(mel) > 1:
            self.model.mel_norm.fit(mel)

    def _param_groups(self) -> list[dict]:
        """Matrices decay, vectors do not; `lr_scales` prefixes get their own lr multiple."""
        groups: dict[tuple[bool, float], list] = {}
        for name, p in self.model.named_parameters():
            scale = next((s for k, s in self.tc.lr_scales.items() if name.startswith(k)), 1.0)
            groups.setdefault((p.dim() >= 2, float(scale)), []).append(p)
        return [
            {"params": ps, "weight_decay": self.tc.weight_decay if d else 0.0, "lr_scale": s}
            for (d, s), ps in groups.items()
        ]

    def _init_from(self, path: str) -> None:
        """Start from trained weights (fine-tuning, or a second stage): the optimiser starts
        fresh."""
        from ..model.checkpoint import DEFAULT_CHECKPOINT, read_checkpoint

        path = str(DEFAULT_CHECKPOINT) if path == "default" else path
        saved, tensors, _ = read_checkpoint(path)
        # the transcript head, its feedback and the byte history may be new: a checkpoint
        # without them still gives the rest (their tables start at zero, so the model starts
        # as the checkpoint's); a longer copy-lookup key changes no weight
        same = lambda c: dataclasses.replace(
            c, batch_invariant=False, transcript_head=False, transcript_feedback=False,
            byte_history=False, copy_lookup=False, lookup_bytes=2,
        )
        if same(saved) != same(self.cfg.model):
            raise CheckpointError(
                f"train.init_from: '{path}' has another model config ("
                + "; ".join(config_diff(saved, self.cfg.model))
                + ")"
            )
        missing, unexpected = self.model.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, strict=False
        )
        new = ("transcript_head.", "heard_before.", "embed.history.")
        if unexpected or any(not k.startswith(new) for k in missing):
            raise CheckpointError(
                f"train.init_from: '{path}' does not fit the model: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )

    def _shard(self) -> None:
        if self.world == 1:
            return
        from torch.distributed.fsdp import fully_shard

        for block in self.model.trunk.blocks:
            fully_shard(block)
        fully_shard(self.model)

    def _barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    # ---- checkpoints ----------------------------------------------------------------------
    def _state_dicts(self) -> tuple[dict, dict]:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

        return get_state_dict(
            self.model, self.opt, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )

    def save(self) -> None:
        model_sd, optim_sd = self._state_dicts()
        if self.rank == 0:
            tensors = {f"model/{k}": v for k, v in model_sd.items()}
            for name, st in optim_sd["state"].items():
                for key, v in st.items():
                    tensors[f"optim/{name}/{key}"] = v if torch.is_tensor(v) else torch.tensor(v)
            meta = {
                "format": TRAIN_FORMAT,
                "step": str(self.step),
                "config": self.cfg.model.to_json(),
                "param_groups": json.dumps(optim_sd["param_groups"]),
            }
            atomic_save(tensors, self.ckpt, meta)
            model = InteractionModel(self.cfg.model)
            model.load_state_dict(model_sd)
            save_model(model, self.out / "model.safetensors", {"step": str(self.step)})
        self._barrier()

    def _read_state(self) -> tuple[dict, dict, dict]:
        try:
            with safe_open(str(self.ckpt), framework="pt") as f:
                meta = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:
            raise CheckpointError(
                f"training checkpoint '{self.ckpt}' is unreadable ({e}); "
                "move it away to start afresh"
            ) from e
        if meta.get("format") != TRAIN_FORMAT:
            raise CheckpointError(f"'{self.ckpt}': not a microturn training checkpoint")
        from ..config import ModelConfig

        saved = ModelConfig.from_json(meta["config"])
        if saved != self.cfg.model:
            raise CheckpointError(
                f"'{self.ckpt}' was trained with another model config ("
                + "; ".join(config_diff(saved, self.cfg.model))
                + "); use another --out"
            )
        return meta, tensors, json.loads(meta["param_groups"])

    def _load_state(self, meta: dict, tensors: dict, groups: list) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        model_sd = {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}
        state: dict[str, dict] = {}
        for k, v in tensors.items():
            if k.startswith("optim/"):
                name, key = k[6:].rsplit("/", 1)
                state.setdefault(name, {})[key] = v
        set_state_dict(
            self.model,
            self.opt,
            model_state_dict=model_sd,
            optim_state_dict={"state": state, "param_groups": groups},
            options=StateDictOptions(full_state_dict=True, strict=False),
        )  # unused params have no state
        self.step = int(meta["step"])

    # ---- one step -------------------------------------------------------------------------
    def positions(self, step: int) -> list[int]:
        """This rank's share of the step's global batch, as global sample positions."""
        b = self.tc.batch_size
        per = b // self.world
        return list(range(step * b + self.rank * per, step * b + (self.rank + 1) * per))

    def episode(self, position: int) -> int:
        n = self._episodes()
        epoch, i = divmod(position, n)
        return int(np.random.default_rng([self.tc.seed, epoch]).permutation(n)[i])

    def _rng(self, stream: object, position: int) -> torch.Generator:
        """A sample position's own generator for one kind of draw, so resuming or sharding a
        run does not change what any sample draws."""
        key = f"{self.tc.seed}/{stream}/{position}".encode()
        return torch.Generator().manual_seed(zlib.crc32(key))

    def noise(
        self, batch: TurnBatch, positions: list[int], salt: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flow noise for each sequence from its own seed, so sharding does not change it."""
        b, n = batch.shape
        lay, draws = self.cfg.model.layout, self.cfg.model.flow_draws
        ts, eps = [], []
        for p in positions:
            g = self._rng(salt, p)
            ts.append(torch.rand(n, lay.audio_slots, draws, generator=g))
            eps.append(torch.randn(n, lay.audio_slots, draws, lay.audio_token_dim, generator=g))
        return torch.stack(ts).to(self.device), torch.stack(eps).to(self.device)

    # what the trunk hears and reads of its own output (train.exposure), per sample position
    def own_voice(self, batch: TurnBatch, positions: list[int]) -> torch.Tensor | None:
        return exposure.own_voice(self.tc, batch, positions, self._rng)

    def own_text(self, batch: TurnBatch, positions: list[int]) -> torch.Tensor | None:
        return exposure.own_text(self.tc, batch, positions, self._rng)

    def _batch(self, data, indices: list[int]) -> TurnBatch:
        b = collate(
            [data.get(i) for i in indices], self.cfg.model.layout, PlainNorm(self.model.mel_norm)
        )
        return TurnBatch(
            **{
                f.name: None if getattr(b, f.name) is None else getattr(b, f.name).to(self.device)
                for f in dataclasses.fields(b)
            }
        )

    def _losses(
        self, batch: TurnBatch, positions: list[int], salt: int = 0, train: bool = True
    ) -> dict[str, torch.Tensor]:
        count = batch.audio_out_mask.sum() * self.cfg.model.layout.audio_slots
        if self.world > 1:
            dist.all_reduce(count)
        amp = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.tc.dtype == "bf16"
            else nullcontext()
        )
        with amp:
            forward = self.forward if train else self.model  # eval batches vary: not compiled
            return forward(
                batch,
                self.noise(batch, positions, salt),
                max(float(count), 1.0) / self.world,
                self.tc.pad_weight,
                dict(self.tc.loss_weights),
                self.own_voice(batch, positions) if train else None,
                transcript_window=self.tc.transcript_window,
                own_text=self.own_text(batch, positions) if train else None,
            )

    def _mean(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64)
        if self.world > 1:
            dist.all_reduce(t)
            t /= self.world
        return t.tolist()

    def train_step(self) -> StepLog:
        t0 = time.perf_counter()
        positions = self.positions(self.step)
        batch = self._batch(self.data, [self.episode(p) for p in positions])
        lr = lr_at(self.step, self.tc)
        for g in self.opt.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        self.model.train()
        losses = self._losses(batch, positions)
        self.opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
        self.opt.step()
        vals = self._mean(
            [float(losses[k].detach()) if k in losses else 0.0 for k in ("loss",) + STREAMS]
        )
        self.step += 1
        tokens = self.tc.batch_size * batch.shape[1] * self.cfg.model.layout.tokens_per_turn
        return StepLog(self.step, *vals, lr, tokens, time.perf_counter() - t0)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out episodes (eval split): mean per-stream loss, and per family the
        teacher-forced scores of `sequence_scores` (what the model gets right, slot by slot)."""
        if self.eval_data is None:
            return {}
        self.model.eval()
        n = self.tc.eval_episodes - self.tc.eval_episodes % self.world
        mine = list(range(n))[self.rank :: self.world]
        totals = np.zeros(len(STREAMS))
        per_family: dict[str, list[dict[str, float]]] = {}
        amp = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self.tc.dtype == "bf16"
            else nullcontext()
        )
        for i in range(0, len(mine), 4):
            idx = mine[i : i + 4]
            batch = self._batch(self.eval_data, idx)
            losses = self._losses(batch, idx, salt=1, train=False)
            totals += np.array([float(losses.get(k, 0.0)) for k in STREAMS]) * len(idx)
            with amp:
                scores = sequence_scores(self.model, batch)
            for b, ep in enumerate(idx):
                row = {k: float(v[b]) for k, v in scores.items() if not math.isnan(float(v[b]))}
                per_family.setdefault(self.eval_data.family_of(ep)[0], []).append(row)
        vals = self._mean(list(totals / max(len(mine), 1)))
        out = {f"eval_{k}": v for k, v in zip(STREAMS, vals)}
        for fam, rows in sorted(per_family.items()):  # rank 0's share when sharded: a sample
            for key in sorted({k for r in rows for k in r}):
                got = [r[key] for r in rows if key in r]
                out[f"fam/{fam}/{key}"] = float(np.mean(got))
        return out

    def fit(self, steps: int | None = None) -> list[StepLog]:
        """Train to `steps` (default: the config's), checkpointing and evaluating on schedule."""
        steps = min(steps or self.tc.steps, self.tc.steps)
        self.out.mkdir(parents=True, exist_ok=True)
        log_path = self.out / "log.jsonl"
        if self.rank == 0:
            self._truncate_log(log_path)
            if isinstance(self.data, WorldData):
                self.data.ensure(
                    sorted(
                        {
                            self.episode(p)
                            for p in range(
                                self.step * self.tc.batch_size, steps * self.tc.batch_size
                            )
                        }
                    ),
                    self.progress,
                )
            if self.eval_data is not None:
                self.eval_data.ensure(range(self.tc.eval_episodes), self.progress)
        self._barrier()
        logs = []
        bar = tqdm(
            total=steps, initial=self.step, desc="training", unit="step", disable=not self.progress
        )
        while self.step < steps:
            log = self.train_step()
            logs.append(log)
            extra = (
                self.evaluate() if self.step % self.tc.eval_every == 0 or self.step == steps else {}
            )
            if self.rank == 0:
                with open(log_path, "a") as f:
                    f.write(
                        json.dumps(
                            dataclasses.asdict(log) | {"tokens_per_s": log.tokens_per_s} | extra
                        )
                        + "\n"
                    )
                if extra:
                    plot_curves(log_path, self.out / "curves.png")
            bar.set_postfix(
                ctl=f"{log.control:.3f}",
                txt=f"{log.text:.3f}",
                aud=f"{log.audio:.3f}",
                hrd=f"{log.transcript:.3f}",
                lr=f"{log.lr:.1e}",
                tok_s=f"{log.tokens_per_s:,.0f}",
                **{k: f"{v:.3f}" for k, v in extra.items() if k.startswith("eval_")},
            )
            bar.update(1)
            if extra or self.step % self.tc.checkpoint_every == 0 or self.step == steps:
                self.save()
            if extra and self.rank == 0:  # every evaluated model is kept: the one a listener
                # prefers may be an earlier one (a loss can rise while its behaviour improves)
                shutil.copyfile(
                    self.out / "model.safetensors", self.out / f"model-{self.step:05d}.safetensors"
                )
        bar.close()
        return logs

    def _truncate_log(self, path: Path) -> None:
        """Drop log lines past the checkpoint we resumed from (a killed run wrote them)."""
        if not path.exists():
            return
        keep = [
            ln
            for ln in path.read_text().splitlines()
            if ln.strip() and json.loads(ln)["step"] <= self.step
        ]
        path.write_text("".join(ln + "\n" for ln in keep))
