#!/usr/bin/env python3
"""Generate golden LSTM test fixtures from PyTorch (float64).

Regenerate with:

    python3 tools/make_fixtures.py            # writes tests/fixtures/<case>.safetensors
    python3 tools/make_fixtures.py --out DIR  # writes DIR/<case>.safetensors

Requires `torch`, `safetensors` and `numpy`. Each case is seeded with
`torch.manual_seed(1000 + case_index)`, so output is deterministic for a given
PyTorch version (recorded in the metadata).

Every file holds one case of `torch.nn.LSTM` run in float64. Tensors (all float
tensors are float64 and contiguous; D = 2 if bidirectional else 1, L = num_layers):

  lstm.<name>         LSTM parameters, named exactly as in `lstm.state_dict()`:
                      lstm.weight_ih_l{k}[_reverse]  [4H, I or D*H]
                      lstm.weight_hh_l{k}[_reverse]  [4H, H]
                      lstm.bias_ih_l{k}[_reverse]    [4H]  (only when bias)
                      lstm.bias_hh_l{k}[_reverse]    [4H]  (only when bias)
                      Gate order along 4H is PyTorch's: i, f, g, o.
                      Initialised by PyTorch's default reset_parameters.
  input               [T, B, I], or [B, T, I] when batch_first (standard normal)
  h_0, c_0            [D*L, B, H]  only in cases that pass an initial state
  lengths             int64 [B]    only in variable-length cases (unsorted, all >= 1,
                      max == T); the run goes through pack_padded_sequence(...,
                      enforce_sorted=False) and pad_packed_sequence(...,
                      total_length=T), so padded output steps are exactly 0 and
                      h_n/c_n are taken at each sequence's last valid step.
  output              [T, B, D*H], or [B, T, D*H] when batch_first
  h_n, c_n            [D*L, B, H]
  d_output, d_h_n, d_c_n
                      standard-normal coefficients, same shapes as output/h_n/c_n.
                      The scalar loss is
                        (output*d_output).sum() + (h_n*d_h_n).sum() + (c_n*d_c_n).sum()
  grad.input          d loss / d input
  grad.h_0, grad.c_0  d loss / d h_0, c_0 (only when h_0/c_0 are given)
  grad.lstm.<name>    d loss / d parameter, for every lstm.<name> above

Metadata (`__metadata__`, all strings): input_size, hidden_size, num_layers,
bias ("true"/"false"), batch_first ("true"/"false"), bidirectional
("true"/"false"), torch_version, description, and proj_size in the projection
cases.

Projection LSTMs (`proj_size` = P > 0) go to <out>/proj/<case>.safetensors,
seeded with `torch.manual_seed(2000 + case_index)`. They add
`lstm.weight_hr_l{k}[_reverse]` [P, H]; `weight_hh` is [4H, P], h_0/h_n/d_h_n
are [D*L, B, P], output is [T, B, D*P] and layer k > 0 reads D*P features.
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file, save, save_file

torch.set_default_dtype(torch.float64)

# name, kwargs. Keys: L, I, H, T, B, bidir, batch_first, bias, state, lengths, scale, desc
CASES = [
    ("single_layer", dict(L=1, I=5, H=8, T=6, B=3,
        desc="1 layer, unidirectional, seq-first, zero initial state")),
    ("two_layers", dict(L=2, I=5, H=8, T=6, B=3,
        desc="2 stacked layers, unidirectional, zero initial state")),
    ("three_layers_odd_sizes", dict(L=3, I=7, H=33, T=5, B=3,
        desc="3 stacked layers with odd sizes I=7, H=33")),
    ("bidirectional", dict(L=1, I=5, H=8, T=6, B=3, bidir=True,
        desc="1 layer, bidirectional")),
    ("bidirectional_two_layers", dict(L=2, I=6, H=9, T=5, B=2, bidir=True,
        desc="2 layers, bidirectional (layer 2 input is the 2H concat)")),
    ("batch_first", dict(L=1, I=5, H=8, T=6, B=3, batch_first=True,
        desc="1 layer, batch_first=True ([B,T,I] input / [B,T,H] output)")),
    ("batch_first_bidirectional_state", dict(L=2, I=4, H=6, T=5, B=3, bidir=True,
        batch_first=True, state=True,
        desc="2 layers, bidirectional, batch_first, given h_0/c_0")),
    ("no_bias", dict(L=2, I=5, H=8, T=6, B=3, bias=False,
        desc="2 layers, bias=False (no bias tensors)")),
    ("given_state", dict(L=1, I=5, H=8, T=6, B=3, state=True,
        desc="1 layer with given h_0/c_0 (gradients w.r.t. them included)")),
    ("lengths_unsorted", dict(L=1, I=5, H=8, T=6, B=4, lengths=[3, 6, 1, 4],
        desc="1 layer, packed variable lengths [3,6,1,4] (unsorted), padded output zero")),
    ("lengths_bidirectional_two_layers", dict(L=2, I=5, H=7, T=5, B=4, bidir=True,
        state=True, lengths=[2, 5, 5, 3],
        desc="2 layers, bidirectional, packed lengths [2,5,5,3], given h_0/c_0")),
    ("lengths_batch_first_bidirectional", dict(L=1, I=3, H=5, T=4, B=3, bidir=True,
        batch_first=True, lengths=[4, 1, 3],
        desc="1 layer, bidirectional, batch_first, packed lengths [4,1,3]")),
    ("single_time_step", dict(L=2, I=5, H=8, T=1, B=3,
        desc="2 layers, a single time step T=1")),
    ("batch_of_one", dict(L=2, I=5, H=8, T=7, B=1, bidir=True,
        desc="2 layers, bidirectional, batch size 1")),
    ("odd_sizes", dict(L=1, I=7, H=33, T=9, B=5, state=True,
        desc="1 layer, odd sizes I=7, H=33, B=5, T=9, given h_0/c_0")),
    ("saturating", dict(L=2, I=5, H=8, T=6, B=3, scale=100.0,
        desc="2 layers, input scaled by 100 so gate pre-activations reach |x| in the "
             "tens/hundreds (sigmoid/tanh saturation)")),
    ("long_sequence", dict(L=1, I=4, H=16, T=100, B=2,
        desc="1 layer, long sequence T=100")),
]

PROJ_CASES = [
    ("proj_single_layer", dict(L=1, I=5, H=8, P=3, T=6, B=3,
        desc="1 layer, proj_size=3")),
    ("proj_two_layers_state", dict(L=2, I=4, H=7, P=5, T=5, B=3, state=True,
        desc="2 layers, proj_size=5, given h_0 [L,B,P] / c_0 [L,B,H]")),
    ("proj_bidirectional_two_layers_lengths", dict(L=2, I=5, H=9, P=4, T=6, B=4,
        bidir=True, state=True, lengths=[3, 6, 1, 5],
        desc="2 layers, bidirectional, proj_size=4, packed lengths [3,6,1,5], given state")),
    ("proj_batch_first_no_bias", dict(L=1, I=3, H=6, P=2, T=4, B=2, bias=False,
        batch_first=True, desc="1 layer, batch_first, bias=False, proj_size=2")),
]


def run(lstm, x, h0c0, lengths, batch_first, T):
    """Forward pass; with lengths, go through pack/pad like a real user would."""
    if lengths is None:
        return lstm(x, h0c0)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        x, lengths, batch_first=batch_first, enforce_sorted=False)
    out, (h, c) = lstm(packed, h0c0)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(
        out, batch_first=batch_first, total_length=T)
    return out, (h, c)


def make_case(index, name, L, I, H, T, B, bidir=False, batch_first=False, bias=True,
              state=False, lengths=None, scale=1.0, desc="", P=0, seed_base=1000):
    torch.manual_seed(seed_base + index)
    D = 2 if bidir else 1
    lstm = torch.nn.LSTM(I, H, num_layers=L, bias=bias, batch_first=batch_first,
                         bidirectional=bidir, proj_size=P).double()
    t = {"lstm." + k: v.detach().clone() for k, v in lstm.state_dict().items()}

    x = torch.randn(B, T, I) if batch_first else torch.randn(T, B, I)
    x = (x * scale).requires_grad_()
    t["input"] = x.detach().clone()
    h0c0 = None
    if state:
        h0 = torch.randn(D * L, B, P or H, requires_grad=True)
        c0 = torch.randn(D * L, B, H, requires_grad=True)
        h0c0 = (h0, c0)
        t["h_0"], t["c_0"] = h0.detach().clone(), c0.detach().clone()
    if lengths is not None:
        assert len(lengths) == B and max(lengths) == T and min(lengths) >= 1
        lengths = torch.tensor(lengths, dtype=torch.int64)
        t["lengths"] = lengths.clone()

    out, (hn, cn) = run(lstm, x, h0c0, lengths, batch_first, T)
    d_out, d_hn, d_cn = torch.randn_like(out), torch.randn_like(hn), torch.randn_like(cn)
    loss = (out * d_out).sum() + (hn * d_hn).sum() + (cn * d_cn).sum()
    loss.backward()

    t.update(output=out.detach(), h_n=hn.detach(), c_n=cn.detach(),
             d_output=d_out, d_h_n=d_hn, d_c_n=d_cn)
    t["grad.input"] = x.grad
    if state:
        t["grad.h_0"], t["grad.c_0"] = h0c0[0].grad, h0c0[1].grad
    for k, p in lstm.named_parameters():
        t["grad.lstm." + k] = p.grad
    t = {k: v.detach().contiguous() for k, v in t.items()}

    meta = dict(input_size=str(I), hidden_size=str(H), num_layers=str(L),
                bias=str(bias).lower(), batch_first=str(batch_first).lower(),
                bidirectional=str(bidir).lower(), torch_version=torch.__version__,
                description=desc)
    if P:
        meta["proj_size"] = str(P)
    return t, meta


def save_file_reproducibly(tensors, path, metadata):
    """safetensors.torch.save_file, but with the metadata keys sorted: the library
    writes them in random (hash map) order, which would make reruns differ byte-wise."""
    data = save(tensors, metadata=metadata)
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    new = json.dumps(header, separators=(",", ":")).encode().ljust(n)  # same padding
    assert len(new) == n
    with open(path, "wb") as f:
        f.write(data[:8] + new + data[8 + n:])


def self_check(path, meta):
    """Reload the file, rebuild the LSTM from its tensors and recompute the outputs."""
    t = load_file(path)
    bf = meta["batch_first"] == "true"
    lstm = torch.nn.LSTM(int(meta["input_size"]), int(meta["hidden_size"]),
                         num_layers=int(meta["num_layers"]), bias=meta["bias"] == "true",
                         batch_first=bf, bidirectional=meta["bidirectional"] == "true",
                         proj_size=int(meta.get("proj_size", "0")))
    lstm.load_state_dict({k[5:]: v for k, v in t.items() if k.startswith("lstm.")})
    # Inputs require grad as during generation: PyTorch takes a slightly different
    # (last-bit) path for stacked layers under no_grad, and we check bit equality.
    x = t["input"].clone().requires_grad_()
    h0c0 = (t["h_0"].clone().requires_grad_(), t["c_0"].clone().requires_grad_()) \
        if "h_0" in t else None
    T = x.shape[1 if bf else 0]
    out, (hn, cn) = run(lstm.double(), x, h0c0, t.get("lengths"), bf, T)
    for k, v in (("output", out), ("h_n", hn), ("c_n", cn)):
        assert t[k].dtype == torch.float64 and torch.equal(t[k], v.detach()), (path, k)
    if "lengths" in t:  # padded steps must be exactly zero
        for b, n in enumerate(t["lengths"].tolist()):
            pad = t["output"][b, n:] if bf else t["output"][n:, b]
            assert torch.all(pad == 0), (path, "padding")


def make_state_dicts(out_dir):
    """Checkpoints exactly as users save them, for the loader tests:
    `save_file(lstm.state_dict(), path)` in float32, float16 and bfloat16 (bare
    names), and the state_dict of a model that holds the LSTM as `encoder.rnn`
    beside a linear `head` (names behind a module prefix, plus another module)."""
    torch.manual_seed(7)
    lstm = torch.nn.LSTM(6, 10, num_layers=2, bidirectional=True).float()
    files = {"lstm_f32": lstm.state_dict()}
    for name, dtype in (("lstm_f16", torch.float16), ("lstm_bf16", torch.bfloat16)):
        files[name] = {k: v.to(dtype) for k, v in lstm.state_dict().items()}
    model = torch.nn.Module()
    model.encoder = torch.nn.Module()
    model.encoder.rnn = lstm
    model.head = torch.nn.Linear(20, 3)
    files["model_with_head"] = model.state_dict()
    os.makedirs(out_dir, exist_ok=True)
    for name, sd in files.items():
        path = os.path.join(out_dir, name + ".safetensors")
        save_file(sd, path)
        print(f"{'state_dicts/' + name:36s} {len(sd):3d} tensors {os.path.getsize(path):8d} bytes")


def make_proj_checkpoint(out_dir):
    """A projection LSTM's state_dict as users save it, with a reference run for
    the CLI test: `lstm_proj.safetensors` (float32, bare names) and
    `lstm_proj_io.safetensors` (input [T, B, I] and the float32 output)."""
    torch.manual_seed(11)
    lstm = torch.nn.LSTM(6, 10, num_layers=2, bidirectional=True, proj_size=4).float()
    save_file(lstm.state_dict(), os.path.join(out_dir, "lstm_proj.safetensors"))
    x = torch.randn(7, 3, 6, dtype=torch.float32)
    with torch.no_grad():
        out, (hn, cn) = lstm(x)
    save_file({"input": x.contiguous(), "output": out.contiguous(), "h_n": hn.contiguous(),
               "c_n": cn.contiguous()}, os.path.join(out_dir, "lstm_proj_io.safetensors"))
    print(f"{'state_dicts/lstm_proj':36s} {len(lstm.state_dict()):3d} tensors")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    total = 0
    for index, (name, kw) in enumerate(CASES):
        tensors, meta = make_case(index, name, **kw)
        path = os.path.join(args.out, name + ".safetensors")
        save_file_reproducibly(tensors, path, meta)
        self_check(path, meta)
        size = os.path.getsize(path)
        total += size
        print(f"{name:36s} {len(tensors):3d} tensors {size:8d} bytes")
    print(f"{len(CASES)} files, {total} bytes total, torch {torch.__version__}")
    proj_dir = os.path.join(args.out, "proj")
    os.makedirs(proj_dir, exist_ok=True)
    for index, (name, kw) in enumerate(PROJ_CASES):
        tensors, meta = make_case(index, name, seed_base=2000, **kw)
        path = os.path.join(proj_dir, name + ".safetensors")
        save_file_reproducibly(tensors, path, meta)
        self_check(path, meta)
        print(f"{'proj/' + name:36s} {len(tensors):3d} tensors {os.path.getsize(path):8d} bytes")
    make_state_dicts(os.path.join(args.out, "state_dicts"))
    make_proj_checkpoint(os.path.join(args.out, "state_dicts"))


if __name__ == "__main__":
    sys.exit(main())
