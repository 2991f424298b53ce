#!/usr/bin/env python3
"""Generate golden training-loop fixtures from PyTorch (float64) for the CPU
training reference (`src/train/`, tested by `tests/train_cpu.rs`).

Regenerate with:

    python3 tools/make_train_fixtures.py            # writes tests/fixtures/training/*.safetensors
    python3 tools/make_train_fixtures.py --out DIR  # writes DIR/*.safetensors

Requires `torch`, `safetensors` and `numpy`. Each training case is seeded with
`torch.manual_seed(2000 + case_index)`, so output is deterministic for a given
PyTorch version (recorded in the metadata). The files live in their own folder
because the LSTM fixture tests read every file directly in tests/fixtures/.

Training cases (adam, sgd_momentum, adamw_clipped, sgd_nesterov_cosine,
adam_clip_value): the
model is `lstm = nn.LSTM(3, 5)` (1 layer, seq-first, zero initial state)
followed by `head = nn.Linear(5, 2)` applied at every time step, trained with
`nn.MSELoss()` (mean) for `steps` steps on one fixed batch. Each step:

    optimizer.zero_grad()
    loss = MSELoss()(head(lstm(input)[0]), target)
    loss.backward()
    grad_norm[k] = clip_grad_norm_(params, max_norm)   # or the same 2-norm, unclipped
    clip_grad_value_(params, clip_value)                # adam_clip_value only
    lr[k] = optimizer.param_groups[0]["lr"]
    optimizer.step(); scheduler.step() (when there is a scheduler)

`params` is list(lstm.parameters()) + list(head.parameters()), i.e. in order
weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, head.weight, head.bias;
optimizer state index i refers to this order. Tensors (float64, contiguous):

  init.lstm.<name>        LSTM parameters before training, state_dict names
                          (weight_ih_l0 [20, 3], weight_hh_l0 [20, 5],
                          bias_ih_l0 [20], bias_hh_l0 [20]); PyTorch's default init
  init.head.weight [2, 5], init.head.bias [2]
  input [T=4, B=3, 3]     standard normal
  target [4, 3, 2]        standard normal
  loss [steps]            the loss at each step, before that step's update
  grad_norm [steps]       total 2-norm of all gradients before clipping
  lr [steps]              the learning rate each step used
  final.lstm.<name>, final.head.weight, final.head.bias
                          parameters after the last step
  final.optim.<i>.<name>  optimizer state after the last step, as in
                          optimizer.state_dict()["state"][i]: momentum_buffer (SGD),
                          exp_avg and exp_avg_sq (Adam, AdamW)

Metadata (all strings): optimizer ("sgd", "adam", "adamw"), lr, momentum,
dampening, nesterov ("true"/"false"), betas ("b1,b2"), eps, weight_decay
(the optimizer's, including AdamW's), clip_max_norm and clip_value ("none" or a
number),
schedule ("constant" or "cosine"), t_max, eta_min, steps, torch_version,
description. Fields that do not apply to the optimizer are absent.

Other files:

  schedules.safetensors   learning rates of a bare parameter's SGD(lr=0.5) under
                          step_lr: StepLR(step_size=3, gamma=0.5), 10 steps [10];
                          cosine: CosineAnnealingLR(T_max=4, eta_min=0.01), 13 steps,
                          past T_max [13]. lr[k] is the lr of the step after k
                          completed steps. Metadata: the hyper-parameters.
  stateful.safetensors    stateful (truncated BPTT) training: the init.* weights,
                          input [16, 3, 3], target [16, 3, 2], init_full_output
                          [16, 3, 2] (head(lstm(input)) with the initial weights,
                          in one pass), loss [4] (one Adam(lr=0.01) step per chunk
                          of 4 steps, each from the previous chunk's detached final
                          state) and final.*.
  stack_features.safetensors, stack_tokens.safetensors
                          a stack of recurrent modules of their own sizes, as
                          the module `Stack` below (the README's): the input,
                          targets and lengths, output [rows, O] (the initial
                          model's head output), grad.{name} (the first step's
                          gradient of every parameter), loss [3] (three
                          Adam(lr=0.01) steps on the batch) and final.{name}.
                          Their initial state_dicts are the model files
                          stack_features_model.safetensors and
                          stack_tokens_model.safetensors (metadata head_kind,
                          and hidden_activation with a hidden layer).
                          features: LSTM(3, 5, bidirectional) -> LSTM(10, 4) ->
                          last-step hidden Linear(4, 3) and tanh -> Linear(3, 2),
                          MSELoss (input and target
                          values that f32 holds exactly), T = 6, B = 3,
                          lengths [6, 4, 5]. tokens: Embedding(11, 4) ->
                          GRU(4, 6) -> LSTM(6, 3, num_layers=2) -> per-step
                          Linear(3, 5), CrossEntropyLoss over valid steps,
                          T = 5, B = 3, lengths [5, 2, 4].
  bce_with_logits.safetensors
                          nn.BCEWithLogitsLoss() (mean), computed in float64, on
                          float32 logits [5, 3] (standard normal, row 1 set to
                          40, -60, 19.9: saturated) and targets [5, 3] in [0, 1],
                          soft ones included: logits, targets, loss [] and grad.
  cross_entropy.safetensors
                          nn.CrossEntropyLoss(ignore_index=-100) on logits [6, 4]
                          (standard normal, row 4 scaled by 50 to exercise the
                          stable log-softmax) and int64 targets [6] with row 2 = -100
                          (ignored): logits, targets, loss [] and grad [6, 4]
                          (d loss / d logits).
"""

