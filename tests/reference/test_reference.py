"""Self-checks of the reference implementation.

    cd tests/reference && "$(../../scripts/reference-venv)"/bin/python -m unittest -v test_reference
    # or from the repository root:
    "$(scripts/reference-venv)"/bin/python -m unittest discover -s tests/reference -p 'test_*.py'
"""

import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import unittest

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import fuse_experts  # noqa: E402
import make_random  # noqa: E402
import ref_model as rm  # noqa: E402
from safetensors_io import load_checkpoint, load_file, read_header, save_file  # noqa: E402

torch.set_num_threads(1)


def make_ckpt(tmp, preset, seed=0, dtype="fp32", shard_bytes=None, **overrides):
    d = os.path.join(tmp, f"{preset}-{seed}-{dtype}-{len(os.listdir(tmp))}")
    make_random.write_checkpoint(d, make_random.build_config(preset, overrides), seed, dtype, shard_bytes)
    return d


class TmpDirTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()


# ---------------------------------------------------------------------------------------------
class SafetensorsTest(TmpDirTest):
    def test_roundtrip_all_dtypes(self):
        g = torch.Generator().manual_seed(0)
        tensors = {
            "f64": torch.randn(2, 3, generator=g, dtype=torch.float64),
            "f32": torch.randn(4, generator=g),
            "f16": torch.randn(3, 2, generator=g).half(),
            "bf16": torch.randn(5, 1, generator=g).bfloat16(),
            "i64": torch.tensor([-(2**40), 7]),
            "i32": torch.tensor([[1, -2]], dtype=torch.int32),
            "i16": torch.tensor([300, -300], dtype=torch.int16),
            "i8": torch.tensor([-5], dtype=torch.int8),
            "u8": torch.tensor([250, 3], dtype=torch.uint8),
            "bool": torch.tensor([True, False, True]),
            "scalar": torch.tensor(3.5),
            "empty": torch.zeros(0, 4),
        }
        path = os.path.join(self.tmp, "a.safetensors")
        save_file(tensors, path, {"format": "pt", "k": "v"})
        back, meta = load_file(path)
        self.assertEqual(meta, {"format": "pt", "k": "v"})
        self.assertEqual(set(back), set(tensors))
        for k, t in tensors.items():
            self.assertEqual(back[k].dtype, t.dtype, k)
            self.assertEqual(back[k].shape, t.shape, k)
            self.assertTrue(torch.equal(back[k], t), k)
        _, _, data_start = read_header(path)
        self.assertEqual(data_start % 8, 0)

    def test_reads_unpadded_header_and_known_bytes(self):
        # Hand-built file: header not padded, one F32 [2] tensor and one BF16 [1] tensor.
        header = {"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                  "y": {"dtype": "BF16", "shape": [1], "data_offsets": [8, 10]}}
        hb = json.dumps(header).encode()
        data = struct.pack("<ff", 1.5, -2.0) + struct.pack("<H", 0x3F80)  # bf16 1.0
        path = os.path.join(self.tmp, "b.safetensors")
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(hb)) + hb + data)
        t, meta = load_file(path)
        self.assertEqual(meta, {})
        self.assertEqual(t["x"].tolist(), [1.5, -2.0])
        self.assertEqual(t["y"].dtype, torch.bfloat16)
        self.assertEqual(t["y"].item(), 1.0)

    def test_rejects_bad_offsets(self):
        header = {"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}
        hb = json.dumps(header).encode()
        path = os.path.join(self.tmp, "c.safetensors")
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(hb)) + hb + b"\0" * 8)
        with self.assertRaises(ValueError):
            load_file(path)

    def test_sharded_checkpoint_loads_like_single_file(self):
        single = make_ckpt(self.tmp, "emo-tiny", seed=3)
        sharded = make_ckpt(self.tmp, "emo-tiny", seed=3, shard_bytes=20000)
        self.assertFalse(os.path.exists(os.path.join(sharded, "model.safetensors")))
        with open(os.path.join(sharded, "model.safetensors.index.json")) as f:
            self.assertGreater(len(set(json.load(f)["weight_map"].values())), 1)
        a, b = load_checkpoint(single), load_checkpoint(sharded)
        self.assertEqual(set(a), set(b))
        for k in a:
            self.assertTrue(torch.equal(a[k], b[k]), k)


