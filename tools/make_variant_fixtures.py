#!/usr/bin/env python3
"""Generate float64 fixtures for the LSTM variants PyTorch has no module for
(ReLU cell activation, variational input/recurrent dropout, inter-layer dropout
with a reproducible mask) and for `torch.nn.GRU`.

Regenerate with:

    python3 tools/make_variant_fixtures.py            # writes tests/fixtures/{variants,gru,gru_variants}/
    python3 tools/make_variant_fixtures.py --out DIR  # writes DIR/{variants,gru,gru_variants}/

Requires `torch`, `safetensors` and `numpy`. Variant case i is seeded with
`torch.manual_seed(3000 + i)`, GRU case i with `torch.manual_seed(4000 + i)`,
so output is deterministic for a given PyTorch version (recorded in the
metadata). The layout conventions are those of tools/make_fixtures.py.

LSTM variants: <out>/variants/<case>.safetensors
------------------------------------------------
The parameters are made by `torch.nn.LSTM(...)` in float64 with PyTorch's
default initialisation (so names and shapes are PyTorch's), but the run is a
float64 loop written here (`variant_lstm`). Per layer k, direction d (d = 1
runs time reversed, as nn.LSTM bidirectional) and batch row b, with act = tanh
or relu (metadata `activation`):

    x~_t     = x_t     * mi[k,d][b, :]    input dropout mask, the same at every step
    h~_{t-1} = h_{t-1} * mr[k,d][b, :]    recurrent dropout mask, the same at every step
    pre = W_ih x~_t + b_ih + W_hh h~_{t-1} + b_hh     gate order i, f, g, o
    i, f, o = sigmoid(pre_i, pre_f, pre_o);  g = act(pre_g)
    c_t = f * c_{t-1} + i * g;  h_t = o * act(c_t)

Layer k > 0 reads the [fwd, rev] concatenated output of layer k-1 times the
inter-layer dropout mask of layer k-1 (PyTorch's `dropout`, applied to every
layer's output except the last). Variable lengths have packed-sequence
semantics: row b runs only steps t < len_b, the reverse direction starts at
t = len_b - 1, the output at padded steps is exactly 0, and h_n/c_n hold the
state after each sequence's last valid step (forward: step len_b - 1;
reverse: step 0). With every p = 0 and act = tanh this is exactly nn.LSTM; the
script asserts that (to 1e-12, outputs and gradients) before writing anything,
and also checks the dropout cases with tanh against a per-row stack of
single-layer nn.LSTMs (input scaled by mi, W_hh's columns scaled by mr).

Dropout masks: a counter-based hash, in 32-bit wrapping arithmetic
(src/dropout.rs and shaders/common.wgsl compute the same bits):

    pcg_hash(v):  state = v * 747796405 + 2891336453
                  word  = ((state >> ((state >> 28) + 4)) ^ state) * 277803737
                  return (word >> 22) ^ word
    mask_hash(seed, layer, t, b, unit):      seed is a u64
                  h = pcg_hash(seed & 0xFFFFFFFF)
                  for w in [seed >> 32, layer, t, b, unit]: h = pcg_hash(h ^ w)
    keep_threshold(p) = min(round(p * 2^32), 2^32 - 1)

An element is kept iff its hash >= keep_threshold(p); kept elements are
1/(1-p), dropped ones 0. The elements are

    inter-layer (p = dropout), layer k's output, element (t, b, unit), unit < D*H:
        mask_hash(seed, k, t, b, unit)          (t is the time index, not batch_first)
    input (p = input_dropout), layer k, element (b, feature), shared by both
    directions of a bidirectional layer (they read the same input):
        mask_hash(seed, (1 << 28) | (k << 1), 0, b, feature)
    recurrent (p = recurrent_dropout), layer k, direction d, element (b, unit), unit < H:
        mask_hash(seed, (2 << 28) | (k << 1) | d, 0, b, unit)

Tensors (all float tensors float64 and contiguous; D = 2 if bidirectional else
1, L = num_layers, in_k = I for k = 0 and D*H for k > 0):

  lstm.<name>         nn.LSTM parameters as in `lstm.state_dict()`:
                      lstm.weight_ih_l{k}[_reverse] [4H, in_k], lstm.weight_hh_l{k}[_reverse]
                      [4H, H], lstm.bias_ih_l{k}[_reverse] / lstm.bias_hh_l{k}[_reverse] [4H]
  input               [T, B, I], or [B, T, I] when batch_first (standard normal)
  h_0, c_0            [D*L, B, H]  only in cases that pass an initial state
  lengths             int64 [B]    only in variable-length cases
  output              [T, B, D*H], or [B, T, D*H] when batch_first
  h_n, c_n            [D*L, B, H]
  c_all               the LAST layer's cell state c_t at every step, laid out as
                      output ([T, B, D*H] or [B, T, D*H]): forward direction in
                      columns 0..H, reverse in H..2H, 0 at padded steps
  d_output, d_h_n, d_c_n
                      standard-normal coefficients, same shapes as output/h_n/c_n.
                      The scalar loss is
                        (output*d_output).sum() + (h_n*d_h_n).sum() + (c_n*d_c_n).sum()
                      (c_all is not in the loss)
  grad.input          d loss / d input
  grad.h_0, grad.c_0  d loss / d h_0, c_0 (only when h_0/c_0 are given)
  grad.lstm.<name>    d loss / d parameter, for every lstm.<name> above
  lstm.ln_{ih,hh}_{weight,bias}_l{k}[_reverse] [4H], lstm.ln_cell_{weight,bias}_l{k}[_reverse] [H]
                      only in the layer-normalised cases (metadata layer_norm = "true"):
                      the gains and biases of LN(x·W_ihᵀ), LN(h·W_hhᵀ) and LN(c_t), drawn
                      near 1 and 0; the forward is then
                        pre = LN_ih(x̃·W_ihᵀ) + LN_hh(h̃·W_hhᵀ) + b_ih + b_hh,
                        c_t = f*c + i*g, h_t = o * act(LN_cell(c_t))
                      with torch.nn.functional.layer_norm (eps 1e-5) over each row
  mask.input.l{k}                [B, in_k]      only when input_dropout > 0
  mask.recurrent.l{k}[_reverse]  [B, H]         only when recurrent_dropout > 0
  mask.inter.l{k}                [T, B, D*H]    for k < L-1, only when dropout > 0
                      (always time-major, whatever batch_first)
                      The masks the run used: 0 or 1/(1-p), from the hash above.

Metadata (all strings): input_size, hidden_size, num_layers, bias, batch_first,
bidirectional ("true"/"false"), activation ("tanh"/"relu"), dropout,
input_dropout, recurrent_dropout (Python float reprs, e.g. "0.25"),
dropout_seed (decimal u64; "0" in cases without dropout), torch_version,
description.

GRU: <out>/gru/<case>.safetensors
---------------------------------
`torch.nn.GRU` itself, in float64, run exactly as tools/make_fixtures.py runs
nn.LSTM (lengths go through pack_padded_sequence(..., enforce_sorted=False)
and pad_packed_sequence(..., total_length=T)). Tensors as for the LSTM but
without c_0/c_n/c_all/d_c_n:

  gru.<name>          gru.weight_ih_l{k}[_reverse] [3H, in_k], gru.weight_hh_l{k}[_reverse]
                      [3H, H], gru.bias_ih_l{k}[_reverse] / gru.bias_hh_l{k}[_reverse] [3H]
                      (biases only when bias). Gate order along 3H: r, z, n.
  input, h_0 (given-state cases), lengths (variable-length cases), output, h_n,
  d_output, d_h_n     shapes as for the LSTM; loss = (output*d_output).sum() + (h_n*d_h_n).sum()
  grad.input, grad.h_0, grad.gru.<name>

Metadata: input_size, hidden_size, num_layers, bias, batch_first,
bidirectional, torch_version, description.

GRU checkpoint for the CLI: <out>/gru/gru_state_dict.safetensors is
`save_file(gru.state_dict())` of a 2-layer bidirectional nn.GRU(5, 8) in
float32 (bare PyTorch names, as users save it), and
<out>/gru/gru_state_dict_run.safetensors holds `input` [T=4, B=2, I=5]
(float32, seq-first) and the float64 `output` [4, 2, 16] and `h_n` [4, 2, 8] of
running that GRU with zero initial state in float64 from the float32 weights
and the float32 input (both exactly representable in float64), so a float32
engine fed the same file can match within 1e-5.

GRU with the variational dropouts: <out>/gru_variants/<case>.safetensors
------------------------------------------------------------------------
Case i seeded with torch.manual_seed(5000 + i). The parameters are an
nn.GRU's (`gru.<name>`), the run a float64 loop written here (`variant_gru`,
checked against nn.GRU with no masks to 1e-12): x_t * mi[k][b, :] enters
gi = W_ih x + b_ih, h_{t-1} * mr[k,d][b, :] enters gh = W_hh h + b_hh, and the
update h_t = (1 - z) * n + z * h_{t-1} keeps the unmasked h_{t-1} (Keras' GRU
dropout and recurrent_dropout, one mask per sequence held over time). The
masks, tensors and metadata are those of the LSTM variants above, without the
cell state's.
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file, save, save_file

torch.set_default_dtype(torch.float64)

# name, kwargs. Keys: L, I, H, T, B, bidir, batch_first, bias, state, lengths,
# act, dropout, input_dropout, recurrent_dropout, seed, desc
VARIANT_CASES = [
    ("relu_single_layer", dict(L=1, I=5, H=8, T=6, B=3, act="relu",
        desc="1 layer, ReLU cell activation, no dropout")),
    ("relu_bidirectional_two_layers_lengths", dict(L=2, I=4, H=7, T=5, B=3, bidir=True,
        lengths=[5, 2, 4], state=True, act="relu",
        desc="2 layers, bidirectional, ReLU, packed lengths [5,2,4], given h_0/c_0")),
    ("recurrent_dropout_single_layer", dict(L=1, I=5, H=8, T=6, B=3,
        recurrent_dropout=0.3, seed=7,
        desc="1 layer, tanh, recurrent dropout 0.3, seed 7")),
    ("input_recurrent_dropout_two_layers", dict(L=2, I=6, H=9, T=5, B=4,
        input_dropout=0.2, recurrent_dropout=0.25, dropout=0.3, seed=12345678901,
        desc="2 layers, tanh, input dropout 0.2, recurrent dropout 0.25, inter-layer "
             "dropout 0.3, seed 12345678901 (> 2^32: the high word matters)")),
    ("dropout_bidirectional_lengths_relu", dict(L=2, I=4, H=6, T=6, B=3, bidir=True,
        lengths=[6, 3, 1], batch_first=True, state=True, act="relu",
        input_dropout=0.15, recurrent_dropout=0.35, seed=99,
        desc="2 layers, bidirectional, batch_first, packed lengths [6,3,1], given "
             "h_0/c_0, ReLU, input dropout 0.15, recurrent dropout 0.35, seed 99")),
    ("layer_norm_single_layer", dict(L=1, I=5, H=8, T=6, B=3, layer_norm=True,
        desc="1 layer, layer-normalised (haste's LayerNormLSTM), tanh")),
    ("layer_norm_bidirectional_lengths_dropout", dict(L=2, I=4, H=6, T=5, B=3, bidir=True,
        lengths=[5, 2, 4], state=True, act="relu", input_dropout=0.2,
        recurrent_dropout=0.3, dropout=0.25, seed=5, layer_norm=True,
        desc="2 layers, bidirectional, layer-normalised, packed lengths [5,2,4], given "
             "h_0/c_0, ReLU, input 0.2, recurrent 0.3 and inter-layer 0.25 dropout, seed 5")),
    ("layer_norm_batch_first_no_bias", dict(L=1, I=3, H=5, T=4, B=2, batch_first=True,
        bias=False, layer_norm=True,
        desc="1 layer, layer-normalised, batch_first, bias=False")),
]

GRU_CASES = [
    ("gru_single_layer", dict(L=1, I=5, H=8, T=6, B=3,
        desc="GRU, 1 layer, unidirectional, seq-first, zero initial state")),
    ("gru_two_layers_state", dict(L=2, I=5, H=8, T=6, B=3, state=True,
        desc="GRU, 2 stacked layers, given h_0")),
    ("gru_bidirectional_two_layers_lengths", dict(L=2, I=6, H=9, T=5, B=3, bidir=True,
        lengths=[3, 5, 2],
        desc="GRU, 2 layers, bidirectional, packed lengths [3,5,2] (unsorted)")),
    ("gru_batch_first_no_bias", dict(L=1, I=4, H=6, T=5, B=2, batch_first=True, bias=False,
        desc="GRU, 1 layer, batch_first, bias=False")),
    ("gru_odd_sizes", dict(L=1, I=7, H=33, T=4, B=3,
        desc="GRU, 1 layer, odd sizes I=7, H=33")),
]

# ---------------------------------------------------------------------------
# The mask hash (bit-exact with src/dropout.rs)

M32 = 0xFFFFFFFF


def pcg_hash(v):
    state = (v * 747796405 + 2891336453) & M32
    word = (((state >> ((state >> 28) + 4)) ^ state) * 277803737) & M32
    return ((word >> 22) ^ word) & M32


def mask_hash(seed, layer, t, b, unit):
    h = pcg_hash(seed & M32)
    for word in (seed >> 32, layer, t, b, unit):
        h = pcg_hash(h ^ word)
    return h


def keep_threshold(p):
    assert 0.0 <= p < 1.0
    x = p * 4294967296.0
    assert x - int(x) != 0.5, "round-half-even and half-away would differ"
    return min(round(x), M32)


def hash_mask(p, seed, layer, t, b, unit):
    """Mask value for one element: 1/(1-p) if kept, else 0."""
    return 1.0 / (1.0 - p) if mask_hash(seed, layer, t, b, unit) >= keep_threshold(p) else 0.0


def inter_mask(p, seed, k, T, B, units):
    """Inter-layer dropout mask of layer k's output, [T, B, units]."""
    return torch.tensor([[[hash_mask(p, seed, k, t, b, u) for u in range(units)]
                          for b in range(B)] for t in range(T)])


