#!/usr/bin/env python3
"""Loads a wgpu-lstm training checkpoint (`Trainer::save_checkpoint`) into the
equivalent PyTorch module and prints its logits for sequences of token ids.

The checkpoint's parameters are named as a module with attributes
`embedding` (nn.Embedding), `lstm` (nn.LSTM, time-major) and `head`
(nn.Linear) names them; `optim.*` tensors are the optimizer's state. Loading
is strict, so every name and shape is checked.

    python3 tools/load_checkpoint.py CHECKPOINT IDS [IDS ...]

where each IDS is a comma-separated list of token ids, e.g. `5,21,30,4,75,7`.
With a last-step head (as `examples/sentiment.rs`), the logits are read at the
last step. `examples/sentiment.rs --save` prints, for two sentences, their ids
and the logit it computed: this script gives the same.
"""

import argparse
import sys

import torch
from safetensors.torch import load_file
from torch import nn


class Model(nn.Module):
    """Embedding → LSTM → Linear, under the names wgpu-lstm's checkpoints use."""

    def __init__(self, vocab, dim, hidden, outputs, layers=1, bidirectional=False):
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.lstm = nn.LSTM(dim, hidden, num_layers=layers, bidirectional=bidirectional)
        self.head = nn.Linear(hidden * (2 if bidirectional else 1), outputs)

    def forward(self, ids):  # ids: [T, B]
        out, _ = self.lstm(self.embedding(ids))
        return self.head(out[-1])  # the last step's logits, [B, outputs]


def load(path):
    state = load_file(path)
    params = {k: v for k, v in state.items() if not k.startswith("optim.")}
    vocab, dim = params["embedding.weight"].shape
    hidden = params["lstm.weight_hh_l0"].shape[1]
    layers = 1 + max(int(k.split("_l")[-1].split("_")[0]) for k in params if k.startswith("lstm.weight_ih_l"))
    bidirectional = any(k.endswith("_reverse") for k in params)
    outputs = params["head.weight"].shape[0]
    model = Model(vocab, dim, hidden, outputs, layers, bidirectional).double()
    model.load_state_dict({k: v.double() for k, v in params.items()})  # strict
    return model.eval()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("ids", nargs="+", help="comma-separated token ids, one sequence each")
    args = ap.parse_args()
    model = load(args.checkpoint)
    with torch.no_grad():
        for seq in args.ids:
            ids = torch.tensor([int(v) for v in seq.split(",")]).unsqueeze(1)
            logits = model(ids)[0].tolist()
            print(seq, " ".join(f"{v:.5f}" for v in logits))


if __name__ == "__main__":
    sys.exit(main())