# ---------------------------------------------------------------------------------------------
class LayoutTest(TmpDirTest):
    def check_fused_equals_per_expert(self, preset, dtype):
        src = make_ckpt(self.tmp, preset, seed=5, dtype=dtype)
        dst = os.path.join(self.tmp, "fused-" + preset)
        fuse_experts.main(["--model", src, "--out", dst])
        fused, _ = load_file(os.path.join(dst, "model.safetensors"))
        orig = load_checkpoint(src)
        cfg = rm.load_config(src)
        self.assertFalse(any(".experts.0." in k for k in fused))
        for i, (n_exp, _, _) in enumerate(rm.layer_plan(cfg)):
            if n_exp == 0:
                continue
            gu = fused[f"model.layers.{i}.mlp.experts.gate_up_proj"]
            dn = fused[f"model.layers.{i}.mlp.experts.down_proj"]
            I, H = cfg.intermediate_size, cfg.hidden_size
            self.assertEqual(list(gu.shape), [n_exp, 2 * I, H])
            self.assertEqual(list(dn.shape), [n_exp, H, I])
            self.assertEqual(gu.dtype, orig[f"model.layers.{i}.mlp.experts.0.gate_proj.weight"].dtype)
            e = n_exp - 1  # gate rows first, then up
            self.assertTrue(torch.equal(gu[e, :I], orig[f"model.layers.{i}.mlp.experts.{e}.gate_proj.weight"]))
            self.assertTrue(torch.equal(gu[e, I:], orig[f"model.layers.{i}.mlp.experts.{e}.up_proj.weight"]))
            self.assertTrue(torch.equal(dn[e], orig[f"model.layers.{i}.mlp.experts.{e}.down_proj.weight"]))
        for k, t in orig.items():  # everything else byte-identical
            if ".mlp.experts." not in k:
                self.assertTrue(torch.equal(fused[k], t), k)
        with open(os.path.join(src, "config.json"), "rb") as f1, open(os.path.join(dst, "config.json"), "rb") as f2:
            self.assertEqual(f1.read(), f2.read())
        ids = torch.tensor([[3, 4, 5, 6, 7], [8, 9, 10, 11, 12]])
        a = rm.ReferenceModel(src, dtype).forward(ids)["logits"]
        b = rm.ReferenceModel(dst, dtype).forward(ids)["logits"]
        self.assertTrue(torch.equal(a, b))

    def test_fused_emo(self):
        self.check_fused_equals_per_expert("emo-perlayer", "fp32")

    def test_fused_olmoe_bf16(self):
        self.check_fused_equals_per_expert("olmoe-clip", "bf16")

    def test_missing_weight_is_an_error(self):
        src = make_ckpt(self.tmp, "olmoe-tiny")
        t = load_checkpoint(src)
        del t["model.layers.1.self_attn.k_norm.weight"]
        with self.assertRaises(KeyError):
            rm.ReferenceModel(cfg=rm.load_config(src), tensors=t)


