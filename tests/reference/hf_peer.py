"""Hugging Face transformers itself (PyPI, pinned in requirements.txt) as the peer emo's
outputs are compared with: its own model classes, loaded the way users load them.

    python hf_peer.py forward --model DIR --ids "1,2,3;4,5,6" --out FILE.safetensors [--router]
    python hf_peer.py random --type olmoe --config '{"num_experts": 8}' --seed 0 --out DIR
                             [--layout per-expert|fused] [--dtype fp32|bf16]
    python hf_peer.py loads --model DIR
    python hf_peer.py train-server --model DIR --batch B --seq T [--threads N] [--device cpu|cuda]
                                   [--precision fp32|bf16] [--lr 1e-4] [--experts IMPL]
    python hf_peer.py loss-server --model DIR --windows FILE.safetensors [--batch B] [--threads N]
    python hf_peer.py schedule --kind linear|cosine|constant|wsd --warmup W --total N
                               [--final-ratio R] [--decay D]

forward: AutoModelForCausalLM.from_pretrained(DIR) in float32 (no trust_remote_code: only
    transformers' own classes), eval mode, on the given ids (rows ";", tokens ","). Writes
    `logits` F32 [B, T, V]; with --router also `router_logits.{i}` F32 [B*T, E] per MoE layer
    (as the model returns them with output_router_logits=True, in layer order).
random: a randomly initialised model of the family from its own config class (the config JSON
    overrides the class defaults), weights drawn as emo's tests draw them (linear N(0, 0.15^2),
    norms 1 + N(0, 0.1^2); transformers' own 0.02 makes routing a near tie), written with
    save_pretrained: per-expert names (save_original_format=True, transformers' default) or
    its fused in-memory layout (save_original_format=False).
loads: from_pretrained(DIR) and print the class, expert count and top-k: a checkpoint
    transformers loads unchanged (no missing or unexpected weights: that is an error here).

train-server: the benchmarks' peer (bench/train, scripts/gpu-check). Loads the model as a user
    fine-tuning it would (fp32 weights; under bf16, torch.autocast as the Trainer does), AdamW,
    and then, for each line "step" on stdin, runs one training step (forward with labels and
    router logits, backward, gradient clipping to 1.0, AdamW step) on a random batch and
    answers "SECONDS LOSS" (the step's wall time, the device synchronised). "quit" ends it.
    --experts picks transformers' MoE implementation (default: its own default).
loss-server: the eval benchmark's peer: for each line "run", the summed next-token cross
    entropy over the windows of FILE ("ids" I64 [W, T] right-padded, "mask" I64 [W, T]: 1 where
    a token is scored as a target), in batches of B windows, as "LOSS_SUM TOKENS SECONDS"
    (SECONDS: the forward passes).

schedule: the learning-rate factor (lr / peak) of steps 0..N that transformers' get_scheduler
    gives: linear (to 0), cosine_with_min_lr (min_lr_rate R), constant_with_warmup, and
    warmup_stable_decay (D decay steps, linear, min_lr_ratio R). Prints a JSON list; the factor
    of step s is the rate LambdaLR sets before the optimizer's (s+1)-th step.

Runs offline (HF_HUB_OFFLINE=1) and, except the servers, on one CPU thread, so the same inputs give the same bits.
No pickle: weights go through safetensors only.
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def parse_matrix(text, name):
    try:
        rows = [[int(x) for x in r.split(",")] for r in text.strip().split(";")]
    except ValueError:
        raise SystemExit(f"--{name}: expected integers like '1,2,3;4,5,6', got {text!r}")
    if len({len(r) for r in rows}) != 1:
        raise SystemExit(f"--{name}: rows have different lengths")
    return torch.tensor(rows, dtype=torch.long)


def load(model_dir, dtype=torch.float32):
    """from_pretrained as a user calls it; any weight it cannot place is an error."""
    model, info = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype, output_loading_info=True, trust_remote_code=False)
    problems = {k: v for k, v in info.items() if v and k != "error_msgs"} | (
        {"error_msgs": info["error_msgs"]} if info.get("error_msgs") else {})
    if problems:
        raise SystemExit(f"{model_dir}: transformers did not load it cleanly: {problems}")
    return model.eval()


def forward(args):
    model = load(args.model)
    ids = parse_matrix(args.ids, "ids")
    with torch.no_grad():
        out = model(input_ids=ids, output_router_logits=args.router, use_cache=False)
    tensors = {"logits": out.logits.float().contiguous()}
    if args.router:
        for i, logits in enumerate(out.router_logits or ()):
            tensors[f"router_logits.{i}"] = logits.float().contiguous()
    save_file(tensors, args.out, metadata={"peer": "transformers", "class": type(model).__name__})


def randomize(model, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or ".norm." in name or name.endswith("_norm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=generator))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=generator))


def random_model(args):
    overrides = json.loads(args.config)
    config = AutoConfig.for_model(args.type, **overrides)
    torch.manual_seed(args.seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    randomize(model, args.seed)
    model = model.to(DTYPES[args.dtype])
    model.save_pretrained(args.out, save_original_format=args.layout == "per-expert")


def loads(args):
    model = load(args.model)
    c = model.config
    experts = getattr(c, "num_experts", None) or getattr(c, "num_local_experts", None)
    print(f"{type(model).__name__} experts={experts} top_k={c.num_experts_per_tok}")


def train_server(args):
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    kwargs = {} if args.experts is None else {"experts_implementation": args.experts}
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, **kwargs).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(1)
    vocab = model.config.vocab_size
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        ids = torch.randint(0, vocab - 2, (args.batch, args.seq), generator=generator).to(device)
        sync()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
            out = model(input_ids=ids, labels=ids, output_router_logits=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss = out.loss.item()  # synchronises
        sync()
        print(f"{time.perf_counter() - start:.6f} {loss:.6f}", flush=True)


def loss_server(args):
    from safetensors.torch import load_file
    torch.set_num_threads(args.threads)
    model = load(args.model)
    windows = load_file(args.windows)
    ids, mask = windows["ids"], windows["mask"].bool()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        total, count = 0.0, 0
        start = time.perf_counter()
        with torch.no_grad():
            for first in range(0, ids.shape[0], args.batch):
                rows = slice(first, first + args.batch)
                width = int(mask[rows].sum(1).max()) + 1  # the longest window of the batch
                batch, scored = ids[rows, :width], mask[rows, 1:width]
                logits = model(input_ids=batch, use_cache=False).logits.float()
                losses = torch.nn.functional.cross_entropy(
                    logits[:, :-1].reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="none")
                total += losses[scored.reshape(-1)].double().sum().item()
                count += int(scored.sum())
        print(f"{total:.9f} {count} {time.perf_counter() - start:.6f}", flush=True)


SCHEDULES = {"linear": "linear", "cosine": "cosine_with_min_lr", "constant": "constant_with_warmup",
             "wsd": "warmup_stable_decay"}


def schedule(args):
    from transformers import get_scheduler
    kwargs = {"cosine": {"min_lr_rate": args.final_ratio},
              "wsd": {"num_decay_steps": args.decay, "min_lr_ratio": args.final_ratio, "decay_type": "linear"}}
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    lambdas = get_scheduler(SCHEDULES[args.kind], optimizer, num_warmup_steps=args.warmup,
                            num_training_steps=args.total,
                            scheduler_specific_kwargs=kwargs.get(args.kind, {})).lr_lambdas[0]
    print(json.dumps([lambdas(s) for s in range(args.total + 1)]))


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("forward")
    f.add_argument("--model", required=True)
    f.add_argument("--ids", required=True)
    f.add_argument("--out", required=True)
    f.add_argument("--router", action="store_true")
    r = sub.add_parser("random")
    r.add_argument("--type", required=True)
    r.add_argument("--config", default="{}")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", required=True)
    r.add_argument("--layout", choices=["per-expert", "fused"], default="per-expert")
    r.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    lo = sub.add_parser("loads")
    lo.add_argument("--model", required=True)
    t = sub.add_parser("train-server")
    t.add_argument("--model", required=True)
    t.add_argument("--batch", type=int, required=True)
    t.add_argument("--seq", type=int, required=True)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--device", default="cpu")
    t.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    t.add_argument("--lr", type=float, default=1e-4)
    t.add_argument("--experts", default=None)
    w = sub.add_parser("loss-server")
    w.add_argument("--model", required=True)
    w.add_argument("--windows", required=True)
    w.add_argument("--batch", type=int, default=8)
    w.add_argument("--threads", type=int, default=1)
    s = sub.add_parser("schedule")
    s.add_argument("--kind", choices=sorted(SCHEDULES), required=True)
    s.add_argument("--warmup", type=int, required=True)
    s.add_argument("--total", type=int, required=True)
    s.add_argument("--final-ratio", type=float, default=0.0)
    s.add_argument("--decay", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command in ("forward", "random", "loads"):
        torch.set_num_threads(1)
    {"forward": forward, "random": random_model, "loads": loads, "train-server": train_server,
     "loss-server": loss_server, "schedule": schedule}[args.command](args)


if __name__ == "__main__":
    main(sys.argv[1:])