import argparse
import math
import os
import sys

import torch
from safetensors.torch import load_file

from make_fixtures import save_file_reproducibly  # the same byte-stable writer

torch.set_default_dtype(torch.float64)

T, B, I, H, O = 4, 3, 3, 5, 2
STEPS = 4

# name, optimizer factory kwargs
CASES = [
    ("adam", dict(optimizer="adam", lr=0.01,
        desc="Adam(lr=0.01), 4 steps")),
    ("sgd_momentum", dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-3,
        desc="SGD(lr=0.1, momentum=0.9, weight_decay=1e-3), 4 steps")),
    ("adamw_clipped", dict(optimizer="adamw", lr=0.01, weight_decay=0.1, clip=0.05,
        desc="AdamW(lr=0.01, weight_decay=0.1) with clip_grad_norm_(params, 0.05) "
             "before each step, 4 steps")),
    ("sgd_nesterov_cosine", dict(optimizer="sgd", lr=0.2, momentum=0.8, nesterov=True,
        cosine_t_max=4,
        desc="SGD(lr=0.2, momentum=0.8, nesterov=True) with CosineAnnealingLR(T_max=4), "
             "4 steps")),
    ("adam_clip_value", dict(optimizer="adam", lr=0.01, clip=0.3, clip_value=0.05,
        desc="Adam(lr=0.01) with clip_grad_norm_(params, 0.3) then "
             "clip_grad_value_(params, 0.05) before each step (both bind), 4 steps")),
]


def make_optimizer(params, optimizer, lr, momentum=0.0, weight_decay=None, nesterov=False):
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum,
                              weight_decay=weight_decay or 0.0, nesterov=nesterov)
    elif optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay or 0.0)
    else:
        kw = {} if weight_decay is None else dict(weight_decay=weight_decay)
        opt = torch.optim.AdamW(params, lr=lr, **kw)
    return opt


def optimizer_meta(opt, optimizer):
    g = opt.param_groups[0]
    # The base lr: a scheduler keeps it as initial_lr and moves lr.
    meta = dict(optimizer=optimizer, lr=repr(g.get("initial_lr", g["lr"])),
                weight_decay=repr(g["weight_decay"]))
    if optimizer == "sgd":
        meta.update(momentum=repr(g["momentum"]), dampening=repr(g["dampening"]),
                    nesterov=str(g["nesterov"]).lower())
    else:
        assert not g["amsgrad"]
        meta.update(betas=f"{g['betas'][0]!r},{g['betas'][1]!r}", eps=repr(g["eps"]))
    return meta