# ---------------------------------------------------------------------------------------------
class PaddingTest(TmpDirTest):
    def check_left_padding(self, preset, dtype="fp32", tol=2e-5):
        d = make_ckpt(self.tmp, preset, seed=7, dtype=dtype)
        model = rm.ReferenceModel(d, dtype)
        seqs = [[11, 12, 13], [21, 22, 23, 24, 25], [31, 32, 33, 34]]
        T = max(len(s) for s in seqs)
        pad = model.cfg.pad_token_id
        ids = torch.tensor([[pad] * (T - len(s)) + s for s in seqs])
        mask = torch.tensor([[0] * (T - len(s)) + [1] * len(s) for s in seqs])
        res = model.forward(ids, attention_mask=mask, position_ids=rm.generate_position_ids(mask))
        for b, s in enumerate(seqs):
            alone = model.forward(torch.tensor([s]))
            n = len(s)
            got = res["logits"][b, T - n :].float()
            want = alone["logits"][0].float()
            self.assertTrue(torch.allclose(got, want, atol=tol, rtol=0), f"{preset} row {b}: {(got - want).abs().max()}")
            for i in alone["router_logits"]:
                g = res["router_logits"][i].view(len(seqs), T, -1)[b, T - n :].float()
                self.assertTrue(torch.allclose(g, alone["router_logits"][i].float(), atol=tol, rtol=0))
                ids_b = res["topk_ids"][i].view(len(seqs), T, -1)[b, T - n :]
                self.assertTrue(torch.equal(ids_b, alone["topk_ids"][i]))

    def test_left_padding_emo(self):
        self.check_left_padding("emo-perlayer")

    def test_left_padding_emo_always_active(self):
        self.check_left_padding("emo-always-active")

    def test_left_padding_olmoe(self):
        self.check_left_padding("olmoe-clip")

    def test_position_ids_like_generate(self):
        mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1]])
        self.assertEqual(rm.generate_position_ids(mask).tolist(), [[1, 1, 0, 1], [0, 1, 2, 3], [1, 0, 1, 2]])

    def test_fully_masked_row_is_uniform_over_all_keys(self):
        # Left-padding query rows see no key: every entry is finfo.min, softmax is uniform
        # over ALL keys (future ones included), never NaN.
        mask2d = torch.tensor([[0, 0, 1, 1]])
        m = rm.causal_padding_mask(mask2d, 1, 4, torch.float32)
        self.assertEqual(m[0, 0, 1].tolist(), [torch.finfo(torch.float32).min] * 4)
        self.assertEqual(m[0, 0, 3].tolist(), [torch.finfo(torch.float32).min] * 2 + [0.0, 0.0])
        g = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, 2, 4, 8, generator=g) for _ in range(3))
        out = rm.eager_attention(q, k, v, m, 8 ** -0.5, 1)  # [1, T, heads, D]
        self.assertTrue(torch.allclose(out[0, 0], v[0].mean(dim=1), atol=1e-6))
        self.assertTrue(torch.allclose(out[0, 1], v[0].mean(dim=1), atol=1e-6))


