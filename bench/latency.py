"""CPU latency of dense vs pruned torchvision models: does the MACs reduction turn into a latency speedup?

Run: nice -n -5 python bench/latency.py [--models resnet18 resnet50 mobilenet_v3_large convnext_tiny] [--rounds 7]
        [--macs-kept 50] [--batch 8] [--threads 2] [--size 224] [--profile] [--channel-sweep]
`--profile`: where the time goes, by kind of layer (convs/linears, depthwise convs, other modules, the rest), dense vs
pruned. `--channel-sweep`: single convs timed at odd and round channel counts.
For each model, the channel ratio (local context, large_final) that keeps about `--macs-kept`% of the MACs is found by
bisection with fasterai_prune's `Pruner`; fasterai 0.4.1 is run at the same channel ratio (local). Variants:
  dense / pruned           eager PyTorch, contiguous (NCHW) memory
  +fold                    BatchNorms folded into the convs (`deploy.fold_bn`)
  +fold+cl                 ... and channels_last memory format for weights and input (dense, pruned, r16 and lat)
  r8+fold                  pruned with round_to=8 (channel counts multiples of 8), folded, at the channel ratio that
                           keeps `--macs-kept`% of the MACs with that rounding (its own bisection)
  r16+fold                 the same with round_to=16 (oneDNN's and onnxruntime's blocked layouts take 16 fp32
                           channels per AVX-512 register)
  lat+fold                 (models of `--latency-models`) pruned with target='latency' (round_to='auto': `channel_block()`, 16 on AVX-512) to remove as
                           much latency as MACs are removed (100 - `--macs-kept` percent), planned on per-layer latencies
                           measured at batch `--batch`; folded. Its ratio is against its own MACs speedup
  ort                      onnxruntime (CPU, same thread count, pool threads not spinning between runs) on the folded
                           model (`deploy.export_onnx`), r8 and r16 too
Latency: wall time and process CPU time (all threads), median of `--rounds` rounds after 2 warm-up calls; within a round every variant runs once, in turn, so that
load from other processes on a shared CPU hits all variants alike. Speedups are dense/pruned for the same deployment
(`pruned+fold` against `dense+fold`, `ort` against dense `ort`). Anchor (issue 12): latency speedup >= 0.9 × MACs
speedup for resnet50 and mobilenet_v3_large at 50% MACs, batch 8, 2 threads.
"""
import argparse, contextlib, copy, io, os, statistics, sys, tempfile, time, warnings
from pathlib import Path
# On a shared, oversubscribed CPU, OpenMP threads that spin at barriers while their partner thread is descheduled make
# 2-thread timings several times slower and erratic; passive waiting is what a shared deployment wants anyway.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
import torch, torch.nn as nn
import torchvision.models as tvm

warnings.filterwarnings('ignore')
ANCHORS = '/work/.anchors'   # fasterai 0.4.1 installed with `pip install --no-deps --target /work/.anchors fasterai==0.4.1`

from fasterai_prune.core.measure import count_macs
from fasterai_prune.prune.pruner import Pruner
from fasterai_prune.core.criteria import large_final
from fasterai_prune.deploy.fold_bn import fold_bn
from fasterai_prune.deploy.onnx import export_onnx, import_deploy

def new_model(name): torch.manual_seed(0); return getattr(tvm, name)(weights=None).eval()

def ours(name, ratio, x1, round_to=None, target='channels'):
    m = new_model(name)
    Pruner(m, ratio, 'local', large_final, example_inputs=x1, round_to=round_to, target=target, verbose=False).prune_model()
    return m.eval()

def fasterai_041(name, ratio, x1):
    if ANCHORS not in sys.path: sys.path.insert(0, ANCHORS)
    from fasterai.prune.pruner import Pruner as P041
    from fasterai.core.criteria import large_final as lf041
    m = new_model(name)
    with contextlib.redirect_stdout(io.StringIO()): P041(m, ratio / 100, 'local', lf041, example_inputs=x1).prune_model()
    return m.eval()

