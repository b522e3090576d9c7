"""Runs the reference EMO / OLMoE forward pass on a checkpoint and writes the results.

    "$(scripts/reference-venv)"/bin/python tests/reference/ref_forward.py --model DIR --ids "1,2,3;4,5,6" --out FILE.safetensors
        [--attention-mask "0,1,1;1,1,1"] [--router] [--labels "-100,2,3;4,5,-100"] [--dtype fp32|bf16]

Rows are separated by ";", tokens by ","; all rows have the same length. Output (safetensors):

    logits                 F32 [B, T, V]       (bf16 logits upcast under --dtype bf16)
  with --router:
    router_logits.{i}      F32 [B*T, E_i]      raw router (gate) output of MoE layer i; dense layers
                                               have none; i is the decoder layer index
    topk_ids.{i}           I64 [B*T, k]        chosen experts, in the reference's order
    topk_weights.{i}       F32 [B*T, k]        their weights as multiplied (after the cast to the
                                               model dtype)
    hidden.{i}             F32 [B, T, H]       residual stream after decoder layer i (before the
                                               final norm)
    lb_loss                F32 []              as the *ForCausalLM computes it with
                                               output_router_logits=True
  with --labels (-100 = ignored; unshifted, the loss shifts them as HF does):
    loss                   F32 []              ce_loss + router_aux_loss_coef * lb_loss
    ce_loss                F32 []              mean next-token cross entropy
    lb_loss                F32 []

With --attention-mask (1 = token, 0 = padding; left padding), position ids are computed as
generate() does (cumsum - 1, padding positions set to 1) and attention uses HF's eager
causal+padding mask (finfo.min, not -inf). Without it, positions are 0..T-1 and the mask is
causal only.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_model import ReferenceModel, generate_position_ids  # noqa: E402
from safetensors_io import save_file  # noqa: E402


def parse_matrix(text, name):
    rows = [r for r in text.strip().split(";")]
    try:
        values = [[int(x) for x in r.split(",")] for r in rows]
    except ValueError:
        raise SystemExit(f"--{name}: expected integers like '1,2,3;4,5,6', got {text!r}")
    if len({len(r) for r in values}) != 1:
        raise SystemExit(f"--{name}: rows have different lengths")
    return torch.tensor(values, dtype=torch.long)


def run(model_dir, ids, attention_mask=None, labels=None, router=False, dtype="fp32"):
    """Returns the dict of output tensors that main() writes."""
    model = ReferenceModel(model_dir, dtype=dtype)
    position_ids = generate_position_ids(attention_mask) if attention_mask is not None else None
    res = model.forward(
        ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        labels=labels,
        output_router_logits=router,
    )
    out = {"logits": res["logits"].float()}
    if router:
        for i, t in res["router_logits"].items():
            out[f"router_logits.{i}"] = t.float()
            out[f"topk_ids.{i}"] = res["topk_ids"][i].to(torch.int64)
            out[f"topk_weights.{i}"] = res["topk_weights"][i].float()
        for i, t in enumerate(res["hidden"]):
            out[f"hidden.{i}"] = t.float()
    for key in ("loss", "ce_loss", "lb_loss"):
        if key in res:
            out[key] = torch.as_tensor(res[key]).float().reshape(())
    return out, model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint directory (config.json + safetensors)")
    ap.add_argument("--ids", required=True, help='token ids, e.g. "1,2,3;4,5,6"')
    ap.add_argument("--out", required=True, help="output .safetensors file")
    ap.add_argument("--attention-mask", default=None, help='e.g. "0,1,1;1,1,1" (left padding)')
    ap.add_argument("--labels", default=None, help="labels, same shape as --ids, -100 = ignore")
    ap.add_argument("--router", action="store_true", help="also write router logits, top-k, hidden states, lb_loss")
    ap.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    # "--labels -100,2,3" would read "-100,2,3" as an option: glue such values to their flag.
    argv = list(sys.argv[1:] if argv is None else argv)
    for i in range(len(argv) - 1):
        if argv[i] in ("--ids", "--labels", "--attention-mask") and argv[i + 1].startswith("-"):
            argv[i : i + 2] = [argv[i] + "=" + argv[i + 1], ""]
    args = ap.parse_args([a for a in argv if a != ""])

    torch.set_num_threads(1)  # run-to-run identical results
    ids = parse_matrix(args.ids, "ids")
    mask = parse_matrix(args.attention_mask, "attention-mask") if args.attention_mask else None
    labels = parse_matrix(args.labels, "labels") if args.labels else None
    for name, m in (("attention-mask", mask), ("labels", labels)):
        if m is not None and m.shape != ids.shape:
            raise SystemExit(f"--{name} has shape {list(m.shape)}, --ids has {list(ids.shape)}")

    out, model = run(args.model, ids, mask, labels, args.router, args.dtype)
    if model.unused:
        print(f"warning: {len(model.unused)} checkpoint tensors unused, e.g. {model.unused[:3]}", file=sys.stderr)
    meta = {
        "model_type": model.cfg.model_type,
        "dtype": args.dtype,
        "reference": "allenai/EMO modeling_emo.py @ fb077838; transformers 4.57.1 (olmoe, rope, mask, loss)",
    }
    save_file(out, args.out, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
