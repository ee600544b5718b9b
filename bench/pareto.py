"""Accuracy against MACs kept: fasterai_prune's PruneCallback vs fasterai 0.4.1, agp global, on digits and mnist1d.

Run: python bench/pareto.py [--tasks digits mnist1d] [--epochs 4] [--seeds 0 1 2] [--quick]
`macs` is fasterai_prune run at each budget directly: `PruneCallback(100 - budget, target='macs')`, so that MACs
kept follow the schedule down to 50, 25, 10 and 5% of the dense MACs; its accuracy is measured, with the MACs kept.
fasterai 0.4.1 has no MACs target: it is run at a sweep of channel ratios, the MACs kept by every run are measured
(torch-pruning's counter, one input), and each seed's accuracy is interpolated linearly in log(MACs kept) at the
budgets. `ours` is fasterai_prune by the same channel-ratio sweep, for comparison. The table gives the mean over
seeds [and the min]. Both libraries run in this process, with the same model, data, seed, optimizer and epochs
(Adam, fit_one_cycle). Plots: docs/pareto_<task>.png. `--quick`: one seed, four ratios, digits only.
Tasks:
  digits   sklearn digits 16×16, `fasterai_prune.data.digits_cnn(32)`, 4 epochs
  mnist1d  `fasterai_prune.data.mnist1d_dls` (4000/1000 signals of length 40, generated locally by the `mnist1d`
           package) and its 6-layer 1-D CNN `mnist1d_cnn(8)`, 6 epochs, about 96% dense
fasterai 0.4.1 is imported from /work/.anchors (pip install --no-deps --target /work/.anchors fasterai==0.4.1).
Anchor (issue 12): at every budget, our mean accuracy >= fasterai 0.4.1's.
"""
import argparse, contextlib, io, math, sys, time, warnings
from pathlib import Path
import numpy as np
import os
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')   # a shared CPU: no spinning at OpenMP barriers
import torch, torch.nn as nn
from fastai.learner import Learner
from fastai.optimizer import Adam
from fastai.metrics import accuracy
from fastai.callback.progress import ProgressCallback
import fastai.callback.schedule  # noqa: F401
from fastai.torch_core import set_seed
from fasterai_prune.data import digits_dls, digits_cnn, mnist1d_dls, mnist1d_cnn
from fasterai_prune.core.measure import count_macs

warnings.filterwarnings('ignore')
ANCHORS = '/work/.anchors'
if ANCHORS not in sys.path: sys.path.append(ANCHORS)
BUDGETS = (50, 25, 10, 5)
ROOT = Path(__file__).resolve().parent.parent

TASKS = {  # data, model, example input, epochs, lr, channel-ratio sweeps (ours, fasterai 0.4.1) that span ~60%..2% MACs kept
    'digits': dict(dls=lambda seed: digits_dls(seed=seed, device='cpu'), model=lambda: digits_cnn(32), x1=(1, 1, 16, 16),
                   epochs=4, lr=1e-2, ours=[15, 35, 55, 72, 84, 90], old=[15, 35, 55, 72, 84, 90]),
    'mnist1d': dict(dls=lambda seed: mnist1d_dls(seed=seed, device='cpu'), model=lambda: mnist1d_cnn(8), x1=(1, 1, 40),
                    epochs=6, lr=1e-2, ours=[15, 35, 55, 72, 84, 90], old=[15, 35, 55, 72, 84, 90]),
}

OURS_KW = {}   # options of fasterai_prune's PruneCallback set on the command line (`--min-interval`)

def callback(lib:str, ratio:float, x1:tuple):
    if lib == 'macs':   # a budget: `ratio` is the percent of the MACs to remove
        from fasterai_prune.prune.prune_callback import PruneCallback
        from fasterai_prune.core.schedule import agp
        from fasterai_prune.core.criteria import large_final
        return PruneCallback(ratio, 'global', large_final, agp, target='macs', **OURS_KW)
    if lib in ('ours', 'nobn'):   # nobn: without the BatchNorm restart after each prune (`restart_bn=0`), as before issue 12
        from fasterai_prune.prune.prune_callback import PruneCallback
        from fasterai_prune.core.schedule import agp
        from fasterai_prune.core.criteria import large_final
        return PruneCallback(ratio, 'global', large_final, agp, restart_bn=10 if lib == 'ours' else 0, **OURS_KW)
    from fasterai.prune.prune_callback import PruneCallback
    from fasterai.core.schedule import agp
    from fasterai.core.criteria import large_final
    return PruneCallback(ratio / 100, agp, 'global', large_final, example_inputs=torch.randn(*x1))