def variational_mask(p, seed, kind, k, d, B, units):
    """Input (kind 1) or recurrent (kind 2) mask of layer k, direction d, [B, units]."""
    stream = (kind << 28) | (k << 1) | d
    return torch.tensor([[hash_mask(p, seed, stream, 0, b, u) for u in range(units)]
                         for b in range(B)])


def sfx(d):
    return "_reverse" if d else ""


def make_masks(L, I, H, T, B, D, dropout, input_dropout, recurrent_dropout, seed):
    """The masks a run uses, by their fixture names; only the active ones."""
    m = {}
    for k in range(L):
        in_k = I if k == 0 else D * H
        if input_dropout > 0:
            m[f"mask.input.l{k}"] = variational_mask(input_dropout, seed, 1, k, 0, B, in_k)
        for d in range(D):
            if recurrent_dropout > 0:
                m[f"mask.recurrent.l{k}{sfx(d)}"] = variational_mask(
                    recurrent_dropout, seed, 2, k, d, B, H)
        if dropout > 0 and k < L - 1:
            m[f"mask.inter.l{k}"] = inter_mask(dropout, seed, k, T, B, D * H)
    return m


# ---------------------------------------------------------------------------
# The variant LSTM: a float64 loop over nn.LSTM's parameters

def variant_lstm(params, x, h0, c0, lengths, L, H, bidir, batch_first, act, masks):
    """Forward pass of the variant LSTM (see the module docstring).

    params: name -> tensor, nn.LSTM names (no "lstm." prefix). x: [T, B, I] or
    [B, T, I]. h0, c0: [D*L, B, H] or None. lengths: int64 [B] or None.
    masks: fixture mask names -> tensor (absent = no dropout there).
    Returns output, h_n, c_n, c_all (output and c_all in x's layout)."""
    if batch_first:
        x = x.transpose(0, 1)
    T, B, _ = x.shape
    D = 2 if bidir else 1
    actf = {"tanh": torch.tanh, "relu": torch.relu}[act]
    lens = lengths if lengths is not None else torch.full((B,), T, dtype=torch.int64)
    zeros = torch.zeros(B, H, dtype=x.dtype)
    layer_in = x
    hn, cn = [], []
    for k in range(L):
        outs, cells = [], []
        for d in range(D):
            s = f"l{k}{sfx(d)}"
            w_ih, w_hh = params["weight_ih_" + s], params["weight_hh_" + s]
            b_ih, b_hh = params.get("bias_ih_" + s), params.get("bias_hh_" + s)
            mi = masks.get(f"mask.input.l{k}")
            mr = masks.get("mask.recurrent." + s)
            ln = params.get("ln_ih_weight_" + s) is not None
            norm = lambda v, which: torch.nn.functional.layer_norm(  # noqa: E731
                v, (v.shape[1],), params[f"{which}_weight_{s}"], params[f"{which}_bias_{s}"],
                1e-5)
            h = h0[k * D + d] if h0 is not None else zeros
            c = c0[k * D + d] if c0 is not None else zeros
            out_t, cell_t = [None] * T, [None] * T
            for t in (range(T - 1, -1, -1) if d else range(T)):
                active = (lens > t).view(B, 1)
                xt = layer_in[t] if mi is None else layer_in[t] * mi
                hr = h if mr is None else h * mr
                if ln:
                    pre = norm(xt @ w_ih.t(), "ln_ih") + norm(hr @ w_hh.t(), "ln_hh")
                else:
                    pre = xt @ w_ih.t() + hr @ w_hh.t()
                if b_ih is not None:
                    pre = pre + b_ih + b_hh
                pi, pf, pg, po = pre.chunk(4, dim=1)
                c_new = torch.sigmoid(pf) * c + torch.sigmoid(pi) * actf(pg)
                c_out = norm(c_new, "ln_cell") if ln else c_new
                h_new = torch.sigmoid(po) * actf(c_out)
                h = torch.where(active, h_new, h)
                c = torch.where(active, c_new, c)
                out_t[t] = torch.where(active, h_new, zeros)
                cell_t[t] = torch.where(active, c_new, zeros)
            outs.append(torch.stack(out_t))
            cells.append(torch.stack(cell_t))
            hn.append(h)
            cn.append(c)
        layer_out = torch.cat(outs, dim=2)
        if k < L - 1 and f"mask.inter.l{k}" in masks:
            layer_out = layer_out * masks[f"mask.inter.l{k}"]
        layer_in = layer_out
    output, c_all = layer_in, torch.cat(cells, dim=2)
    if batch_first:
        output, c_all = output.transpose(0, 1), c_all.transpose(0, 1)
    return output, torch.stack(hn), torch.stack(cn), c_all