def macs(m, x1): return count_macs(m, x1)[0]

def ratio_for(name, macs_kept, x1, dense_macs, tol=1., round_to=None):
    "Channel ratio (percent, local) whose pruned model keeps about `macs_kept`% of the MACs (bisection)"
    lo, hi, best = 0., 90., None
    for _ in range(7):
        mid = (lo + hi) / 2
        kept = 100 * macs(ours(name, mid, x1, round_to=round_to), x1) / dense_macs
        if best is None or abs(kept - macs_kept) < abs(best[1] - macs_kept): best = (mid, kept)
        if abs(kept - macs_kept) <= tol: break
        lo, hi = (mid, hi) if kept > macs_kept else (lo, mid)
    return best

def folded(m, x1): m = copy.deepcopy(m); fold_bn(m); return m
def channels_last(m): return copy.deepcopy(m).to(memory_format=torch.channels_last)

def ort_runner(m, x, path, threads):
    ort = import_deploy('onnxruntime')
    export_onnx(m, x, path)
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
    # onnxruntime's pool threads spin after each run by default: interleaved with other runners on 2 cores, they steal
    # the next runner's CPU (a pruned mobilenet measured 44 ms here with spinning, 13 ms alone)
    so.add_session_config_entry('session.intra_op.allow_spinning', '0')
    sess = ort.InferenceSession(str(path), so, providers=['CPUExecutionProvider'])
    feed = {sess.get_inputs()[0].name: x.numpy()}
    return lambda: sess.run(None, feed)

def torch_runner(m, x):
    def f():
        with torch.inference_mode(): m(x)
    return f

def time_rounds(runners:dict, rounds:int) -> tuple:
    "Median wall and CPU seconds per call of each runner: 2 warm-ups each, then `rounds` rounds running each once, in turn"
    for f in runners.values(): f(); f()
    wall, cpu = {k: [] for k in runners}, {k: [] for k in runners}
    for _ in range(rounds):
        for k, f in runners.items():
            t, c = time.perf_counter(), time.process_time(); f()
            wall[k].append(time.perf_counter() - t); cpu[k].append(time.process_time() - c)
    med = lambda d: {k: statistics.median(v) for k, v in d.items()}
    return med(wall), med(cpu), {k: (min(v), max(v)) for k, v in wall.items()}

def kind_of(m:nn.Module) -> str:
    "'conv/linear' (MACs fall with in × out channels), 'depthwise conv' or 'other module' (time falls with channels)"
    if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels: return 'depthwise conv'
    if isinstance(m, (nn.Conv2d, nn.Linear)): return 'conv/linear'
    return 'other module'

def cpu_median(f, n:int=5) -> float:
    f(); ts = []
    for _ in range(n): t = time.process_time(); f(); ts.append(time.process_time() - t)
    return statistics.median(ts)

@torch.inference_mode()
def time_by_kind(m:nn.Module, x:torch.Tensor) -> dict:
    "CPU seconds per call of each kind of leaf module (each timed alone on its real input, median of 3), and the rest"
    res = {'conv/linear': 0., 'depthwise conv': 0., 'other module': 0.}
    def hook(mod, inp, out): res[kind_of(mod)] += cpu_median(lambda: mod.forward(*inp), 3)
    hs = [mod.register_forward_hook(hook) for mod in m.modules() if not list(mod.children())]
    try: m(x)
    finally:
        for h in hs: h.remove()
    total = cpu_median(lambda: m(x))
    res['functional ops (add, mul, permute...)'] = max(total - sum(res.values()), 0.); res['total'] = total
    return res