def run(task:str, lib:str, ratio:float, seed:int, epochs:int) -> dict:
    "Train with pruning (or dense when ratio is 0); accuracy and share of MACs kept"
    t = TASKS[task]
    set_seed(seed, reproducible=True)
    dls, model = t['dls'](seed), t['model']()
    x1 = torch.randn(*t['x1'])
    macs0 = count_macs(model.eval(), x1)[0]
    learn = Learner(dls, model, loss_func=nn.CrossEntropyLoss(), metrics=accuracy, opt_func=Adam)
    learn.remove_cb(ProgressCallback); learn.logger = lambda *a, **k: None
    cbs = [callback(lib, ratio, t['x1'])] if ratio else []
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()): learn.fit_one_cycle(epochs, t['lr'], cbs=cbs)
    return dict(acc=float(learn.validate()[1]), macs=100 * count_macs(learn.model.eval(), x1)[0] / macs0, s=time.perf_counter() - start)

def interp(runs:list, budget:float) -> float:
    "Accuracy at `budget`% MACs kept, linear in log(MACs kept) between the runs around it; nan outside the sweep"
    pts = sorted((math.log(r['macs']), r['acc']) for r in runs)
    lb = math.log(budget)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= lb <= x1: return y0 if x1 == x0 else y0 + (y1 - y0) * (lb - x0) / (x1 - x0)
    return float('nan')

def sweep(task:str, lib:str, ratios:list, seeds:list, epochs:int) -> dict:
    "`{seed: [run, ...]}` over the ratios"
    res = {}
    for s in seeds:
        res[s] = []
        for r in ratios:
            res[s].append(dict(ratio=r, **run(task, lib, r, s, epochs)))
            x = res[s][-1]; print(f"  {lib:<6} seed {s} ratio {r:>4g}%: MACs kept {x['macs']:6.2f}%  accuracy {x['acc']:.4f}  ({x['s']:.0f} s)", flush=True)
    return res