def run(rnn, x, h0, lengths, batch_first, T):
    """nn.LSTM/nn.GRU forward; with lengths, go through pack/pad like a real user would."""
    if lengths is None:
        return rnn(x, h0)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        x, lengths, batch_first=batch_first, enforce_sorted=False)
    out, h = rnn(packed, h0)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(
        out, batch_first=batch_first, total_length=T)
    return out, h


# ---------------------------------------------------------------------------
# Self-checks of the variant LSTM against nn.LSTM (before anything is written)

def max_diff(a, b):
    return (a - b).abs().max().item()


def grads_of(loss, tensors):
    return torch.autograd.grad(loss, tensors)


def check_against_nn_lstm(L, I, H, T, B, bidir=False, batch_first=False, bias=True,
                          state=False, lengths=None, seed=0):
    """All p = 0, act = tanh: the variant loop must be nn.LSTM, forward and backward."""
    torch.manual_seed(seed)
    D = 2 if bidir else 1
    lstm = torch.nn.LSTM(I, H, num_layers=L, bias=bias, batch_first=batch_first,
                         bidirectional=bidir).double()
    x = (torch.randn(B, T, I) if batch_first else torch.randn(T, B, I)).requires_grad_()
    h0 = torch.randn(D * L, B, H, requires_grad=True) if state else None
    c0 = torch.randn(D * L, B, H, requires_grad=True) if state else None
    lens = torch.tensor(lengths, dtype=torch.int64) if lengths is not None else None
    params = dict(lstm.named_parameters())
    out_a, (hn_a, cn_a) = run(lstm, x, (h0, c0) if state else None, lens, batch_first, T)
    out_b, hn_b, cn_b, c_all = variant_lstm(params, x, h0, c0, lens, L, H, bidir,
                                            batch_first, "tanh", {})
    d_out, d_hn, d_cn = torch.randn_like(out_a), torch.randn_like(hn_a), torch.randn_like(cn_a)
    wrt = [x] + ([h0, c0] if state else []) + list(params.values())

    def loss(o, h, c):
        return (o * d_out).sum() + (h * d_hn).sum() + (c * d_cn).sum()

    g_a = grads_of(loss(out_a, hn_a, cn_a), wrt)
    g_b = grads_of(loss(out_b, hn_b, cn_b), wrt)
    diffs = dict(output=max_diff(out_a, out_b), h_n=max_diff(hn_a, hn_b),
                 c_n=max_diff(cn_a, cn_b),
                 grads=max(max_diff(a, b) for a, b in zip(g_a, g_b)))
    check_c_all(c_all.detach(), cn_b.detach(), lens, L, H, D, T, B, batch_first)
    return diffs


