"""Run notebooks and save their outputs in place, so that the site shows them (it never executes anything).

    python tools/save_outputs.py nbs/tutorials/pruner.ipynb nbs/tutorials/sparsifier.ipynb
    python tools/save_outputs.py --slow nbs/tutorials/*.ipynb

Each notebook is executed with nbclient (kernel `python3`, in the notebook's folder, this checkout first on
PYTHONPATH), the outputs are written back into the notebook, which otherwise stays as it was (sources, metadata,
cell ids), and `nbdev-clean` then strips execution counts, output metadata and memory addresses.

Cells run as `nbdev-test` runs them: `#| eval: false` cells never, `#| slow` cells only with `--slow`; a cell that
does not run has no output saved.

Outputs that depend on timing are not saved. The rule:
  1. a code cell with a line `# timing` (or the directive `#| timing`), or one that uses `%time`, `%%time`,
     `%timeit`, `%%timeit` or `%prun`, keeps no output at all: mark every cell that prints seconds;
  2. fastai's `fit` output loses its `time` column: in an HTML table with a `time` column that column is removed
     and fastprogress's bars are dropped; in printed text, the trailing `'00:25'` of the Recorder's lists and the
     trailing `00:25` of the rows of a console table whose header ends with `time` are removed. Epochs, losses and
     metrics stay.
Warnings are not saved: FutureWarning and DeprecationWarning are silenced in the kernel (as `.ci/test` does), and
the `file:line: SomeWarning: ...` blocks of stderr are dropped. An HTML output left blank (a finished progress bar)
is dropped too.
Run it on the notebooks you own; it stops at the first cell that raises (no output is written for that notebook).
"""
from __future__ import annotations
import argparse, copy, json, os, re, subprocess, sys, time, traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_TIMING = re.compile(r'^\s*(#\s*timing\b|#\|\s*timing\b|%%?(time|timeit|prun)\b)', re.M)
_PROGRESS = re.compile(r'<progress[^>]*>.*?</progress>|<progress[^>]*/?>', re.S)
_ROW = re.compile(r'<tr[^>]*>.*?</tr>', re.S)
_CELL = re.compile(r'<t[hd][^>]*>.*?</t[hd]>', re.S)


def directives(source:str) -> dict[str, str]:
    "nbdev's leading `#| name: value` directives of a cell"
    found = {}
    for line in source.splitlines():
        if not line.startswith('#|'): break
        name, _, value = line[2:].strip().partition(':')
        for word in (name.split() if not value else [name.strip()]): found[word] = value.strip()
    return found


def runs(source:str, slow:bool) -> bool:
    "Whether nbdev-test would run this code cell"
    d = directives(source)
    return d.get('eval', '').lower() not in ('false', '0', 'no') and (slow or 'slow' not in d)


def is_timing(source:str) -> bool:
    "Rule 1: the cell's output depends on timing"
    return bool(_TIMING.search(source))


def drop_time_column(html:str) -> str:
    "Rule 2: remove fastprogress bars and the `time` column of every table in `html`"
    html = _PROGRESS.sub('', html)
    def table(t:str) -> str:
        rows = _ROW.findall(t)
        if not rows: return t
        header = [re.sub(r'<[^>]+>', '', c).strip() for c in _CELL.findall(rows[0])]
        if 'time' not in header: return t
        col = header.index('time')
        for row in rows:
            cells = _CELL.findall(row)
            if col < len(cells): t = t.replace(row, row.replace(cells[col], '', 1), 1)
        return t
    return re.sub(r'<table.*?</table>', lambda m: table(m.group(0)), html, flags=re.S)


_LOG_TIME = re.compile(r"^(\[\d+, .*?), '\d\d:\d\d'\]$", re.M)  # fastai Recorder printing: [epoch, losses..., 'mm:ss']


def drop_time_text(text:str) -> str:
    "Rule 2 for printed text: the time of fastai's logged lists and of console tables whose header ends with `time`"
    text = _LOG_TIME.sub(r'\1]', text)
    lines, in_table = text.split('\n'), False
    for i, line in enumerate(lines):
        if re.search(r'\btime\s*$', line) and line.split()[:1] == ['epoch']: lines[i], in_table = re.sub(r'\s*time\s*$', '', line), True
        elif in_table and re.search(r'\s\d\d:\d\d\s*$', line): lines[i] = re.sub(r'\s+\d\d:\d\d\s*$', '', line)
        else: in_table = False
    return '\n'.join(lines)


