"""The language-model shell around a candidate mixer.

    embedding -> N x [RMSNorm -> mixer -> residual, RMSNorm -> SwiGLU MLP -> residual] -> RMSNorm -> head

The mixer class comes from a layer program (`trainer.layers.load_layer_class`). The shell
initialises its own weights; a mixer keeps the initialisation its program gives it. The loss is
computed in chunks of positions, so the full [B, T, vocab] logits never exist during training.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


@dataclass
class LMConfig:
    vocab_size: int = 2048
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    mlp_ratio: float = 4.0
    tie_embeddings: bool = True
    norm_eps: float = 1e-5
    max_seq_len: int = 128
    initializer_range: float = 0.02
    # Positions per chunk of the chunked cross-entropy.
    loss_chunk: int = 2048
    # Extra keyword arguments for the mixer's constructor.
    layer_kwargs: dict = field(default_factory=dict)
    eos_token_id: int = 0

    @classmethod
    def from_fidelity(cls, fidelity, **extra) -> LMConfig:
        return cls(vocab_size=fidelity.vocab_size, hidden_size=fidelity.hidden_size, num_layers=fidelity.num_layers,
                   num_heads=fidelity.num_heads, mlp_ratio=fidelity.mlp_ratio, tie_embeddings=fidelity.tie_embeddings,
                   max_seq_len=fidelity.seq_len, **extra)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LMConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class LMOutput:
    logits: torch.Tensor | None
    loss: torch.Tensor | None = None


class SwiGLU(nn.Module):
    def __init__(self, hidden_size: int, ratio: float):
        super().__init__()
        # 2/3 keeps the parameter count of a 4x MLP; rounded up to a multiple of 32 for the kernels.
        inner = 32 * -(-int(hidden_size * ratio * 2 / 3) // 32)
        self.gate_up = nn.Linear(hidden_size, 2 * inner, bias=False)
        self.down = nn.Linear(inner, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, config: LMConfig, layer_cls: type[nn.Module], layer_idx: int):
        super().__init__()
        self.mixer_norm = nn.RMSNorm(config.hidden_size, eps=config.norm_eps)
        self.mixer = layer_cls(hidden_size=config.hidden_size, num_heads=config.num_heads, layer_idx=layer_idx,
                               norm_eps=config.norm_eps, **config.layer_kwargs)
        self.mlp_norm = nn.RMSNorm(config.hidden_size, eps=config.norm_eps)
        self.mlp = SwiGLU(config.hidden_size, config.mlp_ratio)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(x, attention_mask=attention_mask)[0]

    def cached(self, x: torch.Tensor, cache) -> tuple[torch.Tensor, object]:
        """Decoding: the mixer reads its state from `cache`, adds x's, and returns the cache it updated."""
        return self._run(x, past_key_values=cache, use_cache=True)

    def _run(self, x: torch.Tensor, **mixer_kwargs) -> tuple[torch.Tensor, object]:
        out = self.mixer(self.mixer_norm(x), **mixer_kwargs)
        # The contract returns (o, attentions, cache); tolerate a bare tensor too.
        mixed = out[0] if isinstance(out, (tuple, list)) else out
        cache = out[2] if isinstance(out, (tuple, list)) and len(out) > 2 else None
        if not isinstance(mixed, torch.Tensor) or mixed.shape != x.shape:
            shape = getattr(mixed, "shape", type(mixed).__name__)
            raise ValueError(f"the mixer returned {shape}, expected a tensor of shape {tuple(x.shape)}")
        x = x + mixed
        return x + self.mlp(self.mlp_norm(x)), cache


class LM(nn.Module):
    def __init__(self, config: LMConfig, layer_cls: type[nn.Module]):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.blocks = nn.ModuleList(Block(config, layer_cls, i) for i in range(config.num_layers))
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.norm_eps)
        self.head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self._init_shell()
        if config.tie_embeddings:
            self.head.weight = self.embed.weight

    def _init_shell(self) -> None:
        std = self.config.initializer_range
        shell = [self.embed, self.head, *(block.mlp for block in self.blocks)]
        for part in shell:
            for module in part.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(module.weight, mean=0.0, std=std)

    def parameter_counts(self) -> dict:
        total = sum(p.numel() for p in self.parameters())
        embedding = self.embed.weight.numel() + (0 if self.config.tie_embeddings else self.head.weight.numel())
        mixer = sum(p.numel() for block in self.blocks for p in block.mixer.parameters())
        return {"params": total, "non_embedding_params": total - embedding,
                "mixer_params_per_layer": mixer // max(1, len(self.blocks))}

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(input_ids)
        for block in self.blocks:
            x = block(x, attention_mask)
        return self.norm(x)

    def decode(self, input_ids: torch.Tensor, cache) -> tuple[torch.Tensor, object]:
        """Logits of input_ids read after the context that `cache` holds (an empty cache: no context).

        Every mixer gets the cache with use_cache=True and returns it updated (fla's `Cache`, or the
        project's CPU stand-in); returns the logits and the cache the last mixer returned.
        """
        x = self.embed(input_ids)
        for index, block in enumerate(self.blocks):
            x, cache = block.cached(x, cache)
            if cache is None:
                raise ValueError(f"layer {index} returned no cache (the third element of its output is None)")
        return self.head(self.norm(x)), cache

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, return_logits: bool | None = None) -> LMOutput:
        """labels are aligned with input_ids (shifted inside); -100 is ignored.

        With labels, logits are only returned when asked for: the loss is computed chunk by chunk.
        """
        h = self.hidden(input_ids, attention_mask)
        if labels is None:
            return LMOutput(logits=self.head(h))
        if return_logits:
            logits = self.head(h)
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)
            return LMOutput(logits=logits, loss=loss)
        return LMOutput(logits=None, loss=self.chunked_loss(h[:, :-1], labels[:, 1:]))

    def chunked_loss(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        h, targets = h.flatten(0, 1), targets.flatten()
        count = (targets != -100).sum().clamp(min=1)
        total = h.new_zeros((), dtype=torch.float32)
        for start in range(0, h.shape[0], self.config.loss_chunk):
            piece = slice(start, start + self.config.loss_chunk)
            if torch.is_grad_enabled():
                # Recompute the chunk's logits in backward instead of keeping them.
                total = total + checkpoint(self._loss_sum, h[piece], targets[piece], use_reentrant=False)
            else:
                total = total + self._loss_sum(h[piece], targets[piece])
        return total / count

    def _loss_sum(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.head(h).float()
        return F.cross_entropy(logits, targets, ignore_index=-100, reduction="sum")