def check_c_all(c_all, cn, lens, L, H, D, T, B, batch_first):
    """c_all agrees with c_n at each direction's last step and is 0 at padded steps."""
    ca = c_all.transpose(0, 1) if batch_first else c_all
    lens = lens.tolist() if lens is not None else [T] * B
    for b, n in enumerate(lens):
        assert torch.equal(ca[n - 1, b, :H], cn[(L - 1) * D, b]), "c_all forward"
        if D == 2:
            assert torch.equal(ca[0, b, H:], cn[(L - 1) * D + 1, b]), "c_all reverse"
        assert torch.all(ca[n:, b] == 0), "c_all padding"


def stacked_reference(lstm, x, h0, c0, lengths, L, H, bidir, masks):
    """An independent tanh reference for dropout: each batch row and each
    layer·direction through its own single-layer nn.LSTM, with the input scaled
    by the input mask, W_hh's columns scaled by the row's recurrent mask
    (W_hh (h*m) = (W_hh diag m) h) and the row's own length (reverse = run the
    flipped valid part). x is [T, B, I]; returns output [T, B, D*H], h_n, c_n."""
    T, B, _ = x.shape
    D = 2 if bidir else 1
    P = dict(lstm.named_parameters())
    outs, hns, cns = [], [], []
    for b in range(B):
        n = int(lengths[b]) if lengths is not None else T
        inp = x[:n, b:b + 1]
        row_h, row_c = [None] * (L * D), [None] * (L * D)
        for k in range(L):
            dirs = []
            for d in range(D):
                s = f"l{k}{sfx(d)}"
                mi, mr = masks.get(f"mask.input.l{k}"), masks.get("mask.recurrent." + s)
                xi = inp * mi[b] if mi is not None else inp
                w_hh = P["weight_hh_" + s] * mr[b] if mr is not None else P["weight_hh_" + s]
                has_bias = "bias_ih_" + s in P
                cell = torch.nn.LSTM(inp.shape[2], H, bias=has_bias).double()
                ps = dict(weight_ih_l0=P["weight_ih_" + s], weight_hh_l0=w_hh)
                if has_bias:
                    ps.update(bias_ih_l0=P["bias_ih_" + s], bias_hh_l0=P["bias_hh_" + s])
                hc = (h0[k * D + d, b].view(1, 1, H), c0[k * D + d, b].view(1, 1, H)) \
                    if h0 is not None else None
                xin = xi.flip(0) if d else xi
                o, (h, c) = torch.func.functional_call(cell, ps, (xin, hc))
                dirs.append(o.flip(0) if d else o)
                row_h[k * D + d], row_c[k * D + d] = h[0, 0], c[0, 0]
            out = torch.cat(dirs, dim=2)
            if k < L - 1 and f"mask.inter.l{k}" in masks:
                out = out * masks[f"mask.inter.l{k}"][:n, b:b + 1]
            inp = out
        outs.append(torch.cat([inp[:, 0], torch.zeros(T - n, D * H)]))
        hns.append(torch.stack(row_h))
        cns.append(torch.stack(row_c))
    return torch.stack(outs, 1), torch.stack(hns, 1), torch.stack(cns, 1)