_WARNING = re.compile(r'^\S.*:\d+: \w*Warning: (?:.*\n)*?[ \t]+\S.*\n?', re.M)  # a warning (its message may span lines) up to its indented source line


def drop_warnings(text:str) -> str:
    "stderr without the warnings Python printed on it"
    return _WARNING.sub('', text)


def _blank(o:dict) -> bool:
    "A display whose HTML is empty (e.g. a finished progress bar), or a stream with no text left"
    if o.get('output_type') == 'stream': return not o['text'].strip()
    html = o.get('data', {}).get('text/html')
    return html is not None and not re.sub(r'<(/?)div[^>]*>', '', html).strip()


def clean_outputs(outputs:list[dict]) -> list[dict]:
    "Outputs with rule 2 applied to their HTML and printed text, warnings and blank displays left out"
    for o in outputs:
        if o.get('output_type') == 'stream':
            text = ''.join(o['text']) if isinstance(o['text'], list) else o['text']
            o['text'] = drop_time_text(drop_warnings(text) if o.get('name') == 'stderr' else text)
        data = o.get('data', {})
        for kind, value in data.items():  # fastprogress repeats its table as text/markdown and text/plain
            if not kind.startswith('text/'): continue
            text = ''.join(value) if isinstance(value, list) else value
            data[kind] = drop_time_text(drop_time_column(text) if '<table' in text or '<progress' in text else text)
    return [o for o in outputs if not _blank(o)]


def execute(nb:dict, folder:Path, slow:bool, timeout:int) -> list[list[dict]]:
    "Run the cells nbdev-test would run; return each cell's outputs (empty for the others)"
    import nbformat
    from nbclient import NotebookClient
    run = copy.deepcopy(nb)
    for cell in run['cells']:
        cell['source'] = ''.join(cell['source'])  # nbclient wants strings, the saved JSON has lists of lines
        if cell['cell_type'] == 'code' and not runs(cell['source'], slow): cell['source'] = ''
        if cell['cell_type'] == 'code': cell['outputs'] = []
    run.setdefault('metadata', {})['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    node = nbformat.from_dict(run)
    env = {**os.environ, 'PYTHONWARNINGS': 'ignore::FutureWarning,ignore::DeprecationWarning', 'PYTHONPATH': os.pathsep.join([str(ROOT), os.environ.get('PYTHONPATH', '')]).rstrip(os.pathsep)}
    NotebookClient(node, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(folder)}},
                   record_timing=False, env=env).execute(env=env)
    return [c.get('outputs', []) for c in node.cells]


def save_outputs(path:Path, slow:bool=False, timeout:int=900) -> dict:
    "Execute the notebook at `path`, save its outputs in it (timing rules applied), nbdev-clean it; return counts"
    nb = json.loads(path.read_text(encoding='utf-8'))
    outputs = execute(nb, path.parent, slow, timeout)
    kept = dropped = 0
    for cell, outs in zip(nb['cells'], outputs):
        if cell['cell_type'] != 'code': continue
        src = ''.join(cell['source'])
        if is_timing(src) or not runs(src, slow): dropped += bool(outs); cell['outputs'] = []
        else: cell['outputs'] = json.loads(json.dumps(clean_outputs(outs))); kept += bool(cell['outputs'])
        cell['execution_count'] = None
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + '\n', encoding='utf-8')
    subprocess.run(['nbdev-clean', '--fname', str(path)], check=True, cwd=ROOT)
    return {'cells with output': kept, 'outputs dropped': dropped}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('notebooks', nargs='+', type=Path)
    ap.add_argument('--slow', action='store_true', help='run the `#| slow` cells too')
    ap.add_argument('--timeout', type=int, default=900, help='seconds one cell may take')
    args = ap.parse_args(argv)
    failed = []
    for path in args.notebooks:
        start = time.time()
        try: counts = save_outputs(path.resolve(), args.slow, args.timeout)
        except Exception as e:
            failed.append(path); print(f'{path}: FAILED, nothing written:\n{traceback.format_exc()[-3000:]}'); continue
        print(f"{path}: {', '.join(f'{k} {v}' for k, v in counts.items())} ({time.time() - start:.0f}s)")
    return 1 if failed else 0


if __name__ == '__main__': sys.exit(main())
