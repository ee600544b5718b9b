"""Does a compiled deployment (TorchScript freeze, torch.compile) turn the MACs reduction into latency better than eager?

Run: python bench/compiled.py [mobilenet_v3_large resnet50]
Each model is pruned to about 50% of its MACs (`round_to=16`, local, the channel ratio found by bisection as in
bench/latency.py), BatchNorms folded; dense and pruned are timed eager, as a frozen TorchScript module
(`torch.jit.optimize_for_inference`), and through `torch.compile`, batch 8, 2 threads, median of 9 alternating rounds.
Prints latency speedup and its ratio to the MACs speedup (anchor of issue 12: >= 0.9).
"""
import sys, os, time, copy, warnings
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__))); warnings.filterwarnings('ignore')
import torch, latency as L
torch.set_num_threads(2)
names = sys.argv[1:] or ['mobilenet_v3_large', 'resnet50']
x1, x = torch.randn(1, 3, 224, 224), torch.randn(8, 3, 224, 224)
for name in names:
    dense = L.new_model(name); md = L.macs(dense, x1)
    ratio, kept = L.ratio_for(name, 50, x1, md, round_to=16)
    pruned = L.ours(name, ratio, x1, round_to=16)
    print(f"{name}: ratio {ratio:.1f}%, MACs kept {kept:.1f}% (speedup {100 / kept:.2f}x)", flush=True)
    d, p = L.folded(dense, x1), L.folded(pruned, x1)
    runners = {'eager dense': L.torch_runner(d, x), 'eager pruned': L.torch_runner(p, x)}
    for tag, m in (('dense', d), ('pruned', p)):
        with torch.inference_mode():
            fr = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(copy.deepcopy(m), x1).eval()))
        runners[f'jit {tag}'] = (lambda f: (lambda: f(x)))(fr)
    try:
        for tag, m in (('dense', d), ('pruned', p)):
            c = torch.compile(copy.deepcopy(m))
            with torch.inference_mode(): c(x)
            runners[f'compile {tag}'] = L.torch_runner(c, x)
    except Exception as e: print('torch.compile failed:', type(e).__name__, str(e)[:200])
    wall, cpu, rng = L.time_rounds(runners, 9)
    for k in ('eager', 'jit', 'compile'):
        if f'{k} dense' not in wall: continue
        sw, sc = wall[f'{k} dense'] / wall[f'{k} pruned'], cpu[f'{k} dense'] / cpu[f'{k} pruned']
        print(f"  {k:<8} dense {1e3 * wall[f'{k} dense']:7.1f} ms  pruned {1e3 * wall[f'{k} pruned']:7.1f} ms  latency speedup {sw:.2f}x"
              f"  ratio to MACs {sw * kept / 100:.2f} (CPU time {sc * kept / 100:.2f})", flush=True)
