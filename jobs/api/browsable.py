"""The DRF browsable API made for people: plain descriptions, example bodies, action pages that open on a button."""

from __future__ import annotations

import json
import re

from django.utils.html import escape
from django.utils.safestring import mark_safe
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.utils import formatting

_CODE = re.compile(r"`([^`]+)`")


def view_description(view, html: bool = False) -> str:
    """The view's docstring as text; in HTML, `code` becomes <code>code</code> (escaped) instead of raw backticks."""
    text = formatting.dedent(view.__class__.__doc__ or "").strip()
    if not html:
        return _CODE.sub(r"\1", text)
    paragraphs = [p.replace("\n", " ") for p in text.split("\n\n") if p.strip()]
    body = "".join("<p>" + _CODE.sub(r"<code>\1</code>", escape(p)) + "</p>" for p in paragraphs)
    return mark_safe(body)  # noqa: S308 - every piece of text above was escaped


class RenderFarmBrowsableRenderer(BrowsableAPIRenderer):
    """Shows a view's `example_body` in the POST form, and a single button for body-less actions.

    A view marks a POST that takes no body (cancel, retry) with `action_label`; the template
    (templates/rest_framework/render_farm_api.html) then shows that button instead of an empty raw-content form.
    """

    template = "rest_framework/render_farm_api.html"

    def get_raw_data_form(self, data, view, method, request):
        if getattr(view, "action_label", None):
            return None
        form = super().get_raw_data_form(data, view, method, request)
        example = getattr(view, "example_body", None)
        if form is not None and example is not None and method == "POST":
            form.fields["_content"].initial = json.dumps(example, indent=2)
        return form

    def get_context(self, data, accepted_media_type, renderer_context):
        context = super().get_context(data, accepted_media_type, renderer_context)
        view = renderer_context["view"]
        context["action_label"] = getattr(view, "action_label", None)
        # DRF inlines Pygments' stylesheet (a <style> element) when Pygments is installed, for Markdown
        # descriptions; ours are not Markdown (view_description), and the CSP allows no inline style.
        context["code_style"] = None
        return context