# ---------------------------------------------------------------------------------------------
class RoutingTest(TmpDirTest):
    def moe_inputs(self, cfg, seed=0, tokens=6):
        g = torch.Generator().manual_seed(seed)
        tensors = make_random.random_tensors(cfg, seed)
        x = torch.randn(1, tokens, cfg.hidden_size, generator=g)
        return tensors, x

    def test_shared_expert_uniform_logits_hand_computed(self):
        cfg = rm.Config(make_random.build_config("emo-shared", {}))  # 8 experts, 1 shared, top-3
        w, x = self.moe_inputs(cfg)
        p = "model.layers.0.mlp."
        w[p + "gate.weight"] = torch.zeros_like(w[p + "gate.weight"])  # all router logits 0
        E, k = cfg.num_experts, cfg.num_experts_per_tok
        out, logits, weights, ids = rm.sparse_moe(cfg, x, w, p, E, 1, None, F.silu)
        self.assertTrue(torch.equal(logits, torch.zeros(6, E)))
        # standard experts: softmax over the first E-1 columns = 1/(E-1) each; shared: exactly 1.0
        self.assertTrue(torch.equal(weights[:, -1], torch.ones(6)))
        self.assertTrue(torch.equal(ids[:, -1], torch.full((6,), E - 1)))
        self.assertTrue(torch.allclose(weights[:, :-1], torch.full((6, k - 1), 1.0 / (E - 1))))
        self.assertTrue(bool((ids[:, :-1] < E - 1).all()))
        h = x.view(-1, cfg.hidden_size)
        for t in range(6):
            want = rm.mlp(h[t : t + 1], w, f"{p}experts.{E - 1}.", F.silu)[0]
            for e in ids[t, :-1].tolist():
                want = want + rm.mlp(h[t : t + 1], w, f"{p}experts.{e}.", F.silu)[0] / (E - 1)
            self.assertTrue(torch.allclose(out[0, t], want, atol=1e-5), t)

    def test_shared_expert_weight_is_exactly_one(self):
        d = make_ckpt(self.tmp, "emo-perlayer", seed=2)  # layers 1 and 3 have one shared expert
        res = rm.ReferenceModel(d).forward(torch.tensor([[5, 6, 7, 8, 9, 10]]))
        for i, n_exp in ((1, 8), (3, 8)):
            self.assertTrue(torch.equal(res["topk_weights"][i][:, -1], torch.ones(6)))
            self.assertTrue(torch.equal(res["topk_ids"][i][:, -1], torch.full((6,), n_exp - 1)))
            # the other weights come from a softmax over the first n_exp-1 columns
            probs = F.softmax(res["router_logits"][i][:, :-1], dim=1, dtype=torch.float)
            top = torch.topk(probs, 2, dim=-1)
            self.assertTrue(torch.equal(res["topk_weights"][i][:, :-1], top.values))
        self.assertNotIn(0, res["router_logits"])  # layer 0 is dense

    def test_always_active_expert(self):
        cfg = rm.Config(make_random.build_config("emo-always-active", {"always_active_experts": [2, 5],
                                                                       "num_experts_per_tok": 4}))
        w, x = self.moe_inputs(cfg, tokens=10)
        p = "model.layers.1.mlp."
        _, logits, weights, ids = rm.sparse_moe(cfg, x, w, p, 8, 0, [2, 5], F.silu)
        probs = F.softmax(logits, dim=1, dtype=torch.float)  # over ALL experts
        self.assertEqual(ids[:, :2].tolist(), [[2, 5]] * 10)  # always-active first
        self.assertTrue(torch.equal(weights[:, :2], probs[:, [2, 5]]))
        masked = probs.clone()
        masked[:, [2, 5]] = -float("inf")
        top = torch.topk(masked, 2, dim=-1)
        self.assertTrue(torch.equal(ids[:, 2:], top.indices))
        self.assertTrue(torch.equal(weights[:, 2:], top.values))  # not renormalised
        self.assertTrue(bool((weights.sum(-1) < 1).all()))

    def test_always_active_routed_top1_uses_max(self):
        cfg = rm.Config(make_random.build_config("emo-always-active", {"num_experts_per_tok": 2}))
        w, x = self.moe_inputs(cfg, tokens=5)
        _, logits, weights, ids = rm.sparse_moe(cfg, x, w, "model.layers.0.mlp.", 8, 0, [0], F.silu)
        probs = F.softmax(logits, dim=1, dtype=torch.float)
        probs[:, 0] = -float("inf")
        self.assertTrue(torch.equal(ids[:, 1], probs.argmax(-1)))

    def test_norm_topk_prob(self):
        cfg = rm.Config(make_random.build_config("olmoe-tiny", {"norm_topk_prob": True}))
        w, x = self.moe_inputs(cfg)
        _, logits, weights, _ = rm.sparse_moe(cfg, x, w, "model.layers.0.mlp.", 8, 0, None, F.silu)
        top = torch.topk(F.softmax(logits, dim=1, dtype=torch.float), 2, dim=-1).values
        self.assertTrue(torch.allclose(weights, top / top.sum(-1, keepdim=True)))

    def test_norm_topk_prob_not_implemented_with_shared_or_always_active(self):
        for overrides in ({"num_shared_experts": 1, "num_experts_per_tok": 3},
                          {"always_active_experts": [1], "num_experts_per_tok": 3}):
            cfg = rm.Config(make_random.build_config("emo-tiny", dict(overrides, norm_topk_prob=True)))
            w, x = self.moe_inputs(cfg)
            aa = cfg.always_active_experts
            with self.assertRaises(NotImplementedError):
                rm.sparse_moe(cfg, x, w, "model.layers.0.mlp.", 8, cfg.num_shared_experts, aa, F.silu)

    def test_dense_layer_uses_bias(self):
        d = make_ckpt(self.tmp, "emo-perlayer", seed=4)
        cfg, t = rm.load_config(d), load_checkpoint(d)
        ids = torch.tensor([[1, 2, 3]])
        a = rm.ReferenceModel(cfg=cfg, tensors=dict(t)).forward(ids)["logits"]
        t["model.layers.0.mlp.down_proj.bias"] = t["model.layers.0.mlp.down_proj.bias"] + 1.0
        b = rm.ReferenceModel(cfg=cfg, tensors=t).forward(ids)["logits"]
        self.assertFalse(torch.allclose(a, b))

    def test_tied_embeddings(self):
        d = make_ckpt(self.tmp, "emo-tied", seed=1)
        self.assertNotIn("lm_head.weight", load_checkpoint(d))
        m = rm.ReferenceModel(d)
        self.assertIs(m.w["lm_head.weight"], m.w["model.embed_tokens.weight"])