def make_case(index, name, optimizer, lr, momentum=0.0, weight_decay=None, nesterov=False,
              clip=None, clip_value=None, cosine_t_max=None, desc=""):
    torch.manual_seed(2000 + index)
    lstm = torch.nn.LSTM(I, H).double()
    head = torch.nn.Linear(H, O).double()
    t = {"init.lstm." + k: v.detach().clone() for k, v in lstm.state_dict().items()}
    t.update({"init.head." + k: v.detach().clone() for k, v in head.state_dict().items()})
    x = torch.randn(T, B, I)
    y = torch.randn(T, B, O)
    t["input"], t["target"] = x.clone(), y.clone()

    params = list(lstm.parameters()) + list(head.parameters())
    opt = make_optimizer(params, optimizer, lr, momentum, weight_decay, nesterov)
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cosine_t_max)
             if cosine_t_max else None)
    losses, norms, lrs = [], [], []
    for _ in range(STEPS):
        opt.zero_grad()
        out, _ = lstm(x)
        loss = torch.nn.MSELoss()(head(out), y)
        loss.backward()
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
        else:
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
        if clip_value is not None:
            # Both clips bind: the norm is over the limit, and elements are
            # left over the value limit after the norm's scaling.
            assert clip is None or norm.item() > clip
            assert max(p.grad.abs().max().item() for p in params) > clip_value
            torch.nn.utils.clip_grad_value_(params, clip_value)
        losses.append(loss.item())
        norms.append(norm.item())
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        if sched is not None:
            sched.step()

    t["loss"], t["grad_norm"], t["lr"] = (torch.tensor(v) for v in (losses, norms, lrs))
    t.update({"final.lstm." + k: v.detach().clone() for k, v in lstm.state_dict().items()})
    t.update({"final.head." + k: v.detach().clone() for k, v in head.state_dict().items()})
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            if k != "step":
                t[f"final.optim.{i}.{k}"] = v.detach().clone()
    t = {k: v.detach().contiguous() for k, v in t.items()}

    meta = optimizer_meta(opt, optimizer)
    meta.update(clip_max_norm="none" if clip is None else repr(clip),
                clip_value="none" if clip_value is None else repr(clip_value),
                schedule="cosine" if sched else "constant", steps=str(STEPS),
                torch_version=torch.__version__, description=desc)
    if sched:
        meta.update(t_max=str(cosine_t_max), eta_min=repr(sched.eta_min))
    return t, meta


def make_schedules():
    def run(make, steps):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=0.5)
        sched = make(opt)
        lrs = []
        for _ in range(steps):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        return torch.tensor(lrs)

    t = {
        "step_lr": run(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5), 10),
        "cosine": run(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(
            o, T_max=4, eta_min=0.01), 13),
    }
    # The recursive form PyTorch steps with must agree with its closed form.
    for k, lr in enumerate(t["cosine"].tolist()):
        closed = 0.01 + (0.5 - 0.01) * (1 + math.cos(math.pi * k / 4)) / 2
        assert abs(lr - closed) < 1e-12, (k, lr, closed)
    meta = dict(base_lr="0.5", step_lr_step_size="3", step_lr_gamma="0.5",
                cosine_t_max="4", cosine_eta_min="0.01", torch_version=torch.__version__,
                description="StepLR and CosineAnnealingLR learning rates by completed step")
    return t, meta


def make_cross_entropy():
    torch.manual_seed(3000)
    logits = torch.randn(6, 4)
    logits[4] *= 50.0
    targets = torch.tensor([3, 0, -100, 1, 2, 1], dtype=torch.int64)
    z = logits.clone().requires_grad_()
    loss = torch.nn.CrossEntropyLoss(ignore_index=-100)(z, targets)
    loss.backward()
    t = dict(logits=logits, targets=targets, loss=loss.detach(), grad=z.grad.detach())
    meta = dict(classes="4", ignore_index="-100", torch_version=torch.__version__,
                description="CrossEntropyLoss(ignore_index=-100), mean over non-ignored rows")
    return {k: v.contiguous() for k, v in t.items()}, meta


