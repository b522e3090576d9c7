"""Writes a random EMO or OLMoE checkpoint directory (config.json + model.safetensors,
per-expert layout), seeded and deterministic.

    "$(scripts/reference-venv)"/bin/python tests/reference/make_random.py --out DIR [--preset emo-tiny]
        [--config '{"num_experts": 16}' | --config path/to/config.json]
        [--seed 0] [--dtype fp32|bf16] [--shard-bytes N]

--config is merged over the preset (give "model_type" to start from another family's
preset). --shard-bytes N writes shards of at most N bytes plus model.safetensors.index.json
instead of one file. `--list` prints the presets.

The values are scaled so that a tiny model has O(1) activations and decisive routing:
embeddings N(0, 1); every norm weight 1 + 0.1 N(0, 1) (so a wrong cast order shows);
linear weights N(0, 1) / sqrt(fan_in); biases 0.1 N(0, 1). Tensors are drawn in sorted
name order from one torch.Generator seeded with --seed, in float32, then cast.
"""

import argparse
import json
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_model import Config, expected_weight_names  # noqa: E402
from safetensors_io import save_file, save_sharded  # noqa: E402

_EMO_BASE = {
    "model_type": "emo",
    "architectures": ["EmoForCausalLM"],
    "vocab_size": 128,
    "hidden_size": 32,
    "intermediate_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-06,
    "rope_theta": 500000.0,
    "rope_scaling": None,
    "attention_bias": False,
    "tie_word_embeddings": False,
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "norm_topk_prob": False,
    "router_aux_loss_coef": 0.01,
    "num_shared_experts": 0,
    "pad_token_id": 1,
    "bos_token_id": None,
    "eos_token_id": 2,
}

_OLMOE_BASE = {
    "model_type": "olmoe",
    "architectures": ["OlmoeForCausalLM"],
    "vocab_size": 128,
    "hidden_size": 32,
    "intermediate_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "hidden_act": "silu",
    "max_position_embeddings": 256,
    "rms_norm_eps": 1e-05,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "attention_bias": False,
    "clip_qkv": None,
    "tie_word_embeddings": False,
    "num_experts": 8,
    "num_experts_per_tok": 2,
    "norm_topk_prob": False,
    "router_aux_loss_coef": 0.01,
    "pad_token_id": 1,
    "bos_token_id": None,
    "eos_token_id": 2,
}

PRESETS = {
    "emo-tiny": dict(_EMO_BASE),
    # legacy shared expert: the last router column, its own softmax (weight 1.0)
    "emo-shared": dict(_EMO_BASE, num_shared_experts=1, num_experts_per_tok=3),
    # expert 0 always selected with its softmax-over-all probability
    "emo-always-active": dict(_EMO_BASE, always_active_experts=[0], num_experts_per_tok=3),
    # dense first layer with biases, per-layer expert and shared counts, attention biases,
    # head_dim != hidden/heads, linear RoPE scaling, norm_topk_prob off (shared experts present)
    "emo-perlayer": dict(
        _EMO_BASE,
        num_hidden_layers=4,
        num_experts_per_layer=[0, 8, 16, 8],
        num_shared_experts_per_layer=[0, 1, 0, 1],
        dense_intermediate_size=48,
        dense_mlp_bias=True,
        num_experts_per_tok=3,
        attention_bias=True,
        head_dim=16,
        rope_scaling={"type": "linear", "factor": 2.0},
    ),
    # tied embeddings, norm_topk_prob, llama3 RoPE, 16 experts, MQA
    "emo-tied": dict(
        _EMO_BASE,
        tie_word_embeddings=True,
        norm_topk_prob=True,
        num_experts=16,
        num_experts_per_tok=4,
        num_key_value_heads=1,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    ),
    "olmoe-tiny": dict(_OLMOE_BASE),
    # clip_qkv, norm_topk_prob, GQA, yarn RoPE
    "olmoe-clip": dict(
        _OLMOE_BASE,
        clip_qkv=0.5,
        norm_topk_prob=True,
        num_key_value_heads=2,
        num_experts=16,
        num_experts_per_tok=4,
        rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64},
    ),
}


def build_config(preset, overrides):
    base = dict(PRESETS[preset])
    if overrides.get("model_type") and overrides["model_type"] != base["model_type"]:
        base = dict(_EMO_BASE if overrides["model_type"] == "emo" else _OLMOE_BASE)
    base.update(overrides)
    return base


def random_tensors(cfg, seed):
    """float32 tensors for every weight the reference declares."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in sorted(expected_weight_names(cfg).items()):
        x = torch.randn(shape, generator=gen, dtype=torch.float32)
        if name.endswith("norm.weight"):
            x = 1.0 + 0.1 * x
        elif name.endswith(".bias"):
            x = 0.1 * x
        elif name == "model.embed_tokens.weight":
            pass
        else:  # [out, in] linear weight
            x = x / math.sqrt(shape[1])
        out[name] = x
    return out


def write_checkpoint(out_dir, config_dict, seed=0, dtype="fp32", shard_bytes=None):
    os.makedirs(out_dir, exist_ok=True)
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    config_dict = dict(config_dict)
    config_dict["torch_dtype"] = {"fp32": "float32", "bf16": "bfloat16"}[dtype]
    config_dict.setdefault("transformers_version", "4.57.1")
    cfg = Config(config_dict)
    tensors = {k: v.to(torch_dtype) for k, v in random_tensors(cfg, seed).items()}
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config_dict, f, indent=2, sort_keys=True)
        f.write("\n")
    if shard_bytes:
        save_sharded(tensors, out_dir, shard_bytes)
    else:
        save_file(tensors, os.path.join(out_dir, "model.safetensors"), {"format": "pt"})
    return tensors


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="checkpoint directory to write")
    ap.add_argument("--preset", default="emo-tiny", choices=sorted(PRESETS))
    ap.add_argument("--config", default=None, help="JSON object (string or file) merged over the preset")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--shard-bytes", type=int, default=None)
    ap.add_argument("--list", action="store_true", help="print the presets and exit")
    args = ap.parse_args(argv)
    if args.list:
        print(json.dumps(PRESETS, indent=2, sort_keys=True))
        return 0
    if not args.out:
        ap.error("--out is required")
    overrides = {}
    if args.config:
        text = args.config
        if os.path.exists(text):
            with open(text) as f:
                text = f.read()
        overrides = json.loads(text)
    cfg = build_config(args.preset, overrides)
    write_checkpoint(args.out, cfg, args.seed, args.dtype, args.shard_bytes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