# ---------------------------------------------------------------------------------------------
def softmax_list(xs):
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


class LossTest(unittest.TestCase):
    # One layer, 4 experts, top-2, three tokens (B=1, T=3). Top-2 sets: {0,1}, {1,2}, {3,0}.
    LOGITS = [[2.0, 1.0, 0.0, -1.0], [0.0, 3.0, 1.0, 0.0], [1.0, 0.0, 0.0, 2.0]]
    TOP2 = [[0, 1], [1, 2], [3, 0]]

    def test_emo_lb_loss_with_labels_hand_computed(self):
        gate = (torch.tensor(self.LOGITS),)
        labels = torch.tensor([[5, 6, -100]])  # unshifted mask: tokens 0 and 1 count
        got = rm.load_balancing_loss_func_olmoe(gate, 4, 2, None, labels)
        p = [softmax_list(r) for r in self.LOGITS]
        counts = [0] * 4
        for t in (0, 1):
            for e in self.TOP2[t]:
                counts[e] += 1
        prob = [(p[0][e] + p[1][e]) / 2 for e in range(4)]
        want = sum(c * q for c, q in zip(counts, prob)) / (2 * 2) * 4 / 1
        self.assertAlmostEqual(got.item(), want, places=6)

    def test_emo_lb_loss_without_mask_is_divided_twice(self):
        gate = (torch.tensor(self.LOGITS),)
        got = rm.load_balancing_loss_func_olmoe(gate, 4, 2, None, None)
        p = [softmax_list(r) for r in self.LOGITS]
        frac = [sum(e in s for s in self.TOP2) / 6 for e in range(4)]  # means over 3 tokens x 2 slots
        prob = [sum(p[t][e] for t in range(3)) / 3 for e in range(4)]
        want = sum(f * q for f, q in zip(frac, prob)) / (3 * 2) * 4  # QUIRK: extra / (N * k)
        self.assertAlmostEqual(got.item(), want, places=7)

    def test_emo_lb_loss_shared_and_always_active_columns(self):
        # 5 experts, the last one shared: dropped before the softmax; expert 0 always active:
        # dropped after it. top_k 4 -> 3 (shared) -> 2 (always active).
        logits = [r + [7.0] for r in self.LOGITS]
        gate = (torch.tensor(logits),)
        got = rm.load_balancing_loss_func_olmoe(gate, 5, 4, None, torch.tensor([[1, 1, 1]]),
                                                num_shared_experts=1, always_active_experts=[0])
        p = [softmax_list(r) for r in self.LOGITS]  # softmax over the 4 non-shared columns
        routed = [[q[1], q[2], q[3]] for q in p]  # column 0 removed, not renormalised
        counts = [0, 0, 0]
        for r in routed:
            for e in sorted(range(3), key=lambda j: -r[j])[:2]:
                counts[e] += 1
        prob = [sum(r[e] for r in routed) / 3 for e in range(3)]
        want = sum(c * q for c, q in zip(counts, prob)) / (3 * 2) * 3 / 1
        self.assertAlmostEqual(got.item(), want, places=6)

    def test_emo_lb_loss_variable_path_is_mean_of_layers(self):
        g = torch.Generator().manual_seed(0)
        gates = (torch.randn(6, 8, generator=g), torch.randn(6, 16, generator=g))
        labels = torch.tensor([[1, 2, -100], [3, -100, 4]])
        got = rm.load_balancing_loss_func_olmoe(gates, 8, 2, None, labels, num_experts_per_layer=[8, 16])
        per_layer = [rm.load_balancing_loss_func_olmoe((gt,), gt.shape[1], 2, None, labels) for gt in gates]
        self.assertAlmostEqual(got.item(), sum(x.item() for x in per_layer) / 2, places=6)

    def test_olmoe_lb_loss_hand_computed(self):
        layer2 = [[0.0, 0.0, 5.0, 1.0], [4.0, 0.5, 0.0, 0.0], [0.0, 1.0, 2.0, 0.0]]
        gates = (torch.tensor(self.LOGITS), torch.tensor(layer2))
        top2 = self.TOP2 + [[2, 3], [0, 1], [2, 1]]  # no ties: slot order is well defined
        rows = self.LOGITS + layer2
        got = rm.load_balancing_loss_func(gates, 4, 2, None)
        p = [softmax_list(r) for r in rows]
        # tokens_per_expert is [k, E]: fraction of the 6 (layer, token) rows whose slot j is e
        tpe = [[sum(1 for r in top2 if r[j] == e) / 6 for e in range(4)] for j in range(2)]
        prob = [sum(q[e] for q in p) / 6 for e in range(4)]
        want = sum(tpe[j][e] * prob[e] for j in range(2) for e in range(4)) * 4
        self.assertAlmostEqual(got.item(), want, places=6)
        # with an attention mask: padding rows removed from both means
        mask = torch.tensor([[1, 1, 0]])
        got_m = rm.load_balancing_loss_func(gates, 4, 2, mask)
        keep = [0, 1, 3, 4]
        tpe = [[sum(1 for i in keep if top2[i][j] == e) / 4 for e in range(4)] for j in range(2)]
        prob = [sum(p[i][e] for i in keep) / 4 for e in range(4)]
        want = sum(tpe[j][e] * prob[e] for j in range(2) for e in range(4)) * 4
        self.assertAlmostEqual(got_m.item(), want, places=6)

    def test_causal_lm_loss_shifts_labels(self):
        g = torch.Generator().manual_seed(0)
        logits = torch.randn(2, 3, 5, generator=g)
        labels = torch.tensor([[-100, 1, 2], [3, -100, 4]])
        # predictions at t predict labels[t+1]; pairs: (0,0)->1, (0,1)->2, (1,1)->4
        want = -(F.log_softmax(logits[0, 0], -1)[1] + F.log_softmax(logits[0, 1], -1)[2]
                 + F.log_softmax(logits[1, 1], -1)[4]) / 3
        self.assertAlmostEqual(rm.causal_lm_loss(logits, labels).item(), want.item(), places=6)


