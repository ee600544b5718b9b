"""What the documentation site is made of, found in the repository at build time.

Used by the MkDocs hooks (`tools/docs_hooks.py`), the browser check (`tools/check_docs.py`) and `tests/test_docs.py`.
Nothing here imports MkDocs or the package itself: modules are read with `ast`, notebooks as JSON, so a module or
notebook added by anyone shows up on the next build without editing any list.
"""
from __future__ import annotations
import ast, json, re
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = 'fasterai_prune'
LAYERS = ('core', 'tp', 'prune', 'sparse', 'recover', 'analyze', 'deploy')  # import order; others follow alphabetically
TOP_LEVEL = 'other'  # the sidebar section for modules directly under the package (data, demo, ...)
TUTORIAL_ORDER = ('pruner', 'prune_callback', 'sparsifier', 'sparsify_callback')  # shown first; the rest alphabetically


class ModuleDoc(NamedTuple):
    "One public module of the package, as its API page shows it"
    name: str             # dotted name, e.g. 'fasterai_prune.core.ratio'
    layer: str            # 'core', 'prune', ... or TOP_LEVEL
    path: Path            # the .py file
    notebook: Path|None   # the notebook nbdev exported it from, if the header names one
    names: list[str]      # the module's `__all__`

    @property
    def short(self) -> str: return self.name.removeprefix(PACKAGE + '.')
    @property
    def page(self) -> str: return f'api/{self.short}.md'


def read_all(path:Path) -> list[str]|None:
    "The module's `__all__` as a list of names, read without importing it; None if it has none"
    names = None
    for node in ast.parse(path.read_text(encoding='utf-8')).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        if any(isinstance(t, ast.Name) and t.id == '__all__' for t in targets) and node.value is not None:
            try: value = list(ast.literal_eval(node.value))
            except ValueError: return None  # computed (a re-export module): its names are documented where they are defined
            names = (names or []) + value if isinstance(node, ast.AugAssign) else value
    return names


def source_notebook(path:Path, root:Path=ROOT) -> Path|None:
    "The notebook named in nbdev's 'File to edit:' header of an exported module"
    m = re.search(r'File to edit: (\S+?\.ipynb)', path.read_text(encoding='utf-8')[:2000])
    if not m: return None
    nb = (path.parent/m.group(1)).resolve()
    return nb if nb.exists() else None


def layer_key(layer:str):
    "Sort key: the known layers in import order, then the others alphabetically, then the top-level modules"
    return (0, LAYERS.index(layer), '') if layer in LAYERS else (2, 0, '') if layer == TOP_LEVEL else (1, 0, layer)


def public_modules(root:Path=ROOT) -> list[ModuleDoc]:
    "Every module of the package with a non-empty `__all__`, by layer, then by notebook number"
    pkg, mods = root/PACKAGE, []
    for py in pkg.rglob('*.py'):
        rel = py.relative_to(pkg).with_suffix('')
        parts = [p for p in rel.parts if p != '__init__']
        if not parts or any(p.startswith('_') for p in parts) or '__pycache__' in rel.parts: continue
        names = read_all(py)
        if not names: continue
        layer = parts[0] if len(parts) > 1 or rel.name == '__init__' else TOP_LEVEL
        mods.append(ModuleDoc('.'.join([PACKAGE, *parts]), layer, py, source_notebook(py, root), names))
    return sorted(mods, key=lambda m: (layer_key(m.layer), m.notebook.name if m.notebook else '~', m.name))


def notebook_title(path:Path) -> str:
    "The first H1 of the notebook's markdown cells, else its file name"
    for cell in json.loads(path.read_text(encoding='utf-8'))['cells']:
        if cell['cell_type'] != 'markdown': continue
        m = re.search(r'^#\s+(.+)$', ''.join(cell['source']), re.M)
        if m: return m.group(1).strip()
    return path.stem


def tutorials(root:Path=ROOT) -> list[Path]:
    "Every notebook in nbs/tutorials/, the main ones first"
    nbs = [p for p in (root/'nbs'/'tutorials').glob('*.ipynb') if not p.name.startswith(('_', '.'))]
    order = lambda p: (TUTORIAL_ORDER.index(p.stem) if p.stem in TUTORIAL_ORDER else len(TUTORIAL_ORDER), p.name)
    return sorted(nbs, key=order)


def module_notebooks(root:Path=ROOT) -> list[Path]:
    "The numbered notebooks in nbs/ (the source of the package), in file order"
    return sorted(p for p in (root/'nbs').glob('*.ipynb') if p.name[:1].isdigit())


def doc_pages(root:Path=ROOT) -> list[Path]:
    "The hand-written pages in docs/ (benchmarks, zoo, ...)"
    return sorted((root/'docs').glob('*.md'))


def is_hidden(cell:dict) -> bool:
    "A cell nbdev leaves out of its docs: `#| hide` (or `#|hide`) among its leading directives"
    for line in ''.join(cell['source']).splitlines():
        if not line.startswith('#|'): break
        if 'hide' in line[2:].split(): return True
    return False


def for_site(nb:dict) -> dict:
    "The notebook as the site shows it: `#| hide` cells dropped and nbdev's `#|` directive lines stripped; outputs kept"
    cells = []
    for cell in nb['cells']:
        if cell['cell_type'] == 'code':
            if is_hidden(cell): continue
            lines = ''.join(cell['source']).splitlines(keepends=True)
            while lines and lines[0].startswith('#|'): lines.pop(0)
            if not ''.join(lines).strip() and not cell.get('outputs'): continue
            cell = {**cell, 'source': ''.join(lines)}
        cells.append(cell)
    meta = {**nb.get('metadata', {})}
    meta.setdefault('kernelspec', {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'})
    return {**nb, 'cells': cells, 'metadata': meta}


def repo_to_site(repo_path:str) -> str|None:
    "Where a repository file lives on the site (a docs-dir path), or None if the site has no page for it"
    p = Path(repo_path)
    if p.parts[:1] == ('docs',): return p.relative_to('docs').as_posix()
    if p.parts[:2] == ('nbs', 'tutorials') and p.suffix == '.ipynb': return f'tutorials/{p.name}'
    if p.parts[:1] == ('nbs',) and len(p.parts) == 2 and p.suffix == '.ipynb' and p.name[:1].isdigit(): return f'notebooks/{p.name}'
    if p.as_posix() == 'README.md': return 'index.md'
    if p.parts[:1] == (PACKAGE,) and p.suffix == '.py':
        parts = [x for x in p.with_suffix('').parts if x != '__init__']
        return f"api/{'.'.join(parts[1:])}.md"
    return None