def check_dropout_against_stack(L, I, H, T, B, bidir=False, state=False, lengths=None,
                                dropout=0.0, input_dropout=0.0, recurrent_dropout=0.0,
                                seed=1, torch_seed=0):
    torch.manual_seed(torch_seed)
    D = 2 if bidir else 1
    lstm = torch.nn.LSTM(I, H, num_layers=L, bidirectional=bidir).double()
    x = torch.randn(T, B, I, requires_grad=True)
    h0 = torch.randn(D * L, B, H, requires_grad=True) if state else None
    c0 = torch.randn(D * L, B, H, requires_grad=True) if state else None
    lens = torch.tensor(lengths, dtype=torch.int64) if lengths is not None else None
    masks = make_masks(L, I, H, T, B, D, dropout, input_dropout, recurrent_dropout, seed)
    params = dict(lstm.named_parameters())
    out_a, hn_a, cn_a = stacked_reference(lstm, x, h0, c0, lens, L, H, bidir, masks)
    out_b, hn_b, cn_b, _ = variant_lstm(params, x, h0, c0, lens, L, H, bidir, False,
                                        "tanh", masks)
    d_out, d_hn, d_cn = torch.randn_like(out_a), torch.randn_like(hn_a), torch.randn_like(cn_a)
    wrt = [x] + ([h0, c0] if state else []) + list(params.values())

    def loss(o, h, c):
        return (o * d_out).sum() + (h * d_hn).sum() + (c * d_cn).sum()

    g_a = grads_of(loss(out_a, hn_a, cn_a), wrt)
    g_b = grads_of(loss(out_b, hn_b, cn_b), wrt)
    # Dropout must actually change the run.
    out_0, _, _, _ = variant_lstm(params, x, h0, c0, lens, L, H, bidir, False, "tanh", {})
    assert max_diff(out_0, out_b) > 1e-3, "dropout had no effect"
    return dict(output=max_diff(out_a, out_b), h_n=max_diff(hn_a, hn_b),
                c_n=max_diff(cn_a, cn_b),
                grads=max(max_diff(a, b) for a, b in zip(g_a, g_b)))


def check_masks(masks, probs):
    """Every mask holds only 0 and 1/(1-p); each active kind drops some elements
    and keeps others; each recurrent mask varies across units and across rows.
    (A small input mask, e.g. B*I = 12 at p = 0.15, may keep everything.)"""
    for kind, p in probs.items():
        ms = {k: m for k, m in masks.items() if k.startswith(f"mask.{kind}.")}
        assert bool(ms) == (p > 0), (kind, "masks present iff p > 0")
        if not ms:
            continue
        kept = 1.0 / (1.0 - p)
        for name, m in ms.items():
            assert torch.all((m == 0) | (m == kept)), (name, "values")
        flat = torch.cat([m.flatten() for m in ms.values()])
        assert (flat == 0).any() and (flat == kept).any(), (kind, "all kept or all dropped")
        if kind == "recurrent":
            for name, m in ms.items():
                assert any(len(set(r.tolist())) > 1 for r in m), (name, "constant across units")
                assert any(len(set(c.tolist())) > 1 for c in m.t()), (name, "constant across rows")


def self_checks():
    tol = 1e-12
    # Values of the hash and thresholds as src/dropout.rs computes them (u32
    # wrapping arithmetic, f64::round), for the seeds and streams used here.
    assert [pcg_hash(0), pcg_hash(1), pcg_hash(M32)] == [129708002, 2831084092, 3861530882]
    assert [mask_hash(7, 0, 0, 0, 0), mask_hash(12345678901, (1 << 28) | 2, 0, 3, 5),
            mask_hash(12345678901, 0, 4, 3, 17), mask_hash(99, (2 << 28) | 3, 0, 2, 5),
            mask_hash(2**64 - 1, 5, 6, 7, 8)] == \
        [2872549796, 247206952, 2381801045, 3562963247, 1929188091]
    assert [keep_threshold(p) for p in (0.15, 0.2, 0.25, 0.3, 0.35)] == \
        [644245094, 858993459, 1073741824, 1288490189, 1503238554]
    results = []
    configs = [
        dict(L=2, I=4, H=5, T=5, B=3, bidir=True, state=True, lengths=[5, 2, 4], seed=1),
        dict(L=1, I=3, H=6, T=4, B=4, batch_first=True, lengths=[2, 4, 1, 3], seed=2),
        dict(L=3, I=5, H=4, T=6, B=2, bias=False, state=True, seed=3),
    ]
    for cfg in configs:
        diffs = check_against_nn_lstm(**cfg)
        results.append(("p=0 tanh vs nn.LSTM " + str(cfg), diffs))
    dcfgs = [
        dict(L=2, I=6, H=9, T=5, B=4, input_dropout=0.2, recurrent_dropout=0.25,
             dropout=0.3, seed=12345678901, torch_seed=4),
        dict(L=2, I=4, H=6, T=6, B=3, bidir=True, state=True, lengths=[6, 3, 1],
             input_dropout=0.15, recurrent_dropout=0.35, dropout=0.2, seed=99, torch_seed=5),
    ]
    for cfg in dcfgs:
        diffs = check_dropout_against_stack(**cfg)
        results.append(("dropout tanh vs per-row nn.LSTM stack " + str(cfg), diffs))
    for what, diffs in results:
        print(f"self-check {what}")
        print("    max |diff| " + ", ".join(f"{k} {v:.3e}" for k, v in diffs.items()))
        assert all(v <= tol for v in diffs.values()), (what, diffs)
    return results


# ---------------------------------------------------------------------------
# Cases

def meta_common(I, H, L, bias, batch_first, bidir, desc):
    return dict(input_size=str(I), hidden_size=str(H), num_layers=str(L),
                bias=str(bias).lower(), batch_first=str(batch_first).lower(),
                bidirectional=str(bidir).lower(), torch_version=torch.__version__,
                description=desc)