# ---------------------------------------------------------------------------------------------
class NumericsTest(TmpDirTest):
    def test_rms_norm_cast_order(self):
        g = torch.Generator().manual_seed(0)
        x = torch.randn(4, 32, generator=g).bfloat16()
        w = (1 + 0.1 * torch.randn(32, generator=g)).bfloat16()
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)
        emo = rm.emo_rms_norm(x, w, 1e-6)
        olmoe = rm.olmoe_rms_norm(x, w, 1e-6)
        self.assertTrue(torch.equal(emo, (w.float() * normed).bfloat16()))
        self.assertTrue(torch.equal(olmoe, w * normed.bfloat16()))
        self.assertFalse(torch.equal(emo, olmoe))

    def test_rope_variants(self):
        base = make_random.build_config("emo-tiny", {"max_position_embeddings": 256})
        default, s = rm.rope_default(rm.Config(base))
        self.assertEqual(s, 1.0)
        dim = 8  # head_dim 32/4
        want = [1.0 / (500000.0 ** (i / dim)) for i in range(0, dim, 2)]
        self.assertTrue(torch.allclose(default, torch.tensor(want), rtol=1e-6))
        lin, _ = rm.rope_linear(rm.Config(dict(base, rope_scaling={"type": "linear", "factor": 4.0})))
        self.assertTrue(torch.equal(lin, default / 4.0))
        # llama3: wavelengths below orig/high_freq kept, above orig/low_freq divided, between smoothed
        rs = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
              "original_max_position_embeddings": 64}
        l3, _ = rm.rope_llama3(rm.Config(dict(base, rope_scaling=rs)))
        for f, got in zip(default.tolist(), l3.tolist()):
            wl = 2 * math.pi / f
            if wl < 64 / 4:
                self.assertAlmostEqual(got, f, places=12)
            elif wl > 64 / 1:
                self.assertAlmostEqual(got, f / 8, places=12)
            else:
                sm = (64 / wl - 1) / (4 - 1)
                self.assertAlmostEqual(got, (1 - sm) * f / 8 + sm * f, delta=1e-6 * f)
        # yarn: attention factor 0.1 ln(factor) + 1, frequencies between interpolated and original
        yr, att = rm.rope_yarn(rm.Config(dict(base, rope_scaling={"rope_type": "yarn", "factor": 4.0})))
        self.assertAlmostEqual(att, 0.1 * math.log(4.0) + 1.0)
        self.assertTrue(bool((yr <= default * (1 + 1e-6)).all() and (yr >= default / 4 * (1 - 1e-6)).all()))
        self.assertAlmostEqual(yr[0].item(), default[0].item(), places=6)  # highest frequency kept
        # dynamic: the default below max_position_embeddings, different beyond it
        dyn_cfg = rm.Config(dict(base, rope_scaling={"type": "dynamic", "factor": 2.0}, max_position_embeddings=8))
        dyn, _ = rm.rope_dynamic(dyn_cfg)
        self.assertTrue(torch.equal(dyn, default))
        cos_short, _ = rm.rotary_cos_sin(dyn_cfg, dyn, 1.0, torch.arange(8)[None], torch.float32)
        cos_long, _ = rm.rotary_cos_sin(dyn_cfg, dyn, 1.0, torch.arange(12)[None], torch.float32)
        self.assertFalse(torch.allclose(cos_short[0, :8], cos_long[0, :8]))

    def test_bf16_close_to_fp32(self):
        for preset in ("emo-perlayer", "olmoe-tiny"):
            d = make_ckpt(self.tmp, preset, seed=9, dtype="bf16")
            ids = torch.tensor([[4, 5, 6, 7, 8, 9]])
            a = rm.ReferenceModel(d, "bf16").forward(ids)["logits"]
            b = rm.ReferenceModel(d, "fp32").forward(ids)["logits"]
            self.assertEqual(a.dtype, torch.bfloat16)
            self.assertLess((a.float() - b).abs().max().item(), 0.25, preset)

    def test_head_dim_override(self):
        d = make_ckpt(self.tmp, "emo-perlayer")
        t = load_checkpoint(d)
        self.assertEqual(list(t["model.layers.0.self_attn.q_proj.weight"].shape), [64, 32])  # 4 heads x 16
        self.assertEqual(list(t["model.layers.0.self_attn.k_proj.bias"].shape), [32])  # 2 kv heads x 16


