"The documentation site: every public name is on the built site (`bash .ci/docs`), and the rules the site tools apply."
import os, sys
from pathlib import Path
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent/'tools'))
from site_pages import ROOT, for_site, public_modules, read_all, repo_to_site
from save_outputs import clean_outputs, drop_time_column, drop_time_text, drop_warnings, is_timing, runs

SITE = ROOT/'_site'

def _site_is_current() -> bool:
    "A built site no older than the package (a stale one would report modules added since as missing)"
    pkg = max(p.stat().st_mtime for p in (ROOT/'fasterai_prune').rglob('*.py'))
    return (SITE/'index.html').exists() and (SITE/'index.html').stat().st_mtime >= pkg

def _page(m) -> str:
    html = SITE/m.page.removesuffix('.md')/'index.html'
    return html.read_text(encoding='utf-8') if html.exists() else ''

@pytest.mark.docs
@pytest.mark.skipif(os.environ.get('DOCS_SITE') != 'required' and not _site_is_current(),
                    reason='no current _site/: `bash .ci/docs` builds it and runs this test')
def test_every_public_name_is_on_the_site():
    assert not (missing := [f'{m.name}.{n}' for m in public_modules() for n in m.names if f'id="{m.name}.{n}"' not in _page(m)]), f'not on the site: {missing}'


def test_every_module_with_an_all_gets_a_page(tmp_path):
    (tmp_path/'fasterai_prune'/'core').mkdir(parents=True)
    (tmp_path/'fasterai_prune'/'core'/'ratio.py').write_text("__all__ = ['a', 'b']\n")
    (tmp_path/'fasterai_prune'/'core'/'_private.py').write_text("__all__ = ['c']\n")
    (tmp_path/'fasterai_prune'/'all.py').write_text("from .core.ratio import *\n__all__ = ratio.__all__\n")
    (tmp_path/'fasterai_prune'/'data.py').write_text("__all__ = ['d']\n__all__ += ['e']\n")
    mods = public_modules(tmp_path)
    assert [(m.name, m.layer, m.names, m.page) for m in mods] == [
        ('fasterai_prune.core.ratio', 'core', ['a', 'b'], 'api/core.ratio.md'),
        ('fasterai_prune.data', 'other', ['d', 'e'], 'api/data.md')]
    assert read_all(tmp_path/'fasterai_prune'/'all.py') is None

def test_repository_paths_map_to_site_pages():
    assert [repo_to_site(p) for p in ['docs/zoo.md', 'nbs/tutorials/pruner.ipynb', 'nbs/32_prune.pruner.ipynb',
                                      'fasterai_prune/core/ratio.py', 'README.md', 'bench/zoo.py']] == [
        'zoo.md', 'tutorials/pruner.ipynb', 'notebooks/32_prune.pruner.ipynb', 'api/core.ratio.md', 'index.md', None]

def test_site_notebooks_drop_hidden_cells_and_directives():
    nb = {'metadata': {}, 'cells': [{'cell_type': 'code', 'source': ['#| hide\n', 'import x'], 'outputs': []},
                                    {'cell_type': 'code', 'source': ['#| export\n', 'def f(): pass'], 'outputs': []},
                                    {'cell_type': 'markdown', 'source': ['# Title']}]}
    assert [c['source'] for c in for_site(nb)['cells']] == ['def f(): pass', ['# Title']]

def test_timing_rule():
    assert [is_timing(s) for s in ['# timing\nprint(t)', '#| timing\nx', '%time f()', '%%timeit\nf()', 'print(1)',
                                   '# timings are elsewhere', '# timing: prints seconds\nprint(t)']] == [True, True, True, True, False, False, True]
    warned = 'a/learner.py:455: UserWarning: uses pickle\nOnly load files you trust.\n  warn("uses pickle")\nkept\n'   # a message on two lines
    assert drop_warnings(warned) == 'kept\n'
    assert [runs(s, slow=False) for s in ['#| slow\nx', '#| eval: false\nx', '#| export\nx']] == [False, False, True]
    assert runs('#| slow\nx', slow=True)
    assert drop_time_text("[0, 0.77, 0.19, '00:25']\n") == '[0, 0.77, 0.19]\n'
    assert drop_time_text('epoch  train_loss  time\n0      0.77        00:25\ndone') == 'epoch  train_loss\n0      0.77\ndone'
    table = '<progress value="1"></progress><table><tr><th>epoch</th><th>time</th></tr><tr><td>0</td><td>00:25</td></tr></table>'
    assert drop_time_column(table) == '<table><tr><th>epoch</th></tr><tr><td>0</td></tr></table>'
    assert drop_time_column('<table><tr><th>layer</th></tr><tr><td>conv1</td></tr></table>').count('conv1') == 1

def test_warnings_and_blank_displays_are_not_saved():
    outs = [{'output_type': 'stream', 'name': 'stderr', 'text': '/x/a.py:3: UserWarning: careful\n  warn(x)\nreal error\n'},
            {'output_type': 'stream', 'name': 'stderr', 'text': '/x/auto.py:21: TqdmWarning: IProgress not found\n  from x\n'},
            {'output_type': 'display_data', 'data': {'text/html': '<div><progress value="3"></progress></div>', 'text/plain': 'HTML'}},
            {'output_type': 'stream', 'name': 'stdout', 'text': 'accuracy 0.98\n'}]
    assert [o.get('text') for o in clean_outputs(outs)] == ['real error\n', 'accuracy 0.98\n']