def make_variant_case(index, name, L, I, H, T, B, bidir=False, batch_first=False,
                      bias=True, state=False, lengths=None, act="tanh", dropout=0.0,
                      input_dropout=0.0, recurrent_dropout=0.0, seed=0, layer_norm=False,
                      desc=""):
    torch.manual_seed(3000 + index)
    D = 2 if bidir else 1
    lstm = torch.nn.LSTM(I, H, num_layers=L, bias=bias, batch_first=batch_first,
                         bidirectional=bidir).double()
    t = {"lstm." + k: v.detach().clone() for k, v in lstm.state_dict().items()}
    # A layer-normalised LSTM's gains and biases, drawn near nn.LayerNorm's
    # initial 1 and 0 so that the fixture tests them.
    ln_params = {}
    if layer_norm:
        for k in range(L):
            for d in range(D):
                for which, n in [("ln_ih", 4 * H), ("ln_hh", 4 * H), ("ln_cell", H)]:
                    s = f"l{k}{sfx(d)}"
                    ln_params[f"{which}_weight_{s}"] = (1 + 0.2 * torch.randn(n)).requires_grad_()
                    ln_params[f"{which}_bias_{s}"] = (0.2 * torch.randn(n)).requires_grad_()
        t.update({"lstm." + k: v.detach().clone() for k, v in ln_params.items()})

    x = (torch.randn(B, T, I) if batch_first else torch.randn(T, B, I)).requires_grad_()
    t["input"] = x.detach().clone()
    h0 = c0 = None
    if state:
        h0 = torch.randn(D * L, B, H, requires_grad=True)
        c0 = torch.randn(D * L, B, H, requires_grad=True)
        t["h_0"], t["c_0"] = h0.detach().clone(), c0.detach().clone()
    if lengths is not None:
        assert len(lengths) == B and max(lengths) == T and min(lengths) >= 1
        lengths = torch.tensor(lengths, dtype=torch.int64)
        t["lengths"] = lengths.clone()
    masks = make_masks(L, I, H, T, B, D, dropout, input_dropout, recurrent_dropout, seed)
    check_masks(masks, {"input": input_dropout, "recurrent": recurrent_dropout,
                        "inter": dropout if L > 1 else 0.0})
    t.update(masks)

    params = dict(lstm.named_parameters())
    params.update(ln_params)
    out, hn, cn, c_all = variant_lstm(params, x, h0, c0, lengths, L, H, bidir,
                                      batch_first, act, masks)
    d_out, d_hn, d_cn = torch.randn_like(out), torch.randn_like(hn), torch.randn_like(cn)
    loss = (out * d_out).sum() + (hn * d_hn).sum() + (cn * d_cn).sum()
    loss.backward()

    t.update(output=out.detach(), h_n=hn.detach(), c_n=cn.detach(), c_all=c_all.detach(),
             d_output=d_out, d_h_n=d_hn, d_c_n=d_cn)
    t["grad.input"] = x.grad
    if state:
        t["grad.h_0"], t["grad.c_0"] = h0.grad, c0.grad
    for k, p in list(lstm.named_parameters()) + list(ln_params.items()):
        t["grad.lstm." + k] = p.grad
    t = {k: v.detach().contiguous() for k, v in t.items()}
    check_c_all(t["c_all"], t["c_n"], lengths, L, H, D, T, B, batch_first)

    meta = meta_common(I, H, L, bias, batch_first, bidir, desc)
    meta.update(activation=act, dropout=repr(float(dropout)),
                input_dropout=repr(float(input_dropout)),
                recurrent_dropout=repr(float(recurrent_dropout)), dropout_seed=str(seed))
    if layer_norm:
        meta["layer_norm"] = "true"
    return t, meta


def make_gru_case(index, name, L, I, H, T, B, bidir=False, batch_first=False, bias=True,
                  state=False, lengths=None, desc=""):
    torch.manual_seed(4000 + index)
    D = 2 if bidir else 1
    gru = torch.nn.GRU(I, H, num_layers=L, bias=bias, batch_first=batch_first,
                       bidirectional=bidir).double()
    t = {"gru." + k: v.detach().clone() for k, v in gru.state_dict().items()}

    x = (torch.randn(B, T, I) if batch_first else torch.randn(T, B, I)).requires_grad_()
    t["input"] = x.detach().clone()
    h0 = None
    if state:
        h0 = torch.randn(D * L, B, H, requires_grad=True)
        t["h_0"] = h0.detach().clone()
    if lengths is not None:
        assert len(lengths) == B and max(lengths) == T and min(lengths) >= 1
        lengths = torch.tensor(lengths, dtype=torch.int64)
        t["lengths"] = lengths.clone()

    out, hn = run(gru, x, h0, lengths, batch_first, T)
    d_out, d_hn = torch.randn_like(out), torch.randn_like(hn)
    loss = (out * d_out).sum() + (hn * d_hn).sum()
    loss.backward()

    t.update(output=out.detach(), h_n=hn.detach(), d_output=d_out, d_h_n=d_hn)
    t["grad.input"] = x.grad
    if state:
        t["grad.h_0"] = h0.grad
    for k, p in gru.named_parameters():
        t["grad.gru." + k] = p.grad
    t = {k: v.detach().contiguous() for k, v in t.items()}
    return t, meta_common(I, H, L, bias, batch_first, bidir, desc)


GRU_VARIANT_CASES = [
    ("gru_dropout_two_layers", dict(L=2, I=5, H=7, T=5, B=3, input_dropout=0.2,
        recurrent_dropout=0.3, dropout=0.25, seed=11,
        desc="GRU, 2 layers, input 0.2, recurrent 0.3 and inter-layer 0.25 dropout, seed 11")),
    ("gru_dropout_bidirectional_lengths", dict(L=2, I=4, H=6, T=6, B=3, bidir=True,
        lengths=[6, 2, 4], state=True, batch_first=True, input_dropout=0.15,
        recurrent_dropout=0.35, seed=21,
        desc="GRU, 2 layers, bidirectional, batch_first, packed lengths [6,2,4], given h_0, "
             "input 0.15 and recurrent 0.35 dropout, seed 21")),
]


