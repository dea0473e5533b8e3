"""Writes a tiny Llama GGUF (one block, 64 wide, random weights) with the SentencePiece
vocabulary of another GGUF (llama.cpp's `ggml-vocab-llama-spm.gguf`: Llama-2's 32000 tokens).

    python3 tiny_spm_model.py VOCAB.gguf OUT.gguf

Its text is noise; its tokens and their decoding are Llama-2's. scripts/tiny_spm_model.sh
fetches the vocabulary and runs this.
"""
import sys, numpy as np, gguf
vocab_path, out = sys.argv[1], sys.argv[2]
r = gguf.GGUFReader(vocab_path)
def arr(name):
    f = r.fields[name]
    return [f.parts[i] for i in f.data]
tokens = [bytes(p).decode('utf-8') for p in arr('tokenizer.ggml.tokens')]
scores = [float(p[0]) for p in arr('tokenizer.ggml.scores')]
types = [int(p[0]) for p in arr('tokenizer.ggml.token_type')]
n_vocab, n_embd, n_head, n_ff, n_ctx = len(tokens), 64, 4, 128, 2048
w = gguf.GGUFWriter(out, 'llama')
w.add_name('tiny-llama-spm')
w.add_block_count(1)
w.add_context_length(n_ctx)
w.add_embedding_length(n_embd)
w.add_feed_forward_length(n_ff)
w.add_head_count(n_head)
w.add_head_count_kv(n_head)
w.add_layer_norm_rms_eps(1e-5)
w.add_rope_dimension_count(n_embd // n_head)
w.add_file_type(0)
w.add_vocab_size(n_vocab)
w.add_tokenizer_model('llama')
w.add_tokenizer_pre('default')
w.add_token_list(tokens)
w.add_token_scores(scores)
w.add_token_types(types)
w.add_bos_token_id(1)
w.add_eos_token_id(2)
w.add_unk_token_id(0)
w.add_add_bos_token(True)
w.add_add_eos_token(False)
rng = np.random.default_rng(0)
def t(name, *shape, ones=False):
    a = np.ones(shape, np.float32) if ones else (rng.standard_normal(shape).astype(np.float32) * 0.02)
    w.add_tensor(name, a)
t('token_embd.weight', n_vocab, n_embd)
t('output_norm.weight', n_embd, ones=True)
t('output.weight', n_vocab, n_embd)
t('blk.0.attn_norm.weight', n_embd, ones=True)
for n in ('attn_q', 'attn_k', 'attn_v', 'attn_output'):
    t(f'blk.0.{n}.weight', n_embd, n_embd)
t('blk.0.ffn_norm.weight', n_embd, ones=True)
t('blk.0.ffn_gate.weight', n_ff, n_embd)
t('blk.0.ffn_up.weight', n_ff, n_embd)
t('blk.0.ffn_down.weight', n_embd, n_ff)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
