"""Build a Hugging Face tokenizer directory (tokenizer.json + tokenizer_config.json) offline from a
GGUF file's own byte-level BPE vocabulary, so Python load generators (GuideLLM, AIPerf) can count
tokens for a model without reaching the Hugging Face hub.

Usage: python make_tokenizer.py MODEL.gguf OUT_DIR   (needs gguf-py on PYTHONPATH, and tokenizers)
"""
import json
import sys
from pathlib import Path

from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers


def field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        return None
    if len(f.data) == 1 and f.types[0].name != "ARRAY":
        part = f.parts[f.data[0]]
        return bytes(part).decode() if f.types[0].name == "STRING" else part[0].item()
    return [bytes(f.parts[i]).decode() if f.types[-1].name == "STRING" else f.parts[i][0].item() for i in f.data]


def main(model, out):
    reader = GGUFReader(model)
    kind = field(reader, "tokenizer.ggml.model")
    if kind != "gpt2":
        sys.exit(f"{model}: tokenizer model {kind!r}; only byte-level BPE ('gpt2') is supported")
    tokens = field(reader, "tokenizer.ggml.tokens")
    types = field(reader, "tokenizer.ggml.token_type") or [1] * len(tokens)
    merges = [tuple(m.split(" ", 1)) for m in field(reader, "tokenizer.ggml.merges")]
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True) for t, ty in zip(tokens, types) if ty == 3])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(out / "tokenizer.json"))
    special = lambda key: tokens[i] if (i := field(reader, key)) is not None else None
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": special("tokenizer.ggml.bos_token_id"),
        "eos_token": special("tokenizer.ggml.eos_token_id"),
        "model_max_length": field(reader, f"{field(reader, 'general.architecture')}.context_length") or 8192,
    }
    if (template := field(reader, "tokenizer.chat_template")) is not None:
        config["chat_template"] = template
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    print(f"{out}: {len(tokens)} tokens, {len(merges)} merges")


if __name__ == "__main__":
    main(*sys.argv[1:3])
