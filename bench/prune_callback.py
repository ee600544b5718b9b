"""PruneCallback on digits: dense vs fasterai_prune vs fasterai 0.4.1, same model, seed and epochs.

Run: python bench/prune_callback.py [--epochs 6] [--ratios 50 85] [--width 32]
For each run it prints fit time, the share of fit time spent inside the pruning callback (every callback event
timed), final accuracy, the fraction of parameters kept and the smallest share of channels any conv layer kept.
Anchors (issue 4): callback share <= 3%; accuracy >= fasterai 0.4.1 at equal settings; no layer emptied.
"""
import argparse, contextlib, io, time, warnings
import torch, torch.nn as nn
from fastai.learner import Learner
from fastai.optimizer import Adam
from fastai.metrics import accuracy
from fastai.callback.core import _events
from fastai.callback.progress import ProgressCallback
import fastai.callback.schedule  # noqa: F401
from fastai.torch_core import set_seed
from fasterai_prune.data import digits_dls, digits_cnn

warnings.filterwarnings('ignore')

def time_callback(cb):
    "Accumulate the seconds spent in every event handler of `cb` into `cb.bench_seconds`"
    cb.bench_seconds = 0.
    for ev in _events:
        f = getattr(cb, ev, None)
        if f is None or getattr(type(cb), ev, None) is None: continue
        def wrapped(*a, _f=f, **k):
            t = time.perf_counter()
            try: return _f(*a, **k)
            finally: cb.bench_seconds += time.perf_counter() - t
        setattr(cb, ev, wrapped)
    return cb

def run(kind, ratio, args, seed):
    set_seed(seed, reproducible=True)
    dls = digits_dls(seed=seed, device='cpu')
    model = digits_cnn(args.width)
    widths0 = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
    n0 = sum(p.numel() for p in model.parameters())
    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), metrics=accuracy, opt_func=Adam)
    learn.remove_cb(ProgressCallback); learn.logger = lambda *a, **k: None
    cbs = []
    if kind == 'fasterai_prune':
        from fasterai_prune.prune.prune_callback import PruneCallback
        from fasterai_prune.core.schedule import agp
        from fasterai_prune.core.criteria import large_final
        cbs = [time_callback(PruneCallback(ratio, agp, 'global', large_final))]
    elif kind == 'fasterai 0.4.1':
        from fasterai.prune.prune_callback import PruneCallback
        from fasterai.core.schedule import agp
        from fasterai.core.criteria import large_final
        # fasterai 0.4.1 traces with a 3×224×224 input unless told otherwise, which a 1-channel model rejects
        cbs = [time_callback(PruneCallback(ratio / 100, agp, 'global', large_final, example_inputs=torch.randn(1, 1, 16, 16)))]
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()): learn.fit_one_cycle(args.epochs, args.lr, cbs=cbs)
    fit_s = time.perf_counter() - t
    acc = float(learn.validate()[1])
    widths = [m.out_channels for m in learn.model.modules() if isinstance(m, nn.Conv2d)]
    cb_s = cbs[0].bench_seconds if cbs else 0.
    return dict(fit_s=fit_s, cb_share=cb_s / fit_s, acc=acc, kept=sum(p.numel() for p in learn.model.parameters()) / n0,
                min_layer=min(w / w0 for w, w0 in zip(widths, widths0)))

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--epochs', type=int, default=6); ap.add_argument('--ratios', type=float, nargs='+', default=[50, 85])
    ap.add_argument('--width', type=int, default=32); ap.add_argument('--lr', type=float, default=1e-2)
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    args = ap.parse_args()
    kinds = ['fasterai_prune']
    try:
        import fasterai  # noqa: F401
        kinds.append('fasterai 0.4.1')
    except ImportError: print('fasterai 0.4.1 is not installed (pip install fasterai==0.4.1): its column is skipped')
    print(f"digits_cnn(width={args.width}), Adam, fit_one_cycle({args.epochs}, {args.lr}), seeds {args.seeds}, agp, global, "
          f"large_final, {torch.get_num_threads()} threads; mean over seeds (accuracy: mean [min])")
    print(f"{'run':<24}{'fit s':>8}{'cb share':>10}{'accuracy':>18}{'params kept':>13}{'min layer kept':>16}")
    def row(name, rs):
        mean = lambda k: sum(r[k] for r in rs) / len(rs)
        share = '-' if name == 'dense' else f"{100 * mean('cb_share'):.1f}%"
        acc = f"{mean('acc'):.4f} [{min(r['acc'] for r in rs):.4f}]"
        print(f"{name:<24}{mean('fit_s'):>8.1f}{share:>10}{acc:>18}{mean('kept'):>13.3f}{min(r['min_layer'] for r in rs):>16.3f}")
    row('dense', [run('dense', 0, args, s) for s in args.seeds])
    for ratio in args.ratios:
        for kind in kinds: row(f"{kind} {ratio:g}%", [run(kind, ratio, args, s) for s in args.seeds])
    print("anchors: cb share <= 3.0%; accuracy >= fasterai 0.4.1's at the same ratio; min layer kept > 0")

if __name__ == '__main__': main()