def variant_gru(params, x, h0, lengths, L, H, bidir, batch_first, masks):
    """nn.GRU's forward with the variational masks (Keras' GRU dropout and
    recurrent_dropout): x_t ⊙ m_x in gi, h_{t-1} ⊙ m_h in gh, the unmasked
    h_{t-1} in the update. Returns output and h_n."""
    if batch_first:
        x = x.transpose(0, 1)
    T, B, _ = x.shape
    D = 2 if bidir else 1
    lens = lengths if lengths is not None else torch.full((B,), T, dtype=torch.int64)
    zeros = torch.zeros(B, H, dtype=x.dtype)
    layer_in, hn = x, []
    for k in range(L):
        outs = []
        for d in range(D):
            s = f"l{k}{sfx(d)}"
            w_ih, w_hh = params["weight_ih_" + s], params["weight_hh_" + s]
            b_ih, b_hh = params.get("bias_ih_" + s), params.get("bias_hh_" + s)
            mi, mr = masks.get(f"mask.input.l{k}"), masks.get("mask.recurrent." + s)
            h = h0[k * D + d] if h0 is not None else zeros
            out_t = [None] * T
            for t in (range(T - 1, -1, -1) if d else range(T)):
                active = (lens > t).view(B, 1)
                xt = layer_in[t] if mi is None else layer_in[t] * mi
                hr = h if mr is None else h * mr
                gi, gh = xt @ w_ih.t(), hr @ w_hh.t()
                if b_ih is not None:
                    gi, gh = gi + b_ih, gh + b_hh
                ir, iz, i_n = gi.chunk(3, dim=1)
                hr_, hz, hn_ = gh.chunk(3, dim=1)
                r, z = torch.sigmoid(ir + hr_), torch.sigmoid(iz + hz)
                n = torch.tanh(i_n + r * hn_)
                h_new = (1 - z) * n + z * h
                h = torch.where(active, h_new, h)
                out_t[t] = torch.where(active, h_new, zeros)
            outs.append(torch.stack(out_t))
            hn.append(h)
        layer_out = torch.cat(outs, dim=2)
        if k < L - 1 and f"mask.inter.l{k}" in masks:
            layer_out = layer_out * masks[f"mask.inter.l{k}"]
        layer_in = layer_out
    return (layer_in.transpose(0, 1) if batch_first else layer_in), torch.stack(hn)


def check_variant_gru_against_nn_gru():
    """With no masks, variant_gru is nn.GRU (lengths, bidirectional, h_0)."""
    torch.manual_seed(7)
    L, I, H, T, B = 2, 3, 5, 5, 3
    gru = torch.nn.GRU(I, H, num_layers=L, bidirectional=True).double()
    x = torch.randn(T, B, I)
    h0 = torch.randn(2 * L, B, H)
    lengths = torch.tensor([5, 2, 4])
    out_a, hn_a = run(gru, x, h0, lengths, False, T)
    out_b, hn_b = variant_gru(dict(gru.named_parameters()), x, h0, lengths, L, H, True,
                              False, {})
    diff = max(max_diff(out_a, out_b), max_diff(hn_a, hn_b))
    assert diff < 1e-12, f"variant_gru differs from nn.GRU by {diff}"
    return diff


def make_gru_variant_case(index, name, L, I, H, T, B, bidir=False, batch_first=False,
                          bias=True, state=False, lengths=None, dropout=0.0,
                          input_dropout=0.0, recurrent_dropout=0.0, seed=0, desc=""):
    torch.manual_seed(5000 + index)
    D = 2 if bidir else 1
    gru = torch.nn.GRU(I, H, num_layers=L, bias=bias, batch_first=batch_first,
                       bidirectional=bidir).double()
    t = {"gru." + k: v.detach().clone() for k, v in gru.state_dict().items()}
    x = (torch.randn(B, T, I) if batch_first else torch.randn(T, B, I)).requires_grad_()
    t["input"] = x.detach().clone()
    h0 = None
    if state:
        h0 = torch.randn(D * L, B, H, requires_grad=True)
        t["h_0"] = h0.detach().clone()
    if lengths is not None:
        lengths = torch.tensor(lengths, dtype=torch.int64)
        t["lengths"] = lengths.clone()
    masks = make_masks(L, I, H, T, B, D, dropout, input_dropout, recurrent_dropout, seed)
    t.update(masks)
    out, hn = variant_gru(dict(gru.named_parameters()), x, h0, lengths, L, H, bidir,
                          batch_first, masks)
    d_out, d_hn = torch.randn_like(out), torch.randn_like(hn)
    ((out * d_out).sum() + (hn * d_hn).sum()).backward()
    t.update(output=out.detach(), h_n=hn.detach(), d_output=d_out, d_h_n=d_hn)
    t["grad.input"] = x.grad
    if state:
        t["grad.h_0"] = h0.grad
    for k, p in gru.named_parameters():
        t["grad.gru." + k] = p.grad
    t = {k: v.detach().contiguous() for k, v in t.items()}
    meta = meta_common(I, H, L, bias, batch_first, bidir, desc)
    meta.update(dropout=repr(float(dropout)), input_dropout=repr(float(input_dropout)),
                recurrent_dropout=repr(float(recurrent_dropout)), dropout_seed=str(seed))
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