# ---------------------------------------------------------------------------------------------
class TransformersTest(TmpDirTest):
    """The in-repo reference against transformers itself (the pinned PyPI version) wherever
    transformers implements the same thing: OLMoE whole (logits, router logits, losses), and
    the parts EMO shares with it (every RoPE variant). EMO itself has no transformers class."""

    def setUp(self):
        super().setUp()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers.utils import logging as hf_logging
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()

    def test_olmoe_equals_transformers(self):
        from transformers import AutoModelForCausalLM
        for preset in ("olmoe-tiny", "olmoe-clip"):
            with self.subTest(preset=preset):
                d = make_ckpt(self.tmp, preset, seed=3)
                ids = torch.randint(2, 60, (2, 9), generator=torch.Generator().manual_seed(0))
                labels = ids.clone()
                labels[0, :3] = -100
                ref = rm.ReferenceModel(d).forward(ids, labels=labels, output_router_logits=True)
                hf = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
                with torch.no_grad():
                    out = hf(input_ids=ids, labels=labels, output_router_logits=True)
                self.assertLess((out.logits - ref["logits"]).abs().max().item(), 1e-5)
                for i, theirs in enumerate(out.router_logits):
                    self.assertLess((theirs - ref["router_logits"][i]).abs().max().item(), 1e-5)
                self.assertAlmostEqual(out.aux_loss.item(), ref["lb_loss"].item(), places=5)
                self.assertAlmostEqual(out.loss.item(), ref["loss"].item(), places=5)

    def test_rope_variants_equal_transformers(self):
        from transformers import AutoConfig
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
        from transformers.models.olmoe.modeling_olmoe import OlmoeRotaryEmbedding
        base = make_random.build_config("emo-tiny", {"max_position_embeddings": 256})
        variants = [
            None,
            {"rope_type": "linear", "factor": 4.0},
            {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
             "original_max_position_embeddings": 64},
            {"rope_type": "yarn", "factor": 4.0},
            {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 64, "beta_fast": 16},
            {"rope_type": "dynamic", "factor": 2.0},
        ]
        for scaling in variants:
            with self.subTest(rope=scaling):
                raw = dict(base, rope_scaling=scaling) if scaling else dict(base)
                cfg = rm.Config(raw)
                kind = rm.rope_type(cfg)
                ours, our_scale = rm.ROPE_INIT_FUNCTIONS[kind](cfg)
                params = dict(scaling or {"rope_type": "default"}, rope_theta=raw["rope_theta"])
                theirs_cfg = AutoConfig.for_model("olmoe", hidden_size=raw["hidden_size"],
                                                  num_attention_heads=raw["num_attention_heads"],
                                                  max_position_embeddings=256, rope_parameters=params)
                init = (OlmoeRotaryEmbedding.compute_default_rope_parameters if kind == "default"
                        else ROPE_INIT_FUNCTIONS[kind])
                theirs, their_scale = init(theirs_cfg, "cpu")
                self.assertTrue(torch.equal(ours, theirs))
                self.assertAlmostEqual(our_scale, their_scale, places=12)