def make_stateful():
    """Keras' stateful=True: truncated back-propagation through time over one
    long sequence cut into chunks. Each chunk starts from the previous chunk's
    final (h, c), detached, and is one Adam step."""
    torch.manual_seed(3002)
    chunks, tc = 4, 4
    lstm = torch.nn.LSTM(I, H).double()
    head = torch.nn.Linear(H, O).double()
    t = {"init.lstm." + k: v.detach().clone() for k, v in lstm.state_dict().items()}
    t.update({"init.head." + k: v.detach().clone() for k, v in head.state_dict().items()})
    x = torch.randn(chunks * tc, B, I)
    y = torch.randn(chunks * tc, B, O)
    t["input"], t["target"] = x.clone(), y.clone()
    with torch.no_grad():
        t["init_full_output"] = head(lstm(x)[0]).clone()
    params = list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=0.01)
    state = None
    losses = []
    for k in range(chunks):
        opt.zero_grad()
        xs, ys = x[k * tc:(k + 1) * tc], y[k * tc:(k + 1) * tc]
        out, (h, c) = lstm(xs, state)
        loss = torch.nn.MSELoss()(head(out), ys)
        loss.backward()
        opt.step()
        state = (h.detach(), c.detach())  # no gradient through the boundary
        losses.append(loss.item())
    t["loss"] = torch.tensor(losses)
    t.update({"final.lstm." + k: v.detach().clone() for k, v in lstm.state_dict().items()})
    t.update({"final.head." + k: v.detach().clone() for k, v in head.state_dict().items()})
    meta = dict(chunks=str(chunks), chunk_len=str(tc), optimizer="adam", lr="0.01",
                torch_version=torch.__version__,
                description="stateful (truncated BPTT) training: nn.LSTM(3, 5) + per-step "
                            "nn.Linear(5, 2), MSELoss, Adam(lr=0.01), one step per chunk of "
                            "4 steps of a 16-step sequence, each chunk from the previous "
                            "chunk's detached final state")
    return {k: v.detach().contiguous() for k, v in t.items()}, meta


class Stack(torch.nn.Module):
    """The module a wgpu-lstm `Model` saves as: an optional embedding, the
    first recurrent module `lstm`, the further ones in `stack`, and `head`
    at every step or at each sequence's last valid step."""

    def __init__(self, modules, outputs, per_step, embedding=None, hidden=None):
        super().__init__()
        if embedding is not None:
            self.embedding = torch.nn.Embedding(*embedding)
        self.lstm = modules[0]
        self.stack = torch.nn.ModuleList(modules[1:])
        features = modules[-1].hidden_size * (2 if modules[-1].bidirectional else 1)
        self.activation = None
        if hidden is not None:  # (units, "tanh" or "relu")
            self.hidden = torch.nn.Linear(features, hidden[0])
            self.activation = {"tanh": torch.tanh, "relu": torch.relu}[hidden[1]]
            features = hidden[0]
        self.head = torch.nn.Linear(features, outputs)
        self.per_step = per_step

    def forward(self, x, lengths):
        """x: [T, B, I] features or [T, B] token ids; lengths: [B]."""
        if hasattr(self, "embedding"):
            x = self.embedding(x)
        pack = torch.nn.utils.rnn
        for rnn in [self.lstm, *self.stack]:
            packed = pack.pack_padded_sequence(x, lengths, enforce_sorted=False)
            x, _ = pack.pad_packed_sequence(rnn(packed)[0], total_length=x.shape[0])
        if not self.per_step:
            x = x[lengths - 1, torch.arange(x.shape[1])]  # [B, F]
        if self.activation is not None:
            x = self.activation(self.hidden(x))
        return self.head(x).reshape(-1, self.head.out_features)  # [rows, O]


