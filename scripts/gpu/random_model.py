"""Writes a model directory with random weights in a real architecture and size, for speed
measurements where real weights cannot travel: config.json, generation_config.json,
model.safetensors (bf16, or f32 with --f32), and the tokenizer files given.

    python random_model.py OUT_DIR TOKENIZER_DIR [--size 1.5b|0.5b|tiny] [--seed 0] [--f32]

Sizes are Qwen2.5's (qwen2 architecture, Qwen2.5's vocabulary): `1.5b` is Qwen2.5-1.5B's
config, `0.5b` Qwen2.5-0.5B's; `tiny` (2 layers, width 64) is for checking the loading path on a
CPU. Uses PyTorch when present (on the GPU if there is one), else numpy. Outputs of such a model
are random tokens: use it for tokens per second, never for accuracy. It seldom samples
end-of-sequence, so every sample runs to its max tokens.
"""

import argparse
import ctypes
import json
import os
import shutil
import struct
import sys

SIZES = {
    "1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2, tie_word_embeddings=True),
    "0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                 num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True),
}
VOCAB = 151936
EOS = [151645, 151643]


def config(size, dtype):
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": VOCAB,
        "max_position_embeddings": 32768,
        "max_window_layers": SIZES[size]["num_hidden_layers"],
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "hidden_act": "silu",
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "sliding_window": 32768,
        "bos_token_id": 151643,
        "eos_token_id": 151643,
        "torch_dtype": dtype,
        **SIZES[size],
    }


def shapes(c):
    h, i, kv = c["hidden_size"], c["intermediate_size"], c["num_key_value_heads"]
    d = h // c["num_attention_heads"]
    yield "model.embed_tokens.weight", (VOCAB, h), "normal"
    for n in range(c["num_hidden_layers"]):
        p = f"model.layers.{n}."
        yield p + "input_layernorm.weight", (h,), "ones"
        yield p + "post_attention_layernorm.weight", (h,), "ones"
        yield p + "self_attn.q_proj.weight", (h, h), "normal"
        yield p + "self_attn.q_proj.bias", (h,), "zeros"
        yield p + "self_attn.k_proj.weight", (kv * d, h), "normal"
        yield p + "self_attn.k_proj.bias", (kv * d,), "zeros"
        yield p + "self_attn.v_proj.weight", (kv * d, h), "normal"
        yield p + "self_attn.v_proj.bias", (kv * d,), "zeros"
        yield p + "self_attn.o_proj.weight", (h, h), "normal"
        yield p + "mlp.gate_proj.weight", (i, h), "normal"
        yield p + "mlp.up_proj.weight", (i, h), "normal"
        yield p + "mlp.down_proj.weight", (h, i), "normal"
    yield "model.norm.weight", (h,), "ones"
    if not c["tie_word_embeddings"]:
        yield "lm_head.weight", (VOCAB, h), "normal"


def generator(seed, f32):
    """A function (shape, kind) -> raw little-endian bytes in the chosen dtype."""
    try:
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
        g = torch.Generator(device=device).manual_seed(seed)
        dtype = torch.float32 if f32 else torch.bfloat16

        def make(shape, kind):
            if kind == "normal":
                t = torch.randn(shape, generator=g, device=device, dtype=torch.float32) * 0.02
            else:
                t = (torch.ones if kind == "ones" else torch.zeros)(shape, device=device)
            t = t.to(dtype).contiguous().cpu()
            # The raw bytes, without numpy (a bare PyTorch install may lack it).
            return ctypes.string_at(t.data_ptr(), t.numel() * t.element_size())

        return make, f"torch on {device}"
    except ImportError:
        import numpy as np
        rng = np.random.default_rng(seed)

        def make(shape, kind):
            if kind == "normal":
                a = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
            else:
                a = (np.ones if kind == "ones" else np.zeros)(shape, dtype=np.float32)
            if f32:
                return a.astype("<f4").tobytes()
            # bfloat16: the high half of each float32, rounded to nearest even.
            bits = a.view(np.uint32).astype(np.uint64)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
            return bits.astype("<u2").tobytes()

        return make, "numpy"


def write_safetensors(path, tensors, make, dtype):
    """safetensors: an 8-byte little-endian header length, a JSON header of each tensor's dtype,
    shape and byte range, padded with spaces to 8 bytes, then the bytes."""
    width = 4 if dtype == "F32" else 2
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in tensors:
        size = width
        for s in shape:
            size *= s
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape, kind in tensors:
            data = make(shape, kind)
            assert len(data) == header[name]["data_offsets"][1] - header[name]["data_offsets"][0]
            f.write(data)
    return offset


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("tokenizer", help="a directory with tokenizer.json and tokenizer_config.json")
    ap.add_argument("--size", choices=sorted(SIZES), default="1.5b")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--f32", action="store_true", help="float32 weights (default bfloat16)")
    args = ap.parse_args()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if not os.path.isfile(os.path.join(args.tokenizer, name)):
            sys.exit(f"{args.tokenizer}: {name} missing (scripts/gpu/qwen_tokenizer.py writes it)")
    os.makedirs(args.out, exist_ok=True)
    c = config(args.size, "float32" if args.f32 else "bfloat16")
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(c, f, indent=1)
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 151643, "eos_token_id": EOS, "do_sample": False}, f, indent=1)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(args.tokenizer, name), args.out)
    make, how = generator(args.seed, args.f32)
    tensors = list(shapes(c))
    # Written aside and renamed when whole: a run killed while writing leaves no
    # model.safetensors that run.sh would take for a finished one.
    weights = os.path.join(args.out, "model.safetensors")
    size = write_safetensors(weights + ".partial", tensors, make, "F32" if args.f32 else "BF16")
    os.replace(weights + ".partial", weights)
    params = size // (4 if args.f32 else 2)
    print(f"{args.out}: random qwen2 {args.size}, {params / 1e9:.2f}B parameters, "
          f"{size / 2**30:.2f} GiB ({how})", file=sys.stderr)


if __name__ == "__main__":
    main()
