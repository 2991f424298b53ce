#!/usr/bin/env python3
"""Time PyTorch's nn.LSTM (float32) on given shapes, for comparison with our own benchmark.

Examples:
    python3 tools/bench_pytorch.py --device cpu --json /tmp/pytorch_cpu.json
    python3 tools/bench_pytorch.py --shapes "16,100,128,256" --layers 2 --bidirectional \
        --device cuda --tf32 both

Shapes are B,T,I,H (batch, sequence length, input size, hidden size), seq-first input
[T,B,I]. Modes:
  forward  eval mode, `with torch.no_grad(): lstm(x)`
  train    one training step, as lstm-bench's: out,_=lstm(x); MSELoss(head(out), 0)
           with head = Linear(D*H, 1) at every step; backward; SGD(lr=1e-4).step();
           zero_grad(set_to_none=True) before each iteration,
           x does not require grad.
Variants (--activation relu, --input-dropout P, --recurrent-dropout P) have no
fused PyTorch module: cuDNN and nn.LSTM cannot run them, so with any of them the
script times what a PyTorch user writes instead, an unrolled loop over time in
Python of torch.nn.LSTMCell (tanh) or of the same cell written out with torch ops
(relu), with one dropout mask per sequence drawn once per call and applied to x_t
and to h_{t-1} at every step (Keras' and Gal & Ghahramani's variational dropout).
Its rows say `"implementation": "cell loop"`; nn.LSTM's say `"nn.LSTM"`.
Each timed iteration is measured with time.perf_counter(); on CUDA a
torch.cuda.synchronize() happens inside the timed region. Warm-up iterations are untimed.
FLOPs: forward = sum over layers and directions of 8*H*(I_l+H)*B*T, where I_l is the
input size for layer 0 and D*H afterwards; train = 3 x forward.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import time
import warnings

import torch

DEFAULT_SHAPES = "1,100,64,128;16,100,128,256;64,100,256,512;64,50,512,1024"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_shapes(text):
    shapes = []
    for part in text.split(";"):
        if part.strip():
            b, t, i, h = (int(v) for v in part.split(","))
            shapes.append((b, t, i, h))
    return shapes


def forward_flops(B, T, I, H, layers, D):
    total = 0
    for layer in range(layers):
        inp = I if layer == 0 else D * H
        total += D * 8 * H * (inp + H) * B * T
    return total


def set_tf32(enabled):
    with warnings.catch_warnings():  # newer torch prefers fp32_precision; same effect
        warnings.simplefilter("ignore")
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


class CellLoop(torch.nn.Module):
    """A stacked (optionally bidirectional) LSTM unrolled in Python, as a PyTorch
    user writes one for the variants nn.LSTM lacks: input and recurrent dropout with
    one mask per sequence held over time, and a relu cell activation."""

    def __init__(self, I, H, layers, bidirectional, activation, input_dropout,
                 recurrent_dropout):
        super().__init__()
        self.H, self.D = H, 2 if bidirectional else 1
        self.act = torch.relu if activation == "relu" else torch.tanh
        self.p_in, self.p_rec = input_dropout, recurrent_dropout
        self.cells = torch.nn.ModuleList(
            torch.nn.LSTMCell(I if l == 0 else self.D * H, H)
            for l in range(layers) for _ in range(self.D))
        self.tanh = activation != "relu"

    def mask(self, p, shape, like):
        if not self.training or p == 0:
            return None
        return torch.bernoulli(torch.full(shape, 1 - p, device=like.device)) / (1 - p)

    def cell(self, cell, x, h, c):
        if self.tanh:
            return cell(x, (h, c))
        gates = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * self.act(g)
        return torch.sigmoid(o) * self.act(c), c

    def forward(self, x):
        T, B, _ = x.shape
        for l in range(len(self.cells) // self.D):
            m_x = self.mask(self.p_in, (B, x.shape[2]), x)
            x_in = x * m_x if m_x is not None else x
            outs = []
            for d in range(self.D):
                cell = self.cells[l * self.D + d]
                h = x.new_zeros(B, self.H)
                c = x.new_zeros(B, self.H)
                m_h = self.mask(self.p_rec, (B, self.H), x)
                steps = [None] * T
                for t in (range(T - 1, -1, -1) if d else range(T)):
                    h, c = self.cell(cell, x_in[t], h * m_h if m_h is not None else h, c)
                    steps[t] = h
                outs.append(torch.stack(steps))
            x = torch.cat(outs, dim=2)
        return x, None


def bench_one(device, mode, shape, layers, bidirectional, iters, warmup, variant=None):
    B, T, I, H = shape
    torch.manual_seed(0)
    if variant:
        lstm = CellLoop(I, H, layers, bidirectional, **variant).to(device)
    else:
        lstm = torch.nn.LSTM(I, H, num_layers=layers, bidirectional=bidirectional).to(device)
    x = torch.randn(T, B, I, device=device)
    if mode == "forward":
        lstm.eval()

        def step():
            with torch.no_grad():
                lstm(x)
    else:
        # The same training step as `lstm-bench`: a per-step Linear(D*H -> 1)
        # head, MSE against zeros, backward through time and an SGD update.
        lstm.train()
        D = 2 if bidirectional else 1
        head = torch.nn.Linear(D * H, 1).to(device)
        target = torch.zeros(T, B, 1, device=device)
        params = list(lstm.parameters()) + list(head.parameters())
        opt = torch.optim.SGD(params, lr=1e-4)
        loss_fn = torch.nn.MSELoss()

        def step():
            opt.zero_grad(set_to_none=True)
            out, _ = lstm(x)
            loss = loss_fn(head(out), target)
            loss.backward()
            opt.step()

    for _ in range(warmup):
        step()
    sync(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    del lstm, x
    if device == "cuda":
        torch.cuda.empty_cache()
    return times


def main():
    ap = argparse.ArgumentParser(description="Benchmark PyTorch nn.LSTM (float32).")
    ap.add_argument("--shapes", default=DEFAULT_SHAPES, help='"B,T,I,H;B,T,I,H"')
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--bidirectional", action="store_true")
    ap.add_argument("--device", choices=["cpu", "cuda", "both"], default="both")
    ap.add_argument("--modes", default="forward,train", help="comma list of forward,train")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--tf32", choices=["on", "off", "both"], default="both",
                    help="CUDA only: TF32 for matmul and cuDNN")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--activation", choices=["tanh", "relu"], default="tanh",
                    help="relu: a cell loop (nn.LSTM has no activation argument)")
    ap.add_argument("--input-dropout", type=float, default=0.0,
                    help="> 0: a cell loop with one input mask per sequence")
    ap.add_argument("--recurrent-dropout", type=float, default=0.0,
                    help="> 0: a cell loop with one recurrent mask per sequence")
    args = ap.parse_args()
    variant = None
    if args.activation != "tanh" or args.input_dropout > 0 or args.recurrent_dropout > 0:
        variant = dict(activation=args.activation, input_dropout=args.input_dropout,
                       recurrent_dropout=args.recurrent_dropout)

    shapes = parse_shapes(args.shapes)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    for m in modes:
        if m not in ("forward", "train"):
            ap.error(f"unknown mode {m!r}")
    torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    devices = ["cpu", "cuda"] if args.device == "both" else [args.device]
    if "cuda" in devices and not torch.cuda.is_available():
        print("note: CUDA not available, skipping CUDA rows")
        devices.remove("cuda")
    tf32_settings = {"on": [True], "off": [False], "both": [True, False]}[args.tf32]

    meta = {
        "torch_version": torch.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "mkldnn_available": torch.backends.mkldnn.is_available(),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.machine()}",
        "cuda_device": torch.cuda.get_device_name(0) if "cuda" in devices else None,
        "cuda_version": torch.version.cuda if "cuda" in devices else None,
        "cudnn_version": torch.backends.cudnn.version() if "cuda" in devices else None,
        "iters": args.iters,
        "warmup": args.warmup,
    }
    print(f"PyTorch {meta['torch_version']} | threads {threads} (cpu_count {meta['cpu_count']}) | "
          f"mkldnn available {meta['mkldnn_available']}")
    print(f"CPU: {meta['cpu_model']}")
    if meta["cuda_device"]:
        print(f"CUDA: {meta['cuda_device']} (CUDA {meta['cuda_version']}, "
              f"cuDNN {meta['cudnn_version']})")
    print(f"date {meta['date']} | layers {args.layers} | bidirectional {args.bidirectional} | "
          f"iters {args.iters} warmup {args.warmup} | f32 | "
          f"{'cell loop ' + str(variant) if variant else 'nn.LSTM'}")
    print()
    header = (f"{'device':6} {'tf32':5} {'mode':7} {'B':>4} {'T':>4} {'I':>5} {'H':>5} "
              f"{'median ms':>10} {'min ms':>10} {'max ms':>10} {'GFLOP/s':>9}")
    print(header)
    print("-" * len(header))

    rows = []
    for device in devices:
        for tf32 in (tf32_settings if device == "cuda" else [None]):
            if tf32 is not None:
                set_tf32(tf32)
            adapter = meta["cuda_device"] if device == "cuda" else meta["cpu_model"]
            for mode in modes:
                for shape in shapes:
                    times = bench_one(device, mode, shape, args.layers, args.bidirectional,
                                      args.iters, args.warmup, variant)
                    B, T, I, H = shape
                    flops = forward_flops(B, T, I, H, args.layers,
                                          2 if args.bidirectional else 1)
                    flops *= 3 if mode == "train" else 1
                    med = statistics.median(times)
                    row = {
                        "engine": "pytorch", "device": device, "adapter": adapter,
                        "mode": mode, "precision": "f32", "tf32": tf32,
                        "batch": B, "seq_len": T, "input_size": I, "hidden_size": H,
                        "layers": args.layers, "bidirectional": args.bidirectional,
                        "implementation": "cell loop" if variant else "nn.LSTM",
                        "activation": args.activation, "input_dropout": args.input_dropout,
                        "recurrent_dropout": args.recurrent_dropout,
                        "threads": threads, "iters": args.iters,
                        "median_ms": med, "min_ms": min(times), "max_ms": max(times),
                        "gflops": flops / (med * 1e-3) / 1e9,
                    }
                    rows.append(row)
                    tf = "-" if tf32 is None else ("on" if tf32 else "off")
                    print(f"{device:6} {tf:5} {mode:7} {B:>4} {T:>4} {I:>5} {H:>5} "
                          f"{med:>10.3f} {min(times):>10.3f} {max(times):>10.3f} "
                          f"{row['gflops']:>9.1f}", flush=True)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