def amdahl(dense:nn.Module, pruned:nn.Module, x:torch.Tensor, x1:torch.Tensor, ratio:float):
    "Where the time goes in the dense and the pruned model, and the speedup each kind of work gets"
    td, tp_ = time_by_kind(dense, x), time_by_kind(pruned, x)
    md, mp = count_macs(dense, x1)[0], count_macs(pruned, x1)[0]
    print(f"\nwhere the time goes (folded models, CPU ms per call, leaf modules timed alone; channel ratio {ratio:.1f}% "
          f"so activations shrink {1 / (1 - ratio / 100):.2f}×, MACs {md / mp:.2f}×)")
    print("| kind | dense ms | share | pruned ms | speedup |\n|---|---:|---:|---:|---:|")
    for k in td: print(f"| {k} | {1e3 * td[k]:.1f} | {100 * td[k] / td['total']:.0f}% | {1e3 * tp_[k]:.1f} | {td[k] / max(tp_[k], 1e-9):.2f}× |")

def channel_sweep(threads:int, batch:int):
    "CPU ms of single convs at channel counts around multiples of 8 and 16: is an odd width slower per MAC?"
    print(f"\n## single convs, batch {batch}, {threads} threads: CPU ms per call (median of 9) and ns per MAC")
    print("| conv | input | channels | CPU ms | ns/kMAC |\n|---|---|---:|---:|---:|")
    cases = [('depthwise 3×3', lambda c: nn.Conv2d(c, c, 3, padding=1, groups=c), 56),
             ('depthwise 7×7', lambda c: nn.Conv2d(c, c, 7, padding=3, groups=c), 28),
             ('1×1', lambda c: nn.Conv2d(c, c, 1), 28), ('3×3', lambda c: nn.Conv2d(c, c, 3, padding=1), 28)]
    for name, mk, hw in cases:
        for c in (96, 88, 90, 91, 64, 45, 48):
            conv = mk(c).eval(); x = torch.randn(batch, c, hw, hw)
            ts = []
            with torch.inference_mode():
                conv(x); conv(x)
                for _ in range(9): t = time.process_time(); conv(x); ts.append(time.process_time() - t)
            macs = x.numel() * conv.weight[0].numel()
            print(f"| {name} | {hw}×{hw} | {c} | {1e3 * statistics.median(ts):.2f} | {1e12 * statistics.median(ts) / macs:.2f} |", flush=True)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--models', nargs='+', default=['resnet18', 'resnet50', 'mobilenet_v3_large', 'convnext_tiny'])
    ap.add_argument('--macs-kept', type=float, default=50.); ap.add_argument('--rounds', type=int, default=7)
    ap.add_argument('--batch', type=int, default=8); ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--size', type=int, default=224); ap.add_argument('--no-ort', action='store_true')
    ap.add_argument('--no-041', action='store_true'); ap.add_argument('--profile', action='store_true')
    ap.add_argument('--channel-sweep', action='store_true', help='only time single convs at odd and round channel counts')
    ap.add_argument('--latency-models', nargs='*', default=['mobilenet_v3_large'], help="models also pruned with target='latency'")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.channel_sweep: return channel_sweep(args.threads, args.batch)
    have_041 = not args.no_041 and Path(ANCHORS, 'fasterai').exists()
    have_ort = not args.no_ort
    if have_ort:
        try: import_deploy('onnxruntime'); import_deploy('onnx')
        except ImportError as e: print(e); have_ort = False
    tmp = Path(tempfile.mkdtemp())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.size}×{args.size}, "
          f"median of {args.rounds} interleaved rounds, os.nice={os.nice(0)}, load avg {os.getloadavg()[0]:.1f}")
    x1 = torch.randn(1, 3, args.size, args.size); x = torch.randn(args.batch, 3, args.size, args.size)
    summary = []
    for name in args.models:
        dense = new_model(name); d_macs = macs(dense, x1)
        ratio, kept = ratio_for(name, args.macs_kept, x1, d_macs)
        print(f"\n## {name}: channel ratio {ratio:.2f}% (local, large_final) keeps {kept:.1f}% of {d_macs / 1e9:.2f} GMACs")
        models = {'dense': dense, 'pruned': ours(name, ratio, x1)}
        for rt in (8, 16):   # rounded channel counts, each at the ratio that keeps the same share of MACs
            r, k = ratio_for(name, args.macs_kept, x1, d_macs, round_to=rt)
            print(f"round_to={rt}: channel ratio {r:.2f}% keeps {k:.1f}% of the MACs")
            models[f'pruned r{rt}'] = ours(name, r, x1, round_to=rt)
        if name in args.latency_models: models['pruned lat'] = ours(name, 100 - args.macs_kept, x, round_to='auto', target='latency')
        if have_041:
            try: models['0.4.1'] = fasterai_041(name, ratio, x1)
            except Exception as e: print(f"fasterai 0.4.1 failed on {name}: {type(e).__name__}: {str(e)[:150]}")
        variants = {}
        for k, m in models.items():
            if k in ('dense', 'pruned'): variants[k] = (m, x)
            variants[k + '+fold'] = (folded(m, x1), x)
            if k in ('dense', 'pruned', 'pruned r16', 'pruned lat'): variants[k + '+fold+cl'] = (channels_last(variants[k + '+fold'][0]), x.contiguous(memory_format=torch.channels_last))
        runners = {k: torch_runner(m, xx) for k, (m, xx) in variants.items()}
        if have_ort:
            for k in models:
                try: runners[k + ' ort'] = ort_runner(variants[k + '+fold'][0], x, tmp/f'{name}_{k.replace(".", "")}.onnx', args.threads)
                except Exception as e: print(f"onnx export of {k} failed: {type(e).__name__}: {str(e)[:150]}")
        med, cpu, span = time_rounds(runners, args.rounds)
        mac = {k: macs(m, x1) for k, (m, _) in variants.items()}
        print(f"| variant | GMACs/img | MACs speedup | wall ms (min–max) | wall speedup | wall / MACs speedup | CPU ms | CPU speedup | CPU / MACs speedup |")
        print(f"|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for k in runners:
            base_k = k[:-len(' ort')] if k.endswith('ort') else k
            suffix = k[len(k.split('+')[0]):] if '+' in k else ''
            ref = 'dense ort' if k.endswith('ort') else 'dense' + suffix
            mk = mac[base_k + '+fold' if k.endswith('ort') else k]
            ref = ref if ref in med else 'dense+fold'
            ms, ls, cs = d_macs / mk, med[ref] / med[k], cpu[ref] / cpu[k]
            print(f"| {k} | {mk / 1e9:.3f} | {ms:.2f}× | {1e3 * med[k]:.1f} ({1e3 * span[k][0]:.0f}–{1e3 * span[k][1]:.0f}) | {ls:.2f}× | {ls / ms:.2f} "
                  f"| {1e3 * cpu[k]:.1f} | {cs:.2f}× | {cs / ms:.2f} |")
            summary.append((name, k, ms, ls, cs))
        if args.profile: amdahl(variants['dense+fold'][0], variants['pruned+fold'][0], x, x1, ratio)
    print("\n| model | variant | MACs speedup | wall speedup | wall / MACs | CPU speedup | CPU / MACs |\n|---|---|---:|---:|---:|---:|---:|")
    for name, k, ms, ls, cs in summary:
        if k in ('pruned', 'pruned+fold', 'pruned+fold+cl', 'pruned r8+fold', 'pruned r16+fold', 'pruned r16+fold+cl', 'pruned lat+fold+cl', 'pruned ort', 'pruned r8 ort', 'pruned r16 ort', 'pruned lat+fold', 'pruned lat ort', '0.4.1+fold', '0.4.1 ort'):
            print(f"| {name} | {k} | {ms:.2f}× | {ls:.2f}× | {ls / ms:.2f} | {cs:.2f}× | {cs / ms:.2f} |")
    print("anchor: latency speedup >= 0.9 × MACs speedup (ratio >= 0.90) for resnet50 and mobilenet_v3_large")

if __name__ == '__main__': main()
