"""The README.md of an exported model folder (`trainer.export`): what it is, how to use it, how to scale it."""

from __future__ import annotations

import json

USE = """\
## Use

```python
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model = AutoModelForCausalLM.from_pretrained("PATH/TO/THIS/FOLDER", trust_remote_code=True).eval()
tokenizer = AutoTokenizer.from_pretrained("PATH/TO/THIS/FOLDER", trust_remote_code=True)  # no prompt
ids = tokenizer("The river", return_tensors="pt").input_ids
print(tokenizer.decode(model.generate(ids, max_new_tokens=20, do_sample=True, top_k=50)[0]))
```

`trust_remote_code=True` runs `layer_program.py`, the discovered layer (the tokenizer is plain
`tokenizers` JSON; without the flag, transformers asks before reading this folder's config). It was written by a program
search: read it before you run it. The folder needs `torch`, `transformers`, `einops` and
`safetensors`, nothing of the discovery project. On a GPU with `flash-linear-attention` (`fla`) and
`triton` installed the layer uses fla's kernels; elsewhere it uses the pure PyTorch stand-ins in
`fla_cpu.py` (set `DISCOVERY_FLA=cpu` to force them). The model keeps no key/value cache, so each
generated token re-reads the prefix: fine for trying it, slow for long outputs.
"""

SCALE_SEED = """\
## Train the layer at a larger scale

This layer is the seed DeltaNet, which fla builds natively. `flame_config.json` is fla's
`DeltaNetConfig` (model_type `delta_net`, what the flame trainer reads) with the shape of this
model. Raise `hidden_size`, `num_hidden_layers`, `num_heads` and `vocab_size` to the scale you
want (the verification scale of the original work is about 340M parameters: hidden 1024, 24
layers) and give it to flame as the model config (`--model.config flame_config.json`). The weights
here are not carried over: fla names its modules differently, and a larger model trains from scratch.
"""

SCALE_CANDIDATE = """\
## Train the layer at a larger scale

This layer is not one of fla's built-in layers, but it keeps fla's layer interface:
`DeltaNet(hidden_size=..., num_heads=..., layer_idx=..., **kwargs)` whose `forward(hidden_states,
attention_mask=None, past_key_values=None, use_cache=False, output_attentions=False, **kwargs)`
returns `(output, None, past_key_values)`. fla's DeltaNet model (the one flame trains) has the same
shell as this model (embedding, blocks of RMSNorm + layer + RMSNorm + gated MLP, final norm, head), so
train it there with this layer in place of fla's own:

1. Put `layer_program.py` on your trainer's import path.
2. Before flame (or your script) builds the model, swap the layer class in:

   ```python
   import fla.models.delta_net.modeling_delta_net as delta_net
   from layer_program import DeltaNet

   delta_net.DeltaNet = DeltaNet  # every block now builds the discovered layer
   ```

3. Use `flame_config.json` as the model config (fla's `DeltaNetConfig`, model_type `delta_net`,
   with this model's shape). Raise `hidden_size`, `num_hidden_layers`, `num_heads` and `vocab_size`
   to the scale you want (the verification scale of the original work is about 340M parameters:
   hidden 1024, 24 layers). fla passes its layer options (`expand_k`, `use_gate`, `qk_norm`, ...)
   as keyword arguments; the layer ignores those it does not use.

The weights here are not carried over: a larger model trains from scratch.
"""


def readme(config: dict, *, seed: bool, has_tokenizer: bool) -> str:
    lm = config["lm"]
    shape = {k: lm.get(k) for k in ("vocab_size", "hidden_size", "num_layers", "num_heads", "max_seq_len")}
    origin = {k: v for k, v in config.items() if k not in ("lm", "program_sha256") and not isinstance(v, dict)}
    lines = [
        "# A discovered linear-attention language model",
        "",
        "Exported by the architecture-discovery service (`python -m trainer.export`): the project's LM shell",
        "around the discovered token mixer in `layer_program.py`, with the trained weights. Its logits are",
        "the ones the project measured.",
        "",
        f"- layer program sha256: `{config['program_sha256']}`",
        f"- shape: `{json.dumps(shape)}`",
        f"- trained as: `{json.dumps(origin, default=str)}`",
    ]
    if config.get("dtype") == "bfloat16":
        lines.append("- trained under bfloat16 autocast: the weights are float32, and the project measured it under "
                     "`torch.autocast(device_type, dtype=torch.bfloat16)`; use that context for its numbers")
    if not has_tokenizer:
        lines.append("- no tokenizer: the checkpoint was trained on token ids (a synthetic task)")
    return "\n".join(lines) + "\n\n" + USE + "\n" + (SCALE_SEED if seed else SCALE_CANDIDATE)
