"""Writes a Hugging Face tokenizer (tokenizer.json, tokenizer_config.json) read out of a Qwen2
GGUF file: its BPE vocabulary and merges, its special tokens, its chat template.

    python qwen_tokenizer.py Qwen2.5-Coder-0.5B-Instruct.Q4_K_M.gguf OUT_DIR

Needs the `gguf` and `tokenizers` packages. Qwen2.5's models share one vocabulary, so this
tokenizer serves any Qwen2.5 architecture (random_model.py uses it for random-weight models).
The pre-tokenizer is Qwen2's (the same split mistral.rs applies to `gpt2`-style GGUF tokenizers).
"""

import json
import os
import sys

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, processors

QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def field(reader, key):
    f = reader.fields.get(key)
    if f is None:
        sys.exit(f"{key} missing from the GGUF")
    return f


def strings(reader, key):
    f = field(reader, key)
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def scalar(reader, key):
    f = field(reader, key)
    value = f.parts[f.data[0]]
    return bytes(value).decode("utf-8") if f.types[0] == gguf.GGUFValueType.STRING else int(value[0])


def main(path, out):
    reader = gguf.GGUFReader(path)
    if scalar(reader, "tokenizer.ggml.model") != "gpt2":
        sys.exit(f"{path}: not a BPE (gpt2-style) tokenizer")
    tokens = strings(reader, "tokenizer.ggml.tokens")
    merges = [tuple(m.split(" ", 1)) for m in strings(reader, "tokenizer.ggml.merges")]
    kinds = field(reader, "tokenizer.ggml.token_type")
    types = [int(kinds.parts[i][0]) for i in kinds.data]
    eos = tokens[scalar(reader, "tokenizer.ggml.eos_token_id")]
    template = scalar(reader, "tokenizer.chat_template")

    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    # Token type 1 is a normal token; every other type is special (control, user-defined).
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty != 1]
    )
    os.makedirs(out, exist_ok=True)
    tokenizer.save(os.path.join(out, "tokenizer.json"))
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "chat_template": template,
        "eos_token": eos,
        "pad_token": "<|endoftext|>",
        "bos_token": None,
        "add_bos_token": False,
        "model_max_length": 32768,
    }
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=1)
    check = tokenizer.encode("Hello, world! 12 + 7 = 19")
    print(f"{out}: {len(tokens)} tokens, {len(merges)} merges, eos {eos!r}; "
          f"'Hello, world! 12 + 7 = 19' -> {check.ids}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