def plot(task:str, results:dict, dense:float, path:Path):
    import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for lib, label in (('macs', "fasterai_prune, target='macs'"), ('ours', 'fasterai_prune, ratio sweep'), ('old', 'fasterai 0.4.1'),
                       ('nobn', 'fasterai_prune, restart_bn=0')):
        if lib not in results: continue
        runs = [r for rs in results[lib].values() for r in rs]
        ax.scatter([r['macs'] for r in runs], [r['acc'] for r in runs], s=10, alpha=0.4)
        if lib == 'macs':
            xs = [np.mean([r['macs'] for r in runs if r['ratio'] == 100 - b]) for b in BUDGETS]
            ax.plot(xs, [np.mean([r['acc'] for r in runs if r['ratio'] == 100 - b]) for b in BUDGETS], 'o-', label=f"{label} (mean over seeds, measured)")
            continue
        ys = [np.nanmean([interp(rs, b) for rs in results[lib].values()]) for b in BUDGETS]
        ax.plot(BUDGETS, ys, 'o-', label=f"{label} (mean over seeds, interpolated)")
    ax.axhline(dense, ls='--', c='gray', label=f'dense {dense:.3f}')
    ax.set_xscale('log'); ax.set_xlabel('MACs kept (%)'); ax.set_ylabel('accuracy'); ax.invert_xaxis()
    ax.set_title(f"{task}: PruneCallback agp global, {len(next(iter(results.values())))} seeds"); ax.legend(fontsize=8)
    path = path.with_name(path.stem + ('_' + '_'.join(results) if set(results) - {'macs', 'ours', 'old'} else '') + path.suffix)
    fig.tight_layout(); fig.savefig(path, dpi=110); plt.close(fig); print(f"plot: {path}")

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--tasks', nargs='+', default=list(TASKS), choices=list(TASKS))
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2]); ap.add_argument('--epochs', type=int, default=None)
    ap.add_argument('--quick', action='store_true'); ap.add_argument('--no-plot', action='store_true')
    ap.add_argument('--libs', nargs='+', default=['macs', 'ours', 'old'], choices=['macs', 'ours', 'old', 'nobn'],
                    help="macs (ours, target='macs' at each budget), ours (channel-ratio sweep), old (fasterai 0.4.1), "
                         "nobn (ours without the BatchNorm restart after each prune: restart_bn=0)")
    ap.add_argument('--threads', type=int, default=1, help='torch threads (1: least hurt by a shared, oversubscribed CPU)')
    ap.add_argument('--min-interval', type=float, default=None, help="fasterai_prune's `min_interval` (percent of training between prunes); default: the library's")
    args = ap.parse_args()
    if args.min_interval is not None: OURS_KW['min_interval'] = args.min_interval
    torch.set_num_threads(args.threads)
    if args.quick: args.seeds, args.tasks = args.seeds[:1], ['digits']
    libs = list(args.libs)
    if 'old' in libs:
        try: import fasterai  # noqa: F401
        except ImportError:
            print('fasterai 0.4.1 is not installed (pip install --no-deps --target /work/.anchors fasterai==0.4.1)'); libs.remove('old')
    tables = []
    for task in args.tasks:
        t = TASKS[task]; epochs = args.epochs or t['epochs']
        print(f"\n## {task}: {epochs} epochs, seeds {args.seeds}, {torch.get_num_threads()} threads", flush=True)
        dense = [run(task, 'ours', 0, s, epochs)['acc'] for s in args.seeds]
        print(f"  dense accuracy: {np.mean(dense):.4f} ({' '.join(f'{a:.4f}' for a in dense)})", flush=True)
        results = {}
        for lib in list(libs):
            ratios = [100 - b for b in BUDGETS] if lib == 'macs' else t['ours' if lib == 'nobn' else lib]
            if args.quick and lib != 'macs': ratios = ratios[::2]
            try: results[lib] = sweep(task, lib, ratios, args.seeds, epochs)
            except Exception as e:   # fasterai 0.4.1 has no Conv1d support, for one
                print(f"  {lib} fails on {task}: {type(e).__name__}: {str(e).strip().splitlines()[-1][:200]}", flush=True)
        libs_ok = [l for l in libs if l in results]
        names = {'macs': "fasterai_prune target='macs' (MACs kept)", 'ours': 'fasterai_prune, ratio sweep', 'old': 'fasterai 0.4.1',
                 'nobn': 'fasterai_prune, restart_bn=0'}
        lines = [f"\n### {task} ({epochs} epochs, seeds {args.seeds}; dense {np.mean(dense):.4f}): accuracy at MACs kept, mean [min] over seeds",
                 "| MACs kept | " + " | ".join(names[l] for l in libs_ok) + " |", "|---:|" + "---:|" * len(libs_ok)]
        for b in BUDGETS:
            cell = {}
            for lib in libs_ok:
                if lib == 'macs':   # measured at the budget itself
                    runs = [r for rs in results[lib].values() for r in rs if r['ratio'] == 100 - b]
                    v, kept = [r['acc'] for r in runs], np.mean([r['macs'] for r in runs])
                else: v, kept = [interp(rs, b) for rs in results[lib].values()], None
                cell[lib] = (np.mean(v), np.min(v), kept) if not any(math.isnan(x) for x in v) else (float('nan'), float('nan'), None)
            def fmt(lib):
                if lib not in cell or math.isnan(cell[lib][0]): return 'out of sweep'
                return f"{cell[lib][0]:.4f} [{cell[lib][1]:.4f}]" + (f" ({cell[lib][2]:.2f}%)" if cell[lib][2] is not None else '')
            lines.append(f"| {b}% | " + " | ".join(fmt(l) for l in libs_ok) + " |")
        print('\n'.join(lines), flush=True); tables += lines
        if not args.no_plot:
            plot(task, results, float(np.mean(dense)), ROOT/'docs'/f'pareto_{task}.png')
    print('\n'.join(tables))
    print("anchor: at every budget, fasterai_prune's mean accuracy (target='macs') >= fasterai 0.4.1's")

if __name__ == '__main__': main()
