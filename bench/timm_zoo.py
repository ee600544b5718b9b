"""Prune the smallest variant of every timm family at 50% local and global; plain torch-pruning beside it.

Usage: python bench/timm_zoo.py [--timeout S] [--only fam,fam] [--libs fasterai_prune,tp] [--jsonl run.jsonl]
                                [--out docs/zoo.md] [--load a.jsonl,b.jsonl] [--note TEXT]
A family is a module of `timm.models` (each has `default_cfg`s); its smallest model (parameters counted on the meta
device, `test_*` models left out) stands for it; the choice is cached in bench/timm_families.json. Each (model, context,
library) runs in its own process with a time limit, one thread, random init (`pretrained=False`), on a 1×3×S×S input
(S = 64 where the model takes it, else its default size). Status ok: the output shape is unchanged and the model has
fewer parameters ('ok, some blocks kept whole': the first prune broke some blocks, `Pruner` kept them and pruned the rest;
the `kept` field of the jsonl holds its one-line warning). `tp` is plain torch-pruning's `MetaPruner` (L2 magnitude,
classifier ignored, nothing else).
With --load, no model is run: the rows of the jsonl files are tabled, a later file's row replacing an earlier one's.
With --out, the timm section of that file (from '## timm' to the end) is replaced.
"""
from __future__ import annotations
import argparse, json, os, sys, time
from pathlib import Path
from zoo import run_child   # bench/zoo.py, beside this script

CACHE = Path(__file__).with_name('timm_families.json')

def families() -> dict:
    "`{family: model name}`: the smallest non-test model of each timm module"
    if CACHE.exists(): return json.loads(CACHE.read_text())
    import timm, torch, warnings
    warnings.filterwarnings('ignore')
    res = {}
    for mod in timm.list_modules():
        best = None
        for n in timm.list_models(module=mod):
            if n.startswith('test_'): continue
            try:
                with torch.device('meta'): p = sum(q.numel() for q in timm.create_model(n, pretrained=False).parameters())
            except Exception: continue
            if best is None or p < best[1]: best = (n, p)
        if best: res[mod] = best[0]
    CACHE.write_text(json.dumps(res, indent=0, sort_keys=True))
    return res

def build(name:str):
    "Model at random init (eval) and the smallest input it takes among 64 and its default size"
    import timm, torch
    m = timm.create_model(name, pretrained=False).eval()
    cfg = m.pretrained_cfg
    for s in ([] if cfg.get('fixed_input_size') else [64]) + [cfg['input_size'][-1]]:
        x = torch.randn(1, *cfg['input_size'][:-2], s, s)
        try:
            with torch.no_grad(): y = m(x)
            return m, x, tuple(y.shape)
        except Exception: continue
    raise RuntimeError(f"{name} runs on no input size tried")

def run_one(name:str, context:str, lib:str) -> dict:
    "Prune one model in this process; return the measured row"
    import torch, warnings
    warnings.filterwarnings('ignore')
    torch.set_num_threads(1)
    from fasterai_prune.core.measure import count_params, count_macs
    torch.manual_seed(0)
    t0 = time.time()
    m, x, shape = build(name)
    p0, macs0 = count_params(m), count_macs(m, x)[0]
    kept = None
    if lib == 'fasterai_prune':
        from fasterai_prune.prune.pruner import Pruner
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            Pruner(m, 50, context, example_inputs=x, verbose=False).prune_model()
        kept = next((str(i.message) for i in w if str(i.message).startswith('Kept the channels of')), None)   # the fallback's line
    else:
        import torch_pruning as tp
        pr = tp.pruner.MetaPruner(m, x, importance=tp.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                  global_pruning=context == 'global', ignored_layers=[m.get_classifier()])
        pr.step()
    m.eval()
    with torch.no_grad(): after = tuple(m(x).shape)
    p1, macs1 = count_params(m), count_macs(m, x)[0]
    ok = after == shape and p1 < p0
    return dict(status='ok' if ok else f'BAD: shape {shape} -> {after}, params {p0} -> {p1}', params=p1 / p0,
                macs=macs1 / max(macs0, 1), seconds=time.time() - t0, kept=kept)

def run_isolated(name, context, lib, timeout) -> dict:
    "`run_one` in a subprocess, with a time limit"
    return run_child(__file__, [name, context, lib], timeout, env={**os.environ, 'OMP_NUM_THREADS': '1'})

