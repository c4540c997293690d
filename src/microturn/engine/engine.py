"""The engine: one `step` advances any set of sessions by one micro-turn, batched.

A step appends IN_k for every session (led by the previous turn's audio slots, whose K/V
are written now rather than in appends of their own), then decodes OUT_k slot by slot:
control and text through the trunk, audio through the flow head. Six trunk appends a turn,
speaking or not. Nothing is re-prefilled and nothing is allocated per turn beyond the few
activations of the appended tokens.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import torch

from ..config import EngineConfig
from ..errors import ConfigError
from ..model.fusion import PAD, READ_STREAMS, History, continuation, stream_history
from ..model.interaction import InteractionModel, Predictions
from ..model.linear import TILE
from ..model.trunk import KVStep
from ..streams.turns import SILENT, SPEAK, TurnInput, TurnOutput
from .graphs import CudaGraphRunner, GraphCache, Runner, buckets
from .kv import KVPool
from .precision import inference_copy, is_parity_mode, parse_device, parse_dtype
from .sampling import sample_tokens
from .session import TEXT_STREAMS, SamplerSettings, Session


@dataclass
class StepResult:
    outputs: list[TurnOutput]
    predictions: Predictions | None = None  # [B, ...] when asked for: what parity compares


class Engine:
    """`dtype` 'fp32' (the default; on CPU with a batch-invariant model, the parity mode) or
    'bf16' (trunk in bf16, flow head in fp32); `device` cpu or cuda (default: the model's);
    `flow_steps` the flow head's Euler steps (default: the model config's).
    On CUDA the appends and flow draws replay CUDA graphs per batch bucket; `graphs` gives
    another runner (engine.graphs.EagerRunner replays the same padding eagerly, on CPU)."""

    def __init__(self, model: InteractionModel, cfg: EngineConfig | None = None,
                 dtype: torch.dtype | str = torch.float32, device: torch.device | str | None = None,
                 graphs: Runner | None = None, flow_steps: int | None = None) -> None:
        if flow_steps is not None and flow_steps < 1:
            raise ConfigError(f"flow_steps={flow_steps}: expected >= 1 Euler steps")
        self.flow_steps = flow_steps or model.cfg.flow_steps  # a session's sampler may override
        self.dtype = parse_dtype(dtype)
        self.device = parse_device(device, model)
        # fp32 on CPU with batch-invariant kernels is the parity mode; anything else runs fast
        self.parity = is_parity_mode(model, self.dtype, self.device)
        self.source = model.eval()  # sessions pack and unpack with its (CPU) codec and norm
        self.model = inference_copy(self.source, self.dtype, self.device)
        self.cfg = cfg or EngineConfig()
        self.layout = model.cfg.layout
        if graphs is None and self.device.type == "cuda":
            graphs = CudaGraphRunner()
        if model.cfg.moe_experts:  # routing has data-dependent shapes: not capturable
            graphs = None
        sizes = buckets(self.cfg.max_sessions)
        self.graphs = GraphCache(graphs, sizes) if graphs is not None else None
        # graph padding rows read slots up to the largest bucket; one more takes their writes
        extra = sizes[-1] - self.cfg.max_sessions + 1 if self.graphs is not None else 0
        self.pool = KVPool(model.cfg, self.cfg.max_sessions, dtype=self.dtype, device=self.device,
                           extra=extra)
        self.sessions: dict[str, Session] = {}
        # attention multiplies groups * rows query rows at once; fewer than 4 would take MKL's
        # small-row kernels, whose sums differ from training's, so appends are padded
        self.groups = model.cfg.n_heads // model.cfg.n_kv_heads

    # ---- admission ----------------------------------------------------------------------
    def open(self, sampler: SamplerSettings | None = None, vocoder: bool = True,
             session_id: str | None = None) -> Session:
        """A new session on a free KV slot; PoolFullError when every slot is taken."""
        slot = self.pool.acquire()
        try:
            s = Session.create(
                slot,
                self.layout,
                self.source.codec,
                self.source.mel_norm,
                sampler or SamplerSettings.from_engine(self.cfg),
                vocoder,
                session_id,
            )
        except BaseException:  # a session that could not be built (its vocoder, say) holds no slot
            self.pool.release(slot)
            raise
        s.last_frame = s.last_frame.to(self.device)
        s.reads = {n: deque(maxlen=self.model.cfg.window_turns) for n in READ_STREAMS}
        self.sessions[s.id] = s
        return s

    def close(self, session: Session) -> None:
        if session.closed:
            return
        session.closed = True
        self.sessions.pop(session.id, None)
        self.pool.release(session.slot)

    # ---- one micro-turn -----------------------------------------------------------------
    def _append(self, x: torch.Tensor, kv: KVStep) -> torch.Tensor:
        """Run x [B, M, d] through the trunk; padding rows (kv has more) are zeros, dropped."""
        m = x.shape[1]
        pad = kv.positions.shape[1] - m
        if pad:
            x = torch.cat([x, x.new_zeros(x.shape[0], pad, x.shape[2])], dim=1)
        if self.graphs is not None:
            return self.graphs.append(self.model.trunk, x, kv, self.pool.scratch_slot)[:, :m]
        return self.model.trunk.step(x, kv)[:, :m]

    def _min_rows(self, sessions: int) -> int:
        """Rows per session in an append: 4 query rows for attention, and (cheaper than padding
        inside every linear) enough that all sessions' rows fill a GEMM tile. Only parity needs
        either: the fast path appends just the real rows."""
        if not self.parity:
            return 1
        return max(-(-4 // self.groups), -(-TILE // sessions))

    def _prefill_rows(
        self, sessions: list[Session], positions: torch.Tensor, valid: torch.Tensor
    ) -> KVStep:
        pad = self._min_rows(len(sessions)) - positions.shape[1]
        if pad > 0:
            positions = torch.cat([positions, positions[:, -1:].expand(-1, pad)], dim=1)
            valid = torch.cat([valid, valid.new_zeros(valid.shape[0], pad)], dim=1)
        return self.pool.step([s.slot for s in sessions], positions, valid)

    @torch.no_grad()
    def step(
        self,
        sessions: list[Session],
        inputs: list[TurnInput],
        forced: list[TurnOutput | None] | None = None,
        predictions: bool = False,
    ) -> StepResult:
        """Advance `sessions` by one turn. `forced[b]` replaces sampling (teacher forcing)."""
        if len(sessions) != len(inputs) or not sessions:
            raise ValueError(
                f"{len(sessions)} sessions but {len(inputs)} inputs: expected one input each"
            )
        if len({s.slot for s in sessions}) != len(sessions) or any(s.closed for s in sessions):
            raise ValueError("each session may appear once per step, and only while open")
        m, lay, dev = self.model, self.layout, self.device
        forced = forced or [None] * len(sessions)
        n_in, n_text, n_audio = lay.in_tokens, lay.text_out_slots, lay.audio_slots
        tpt = lay.tokens_per_turn
        turn = torch.tensor([s.turn for s in sessions], device=dev)
        base = turn * tpt
        a0 = n_in + 1 + n_text  # first audio slot in the turn
        # 1. IN_k, led by the previous turn's audio slots (nothing is predicted from them)
        stacked = self._stack_inputs(inputs)
        carried = {  # each text stream's last bytes, per session (model.fusion)
            n: torch.stack([s.history[n] for s in sessions]).to(dev) for n in TEXT_STREAMS
        } if m.cfg.byte_history else {}
        hist: dict[str, History | None] = dict.fromkeys(("user_text", "background", "text"))
        keys: dict[str, History] = {}  # the copy lookup's keys: each read slot's bytes before it
        lookup = m.cfg.copy_lookup
        depth = m.cfg.lookup_bytes if lookup else 2
        for name, tokens in zip(READ_STREAMS, stacked[4:6], strict=True):
            if carried:
                key, carried[name] = stream_history(tokens[:, None], False, carried[name], depth)
                keys[name] = tuple(k[:, 0] for k in key)
                hist[name] = keys[name][:2]
            if lookup:  # the window of what it read, for the copy lookup (before the step ends)
                rows = torch.stack([tokens, *keys[name], turn[:, None].expand_as(tokens)], -1)
                for b, s in enumerate(sessions):
                    s.reads[name].append(rows[b])
        windows = {n: self._read_window(sessions, n) for n in READ_STREAMS} if lookup else {}

        def follows(wrote: History) -> History:
            """The copy lookup's continuations for one writing slot of each session."""
            one = tuple(x.reshape(-1, 1) for x in wrote)
            return tuple(
                continuation(*w, one, turn[:, None], m.cfg.window_turns).view(wrote[0].shape)
                for w in windows.values()
            )

        x = m.embed.embed_in(turn, *stacked, hist["user_text"], hist["background"])
        pos = base[:, None] + torch.arange(n_in, device=dev)
        valid = torch.ones(pos.shape, dtype=torch.bool, device=dev)
        if any(s.deferred is not None for s in sessions):
            none = x.new_zeros(n_audio, x.shape[-1])
            late_x = torch.stack([none if s.deferred is None else s.deferred for s in sessions])
            x = torch.cat([late_x, x], dim=1)
            late_pos = (base - tpt + a0)[:, None] + torch.arange(n_audio, device=dev)
            pos = torch.cat([late_pos, pos], 1)
            late = torch.tensor([[s.deferred is not None] * n_audio for s in sessions], device=dev)
            valid = torch.cat([late, valid], dim=1)
        h_in = self._append(x, self._prefill_rows(sessions, pos, valid))
        a_in = h_in.shape[1] - n_in + lay.offset("audio_in")
        last = None if m.heard_before is None else torch.tensor(
            [s.heard_last for s in sessions], device=dev
        )
        heard_logits = m.transcript(h_in[:, a_in : a_in + n_audio], last=last)
        heard = None if heard_logits is None else heard_logits.argmax(-1).cpu()  # greedy
        h = h_in[:, -1]
        time = m.embed.time(turn)
        plan = self.pool.plan([s.slot for s in sessions], turn)

        def feed(slot: int, content: torch.Tensor) -> torch.Tensor:
            """Append OUT slot `slot` (content [B, 1, d]); its trunk state [B, d]."""
            kv = self.pool.rows(plan, n_in + slot, 1, self._min_rows(len(sessions)) - 1)
            return self._append(m.embed.embed_out_slot(time, slot, content), kv)[:, 0]

        # 2. control, then text one slot at a time; each sampled slot (on the CPU, from the
        #    session's generator) is fed back
        ctrl_logits = m.control_head(h)
        samplers = [s.sampler for s in sessions]
        given = [f.control if f else None for f in forced]
        control = self._choose(sessions, samplers, ctrl_logits, given)
        if carried:  # the control slot carries the bytes written before this turn
            wrote = tuple(carried["text_out"][:, -1 - i] for i in range(depth))
            hist["text"] = wrote[:2] + (follows(wrote) if lookup else ())
        h = feed(0, m.embed.out_content("control", control.to(dev), history=hist["text"]))
        text_logits, text = [], []
        samplers = [s.for_text() for s in samplers]
        for j in range(n_text):
            logits = m.text_head(h)
            given = [f.text[j] if f and f.text is not None else None for f in forced]
            tok = self._choose(sessions, samplers, logits, given)
            text_logits.append(logits)
            text.append(tok)
            tok_d = tok[:, None].to(dev)
            if carried:
                wrote, carried["text_out"] = stream_history(
                    tok_d[:, None], True, carried["text_out"], depth
                )
                wrote = tuple(w[:, 0] for w in wrote)
                hist["text"] = wrote[:2] + (follows(wrote) if lookup else ())
            h = feed(1 + j, m.embed.out_content("text_out", tok_d, history=hist["text"]))
        # 3. audio: the flow head draws each slot's frame, conditioned on the state after the
        #    text and on the frame before; the frames enter the trunk with the next turn
        speak = control == SPEAK
        frames = torch.zeros(len(sessions), n_audio + 1, lay.audio_token_dim, device=dev)
        frames[:, 0] = torch.stack([s.last_frame for s in sessions])
        conds = []
        for i in range(n_audio if speak.any() or predictions else 0):
            cond = m.flow_condition(h.float(), frames[:, i : i + 1], i)[:, 0]  # fp32 in every mode
            conds.append(cond)
            given = [f.audio[i] if f and f.audio is not None else None for f in forced]
            frames[:, i + 1] = self._frames(sessions, cond, speak, given)
        speak_d = speak.to(dev)
        frames = frames[:, 1:] * speak_d[:, None, None]
        audio = m.embed.out_content("audio_out", frames.to(self.dtype), speak_d)
        deferred = m.embed.embed_out_slot(time, 1 + n_text, audio)
        frames_cpu = frames.cpu()
        outputs = []
        for b, s in enumerate(sessions):
            s.deferred = deferred[b]
            s.last_frame = frames[b, -1]
            s.history = {n: c[b].cpu() for n, c in carried.items()} or s.history
            s.heard_last = s.heard_last if heard is None else int(heard[b, -1])
            s.turn += 1
            outputs.append(
                TurnOutput(
                    control=int(control[b]),
                    text=[int(t[b]) for t in text],
                    audio=frames_cpu[b].clone() if speak[b] else None,
                    heard=None if heard is None else heard[b].tolist(),
                )
            )
        preds = None
        if predictions:
            preds = Predictions(
                ctrl_logits, torch.stack(text_logits, 1), torch.stack(conds, 1), heard_logits
            )
        return StepResult(outputs, preds)

    @staticmethod
    def _read_window(sessions: list[Session], stream: str) -> tuple[torch.Tensor, ...]:
        """The sessions' remembered read slots of `stream`, PAD-padded to one length: (bytes,
        (last, before[, the one before]), turns), each [B, N], for fusion.continuation."""
        rows = [torch.cat(list(s.reads[stream])) for s in sessions]
        n, width = max(r.shape[0] for r in rows), rows[0].shape[-1]
        none = rows[0].new_tensor([PAD] * (width - 1) + [0])
        w = torch.stack([torch.cat([r, none.expand(n - r.shape[0], width)]) for r in rows])
        return w[..., 0], tuple(w[..., i] for i in range(1, width - 1)), w[..., -1]

    def _stack_inputs(self, inputs: list[TurnInput]) -> tuple[torch.Tensor, ...]:
        lay, dev = self.layout, self.device
        a = torch.zeros(lay.audio_slots, lay.audio_token_dim, dtype=torch.long)
        v = torch.zeros(lay.video_slots, 3, 40, 40)
        return (
            torch.stack([i.audio if i.audio is not None else a for i in inputs]).to(dev),
            torch.tensor([i.audio is not None for i in inputs], device=dev),
            torch.stack([i.video if i.video is not None else v for i in inputs]).to(
                dev, self.dtype
            ),
            torch.tensor([i.video is not None for i in inputs], device=dev),
            torch.tensor([i.user_text for i in inputs], device=dev),
            torch.tensor([i.background for i in inputs], device=dev),
        )

    def _choose(
        self,
        sessions: list[Session],
        samplers: list[SamplerSettings],
        logits: torch.Tensor,
        forced: list[int | None],
    ) -> torch.Tensor:
        """[B] token ids on the CPU, where each session's generator lives, drawn with
        `samplers` (the sessions' own, or their text settings)."""
        out = sample_tokens(logits.float().cpu(), samplers, [s.rng for s in sessions])
        for b, f in enumerate(forced):
            if f is not None:
                out[b] = f
        return out

    def _frames(
        self,
        sessions: list[Session],
        cond: torch.Tensor,
        speak: torch.Tensor,
        forced: list[torch.Tensor | None],
    ) -> torch.Tensor:
        """One frame per speaking session; each draws its noise from its own generator. All
        speaking sessions with the same step count go through the flow head in one call."""
        out = torch.zeros(len(sessions), self.layout.audio_token_dim, device=self.device)
        need = [b for b in range(len(sessions)) if speak[b] and forced[b] is None]
        groups: dict[int, list[int]] = {}
        for b in need:
            steps = sessions[b].sampler.flow_steps or self.flow_steps
            groups.setdefault(steps, []).append(b)
        for steps, rows in groups.items():
            x0 = torch.stack(
                [
                    torch.randn(out.shape[1], generator=sessions[b].rng)
                    * sessions[b].sampler.flow_noise
                    for b in rows
                ]
            ).to(self.device)
            c = cond[rows]
            if self.graphs is not None:
                x1 = self.graphs.flow(self.model.flow, c, steps, x0)
            else:
                x1 = self.model.flow.sample(c, steps, x0)
            out[rows] = self.model.mel_norm.bound(x1)
        for b, f in enumerate(forced):
            if f is not None:
                out[b] = f.to(self.device)
        return out


__all__ = ["Engine", "StepResult", "SILENT", "SPEAK"]
