"""Check the built documentation site in a real browser (headless Chromium driven by Playwright).

    python tools/check_docs.py              build the site (mkdocs build --strict), then check it
    python tools/check_docs.py --no-build   check the _site/ already built

The site is served from _site/ on 127.0.0.1 (a free port, http.server in a thread) and every page is opened. A page
fails if it logs a console error or an uncaught exception, or a request it makes fails; if an image on it has
naturalWidth 0; if a link to another page of the site does not answer 200, or names an anchor that page lacks. Each
API page must hold the anchor of every name in its module's `__all__`. Screenshots of the home page and of one
tutorial are written to docs/screenshots/. Exits 1 with the list of failures, 0 when there is none.
"""
from __future__ import annotations
import argparse, functools, http.server, re, subprocess, sys, threading, time, urllib.error, urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from site_pages import ROOT, public_modules

SITE, SHOTS = ROOT/'_site', ROOT/'docs'/'screenshots'
CHROMIUM = '/usr/bin/chromium'
SHOT_PAGES = {'home.png': '', 'tutorial_pruner.png': 'tutorials/pruner/'}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


def serve(site:Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    "Serve `site` on 127.0.0.1 at a free port, in a daemon thread"
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f'http://127.0.0.1:{server.server_address[1]}/'


def site_pages(site:Path) -> list[str]:
    "Every page of the built site, as a path relative to its root ('' for the home page)"
    return sorted(p.parent.relative_to(site).as_posix().removeprefix('.') + '/' if p.parent != site else ''
                  for p in site.rglob('index.html'))


@functools.lru_cache(maxsize=None)
def fetch(url:str) -> tuple[int, str]:
    "Status and text of a page of the local site"
    try:
        with urllib.request.urlopen(url, timeout=10) as r: return r.status, r.read().decode('utf-8', 'replace')
    except urllib.error.HTTPError as e: return e.code, ''


def page_ids(html:str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', html))


def check_page(page, base:str, rel:str, api_ids:dict[str, list[str]]) -> list[str]:
    "Open one page and return what is wrong with it"
    problems, url = [], base + rel
    errors = []
    page.on('console', lambda m: errors.append(f"console error: {m.text} ({m.location.get('url', '?')})") if m.type == 'error' else None)
    page.on('pageerror', lambda e: errors.append(f'uncaught exception: {e}'))
    page.on('requestfailed', lambda r: errors.append(f'request failed: {r.url} ({r.failure})'))
    resp = page.goto(url, wait_until='load')
    if resp is None or resp.status != 200: return [f'{url}: status {resp.status if resp else None}']
    page.wait_for_load_state('networkidle')
    problems += errors
    for src, width in page.evaluate("Array.from(document.images).map(i => [i.currentSrc || i.src, i.naturalWidth])"):
        if width == 0: problems.append(f'image does not render: {src[:100]}')
    ids_here = set(page.evaluate("Array.from(document.querySelectorAll('[id]')).map(e => e.id)"))
    for anchor in api_ids.get(rel, []):
        if anchor not in ids_here: problems.append(f'no anchor #{anchor} for a public name')
    for href in set(page.evaluate("Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")):
        target, frag = urldefrag(href)
        if urlparse(target).netloc != urlparse(base).netloc: continue
        status, html = fetch(target)
        if status != 200: problems.append(f'broken link: {href} ({status})')
        elif frag and target != url and frag not in page_ids(html): problems.append(f'missing anchor: {href}')
        elif frag and target == url and frag not in ids_here: problems.append(f'missing anchor: {href}')
    return [f'{url}: {p}' for p in problems]


def run_checks(site:Path=SITE, shots:Path=SHOTS) -> list[str]:
    "Check every page of `site` in headless Chromium; return the failures"
    from playwright.sync_api import sync_playwright
    pages = site_pages(site)
    api_ids = {f'api/{m.short}/': [f'{m.name}.{n}' for n in m.names] for m in public_modules()}
    failures = [f'API page missing: {p}' for p in api_ids if p not in pages]
    server, base = serve(site)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=['--no-sandbox'])
            ctx = browser.new_context(viewport={'width': 1280, 'height': 900})
            for rel in pages:
                page = ctx.new_page()
                failures += check_page(page, base, rel, api_ids)
                page.close()
            shots.mkdir(parents=True, exist_ok=True)
            for name, rel in SHOT_PAGES.items():
                page = ctx.new_page()
                page.goto(base + rel, wait_until='networkidle')
                page.screenshot(path=str(shots/name))
                page.close()
            browser.close()
    finally:
        server.shutdown()
    print(f'checked {len(pages)} pages, {sum(map(len, api_ids.values()))} public names; screenshots in {shots.relative_to(ROOT)}/')
    return failures


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--no-build', action='store_true', help='check the _site/ already built')
    args = ap.parse_args(argv)
    start = time.time()
    if not args.no_build:
        subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--strict', '--quiet'], cwd=ROOT, check=True)
    if not (SITE/'index.html').exists(): print('no _site/index.html: build the site first'); return 1
    failures = run_checks()
    print(f'browser check: {time.time() - start:.1f}s')
    if failures:
        print(f'{len(failures)} problems:'); print('\n'.join(f'  {f}' for f in failures))
        return 1
    print('no problems')
    return 0


if __name__ == '__main__': sys.exit(main())
