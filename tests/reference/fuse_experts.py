"""Rewrites a per-expert checkpoint into the transformers-v5 fused expert layout.

    "$(scripts/reference-venv)"/bin/python tests/reference/fuse_experts.py --model DIR --out DIR

For every MoE layer i, the per-expert tensors

    model.layers.{i}.mlp.experts.{e}.gate_proj.weight   [I, H]
    model.layers.{i}.mlp.experts.{e}.up_proj.weight     [I, H]
    model.layers.{i}.mlp.experts.{e}.down_proj.weight   [H, I]

become (transformers v5 MixtralExperts / OlmoeExperts, no ".weight" suffix)

    model.layers.{i}.mlp.experts.gate_up_proj   [E, 2*I, H]   row block [0, I) = gate, [I, 2I) = up
    model.layers.{i}.mlp.experts.down_proj      [E, H, I]

so that `gate, up = F.linear(x, gate_up_proj[e]).chunk(2, dim=-1)` and
`y = F.linear(act(gate) * up, down_proj[e])` reproduce the per-expert MLP. Every other tensor
is copied unchanged (same name, dtype and bytes); the output is one model.safetensors (a sharded
input is merged). Every other file of the directory (config.json, tokenizer files, ...) is
copied byte for byte; the input's .safetensors files and index are not.

Independent of ref_model.py on purpose: it is a fixture for the C++ fused-layout reader.
"""

import argparse
import os
import re
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import INDEX_FILE, load_checkpoint, save_file  # noqa: E402

PER_EXPERT = re.compile(r"^(model\.layers\.\d+\.mlp\.experts\.)(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")


def fuse(tensors):
    groups = {}  # layer prefix -> {expert id -> {proj -> tensor}}
    out = {}
    for name, t in tensors.items():
        m = PER_EXPERT.match(name)
        if m is None:
            out[name] = t
            continue
        prefix, e, proj = m.group(1), int(m.group(2)), m.group(3)
        groups.setdefault(prefix, {}).setdefault(e, {})[proj] = t
    for prefix, experts in groups.items():
        ids = sorted(experts)
        if ids != list(range(len(ids))):
            raise ValueError(f"{prefix}*: expert ids {ids} are not 0..{len(ids) - 1}")
        gate_up, down = [], []
        for e in ids:
            parts = experts[e]
            if set(parts) != {"gate_proj", "up_proj", "down_proj"}:
                raise ValueError(f"{prefix}{e}: has {sorted(parts)}, needs gate/up/down_proj")
            gate_up.append(torch.cat([parts["gate_proj"], parts["up_proj"]], dim=0))
            down.append(parts["down_proj"])
        out[prefix + "gate_up_proj"] = torch.stack(gate_up, dim=0).contiguous()
        out[prefix + "down_proj"] = torch.stack(down, dim=0).contiguous()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="per-expert checkpoint directory")
    ap.add_argument("--out", required=True, help="directory to write (created)")
    args = ap.parse_args(argv)
    if os.path.abspath(args.model) == os.path.abspath(args.out):
        ap.error("--out must differ from --model")
    os.makedirs(args.out, exist_ok=True)
    for entry in sorted(os.listdir(args.model)):
        src = os.path.join(args.model, entry)
        if entry.endswith(".safetensors") or entry == INDEX_FILE or not os.path.isfile(src):
            continue
        shutil.copyfile(src, os.path.join(args.out, entry))
    fused = fuse(load_checkpoint(args.model))
    save_file(fused, os.path.join(args.out, "model.safetensors"), {"format": "pt"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