def fmt(r) -> str:
    if r is None: return '| not run | | | '
    f = lambda v: '' if v is None else f'{100 * v:.1f}%'
    status = ('ok, some blocks kept whole' if r.get('kept') else 'ok') if r['status'] == 'ok' else r['status'].replace('|', '/')[:90]
    return f"| {status} | {f(r['params'])} | {f(r['macs'])} | {r['seconds']:.1f} "

def table(fams:dict, results:dict, contexts:list) -> str:
    lines = ["| family | model | context | status | params kept | MACs kept | seconds | plain tp status | params kept | MACs kept | seconds |",
             "|---|---|---|---|---:|---:|---:|---|---:|---:|---:|"]
    for fam, name in fams.items():
        for c in contexts:
            lines.append(f"| {fam} | {name} | {c} " + fmt(results.get((name, c, 'fasterai_prune'))) + fmt(results.get((name, c, 'tp'))) + '|')
    counts = []
    for lib in ('fasterai_prune', 'tp'):
        for c in contexts:
            run = [results[(n, c, lib)] for n in fams.values() if (n, c, lib) in results]
            kept = sum(r['status'] == 'ok' and bool(r.get('kept')) for r in run)
            counts.append(f"{lib} {c}: {sum(r['status'] == 'ok' for r in run)}/{len(run)} ok of {len(fams)} families"
                          + (f" ({kept} with some blocks kept whole)" if kept else ''))
    worse = [f"{n} ({c})" for n in fams.values() for c in contexts
             if results.get((n, c, 'tp'), {}).get('status') == 'ok' and results.get((n, c, 'fasterai_prune'), {}).get('status', 'ok') != 'ok']
    measured = any(k[2] == 'tp' for k in results)
    worse_line = ('Families where plain torch-pruning is ok and `Pruner` is not: ' + (', '.join(worse) or 'none') if measured
                  else 'Plain torch-pruning was not measured in this run')
    return '\n'.join(lines) + '\n\n' + '; '.join(counts) + '.\n\n' + worse_line + '.\n'

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--child'); ap.add_argument('--timeout', type=int, default=300); ap.add_argument('--only', default='')
    ap.add_argument('--libs', default='fasterai_prune,tp'); ap.add_argument('--contexts', default='local,global')
    ap.add_argument('--jsonl', default=''); ap.add_argument('--out', default=''); ap.add_argument('--load', default='')
    ap.add_argument('--note', default='', help='a paragraph written after the table (which runs it merges, on what machine)')
    a = ap.parse_args()
    if a.child:
        try: print(json.dumps(run_one(*json.loads(a.child))))
        except Exception as e: print(json.dumps(dict(status=f'FAIL: {type(e).__name__}: {str(e)[:200]}', params=None, macs=None, seconds=0.)))
        return
    fams = {f: n for f, n in families().items() if not a.only or f in a.only.split(',') or n in a.only.split(',')}
    contexts, results = a.contexts.split(','), {}
    for fn in filter(None, a.load.split(',')):
        for l in open(fn):
            d = json.loads(l); results[tuple(d.pop('job'))] = d
    if not a.load:
        for lib in a.libs.split(','):
            for fam, name in fams.items():
                for c in contexts:
                    r = run_isolated(name, c, lib, a.timeout); results[(name, c, lib)] = r
                    if a.jsonl:
                        with open(a.jsonl, 'a') as f: f.write(json.dumps(dict(r, job=[name, c, lib])) + '\n')
                    print(f"{fam:26s} {name:32s} {c:6s} {lib:14s} {(r['status'] + (' (blocks kept whole)' if r.get('kept') else ''))[:70]:70s} {r['seconds']:.0f}s", file=sys.stderr, flush=True)
    out = table(fams, results, contexts)
    print(out)
    if a.out:
        p = Path(a.out); text = p.read_text() if p.exists() else ''
        head = text.split('\n## timm')[0].rstrip('\n')
        intro = ("\n\n## timm\n\nThe smallest variant of every timm module (family) with a `default_cfg`, at random init, pruned by "
                 "`Pruner(model, 50, context)`; beside it plain torch-pruning's `MetaPruner` (L2 magnitude, classifier ignored). "
                 "Produced by `bench/timm_zoo.py` (each model, context and library in its own process, one thread, a time limit; "
                 "input 1×3×64×64 where the model takes it, else its default size). Rows 'not run' were not reached in the time "
                 "the run had.\n\n")
        p.write_text(head + intro + out + (f'\n{a.note}\n' if a.note else ''))

if __name__ == '__main__': main()
