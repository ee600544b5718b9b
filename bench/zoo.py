"""Prune every torchvision model at 50% local and 50% global and print a markdown table.

Usage: python bench/zoo.py [--jobs N] [--timeout S] [--only name,name] [--out docs/zoo.md] [--size 224]
Each (model, context) runs in its own process (a crash or a hang is a row, never the end of the run).
Columns: model, task, context, status, parameters kept, MACs kept, seconds; then the same with fasterai 0.4.1
when it is installed.
"""
from __future__ import annotations
import argparse, json, os, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor

HEADS = {'segmentation': ('classifier', 'aux_classifier'),
         'detection': ('rpn', 'roi_heads', 'head', 'anchor_generator')}

def models() -> list:
    "(task, name) for every torchvision classification, segmentation and detection model"
    import torchvision.models as tvm
    return ([('classification', n) for n in tvm.list_models(module=tvm)] +
            [('segmentation', n) for n in tvm.list_models(module=tvm.segmentation)] +
            [('detection', n) for n in tvm.list_models(module=tvm.detection)])

def build(task:str, name:str, size:int):
    "Model (weights=None, eval), example inputs, ignored task heads, and a function giving the output's shapes"
    import torch, torchvision.models as tvm
    kw = dict(weights=None, weights_backbone=None) if task != 'classification' else dict(weights=None)
    if task == 'detection' and not name.startswith('ssd'): kw.update(min_size=size, max_size=size)
    m = tvm.get_model(name, **kw).eval()
    s = 299 if name == 'inception_v3' else (224 if name.startswith(('vit', 'maxvit', 'swin')) else size)
    if task == 'detection':
        x = ([torch.rand(3, s, s)],)
        shapes = lambda out: [sorted(o.keys()) for o in out]
    else:
        x = torch.randn(1, 3, s, s)
        shapes = lambda out: {k: tuple(v.shape) for k, v in out.items()} if isinstance(out, dict) else tuple(out.shape)
    ignored = [getattr(m, h) for h in HEADS.get(task, ()) if isinstance(getattr(m, h, None), torch.nn.Module)]
    # the FPN feeds the region proposal head through detached proposals, a link autograd does not show: keep its outputs
    if isinstance(getattr(getattr(m, 'backbone', None), 'fpn', None), torch.nn.Module): ignored.append(m.backbone.fpn)
    return m, x, ignored, shapes

def run_one(task:str, name:str, context:str, size:int, lib:str='fasterai_prune') -> dict:
    "Prune one model in this process; return the measured row"
    import torch, warnings
    warnings.filterwarnings('ignore')
    torch.set_num_threads(int(os.environ.get('ZOO_THREADS', '1')))
    from fasterai_prune.core.measure import count_params, count_macs
    torch.manual_seed(0)
    t0 = time.time()
    m, x, ignored, shapes = build(task, name, size)
    fwd = (lambda: m(*x)) if isinstance(x, tuple) else (lambda: m(x))
    with torch.no_grad(): before = shapes(fwd())
    p0 = count_params(m)
    macs0 = count_macs(m, x)[0] if task != 'detection' else None
    if lib == 'fasterai_prune':
        from fasterai_prune.prune.pruner import Pruner
        Pruner(m, 50, context, example_inputs=x, ignored_layers=ignored, verbose=False).prune_model()
    else:
        from fasterai.prune.pruner import Pruner as OldPruner
        OldPruner(m, 50, context, example_inputs=x, ignored_layers=ignored).prune_model()
    m.eval()
    with torch.no_grad(): after = shapes(fwd())
    p1 = count_params(m)
    macs1 = count_macs(m, x)[0] if task != 'detection' else None
    ok = after == before and p1 < p0
    return dict(status='ok' if ok else f'BAD: shapes {before} -> {after}, params {p0} -> {p1}', params=p1 / p0,
                macs=None if macs0 is None else macs1 / macs0, seconds=time.time() - t0)