def make_stack(kind):
    torch.manual_seed(3010 if kind == "features" else 3011)
    if kind == "features":
        t_len, lengths = 6, torch.tensor([6, 4, 5])
        model = Stack([torch.nn.LSTM(3, 5, bidirectional=True), torch.nn.LSTM(10, 4)],
                      outputs=2, per_step=False, hidden=(3, "tanh"))
        # Values an f32 holds exactly, as a trainer's batch reads f32.
        x = torch.randn(t_len, 3, 3).float().double()
        y = torch.randn(3, 2).float().double()
        loss_fn = torch.nn.MSELoss()
    else:
        t_len, lengths = 5, torch.tensor([5, 2, 4])
        model = Stack([torch.nn.GRU(4, 6), torch.nn.LSTM(6, 3, num_layers=2)],
                      outputs=5, per_step=True, embedding=(11, 4))
        x = torch.randint(0, 11, (t_len, 3))
        y = torch.randint(0, 5, (t_len, 3))
        valid = torch.arange(t_len)[:, None] < lengths[None, :]
        y = torch.where(valid, y, torch.full_like(y, -100)).reshape(-1)
        loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100)
    model = model.double()
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    t = {"input": x, "target": y, "lengths": lengths}
    with torch.no_grad():
        t["output"] = model(x, lengths)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for step in range(3):
        opt.zero_grad()
        loss = loss_fn(model(x, lengths), y)
        loss.backward()
        if step == 0:
            t.update({"grad." + k: p.grad.detach().clone() for k, p in model.named_parameters()})
        opt.step()
        losses.append(loss.item())
    t["loss"] = torch.tensor(losses)
    t.update({"final." + k: v.detach().clone() for k, v in model.state_dict().items()})
    head_kind = "per_step" if model.per_step else "last_step"
    model_meta = {"head_kind": head_kind}
    if model.activation is not None:
        model_meta["hidden_activation"] = "tanh" if model.activation is torch.tanh else "relu"
    meta = dict(optimizer="adam", lr="0.01", head_kind=head_kind, torch_version=torch.__version__,
                description=f"a stack ({kind}): {model}; Adam(lr=0.01), 3 steps")
    tensors = {k: v.detach().contiguous() for k, v in t.items()}
    return tensors, meta, (init, model_meta), model


def check_saved(path, model):
    """A model file written by wgpu-lstm loads into the PyTorch module (every
    name and shape, strictly) and holds what PyTorch trained."""
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        assert f.metadata()["head_kind"] == ("per_step" if model.per_step else "last_step")
    saved = load_file(path)
    want = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.double() for k, v in saved.items()}, strict=True)
    worst = max(((saved[k].double() - v).abs().max().item() for k, v in want.items()))
    print(f"{path}: loads into {type(model).__name__} strictly; "
          f"largest difference from PyTorch's training {worst:.2e}")
    assert worst < 1e-4, worst


def make_bce_with_logits():
    torch.manual_seed(3001)
    logits = torch.randn(5, 3)
    logits[1] = torch.tensor([40.0, -60.0, 19.9])  # saturated: 1 + exp(-|z|) rounds to 1 in f32
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [0.3, 0.75, 0.0],
                            [1.0, 1.0, 0.0], [0.5, 0.0, 1.0]])
    z = logits.double().clone().requires_grad_()
    loss = torch.nn.BCEWithLogitsLoss()(z, targets.double())
    loss.backward()
    t = dict(logits=logits, targets=targets, loss=loss.detach(), grad=z.grad.detach())
    meta = dict(torch_version=torch.__version__,
                description="BCEWithLogitsLoss() (mean) in float64 on float32 logits and targets")
    return {k: v.contiguous() for k, v in t.items()}, meta


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(root, "tests", "fixtures", "training"))
    ap.add_argument("--check-saved", nargs=2, metavar=("KIND", "PATH"),
                    help="check that a model file wgpu-lstm saved after training the stack "
                         "fixture KIND (features or tokens) loads into the PyTorch module "
                         "and matches PyTorch's training (see tests/model_stack.rs)")
    args = ap.parse_args()
    if args.check_saved:
        kind, path = args.check_saved
        return check_saved(path, make_stack(kind)[3])
    os.makedirs(args.out, exist_ok=True)
    files = [(name, *make_case(i, name, **kw)) for i, (name, kw) in enumerate(CASES)]
    files.append(("schedules", *make_schedules()))
    files.append(("cross_entropy", *make_cross_entropy()))
    files.append(("bce_with_logits", *make_bce_with_logits()))
    files.append(("stateful", *make_stateful()))
    for kind in ["features", "tokens"]:
        tensors, meta, (init, init_meta), _ = make_stack(kind)
        files.append((f"stack_{kind}", tensors, meta))
        files.append((f"stack_{kind}_model", {k: v.contiguous() for k, v in init.items()},
                      init_meta))
    total = 0
    for name, tensors, meta in files:
        path = os.path.join(args.out, name + ".safetensors")
        save_file_reproducibly(tensors, path, meta)
        back = load_file(path)
        assert all(torch.equal(back[k], v) for k, v in tensors.items()), path
        size = os.path.getsize(path)
        total += size
        print(f"{name:24s} {len(tensors):3d} tensors {size:7d} bytes")
    print(f"{len(files)} files, {total} bytes total, torch {torch.__version__}")


if __name__ == "__main__":
    sys.exit(main())
