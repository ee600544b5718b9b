"""Prune a digits CNN while it trains data-parallel (DDP), and print per-rank channel counts and accuracy.

Launch (CPU: gloo; GPUs: nccl, one process per GPU; the script picks the backend itself):
    torchrun --nproc_per_node 2 bench/distributed_digits.py                       # 2 processes on this machine
    torchrun --nproc_per_node 2 bench/distributed_digits.py --criteria taylor --sparsify 0
    accelerate launch --multi_gpu --num_processes 2 bench/distributed_digits.py  # GPUs (on CPU accelerate starts one process: use torchrun)
    python bench/distributed_digits.py                                          # one process: the reference figures
Every rank trains on its own shard of the training set (`shard_dls`); the model is wrapped in DistributedDataParallel
here; `PruneCallback` rebuilds the wrapper after each prune and checks that every rank pruned the same channels.
"""
import argparse, os, time
import torch, torch.nn as nn
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from fastai.learner import Learner
from fastai.optimizer import Adam
from fastai.metrics import accuracy
from fastai.callback.progress import ProgressCallback
from fasterai_prune.data import digits_dls, digits_cnn
from fasterai_prune.core.schedule import agp
from fasterai_prune.core.criteria import criterias
from fasterai_prune.prune.prune_callback import PruneCallback
from fasterai_prune.sparse.sparsify_callback import SparsifyCallback
from fasterai_prune.prune.distributed import default_backend, shard_dls, unwrap, rank, world_size, is_main_process, print_main

def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--ratio', type=float, default=50, help='percent of channels to remove (global)')
    p.add_argument('--criteria', default='large_final', choices=sorted(criterias))
    p.add_argument('--sparsify', type=float, default=80, help='then, a second run: percent of conv weights zeroed (0: skip)')
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--width', type=int, default=16)
    p.add_argument('--bs', type=int, default=32, help='batch size per process')
    p.add_argument('--threads', type=int, default=1, help='torch CPU threads per process')
    return p.parse_args()

def setup(threads:int) -> torch.device:
    "Join the process group that torchrun / accelerate launch describe in the environment; none in a plain `python` run"
    torch.set_num_threads(threads)
    if 'RANK' not in os.environ: return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    local = int(os.environ.get('LOCAL_RANK', 0))
    if torch.cuda.is_available(): torch.cuda.set_device(local)
    dist.init_process_group(default_backend())
    return torch.device('cuda', local) if torch.cuda.is_available() else torch.device('cpu')

def learner(args, device) -> Learner:
    torch.manual_seed(0)
    model = digits_cnn(args.width).to(device)
    if dist.is_initialized(): model = DDP(model, device_ids=[device.index] if device.type == 'cuda' else None)
    learn = Learner(shard_dls(digits_dls(bs=args.bs, device=device)), model, loss_func=nn.CrossEntropyLoss(),
                    metrics=accuracy, opt_func=Adam)
    learn.remove_cb(ProgressCallback)
    learn.logger = lambda row: print_main(dict(zip(learn.recorder.metric_names, row)))   # the Recorder's rows, once
    return learn

def report(name:str, learn:Learner, seconds:float):
    "One line per rank, printed by rank 0 in rank order"
    m = unwrap(learn.model)
    convs = [c.out_channels for c in m.modules() if isinstance(c, nn.Conv2d)]
    zeros = sum(int((c.weight == 0).sum()) for c in m.modules() if isinstance(c, nn.Conv2d)) / sum(c.weight.numel() for c in m.modules() if isinstance(c, nn.Conv2d))
    line = (f"{name:<22} rank {rank()}/{world_size()}  conv channels {convs}  params {sum(p.numel() for p in m.parameters()):,}  "
            f"conv zeros {100 * zeros:.1f}%  accuracy {float(learn.validate()[1]):.4f}  fit {seconds:.1f}s  "
            f"train items/rank {len(learn.dls.train.dataset)}")
    lines = [None] * world_size()
    if dist.is_initialized(): dist.all_gather_object(lines, line)
    else: lines = [line]
    for l in lines: print_main(l, flush=True)

def main():
    args = parse()
    device = setup(args.threads)
    print_main(f"backend {dist.get_backend() if dist.is_initialized() else 'none (one process)'}, {world_size()} process(es), device {device.type}")
    learn = learner(args, device)
    t = time.perf_counter()
    learn.fit(args.epochs, 1e-2, cbs=PruneCallback(args.ratio, 'global', criterias[args.criteria], schedule=agp.with_window(0, 0.6)))
    report(f"prune {args.ratio:g}% {args.criteria}", learn, time.perf_counter() - t)
    if args.sparsify:
        learn = learner(args, device)
        t = time.perf_counter()
        learn.fit(args.epochs, 1e-2, cbs=SparsifyCallback(args.sparsify, 'weight', 'global', criterias['large_final'], agp))
        report(f"sparsify {args.sparsify:g}%", learn, time.perf_counter() - t)
    if dist.is_initialized(): dist.destroy_process_group()

if __name__ == '__main__': main()