class CliTest(TmpDirTest):
    def run_py(self, *args):
        subprocess.run([sys.executable, *args], check=True, cwd=HERE)

    def test_cli_end_to_end(self):
        model = os.path.join(self.tmp, "m")
        self.run_py("make_random.py", "--out", model, "--preset", "emo-perlayer", "--seed", "3",
                    "--config", '{"vocab_size": 200}')
        out = os.path.join(self.tmp, "o.safetensors")
        self.run_py("ref_forward.py", "--model", model, "--ids", "1,2,3,4;5,6,7,8", "--attention-mask",
                    "0,1,1,1;1,1,1,1", "--labels", "-100,2,3,4;5,6,7,-100", "--router", "--out", out)
        t, meta = load_file(out)
        self.assertEqual(meta["model_type"], "emo")
        self.assertEqual(list(t["logits"].shape), [2, 4, 200])
        self.assertEqual(t["logits"].dtype, torch.float32)
        for k in ("loss", "ce_loss", "lb_loss"):
            self.assertEqual(list(t[k].shape), [], k)
        self.assertAlmostEqual(t["loss"].item(), t["ce_loss"].item() + 0.01 * t["lb_loss"].item(), places=5)
        self.assertNotIn("router_logits.0", t)  # dense layer
        self.assertEqual(list(t["router_logits.2"].shape), [8, 16])
        self.assertEqual(t["topk_ids.2"].dtype, torch.int64)
        self.assertEqual(list(t["hidden.3"].shape), [2, 4, 32])
        # run-to-run determinism
        out2 = os.path.join(self.tmp, "o2.safetensors")
        self.run_py("ref_forward.py", "--model", model, "--ids", "1,2,3,4;5,6,7,8", "--attention-mask",
                    "0,1,1,1;1,1,1,1", "--labels", "-100,2,3,4;5,6,7,-100", "--router", "--out", out2)
        with open(out, "rb") as f1, open(out2, "rb") as f2:
            self.assertEqual(f1.read(), f2.read())


if __name__ == "__main__":
    unittest.main()
