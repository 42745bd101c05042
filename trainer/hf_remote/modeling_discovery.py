"""A discovered linear-attention LM as a transformers model (loaded with trust_remote_code=True).

    embedding -> N x [RMSNorm -> layer program -> residual, RMSNorm -> SwiGLU MLP -> residual] -> RMSNorm -> head

`lm_shell.py` is the discovery project's own LM shell and `layer_program.py` the candidate's token
mixer, both copied unchanged, so the logits are the ones the project measured. The shell keeps no
key/value cache: generation re-reads the whole prefix for every new token (fine for trying a model;
a trainer at scale would add the layer's recurrent state as cache).
"""

import torch
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_discovery import DiscoveryConfig
from .fla_route import program_imports
from .lm_shell import LM, Block, LMConfig

with program_imports():
    from .layer_program import DeltaNet


class DiscoveryForCausalLM(PreTrainedModel, GenerationMixin):
    config_class = DiscoveryConfig
    base_model_prefix = "lm"
    main_input_name = "input_ids"
    _no_split_modules = [Block.__name__]
    _tied_weights_keys = {"lm.head.weight": "lm.embed.weight"}  # used only when the config ties them

    def __init__(self, config: DiscoveryConfig):
        super().__init__(config)
        self.lm = LM(LMConfig.from_dict(config.lm), DeltaNet)
        self.post_init()

    def _init_weights(self, module):
        # The shell and the program initialise their own weights; transformers' defaults would differ.
        pass

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        model = super().from_pretrained(*args, **kwargs)
        # transformers builds the model on the meta device and leaves non-persistent buffers (which a
        # program may compute in its constructor) uninitialised; rebuild them from a fresh copy.
        if any(True for _ in model.named_non_persistent_buffers()):
            fresh = cls(model.config)
            buffers = dict(fresh.named_buffers())
            for name, _ in list(model.named_non_persistent_buffers()):
                module_name, _, buffer_name = name.rpartition(".")
                module = model.get_submodule(module_name)
                current = getattr(module, buffer_name)
                module._buffers[buffer_name] = buffers[name].to(device=current.device, dtype=current.dtype)
        return model

    def get_input_embeddings(self):
        return self.lm.embed

    def set_input_embeddings(self, value):
        self.lm.embed = value

    def get_output_embeddings(self):
        return self.lm.head

    def set_output_embeddings(self, value):
        self.lm.head = value

    def forward(self, input_ids=None, attention_mask=None, labels=None, inputs_embeds=None, **kwargs):
        if inputs_embeds is not None:
            raise ValueError("this model takes input_ids, not inputs_embeds")
        # A mask of all ones is no mask; passing it would send the program down its padded path.
        if attention_mask is not None and bool(attention_mask.all()):
            attention_mask = None
        logits = self.lm(input_ids, attention_mask=attention_mask).logits
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                                     ignore_index=-100)
        return CausalLMOutputWithPast(loss=loss, logits=logits)

    def prepare_inputs_for_generation(self, input_ids, attention_mask=None, **kwargs):
        # No cache: every step sees the whole sequence so far.
        return {"input_ids": input_ids, "attention_mask": attention_mask}
