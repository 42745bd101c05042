"""Configuration of an exported discovery model: the LM shell's settings plus the usual HF names."""

from transformers import PretrainedConfig


class DiscoveryConfig(PretrainedConfig):
    model_type = "discovery_linear_lm"

    def __init__(self, lm: dict | None = None, program_sha256: str = "", tie_word_embeddings: bool = True,
                 **kwargs):
        # `lm` is the shell's own config (LMConfig as a dict); it is the source of truth for the architecture.
        self.lm = dict(lm or {})
        self.program_sha256 = program_sha256
        self.vocab_size = self.lm.get("vocab_size", kwargs.pop("vocab_size", 0))
        self.hidden_size = self.lm.get("hidden_size", kwargs.pop("hidden_size", 0))
        self.num_hidden_layers = self.lm.get("num_layers", kwargs.pop("num_hidden_layers", 0))
        self.num_attention_heads = self.lm.get("num_heads", kwargs.pop("num_attention_heads", 0))
        self.max_position_embeddings = self.lm.get("max_seq_len", kwargs.pop("max_position_embeddings", 0))
        kwargs.setdefault("eos_token_id", self.lm.get("eos_token_id"))
        super().__init__(tie_word_embeddings=self.lm.get("tie_embeddings", tie_word_embeddings), **kwargs)
