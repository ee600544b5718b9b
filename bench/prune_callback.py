"""PruneCallback on digits: dense vs fasterai_prune vs fasterai 0.4.1, same model, seed and epochs.

Run: python bench/prune_callback.py [--epochs 6] [--ratios 50 85] [--width 32] [--variants ours 0.4.1 ...] [--profile]
For each run it prints fit time, the share of fit time spent inside the pruning callback (every callback event
timed; wall time, and process CPU time, which a shared, oversubscribed CPU disturbs less), final accuracy, the fraction of parameters and of MACs kept, and the smallest share of channels any conv kept.
Anchors (issues 4, 12): callback share <= 3%; accuracy >= fasterai 0.4.1 at equal settings; no layer emptied.
`ours` is the library as shipped: after every prune, BatchNorm running statistics restart, averaged cumulatively
(momentum=None) over the next 10 training batches (`PruneCallback(restart_bn=10)`), then back to their momentum.
A warm-up fit runs first, untimed: the first fit of a process pays one-time imports (its callback seconds are printed).
Diagnostic variants of ours (issue 12), by options or a subclass, the library untouched:
  nobn        restart_bn=0: the statistics torch-pruning sliced, kept (the behaviour before the fix)
  start0      agp from the first step (start_pct=0), as fasterai 0.4.1 effectively runs it (it ignores start_pct)
  end80       agp reaching the ratio at 80% of training, leaving the last 20% to recover
  every       min_interval=0: a prune at every step the schedule moves
  miN         min_interval=N (e.g. mi8): fewer prunes (the time share of a short fit)
  recal       restart_bn=0, BatchNorm running statistics re-estimated on the current batch after every prune
  final_recal restart_bn=0, BatchNorm statistics re-estimated on 8 training batches after fit (is the end-of-fit BN state stale?)
fasterai 0.4.1 is imported from /work/.anchors (pip install --no-deps --target /work/.anchors fasterai==0.4.1).
"""
import argparse, re, contextlib, cProfile, io, pstats, sys, time, warnings
import os
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')   # a shared CPU: no spinning at OpenMP barriers
import torch, torch.nn as nn
from fastai.learner import Learner
from fastai.optimizer import Adam
from fastai.metrics import accuracy
from fastai.callback.core import _events
from fastai.callback.progress import ProgressCallback
import fastai.callback.schedule  # noqa: F401
from fastai.torch_core import set_seed
from fasterai_prune.data import digits_dls, digits_cnn
from fasterai_prune.core.measure import count_macs

warnings.filterwarnings('ignore')
ANCHORS = '/work/.anchors'
if ANCHORS not in sys.path: sys.path.append(ANCHORS)

def time_callback(cb):
    "Accumulate the wall and CPU seconds spent in every event handler of `cb` into `cb.bench_seconds`, `cb.bench_cpu`"
    cb.bench_seconds = cb.bench_cpu = 0.
    for ev in _events:
        f = getattr(cb, ev, None)
        if f is None or getattr(type(cb), ev, None) is None: continue
        def wrapped(*a, _f=f, **k):
            t, c = time.perf_counter(), time.process_time()
            try: return _f(*a, **k)
            finally: cb.bench_seconds += time.perf_counter() - t; cb.bench_cpu += time.process_time() - c
        setattr(cb, ev, wrapped)
    return cb

def ours_callback(variant, ratio):
    "fasterai_prune's PruneCallback, as configured by a diagnostic `variant`"
    from fasterai_prune.prune.prune_callback import PruneCallback
    from fasterai_prune.core.schedule import agp
    from fasterai_prune.core.criteria import large_final
    from fasterai_prune.recover.batchnorm import recalibrate_bn
    class RecalPruneCallback(PruneCallback):
        "Re-estimate BatchNorm running statistics on the current batch after each prune"
        def after_step(self):
            n = len(self.history); super().after_step()
            if len(self.history) > n: recalibrate_bn(self.model, [self.xb[0]]); self.model.train()
    sched = {'start0': agp.with_window(start_pct=0.), 'end80': agp.with_window(end_pct=0.8)}.get(variant, agp)
    kw = {'every': dict(min_interval=0.), 'nobn': dict(restart_bn=0), 'final_recal': dict(restart_bn=0),
          'recal': dict(restart_bn=0)}.get(variant, {})
    if re.fullmatch(r'mi\d+', variant): kw = dict(min_interval=float(variant[2:]))
    cls = {'recal': RecalPruneCallback}.get(variant, PruneCallback)
    return cls(ratio, context='global', criteria=large_final, schedule=sched, **kw)

def run(kind, ratio, args, seed):
    set_seed(seed, reproducible=True)
    dls = digits_dls(seed=seed, device='cpu')
    model = digits_cnn(args.width)
    widths0 = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    n0 = sum(p.numel() for p in model.parameters())
    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), metrics=accuracy, opt_func=Adam)
    learn.remove_cb(ProgressCallback); learn.logger = lambda *a, **k: None
    cbs = []
    if kind.startswith('ours'):
        cbs = [time_callback(ours_callback(kind[5:], ratio))]
    elif kind == 'fasterai 0.4.1':
        from fasterai.prune.prune_callback import PruneCallback
        from fasterai.core.schedule import agp
        from fasterai.core.criteria import large_final
        # fasterai 0.4.1 traces with a 3×224×224 input unless told otherwise, which a 1-channel model rejects
        cbs = [time_callback(PruneCallback(ratio / 100, agp, 'global', large_final, example_inputs=torch.randn(1, 1, 16, 16)))]
    t, c = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()): learn.fit_one_cycle(args.epochs, args.lr, cbs=cbs)
    fit_s, fit_cpu = time.perf_counter() - t, time.process_time() - c
    if kind == 'ours final_recal':
        from fasterai_prune.recover.batchnorm import recalibrate_bn
        recalibrate_bn(learn.model, dls.train, n_batches=8)
    acc = float(learn.validate()[1])
    x1 = torch.randn(1, 1, 16, 16)
    widths = [m.out_channels for m in learn.model.modules() if isinstance(m, nn.Conv2d)]
    cb_s = cbs[0].bench_seconds if cbs else 0.
    return dict(fit_s=fit_s, cb_share=cb_s / fit_s, cb_cpu_share=(cbs[0].bench_cpu if cbs else 0.) / fit_cpu, acc=acc, kept=sum(p.numel() for p in learn.model.parameters()) / n0,
                macs=count_macs(learn.model.eval(), x1)[0] / count_macs(digits_cnn(args.width).eval(), x1)[0],
                min_layer=min(w / w0 for w, w0 in zip(widths, widths0)))