def reload_check_variant(path, meta, written):
    """Reload the file and recompute the run from its tensors (bit-equal), masks included."""
    # Cloned: the loaded tensors may sit at unaligned addresses, where BLAS can
    # take a path that differs in the last bit.
    t = {k: v.clone() for k, v in load_file(path).items()}
    assert set(t) == set(written), path
    for k, v in written.items():
        assert torch.equal(t[k], v), (path, k)
    L, I, H = int(meta["num_layers"]), int(meta["input_size"]), int(meta["hidden_size"])
    bf, bidir = meta["batch_first"] == "true", meta["bidirectional"] == "true"
    D = 2 if bidir else 1
    x = t["input"]
    T, B = (x.shape[1], x.shape[0]) if bf else (x.shape[0], x.shape[1])
    masks = make_masks(L, I, H, T, B, D, float(meta["dropout"]), float(meta["input_dropout"]),
                       float(meta["recurrent_dropout"]), int(meta["dropout_seed"]))
    assert set(masks) == {k for k in t if k.startswith("mask.")}, path
    for k, m in masks.items():
        assert torch.equal(t[k], m), (path, k)
    params = {k[5:]: v for k, v in t.items() if k.startswith("lstm.")}
    with torch.no_grad():
        out, hn, cn, c_all = variant_lstm(params, x, t.get("h_0"), t.get("c_0"),
                                          t.get("lengths"), L, H, bidir, bf,
                                          meta["activation"], masks)
    for k, v in (("output", out), ("h_n", hn), ("c_n", cn), ("c_all", c_all)):
        assert t[k].dtype == torch.float64 and torch.equal(t[k], v), (path, k)
    if "lengths" in t:
        for b, n in enumerate(t["lengths"].tolist()):
            pad = t["output"][b, n:] if bf else t["output"][n:, b]
            assert torch.all(pad == 0), (path, "padding")


def reload_check_gru(path, meta):
    """Reload the file, rebuild the GRU from its tensors and recompute the outputs."""
    t = load_file(path)
    bf = meta["batch_first"] == "true"
    gru = torch.nn.GRU(int(meta["input_size"]), int(meta["hidden_size"]),
                       num_layers=int(meta["num_layers"]), bias=meta["bias"] == "true",
                       batch_first=bf, bidirectional=meta["bidirectional"] == "true")
    gru.load_state_dict({k[4:]: v for k, v in t.items() if k.startswith("gru.")})
    # Inputs require grad as during generation (PyTorch's no_grad path may differ
    # in the last bit for stacked layers, and we check bit equality).
    x = t["input"].clone().requires_grad_()
    h0 = t["h_0"].clone().requires_grad_() if "h_0" in t else None
    T = x.shape[1 if bf else 0]
    out, hn = run(gru.double(), x, h0, t.get("lengths"), bf, T)
    for k, v in (("output", out), ("h_n", hn)):
        assert t[k].dtype == torch.float64 and torch.equal(t[k], v.detach()), (path, k)
    if "lengths" in t:
        for b, n in enumerate(t["lengths"].tolist()):
            pad = t["output"][b, n:] if bf else t["output"][n:, b]
            assert torch.all(pad == 0), (path, "padding")


def make_gru_checkpoint(out_dir):
    """A GRU state_dict saved as users save it (float32) and a float64 reference
    run of it from the float32 values, for the CLI test."""
    torch.manual_seed(4100)
    gru = torch.nn.GRU(5, 8, num_layers=2, bidirectional=True).float()
    sd = {k: v.detach().contiguous() for k, v in gru.state_dict().items()}
    path = os.path.join(out_dir, "gru_state_dict.safetensors")
    save_file(sd, path)
    x = torch.randn(4, 2, 5, dtype=torch.float32)
    ref = torch.nn.GRU(5, 8, num_layers=2, bidirectional=True).double()
    ref.load_state_dict({k: v.double() for k, v in sd.items()})
    with torch.no_grad():
        out, hn = ref(x.double())
    run_path = os.path.join(out_dir, "gru_state_dict_run.safetensors")
    save_file_reproducibly(
        {"input": x.contiguous(), "output": out.contiguous(), "h_n": hn.contiguous()},
        run_path,
        dict(description="2-layer bidirectional nn.GRU(5, 8) of gru_state_dict.safetensors "
                         "(float32) run in float64 from the float32 weights and this float32 "
                         "input, zero initial state", torch_version=torch.__version__,
             input_size="5", hidden_size="8", num_layers="2", bidirectional="true",
             batch_first="false", bias="true"))
    # The float32 engine's expected agreement: PyTorch's own float32 run.
    with torch.no_grad():
        out32, hn32 = gru(x)
    d = max(max_diff(out32.double(), out), max_diff(hn32.double(), hn))
    assert d < 1e-5, d
    print(f"{'gru/gru_state_dict':48s} {len(sd):3d} tensors {os.path.getsize(path):8d} bytes")
    print(f"{'gru/gru_state_dict_run':48s} {3:3d} tensors {os.path.getsize(run_path):8d} bytes"
          f"  (float32 nn.GRU within {d:.1e})")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures"))
    args = ap.parse_args()
    self_checks()

    var_dir = os.path.join(args.out, "variants")
    os.makedirs(var_dir, exist_ok=True)
    for index, (name, kw) in enumerate(VARIANT_CASES):
        tensors, meta = make_variant_case(index, name, **kw)
        path = os.path.join(var_dir, name + ".safetensors")
        save_file_reproducibly(tensors, path, meta)
        reload_check_variant(path, meta, tensors)
        print(f"{'variants/' + name:48s} {len(tensors):3d} tensors "
              f"{os.path.getsize(path):8d} bytes")

    gru_dir = os.path.join(args.out, "gru")
    os.makedirs(gru_dir, exist_ok=True)
    for index, (name, kw) in enumerate(GRU_CASES):
        tensors, meta = make_gru_case(index, name, **kw)
        path = os.path.join(gru_dir, name + ".safetensors")
        save_file_reproducibly(tensors, path, meta)
        reload_check_gru(path, meta)
        print(f"{'gru/' + name:48s} {len(tensors):3d} tensors {os.path.getsize(path):8d} bytes")
    make_gru_checkpoint(gru_dir)

    print(f"variant GRU against nn.GRU with no masks: {check_variant_gru_against_nn_gru():.1e}")
    gv_dir = os.path.join(args.out, "gru_variants")
    os.makedirs(gv_dir, exist_ok=True)
    for index, (name, kw) in enumerate(GRU_VARIANT_CASES):
        tensors, meta = make_gru_variant_case(index, name, **kw)
        path = os.path.join(gv_dir, name + ".safetensors")
        save_file_reproducibly(tensors, path, meta)
        print(f"{'gru_variants/' + name:48s} {len(tensors):3d} tensors "
              f"{os.path.getsize(path):8d} bytes")
    print(f"torch {torch.__version__}")


if __name__ == "__main__":
    sys.exit(main())
