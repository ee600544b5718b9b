"""MkDocs hooks (named in mkdocs.yml) that make the site from the repository at build time, writing nothing tracked.

- the home page is README.md, its links to repository files pointed at their pages on the site;
- Tutorials: every notebook in nbs/tutorials/; Source notebooks: every numbered notebook in nbs/;
  both rendered by mkdocs-jupyter from a copy in `_build/site_src/` (git-ignored) with nbdev's `#| hide` cells dropped
  and its `#|` directive lines stripped; saved outputs are shown, nothing is executed;
- API: one page per module of the package with an `__all__`, grouped by layer, each name rendered by mkdocstrings;
- the pages in docs/ (benchmarks, zoo, ...).
The sidebar is built here too, so a new module, tutorial or docs page needs no edit anywhere.
"""
from __future__ import annotations
import json, os, posixpath, re, shutil
from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File
from mkdocs.structure.toc import get_toc

from site_pages import (ROOT, TOP_LEVEL, doc_pages, for_site, module_notebooks, notebook_title, public_modules,
                        repo_to_site, tutorials)

BUILD = ROOT/'_build'/'site_src'
EXTRA_CSS = 'assets/fasterai_prune.css'
# printed reports keep their columns: scroll sideways rather than wrap
_CSS = ('.jupyter-wrapper .jp-RenderedText pre { white-space: pre !important; overflow-x: auto !important;'
        ' word-break: normal !important; overflow-wrap: normal !important; }\n')
_HEADING = re.compile(r'<h([1-6]) id="([^"]+)"([^>]*)>(.*?)</h\1>', re.S)
_LINK = re.compile(r'(?<!!)\[([^\]]*)\]\(([^)\s]+)\)')


def _md_title(path:Path) -> str:
    m = re.search(r'^#\s+(.+)$', path.read_text(encoding='utf-8'), re.M)
    return m.group(1).strip() if m else path.stem


def _copy_notebook(src:Path, dest:Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(for_site(json.loads(src.read_text(encoding='utf-8'))), indent=1), encoding='utf-8')
    return dest


def _api_page(mod) -> str:
    nb = f"Exported by nbdev from [`{mod.notebook.stem}`](../notebooks/{mod.notebook.name}).\n\n" if mod.notebook else ''
    members = ''.join(f'        - {n}\n' for n in mod.names)
    return (f'# {mod.name}\n\n{nb}::: {mod.name}\n    options:\n      show_root_heading: false\n'
            f'      show_root_toc_entry: false\n      members:\n{members}')


def _nav():
    mods, layers = public_modules(), {}
    for m in mods: layers.setdefault(m.layer, []).append({m.short: m.page})
    nav = [{'Home': 'index.md'},
           {'Tutorials': [{notebook_title(p): f'tutorials/{p.name}'} for p in tutorials()]},
           {'API': [{(l if l != TOP_LEVEL else 'other modules'): pages} for l, pages in layers.items()]},
           {'Source notebooks': [{p.stem: f'notebooks/{p.name}'} for p in module_notebooks()]}]
    docs = [{_md_title(p): p.name} for p in doc_pages()]
    if docs: nav.append({'Benchmarks': docs})
    return nav


def on_config(config, **kwargs):
    "Build the sidebar from what the repository holds now"
    config.nav = _nav()
    if EXTRA_CSS not in config.extra_css: config.extra_css.append(EXTRA_CSS)
    return config


@event_priority(100)  # before mkdocs-jupyter's on_files, so that it takes the notebooks added here
def on_files(files, config, **kwargs):
    "Add the generated pages: home, tutorials, source notebooks, API"
    shutil.rmtree(BUILD, ignore_errors=True)
    files.append(File.generated(config, EXTRA_CSS, content=_CSS))
    files.append(File.generated(config, 'index.md', content=(ROOT/'README.md').read_text(encoding='utf-8')))
    for folder, nbs in (('tutorials', tutorials()), ('notebooks', module_notebooks())):
        for p in nbs:  # a real file under BUILD: mkdocs-jupyter reads notebooks from src_dir, not from generated content
            _copy_notebook(p, BUILD/folder/p.name)
            files.append(File(f'{folder}/{p.name}', src_dir=str(BUILD), dest_dir=config.site_dir,
                              use_directory_urls=config.use_directory_urls))
    for m in public_modules():
        files.append(File.generated(config, m.page, content=_api_page(m)))
    return files


def _repo_path(src_uri:str) -> str|None:
    "The repository file a hand-written page comes from"
    if src_uri == 'index.md': return 'README.md'
    if '/' not in src_uri and src_uri.endswith('.md'): return f'docs/{src_uri}'
    return None


def on_page_markdown(markdown, page, config, files, **kwargs):
    "In README and docs/ pages, point links to repository files at their site pages; unlink what the site lacks"
    repo = _repo_path(page.file.src_uri)
    if repo is None: return markdown
    def fix(m):
        text, target = m.groups()
        if re.match(r'^([a-z]+:|#|/)', target): return m.group(0)
        path, _, frag = target.partition('#')
        site = repo_to_site(posixpath.normpath(posixpath.join(posixpath.dirname(repo), path)))
        if site is None or files.get_file_from_path(site) is None: return text
        rel = posixpath.relpath(site, posixpath.dirname(page.file.src_uri) or '.')
        return f"[{text}]({rel}{'#' + frag if frag else ''})"
    return _LINK.sub(fix, markdown)


def on_page_content(html, page, config, files, **kwargs):
    "Notebook pages: unique heading ids, and a table of contents made from them (mkdocs-jupyter's slugs can differ)"
    if not page.file.src_uri.endswith('.ipynb'): return html
    seen, tokens = {}, []
    def unique(m):
        level, hid, attrs, inner = m.groups()
        n = seen.get(hid, 0); seen[hid] = n + 1
        new = hid if n == 0 else f'{hid}_{n}'
        inner = inner.replace(f'href="#{hid}"', f'href="#{new}"')
        name = re.sub(r'<[^>]+>', '', inner.replace('\u00b6', '')).strip()
        tokens.append({'level': int(level), 'id': new, 'name': name, 'children': []})
        return f'<h{level} id="{new}"{attrs}>{inner}</h{level}>'
    html = _HEADING.sub(unique, html)
    roots, stack = [], []
    for t in tokens:
        while stack and stack[-1]['level'] >= t['level']: stack.pop()
        (stack[-1]['children'] if stack else roots).append(t)
        stack.append(t)
    page.toc = get_toc(roots)
    return html
