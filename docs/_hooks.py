"""MkDocs hook: lists in docstrings render as lists.

lesde's docstrings start a list right below the line that introduces it ("**Arguments:**"
then "- `x`: ..."), with no blank line between; Markdown would read the items as part of
the paragraph. This adds a Markdown preprocessor, for the pages and for the docstrings
that mkdocstrings renders, which puts a blank line above the first item of such a list.
It runs after fenced code blocks are set aside, so code is never changed.
"""

import re

from markdown import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority

_ITEM = re.compile(r"^ {0,3}([-*+]|\d+\.) +\S")


class _ListAfterParagraph(Preprocessor):
    def run(self, lines):
        out, in_list, previous = [], False, ""
        for line in lines:
            if _ITEM.match(line):
                if not in_list and previous.strip():
                    out.append("")
                in_list = True
            elif not line.strip():
                in_list = False
            out.append(line)
            previous = line
        return out


class _ListsExtension(Extension):
    def extendMarkdown(self, md):
        # fenced code is set aside at priority 25 and raw HTML at 20: run after both
        md.preprocessors.register(_ListAfterParagraph(md), "lesde_lists", 15)


@event_priority(100)  # before mkdocstrings reads the Markdown extensions
def on_config(config):
    config.markdown_extensions.append(_ListsExtension())
    return config
