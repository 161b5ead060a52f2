#!/usr/bin/env python3
"""Reference training throughput of the paper-size SinC3D classifier in PyTorch eager.

The same network, loss, optimiser and batch as `mer bench train` (worker/src/bench.rs), so that anyone can
repeat the comparison on their machine:

    source scripts/env.sh
    python scripts/bench_torch.py --threads 2 --batch 8 --steps 20
    mer bench train --device cpu --threads 2 --batch 8 --steps 20

Modes:
  fp32              eager PyTorch with default settings (contiguous NCDHW, fp32)
  bf16-cl3d         torch.autocast(bfloat16) + channels_last_3d model and input (PyTorch's own fast path)

The network (docs/engine.md): five conv3d 3x3x3 (stride 1, padding 1) with widths 32/64/128/128/256 and ReLU;
max-pool (1,2,2) after conv1 and (2,2,2) after the others, with the temporal kernel clamped to the remaining
length (after pool4 T is 1, so pool5 is (1,2,2)); flatten -> dense 1024 + ReLU -> dropout 0.5 -> linear 3.
Loss: focal loss (gamma 2, alpha 1). Optimiser: SGD lr 0.004 momentum 0.9. Input: (B, 2, 10, 112, 112).
"""
import argparse
import resource
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class SinC3D(nn.Module):
    def __init__(self, widths=(32, 64, 128, 128, 256), channels=2, frames=10, size=112, dense=1024, classes=3):
        super().__init__()
        convs = []
        cin = channels
        t, s = frames, size
        self.pools = []
        for i, w in enumerate(widths):
            convs.append(nn.Conv3d(cin, w, 3, padding=1))
            kt = 1 if i == 0 else min(2, t)
            self.pools.append((kt, 2, 2))
            t, s = t // kt, s // 2
            cin = w
        self.convs = nn.ModuleList(convs)
        self.dense = nn.Linear(cin * t * s * s, dense)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(dense, classes)

    def forward(self, x):
        for conv, k in zip(self.convs, self.pools):
            x = F.max_pool3d(F.relu(conv(x)), k, k)
        x = torch.flatten(x, 1)
        x = F.relu(self.dense(x))
        return self.out(self.drop(x))


def focal_loss(logits, y, gamma=2.0, alpha=1.0):
    logp = F.log_softmax(logits.float(), dim=1).gather(1, y[:, None]).squeeze(1)
    p = logp.exp()
    return (-alpha * (1 - p) ** gamma * logp).mean()


def bench(mode, batch, steps, warmup):
    torch.manual_seed(0)
    model = SinC3D()
    x = torch.randn(batch, 2, 10, 112, 112)
    y = torch.randint(0, 3, (batch,))
    if mode == "bf16-cl3d":
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    opt = torch.optim.SGD(model.parameters(), lr=0.004, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        if mode == "bf16-cl3d":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(x)
        else:
            logits = model(x)
        loss = focal_loss(logits, y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = time.perf_counter() - t0
    return batch * steps / dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--modes", default="fp32,bf16-cl3d")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {a.batch}, steps {a.steps}")
    for mode in a.modes.split(","):
        sps = bench(mode, a.batch, a.steps, a.warmup)
        print(f"pytorch-eager {mode:10s} {sps:8.2f} samples/s")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss_mb:.0f} MiB")


if __name__ == "__main__":
    main()
