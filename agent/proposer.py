"""The offline proposer: new layer programs by mutating a parent with a library of motifs.

Used when no LLM is configured, and as the baseline an LLM search must beat. A program it writes
carries its genome (the motif settings) in a `# genome:` line; a parent without one (the seed, an
LLM's or an imported program) is treated as the seed's genome, which renders a layer with the same
parameters and the same function as the seed DeltaNet. A mutation changes one or two motifs, chosen
with a seeded generator, so the same parent and seed give the same child.

Motifs (each value is a documented architectural choice):
    conv_size      short causal convolution width on q, k, v (2 to 8), or no convolution at all
    feature_map    the q/k feature map before L2 normalisation: SiLU, ELU+1, ReLU, identity
    beta           the write strength: sigmoid in (0, 1), or 2*sigmoid in (0, 2) (negative eigenvalues)
    forget_gate    none, or a data-dependent per-head decay of the memory (the gated delta rule)
    output_gate    gated RMSNorm, RMSNorm then a sigmoid gate, or plain RMSNorm
    fir_branch     none, or a parallel local FIR path over values fused with the delta path by a gate
    head_factor    head count multiplier: fewer, wider heads or more, narrower ones
    expand_v       value width multiplier (a larger memory per head)
    qk_temperature a learned per-head query temperature
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass, fields, replace

GENOME_LINE = re.compile(r"^# genome: (\{.*\})$", re.MULTILINE)


@dataclass(frozen=True)
class Genome:
    conv_size: int = 4  # 0 means no short convolution
    feature_map: str = "silu"
    beta: str = "sigmoid"
    forget_gate: bool = False
    output_gate: str = "gated_norm"
    fir_size: int = 0  # 0 means no FIR branch
    head_factor: float = 1.0
    expand_v: float = 1.0
    qk_temperature: bool = False


# motif -> (values, what each value means: the sentence a motivation uses)
MOTIFS: dict[str, dict] = {
    "conv_size": {
        0: "removes the short convolutions, so q, k and v see only the current token before the memory",
        2: "narrows the short convolutions to 2 taps: a cheaper, sharper local context",
        3: "uses 3-tap short convolutions",
        4: "uses the standard 4-tap short convolutions",
        6: "widens the short convolutions to 6 taps for more local context in keys and queries",
        8: "widens the short convolutions to 8 taps, a longer local window before the memory",
    },
    "feature_map": {
        "silu": "maps q and k through SiLU before L2 normalisation",
        "elu1": "maps q and k through ELU+1 (positive features, as in linear transformers)",
        "relu": "maps q and k through ReLU (sparse, positive features)",
        "identity": "uses q and k without a nonlinearity (only L2 normalised)",
    },
    "beta": {
        "sigmoid": "keeps the write strength beta in (0, 1) with a sigmoid",
        "sigmoid2": "lets beta reach (0, 2), so the state transition can have negative eigenvalues and "
                    "overwrite more aggressively",
    },
    "forget_gate": {
        False: "keeps a memory without decay",
        True: "adds a data-dependent per-head forget gate (the gated delta rule), so the memory can clear "
              "stale associations",
    },
    "output_gate": {
        "gated_norm": "gates the normalised output with SiLU of an input projection",
        "sigmoid": "normalises the output, then multiplies it by a sigmoid gate of the input",
        "none": "removes the output gate (plain RMSNorm)",
    },
    "fir_size": {
        0: "keeps a single delta-rule path",
        3: "adds a parallel 3-tap causal FIR path over values, mixed with the delta path by a per-head gate",
        8: "adds a parallel 8-tap causal FIR path over values, mixed with the delta path by a per-head gate",
        16: "adds a parallel 16-tap causal FIR path over values (a local sliding context), mixed with the "
            "delta path by a per-head gate",
    },
    "head_factor": {
        0.5: "halves the number of heads: wider heads, a larger memory per head",
        1.0: "keeps the head count",
        2.0: "doubles the number of heads: narrower heads, more independent memories",
    },
    "expand_v": {
        1.0: "keeps values as wide as the hidden state",
        2.0: "doubles the value width, a larger memory per head at a modest parameter cost",
    },
    "qk_temperature": {
        False: "uses the fixed 1/sqrt(d) query scale",
        True: "learns a per-head query temperature, so each head can choose how sharply it reads",
    },
}

SHORT_NAMES = {"conv_size": "c", "feature_map": "f", "beta": "b", "forget_gate": "g", "output_gate": "o",
               "fir_size": "fir", "head_factor": "h", "expand_v": "v", "qk_temperature": "t"}


@dataclass
class Proposal:
    name: str
    motivation: str
    program: str
    genome: Genome
    changes: dict


def parse_genome(program: str | None) -> Genome | None:
    match = GENOME_LINE.search(program or "")
    if not match:
        return None
    try:
        data = json.loads(match.group(1))
        known = {f.name for f in fields(Genome)}
        return Genome(**{k: v for k, v in data.items() if k in known})
    except (ValueError, TypeError):
        return None


def mutate(parent_program: str | None, *, seed: int, parent_name: str | None = None, changes: int | None = None,
           avoid: set[str] | None = None) -> Proposal:
    """A child of the parent: one or two motifs changed, reproducibly for a given seed.

    `avoid` holds genome keys (see `genome_key`) not to propose again, e.g. programs already tried.
    """
    rng = random.Random(seed)
    base = parse_genome(parent_program) or Genome()
    avoid = avoid or set()
    for _ in range(50):
        count = changes or rng.choice([1, 1, 2])
        picked = rng.sample(sorted(MOTIFS), count)
        updates = {m: rng.choice([v for v in MOTIFS[m] if v != getattr(base, m)]) for m in picked}
        child = replace(base, **updates)
        if genome_key(child) not in avoid and child != base:
            break
    program = render(child)
    tag = "-".join(f"{SHORT_NAMES[m]}{_short(v)}" for m, v in sorted(updates.items()))
    digest = hashlib.sha1(program.encode()).hexdigest()[:6]
    name = f"delta-{tag}-{digest}"
    described = "; it ".join(MOTIFS[m][v] for m, v in sorted(updates.items()))
    origin = f"the parent {parent_name}" if parent_name else "the parent"
    motivation = (f"Starting from {origin}, this variant {described}. "
                  f"Expected effect: {_expectation(updates)} Everything else is kept, so the measured difference "
                  f"is attributable to this change.")
    return Proposal(name=name, motivation=motivation, program=program, genome=child, changes=updates)


def genome_key(genome: Genome) -> str:
    return json.dumps(asdict(genome), sort_keys=True)


def _short(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value).replace(".", "p")


def _expectation(updates: dict) -> str:
    hints = []
    if updates.get("forget_gate") or updates.get("fir_size"):
        hints.append("better use of recent context, visible first in the recall tasks and the loss")
    if "conv_size" in updates or "feature_map" in updates:
        hints.append("a change in how sharply keys separate, which shows in recall accuracy")
    if "head_factor" in updates or "expand_v" in updates or "qk_temperature" in updates:
        hints.append("a different memory capacity per head, traded against parameters and speed")
    if "beta" in updates or "output_gate" in updates:
        hints.append("different optimisation dynamics, visible in the early loss curve")
    return "; ".join(hints) + "." if hints else "a small change in loss."


# ---------------------------------------------------------------- rendering


def render(genome: Genome) -> str:
    """A complete program for the genome; only the code of the chosen motifs appears in it."""
    g = genome
    conv = g.conv_size > 0
    imports = ["from fla.layers.utils import get_unpad_data, index_first_axis, pad_input"]
    modules = ["RMSNorm"] + (["FusedRMSNormGated"] if g.output_gate == "gated_norm" else []) + \
        (["ShortConvolution"] if conv else [])
    imports.append(f"from fla.modules import {', '.join(sorted(modules))}")
    imports.append("from fla.modules.l2norm import l2norm")
    imports.append("from fla.ops.gated_delta_rule import chunk_gated_delta_rule" if g.forget_gate
                   else "from fla.ops.delta_rule import chunk_delta_rule")
    feature = {"silu": "F.silu({x})", "elu1": "(F.elu({x}) + 1.0)", "relu": "F.relu({x})", "identity": "{x}"}
    qk_conv_act = '"silu"' if g.feature_map == "silu" else "None"
    qk_map = "{x}" if (conv and g.feature_map == "silu") else feature[g.feature_map]

    init = [
        "self.hidden_size = hidden_size",
        f"self.num_heads = max(1, int(num_heads * {g.head_factor}))",
        "self.layer_idx = layer_idx",
        "self.key_dim = int(hidden_size * expand_k)",
        "self.value_dim = int(hidden_size * expand_v)",
        "if self.key_dim % self.num_heads or self.value_dim % self.num_heads:",
        "    raise ValueError(f\"dims {self.key_dim}, {self.value_dim} do not divide into {self.num_heads} heads\")",
        "self.head_k_dim = self.key_dim // self.num_heads",
        "self.head_v_dim = self.value_dim // self.num_heads",
        "self.q_proj = nn.Linear(hidden_size, self.key_dim, bias=False)",
        "self.k_proj = nn.Linear(hidden_size, self.key_dim, bias=False)",
        "self.v_proj = nn.Linear(hidden_size, self.value_dim, bias=False)",
        "self.b_proj = nn.Linear(hidden_size, self.num_heads, bias=False)",
    ]
    if conv:
        init += [
            f"self.q_conv1d = ShortConvolution(self.key_dim, kernel_size=conv_size, activation={qk_conv_act})",
            f"self.k_conv1d = ShortConvolution(self.key_dim, kernel_size=conv_size, activation={qk_conv_act})",
            "self.v_conv1d = ShortConvolution(self.value_dim, kernel_size=conv_size, activation=\"silu\")",
        ]
    if g.forget_gate:
        init += [
            "# Per-head decay in (0, 1): exp(-exp(A_log) * softplus(a_proj(x) + dt_bias)), as in Mamba2.",
            "self.a_proj = nn.Linear(hidden_size, self.num_heads, bias=False)",
            "self.A_log = nn.Parameter(torch.log(torch.empty(self.num_heads).uniform_(1, 16)))",
            "self.dt_bias = nn.Parameter(torch.log(torch.expm1(torch.empty(self.num_heads).uniform_(1e-3, 1e-1))))",
        ]
    if g.fir_size:
        init += [
            "# Causal FIR filters over values, initialised to pass the current token through.",
            f"self.fir = nn.Parameter(torch.zeros(self.value_dim, 1, {g.fir_size}))",
            "with torch.no_grad():",
            "    self.fir[:, 0, -1] = 1.0",
            "self.mix_proj = nn.Linear(hidden_size, self.num_heads, bias=True)",
        ]
    if g.qk_temperature:
        init.append("self.q_log_temp = nn.Parameter(torch.zeros(self.num_heads))")
    if g.output_gate != "none":
        init.append("self.g_proj = nn.Linear(hidden_size, self.value_dim, bias=False)")
    init.append("self.o_norm = FusedRMSNormGated(self.head_v_dim, eps=norm_eps)" if g.output_gate == "gated_norm"
                else "self.o_norm = RMSNorm(self.head_v_dim, eps=norm_eps)")
    init.append("self.o_proj = nn.Linear(self.value_dim, hidden_size, bias=False)")

    fwd = [
        "batch, length, _ = hidden_states.shape",
        "cu_seqlens, indices = kwargs.get(\"cu_seqlens\"), None",
        "if attention_mask is not None:",
        "    indices, cu_seqlens, _ = get_unpad_data(attention_mask[:, -length:])",
        "    hidden_states = index_first_axis(rearrange(hidden_states, \"b s d -> (b s) d\"), indices).unsqueeze(0)",
        "x = hidden_states",
        "# Decoding (use_cache): the state read so far comes in past_key_values and goes back out updated.",
        "state = past_key_values[self.layer_idx] if past_key_values is not None and len(past_key_values) > self.layer_idx else None",
        "conv_q = conv_k = conv_v = None",
    ]
    if conv:
        fwd += [
            "if state is not None and state.get(\"conv_state\"):",
            "    conv_q, conv_k, conv_v = state[\"conv_state\"]",
            "q, conv_q = self.q_conv1d(self.q_proj(x), cache=conv_q, output_final_state=use_cache, cu_seqlens=cu_seqlens)",
            "k, conv_k = self.k_conv1d(self.k_proj(x), cache=conv_k, output_final_state=use_cache, cu_seqlens=cu_seqlens)",
            "v, conv_v = self.v_conv1d(self.v_proj(x), cache=conv_v, output_final_state=use_cache, cu_seqlens=cu_seqlens)",
        ]
        if qk_map != "{x}":
            fwd += [f"q, k = {qk_map.format(x='q')}, {qk_map.format(x='k')}"]
    else:
        fwd += [
            f"q = {feature[g.feature_map].format(x='self.q_proj(x)')}",
            f"k = {feature[g.feature_map].format(x='self.k_proj(x)')}",
            "v = F.silu(self.v_proj(x))",
        ]
    fwd += [
        "q = l2norm(rearrange(q, \"... (h d) -> ... h d\", d=self.head_k_dim))",
        "k = l2norm(rearrange(k, \"... (h d) -> ... h d\", d=self.head_k_dim))",
        "v = rearrange(v, \"... (h d) -> ... h d\", d=self.head_v_dim)",
    ]
    if g.qk_temperature:
        fwd.append("q = q * self.q_log_temp.exp()[:, None]")
    fwd.append("beta = 2.0 * self.b_proj(x).sigmoid()" if g.beta == "sigmoid2" else "beta = self.b_proj(x).sigmoid()")
    fwd.append("recurrent = state.get(\"recurrent_state\") if state is not None else None")
    memory = "initial_state=recurrent, output_final_state=use_cache, cu_seqlens=cu_seqlens"
    if g.forget_gate:
        fwd += [
            "decay = -self.A_log.float().exp() * F.softplus(self.a_proj(x).float() + self.dt_bias)",
            f"o, recurrent = chunk_gated_delta_rule(q, k, v, decay, beta, {memory})",
        ]
    else:
        fwd.append(f"o, recurrent = chunk_delta_rule(q, k, v, beta, {memory})")
    fwd += [
        "if past_key_values is not None and use_cache:",
        "    conv_state = (conv_q, conv_k, conv_v) if conv_q is not None else None",
        "    past_key_values.update(recurrent_state=recurrent, conv_state=conv_state, layer_idx=self.layer_idx,",
        "                           offset=length)",
    ]
    if g.fir_size:
        fwd += [
            "# The FIR path sees each sequence's own past only: packed sequences are filtered one by one. Its taps keep",
            "# no decoding state, so a decoded FIR candidate continues wrongly and reports no state size.",
            "local = self._fir(rearrange(v, \"b t h d -> b t (h d)\"), cu_seqlens)",
            "local = rearrange(local, \"b t (h d) -> b t h d\", d=self.head_v_dim)",
            "mix = self.mix_proj(x).sigmoid().unsqueeze(-1)",
            "o = mix * o + (1.0 - mix) * local",
        ]
    if g.output_gate == "gated_norm":
        fwd += ["gate = rearrange(self.g_proj(x), \"... (h d) -> ... h d\", d=self.head_v_dim)",
                "o = self.o_norm(o, gate)"]
    elif g.output_gate == "sigmoid":
        fwd += ["gate = rearrange(self.g_proj(x), \"... (h d) -> ... h d\", d=self.head_v_dim)",
                "o = self.o_norm(o) * gate.sigmoid()"]
    else:
        fwd.append("o = self.o_norm(o)")
    fwd += [
        "o = self.o_proj(rearrange(o, \"b t h d -> b t (h d)\"))",
        "if attention_mask is not None:",
        "    o = pad_input(o.squeeze(0), indices, batch, length)",
        "return o, None, past_key_values",
    ]
    methods = ""
    if g.fir_size:
        methods = "\n".join([
            "",
            "    def _fir(self, x: torch.Tensor, cu_seqlens: torch.Tensor | None) -> torch.Tensor:",
            "        if cu_seqlens is None:",
            "            return self._fir_one(x)",
            "        bounds = cu_seqlens.tolist()",
            "        return torch.cat([self._fir_one(x[:, s:e]) for s, e in zip(bounds[:-1], bounds[1:])], dim=1)",
            "",
            "    def _fir_one(self, x: torch.Tensor) -> torch.Tensor:",
            "        padded = F.pad(x.transpose(1, 2), (self.fir.shape[-1] - 1, 0))",
            "        return F.conv1d(padded, self.fir, groups=self.value_dim).transpose(1, 2)",
        ])
    described = "\n".join(f"    {m}: {MOTIFS[m][getattr(g, m)]}" for m in MOTIFS)
    body_init = "\n".join(f"        {line}" for line in init)
    body_fwd = "\n".join(f"        {line}" for line in fwd)
    return f'''"""DeltaNet variant written by the offline proposer.

Motifs:
{described}
"""
# genome: {json.dumps(asdict(g), sort_keys=True)}

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

{chr(10).join(imports)}


class DeltaNet(nn.Module):
    def __init__(self, hidden_size: int = 1024, expand_k: float = 1.0, expand_v: float = {g.expand_v},
                 num_heads: int = 4, conv_size: int = {g.conv_size or 4}, layer_idx: int | None = None,
                 norm_eps: float = 1e-5, **kwargs) -> None:
        super().__init__()
{body_init}

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None,
                past_key_values=None, use_cache: bool = False, output_attentions: bool = False, **kwargs):
{body_fwd}
{methods}
'''
