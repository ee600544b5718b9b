"The built site (`bash .ci/docs`) shows every public name: each name of each module's `__all__` has its anchor on its API page."
import os, sys
from pathlib import Path
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent/'tools'))
from site_pages import ROOT, public_modules

SITE = ROOT/'_site'

def _site_is_current() -> bool:
    "A built site no older than the package (a stale one would report modules added since as missing)"
    pkg = max(p.stat().st_mtime for p in (ROOT/'fasterai_prune').rglob('*.py'))
    return (SITE/'index.html').exists() and (SITE/'index.html').stat().st_mtime >= pkg

pytestmark = [pytest.mark.docs, pytest.mark.skipif(os.environ.get('DOCS_SITE') != 'required' and not _site_is_current(),
                                                   reason='no current _site/: `bash .ci/docs` builds it and runs this test')]

def _page(m) -> str: return (SITE/m.page.removesuffix('.md')/'index.html').read_text(encoding='utf-8') if (SITE/m.page.removesuffix('.md')/'index.html').exists() else ''

def test_every_public_name_is_on_the_site():
    assert not (missing := [f'{m.name}.{n}' for m in public_modules() for n in m.names if f'id="{m.name}.{n}"' not in _page(m)]), f'not on the site: {missing}'