PROFILED = ('Pruner.__init__', 'prune_to', 'remap_optimizer', 'current', 'count_layer_macs', 'count_params', '_check_pruned',
            'deepcopy', '_global_plan', 'tracked_prune', 'recalibrate_bn', '_snapshot', 'find_output_layers', 'calibrate')

def profile_run(kind, ratio, args, seed):
    "cProfile one run; print where the time inside the callback goes (cumulative seconds of the library's main steps)"
    pr = cProfile.Profile(); pr.enable(); r = run(kind, ratio, args, seed); pr.disable()
    st = pstats.Stats(pr).stats
    print(f"profile of {kind} {ratio:g}% seed {seed}: fit {r['fit_s']:.2f} s, callback {r['cb_share'] * r['fit_s']:.3f} s ({100 * r['cb_share']:.1f}%)")
    rows = {}
    for (file, line, fn), (cc, nc, tt, ct, callers) in st.items():
        name = '__init__' if fn == '__init__' and file.endswith('pruner.py') else fn
        if 'fasterai_prune' not in file and fn != 'deepcopy': continue
        key = 'Pruner.__init__' if name == '__init__' else name
        if key in PROFILED: rows[key] = max(rows.get(key, (0, 0))[0], ct), nc
    for k, (ct, nc) in sorted(rows.items(), key=lambda kv: -kv[1][0]): print(f"  {k:<22}{ct:>8.3f} s{nc:>6} calls")

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--epochs', type=int, default=6); ap.add_argument('--ratios', type=float, nargs='+', default=[50, 85])
    ap.add_argument('--width', type=int, default=32); ap.add_argument('--lr', type=float, default=1e-2)
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--variants', nargs='+', default=['dense', 'ours', '0.4.1'],
                    help="dense, ours, 0.4.1, and diagnostic variants of ours: nobn start0 end80 every recal final_recal")
    ap.add_argument('--profile', action='store_true', help="cProfile one run of ours per ratio (seed 0)")
    ap.add_argument('--threads', type=int, default=1, help='torch threads (1: least hurt by a shared, oversubscribed CPU)')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kinds = [{'ours': 'ours', '0.4.1': 'fasterai 0.4.1', 'dense': 'dense'}.get(v, f'ours {v}') for v in args.variants]
    if 'fasterai 0.4.1' in kinds:
        try: import fasterai  # noqa: F401
        except ImportError:
            print('fasterai 0.4.1 is not installed (pip install --no-deps --target /work/.anchors fasterai==0.4.1): its row is skipped')
            kinds.remove('fasterai 0.4.1')
    print(f"digits_cnn(width={args.width}), Adam, fit_one_cycle({args.epochs}, {args.lr}), seeds {args.seeds}, agp, global, "
          f"large_final, {torch.get_num_threads()} threads; mean over seeds (accuracy: mean [min]; cb share: mean [max])")
    print(f"{'run':<28}{'fit s':>7}{'cb share':>15}{'cb CPU share':>15}{'accuracy':>18}{'per seed':>22}{'params kept':>12}{'MACs kept':>11}{'min layer':>10}")
    def row(name, rs):
        mean = lambda k: sum(r[k] for r in rs) / len(rs)
        share = '-' if name == 'dense' else f"{100 * mean('cb_share'):.1f}% [{100 * max(r['cb_share'] for r in rs):.1f}%]"
        cpu = '-' if name == 'dense' else f"{100 * mean('cb_cpu_share'):.1f}% [{100 * max(r['cb_cpu_share'] for r in rs):.1f}%]"
        acc = f"{mean('acc'):.4f} [{min(r['acc'] for r in rs):.4f}]"
        seeds = ' '.join(f"{r['acc']:.3f}" for r in rs)
        print(f"{name:<28}{mean('fit_s'):>7.1f}{share:>15}{cpu:>15}{acc:>18}{seeds:>22}{mean('kept'):>12.3f}{100 * mean('macs'):>10.1f}%"
              f"{min(r['min_layer'] for r in rs):>10.3f}", flush=True)
    warm = run('ours', args.ratios[0], argparse.Namespace(**{**vars(args), 'epochs': 1}), 0) if any(k.startswith('ours') for k in kinds) else None
    if warm: print(f"(warm-up fit, untimed: callback {warm['cb_share'] * warm['fit_s']:.2f} s of {warm['fit_s']:.1f} s, one-time imports included)")
    if 'dense' in kinds: row('dense', [run('dense', 0, args, s) for s in args.seeds])
    for ratio in args.ratios:
        for kind in kinds:
            if kind != 'dense': row(f"{kind} {ratio:g}%", [run(kind, ratio, args, s) for s in args.seeds])
        if args.profile: profile_run('ours', ratio, args, args.seeds[0])
    print("anchors: cb share <= 3.0% for every seed; accuracy >= fasterai 0.4.1's at the same ratio; min layer kept > 0")

if __name__ == '__main__': main()