def run_child(script, args:list, timeout, env=None) -> dict:
    "`script --child <args as JSON>` in a subprocess with a time limit: the last JSON line it prints, or a FAIL/TIMEOUT row"
    t0 = time.time()
    cmd = [sys.executable, str(script), '--child', json.dumps(args)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        line = next((l for l in reversed(r.stdout.splitlines()) if l.startswith('{')), None)
        if line: return json.loads(line)
        err = (r.stderr.strip().splitlines() or ['no output'])[-1]
        return dict(status=f'FAIL: {err[:160]}', params=None, macs=None, seconds=time.time() - t0)
    except subprocess.TimeoutExpired:
        return dict(status=f'TIMEOUT after {timeout}s', params=None, macs=None, seconds=time.time() - t0)

def run_isolated(task, name, context, size, timeout, lib) -> dict:
    "`run_one` in a subprocess, with a time limit"
    return run_child(__file__, [task, name, context, size, lib], timeout)

def has_fasterai() -> bool:
    try: import fasterai.prune.pruner  # noqa: F401
    except Exception as e:
        print(f"fasterai 0.4.1: not installed ({type(e).__name__}: {e})", file=sys.stderr); return False
    return True

def fmt(r) -> str:
    if r is None: return '| | | | '
    f = lambda v: '' if v is None else f'{100 * v:.1f}%'
    status = 'ok' if r['status'] == 'ok' else r['status'].replace('|', '/')
    return f"| {status} | {f(r['params'])} | {f(r['macs'])} | {r['seconds']:.1f} "

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--child'); ap.add_argument('--jobs', type=int, default=1); ap.add_argument('--timeout', type=int, default=1200)
    ap.add_argument('--only', default=''); ap.add_argument('--out', default=''); ap.add_argument('--size', type=int, default=224)
    ap.add_argument('--contexts', default='local,global')
    ap.add_argument('--jsonl', default='', help='append each result to this file as it comes')
    ap.add_argument('--load', default='', help='comma-separated jsonl files of earlier runs: only write the table')
    a = ap.parse_args()
    if a.child:
        try: print(json.dumps(run_one(*json.loads(a.child))))
        except Exception as e: print(json.dumps(dict(status=f'FAIL: {type(e).__name__}: {str(e)[:200]}', params=None, macs=None, seconds=0.)))
        return
    todo = [(t, n) for t, n in models() if not a.only or n in a.only.split(',')]
    libs = ['fasterai_prune'] + (['fasterai'] if has_fasterai() else [])
    heavy = ('regnet_y_128gf', 'vit_h_14', 'vit_l_16', 'vit_l_32', 'regnet_y_32gf', 'regnet_x_32gf', 'efficientnet_b7', 'vgg', 'convnext_large',
             'efficientnet_v2_l', 'resnext101_64x4d', 'resnext101_32x8d', 'wide_resnet101_2', 'regnet_y_16gf', 'maxvit', 'swin', 'densenet', 'efficientnet_b6')
    rank = lambda n: next((i for i, h in enumerate(heavy) if n.startswith(h)), len(heavy))
    jobs = sorted([(t, n, c, lib) for t, n in todo for c in a.contexts.split(',') for lib in libs], key=lambda j: rank(j[1]))
    results = {}
    if a.load:
        for fn in a.load.split(','):
            for l in open(fn):
                d = json.loads(l); results[tuple(d.pop('job'))] = d
        libs = sorted({j[3] for j in results}, key=lambda l: l != 'fasterai_prune'); jobs = []
    def work(j):
        t, n, c, lib = j
        r = run_isolated(t, n, c, a.size, a.timeout, lib)
        results[j] = r
        if a.jsonl:
            with open(a.jsonl, 'a') as f: f.write(json.dumps(dict(r, job=list(j))) + '\n')
        print(f"{n:36s} {c:6s} {lib:14s} {r['status'][:60]:60s} params {r['params'] or 0:.3f} macs {r['macs'] or 0:.3f} {r['seconds']:.1f}s", file=sys.stderr, flush=True)
    t0 = time.time()
    with ThreadPoolExecutor(a.jobs) as ex: list(ex.map(work, jobs))
    head = "| model | task | context | status | params kept | MACs kept | seconds |"
    sep = "|---|---|---|---|---:|---:|---:|"
    if 'fasterai' in libs:
        head += " fasterai 0.4.1 status | params kept | MACs kept | seconds |"; sep += "---|---:|---:|---:|"
    lines = [head, sep]
    for t, n in todo:
        for c in a.contexts.split(','):
            row = f"| {n} | {t} | {c} " + fmt(results.get((t, n, c, 'fasterai_prune')))
            if 'fasterai' in libs: row += fmt(results.get((t, n, c, 'fasterai')))
            lines.append(row + '|')
    ok = {c: sum(results.get((t, n, c, 'fasterai_prune'), {}).get('status') == 'ok' for t, n in todo) for c in a.contexts.split(',')}
    summary = ', '.join(f"{c}: {k}/{len(todo)} ok" for c, k in ok.items()) + f" (wall {time.time() - t0:.0f}s, {a.jobs} jobs)"
    table = '\n'.join(lines)
    print(table); print('\n' + summary)
    if a.out:
        with open(a.out, 'w') as f: f.write(table + '\n\n' + summary + '\n')

if __name__ == '__main__': main()
