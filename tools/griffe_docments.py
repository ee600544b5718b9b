"""A griffe extension that reads fastcore docments comments, so that the API pages explain every argument.

nbdev code documents arguments with a comment after each one (`ratio:float=30, # Percent of channels to remove`),
and NamedTuple/dataclass fields the same way. griffe only reads docstrings, so this turns those comments into a
Google-style `Args:` (and `Returns:`) section appended to the docstring, and a field's comment into its docstring.
"""
from __future__ import annotations
import ast, io, tokenize

import griffe


def _comments(lines:list[str], first:int, last:int) -> dict[int, str]:
    "Comment text by 1-based line number, for the lines first..last"
    src, found = ''.join(l if l.endswith('\n') else l + '\n' for l in lines[first-1:last]), {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.COMMENT: found[first + tok.start[0] - 1] = tok.string.lstrip('#').strip()
    except (tokenize.TokenError, IndentationError, SyntaxError): pass
    return found


def _param_end_lines(args:ast.arguments) -> list[tuple[str, int]]:
    "Each parameter with the line its declaration (default included) ends on"
    pos = [*args.posonlyargs, *args.args]
    defaults = [None]*(len(pos) - len(args.defaults)) + list(args.defaults)
    pairs = [*zip(pos, defaults), *zip(args.kwonlyargs, args.kw_defaults)]
    if args.vararg: pairs.append((args.vararg, None))
    if args.kwarg: pairs.append((args.kwarg, None))
    ends = [(a.arg, max(a.end_lineno, d.end_lineno if d is not None else 0)) for a, d in pairs]
    prefix = {args.vararg.arg if args.vararg else None: '*', args.kwarg.arg if args.kwarg else None: '**'}
    return [(prefix.get(n, '') + n, e) for n, e in ends]


def _lines(agent) -> list[str]|None:
    code = getattr(agent, 'code', None)
    return code.splitlines() if isinstance(code, str) else None


def _docstring(text:str, obj, agent) -> griffe.Docstring:
    "A docstring parsed the way the agent parses the package's own (the style set in mkdocs.yml)"
    return griffe.Docstring(text, parent=obj, parser=getattr(agent, 'docstring_parser', None),
                            parser_options=getattr(agent, 'docstring_options', None))


class DocmentsExtension(griffe.Extension):
    "Docments comments become the Args/Returns of a function's docstring and the docstring of a field"

    def on_class_members(self, *, node, cls, agent, **kwargs):
        "Leave out the state a method sets on `self` without documenting it: it is not API"
        for name in [n for n, m in cls.members.items() if not m.is_alias and m.extra.get('docments', {}).get('undocumented_state')]:
            cls.del_member(name)

    def on_function_instance(self, *, node, func, agent, **kwargs):
        lines = _lines(agent)
        if lines is None or not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.body: return
        comments = _comments(lines, node.lineno, node.body[0].lineno - 1)
        if not comments: return
        by_line = {}
        for name, end in _param_end_lines(node.args): by_line[end] = name  # the last parameter on a line owns its comment
        params = [(n, comments[l]) for l, n in sorted(by_line.items()) if l in comments and n.lstrip('*') not in ('self', 'cls')]
        ret = comments.get(node.returns.end_lineno) if node.returns is not None and node.returns.end_lineno not in by_line else None
        text = func.docstring.value if func.docstring else ''
        if not params and not ret or 'Args:' in text or 'Parameters:' in text: return
        sections = [text] if text else []
        if params: sections.append('Args:\n' + '\n'.join(f'    {n}: {c}' for n, c in params))
        if ret: sections.append(f'Returns:\n    {ret}')
        # a leading newline keeps the section's indentation when there was no docstring (griffe cleandoc()s the text)
        func.docstring = _docstring(('' if text else '\n') + '\n\n'.join(sections), func, agent)

    def on_attribute_instance(self, *, node, attr, agent, **kwargs):
        if getattr(agent, 'current', None) is not None and agent.current.is_function:  # `self.x = ...` in a method
            if attr.docstring is None: attr.extra['docments']['undocumented_state'] = True
            return
        lines = _lines(agent)
        if lines is None or attr.docstring is not None or not isinstance(node, (ast.AnnAssign, ast.Assign)): return
        if not attr.parent or not attr.parent.is_class: return
        comment = _comments(lines, node.end_lineno, node.end_lineno).get(node.end_lineno)
        if comment: attr.docstring = _docstring(comment, attr, agent)
