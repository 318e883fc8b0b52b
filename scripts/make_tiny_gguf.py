#!/usr/bin/env python3
"""Write a tiny, deterministic, random-weight llama GGUF that a real llama-server can serve.

The model is meant for tests: it loads in milliseconds and its output is shaped so that
token counts are assertable. The rows of the output head for every special token and every
byte token are zero, so greedy and default sampling alike only ever pick printable "normal"
pieces and never stop early: every request runs to ``max_tokens`` with
``finish_reason == "length"``. ``--allow-eos`` gives EOS a normal row so natural stops occur.

Layout (defaults): llama architecture, n_embd 64, 2 layers, 4 heads, n_ff 128, n_ctx 512;
2-D weights are F16 and 1-D norm weights F32 (llama.cpp aborts on F16 norms). The tokenizer
is SentencePiece-style ("llama") with <unk>, <s>, </s>, <|im_start|>, <|im_end|>, the 256
``<0xNN>`` byte tokens (llama.cpp needs ``<0x0A>`` as its newline token) and normal pieces:
printable ASCII, ``▁`` + character, and every prefix of a list of common English words so
that SPM merges can reach the whole words. A ChatML chat template is embedded.

The same arguments (including ``--seed``) produce a byte-identical file.

Usage: python scripts/make_tiny_gguf.py OUT.gguf [--n-embd 64 --n-layer 2 --n-head 4
       --n-ff 128 --n-ctx 512 --seed 0 --allow-eos]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

SPACE = "\u2581"  # SentencePiece's word-boundary marker "▁"
BOS_ID, EOS_ID, EOT_ID = 1, 2, 4
SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
WORDS_TEXT = (
    "the of and to in is it you that he was for on are with as his they be at one have this "
    "from or had by hot word but what some we can out other were all there when up use your "
    "how said an each she which do their time if will way about many then them write would "
    "like so these her long make thing see him two has look more day could go come did number "
    "sound no most people my over know water than call first who may down side been now find "
    "hello world model server token swap test llama"
)
WORDS = tuple(WORDS_TEXT.split())


@dataclass(frozen=True)
class Config:
    n_embd: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_ff: int = 128
    n_ctx: int = 512
    seed: int = 0
    allow_eos: bool = False

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


@dataclass(frozen=True)
class Vocab:
    tokens: list[str]
    scores: list[float]
    types: list[int]

    @property
    def normal_mask(self) -> np.ndarray:
        return np.array([t == gguf.TokenType.NORMAL for t in self.types], dtype=bool)


def build_vocab() -> Vocab:
    """Specials, then the 256 byte tokens, then normal pieces (longer pieces score higher)."""
    tokens: list[str] = list(SPECIAL_TOKENS)
    types: list[int] = [int(gguf.TokenType.UNKNOWN)] + [int(gguf.TokenType.CONTROL)] * 4
    scores: list[float] = [0.0] * len(SPECIAL_TOKENS)
    for byte in range(256):
        tokens.append(f"<0x{byte:02X}>")
        types.append(int(gguf.TokenType.BYTE))
        scores.append(0.0)

    printable = [chr(c) for c in range(0x21, 0x7F)]
    pieces: list[str] = [*printable, SPACE, *(SPACE + c for c in printable)]
    for word in WORDS:
        pieces.extend(SPACE + word[:n] for n in range(2, len(word) + 1))
    seen: set[str] = set()
    for index, piece in enumerate(pieces):
        if piece in seen:
            continue
        seen.add(piece)
        tokens.append(piece)
        types.append(int(gguf.TokenType.NORMAL))
        # SPM merges prefer the highest score: favour long pieces, break ties by order.
        scores.append(float(len(piece)) - index * 1e-4)
    return Vocab(tokens=tokens, scores=scores, types=types)


def build_tensors(cfg: Config, vocab: Vocab) -> dict[str, np.ndarray]:
    """Random weights in numpy (out, in) layout; 2-D as float16, 1-D norms as float32."""
    rng = np.random.default_rng(cfg.seed)
    n_vocab, d, ff = len(vocab.tokens), cfg.n_embd, cfg.n_ff

    def dense(rows: int, cols: int) -> np.ndarray:
        weights: np.ndarray = rng.standard_normal((rows, cols)) / np.sqrt(cols)
        return weights.astype(np.float16)

    def norm() -> np.ndarray:
        return np.ones(d, dtype=np.float32)

    tensors: dict[str, np.ndarray] = {
        "token_embd.weight": rng.standard_normal((n_vocab, d)).astype(np.float16)
    }
    for i in range(cfg.n_layer):
        p = f"blk.{i}."
        tensors[p + "attn_norm.weight"] = norm()
        tensors[p + "attn_q.weight"] = dense(d, d)
        tensors[p + "attn_k.weight"] = dense(d, d)
        tensors[p + "attn_v.weight"] = dense(d, d)
        tensors[p + "attn_output.weight"] = dense(d, d)
        tensors[p + "ffn_norm.weight"] = norm()
        tensors[p + "ffn_gate.weight"] = dense(ff, d)
        tensors[p + "ffn_up.weight"] = dense(ff, d)
        tensors[p + "ffn_down.weight"] = dense(d, ff)
    tensors["output_norm.weight"] = norm()

    output = rng.standard_normal((n_vocab, d))
    keep = vocab.normal_mask.copy()
    if cfg.allow_eos:
        keep[EOS_ID] = True
    output[~keep] = 0.0  # specials and bytes can never win: printable text, no early stop
    tensors["output.weight"] = output.astype(np.float16)
    return tensors


def write_model(path: Path, cfg: Config) -> None:
    if cfg.n_embd % cfg.n_head:
        raise ValueError(f"n_embd {cfg.n_embd} is not a multiple of n_head {cfg.n_head}")
    vocab = build_vocab()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(f"swapd-tiny-seed{cfg.seed}")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_context_length(cfg.n_ctx)
    writer.add_embedding_length(cfg.n_embd)
    writer.add_block_count(cfg.n_layer)
    writer.add_feed_forward_length(cfg.n_ff)
    writer.add_head_count(cfg.n_head)
    writer.add_head_count_kv(cfg.n_head)
    writer.add_rope_dimension_count(cfg.head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(vocab.tokens))

    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(vocab.tokens)
    writer.add_token_scores(vocab.scores)
    writer.add_token_types(vocab.types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(BOS_ID)
    writer.add_eos_token_id(EOS_ID)
    writer.add_eot_token_id(EOT_ID)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    for name, array in build_tensors(cfg, vocab).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def parse_args(argv: list[str] | None = None) -> tuple[Path, Config]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="path of the GGUF file to write")
    parser.add_argument("--n-embd", type=int, default=Config.n_embd)
    parser.add_argument("--n-layer", type=int, default=Config.n_layer)
    parser.add_argument("--n-head", type=int, default=Config.n_head)
    parser.add_argument("--n-ff", type=int, default=Config.n_ff)
    parser.add_argument("--n-ctx", type=int, default=Config.n_ctx)
    parser.add_argument("--seed", type=int, default=Config.seed)
    parser.add_argument(
        "--allow-eos", action="store_true", help="give EOS a normal output row (natural stops)"
    )
    ns = parser.parse_args(argv)
    cfg = Config(
        n_embd=ns.n_embd,
        n_layer=ns.n_layer,
        n_head=ns.n_head,
        n_ff=ns.n_ff,
        n_ctx=ns.n_ctx,
        seed=ns.seed,
        allow_eos=ns.allow_eos,
    )
    return ns.out, cfg


def main(argv: list[str] | None = None) -> int:
    out, cfg = parse_args(argv)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_model(out, cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
