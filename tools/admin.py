"""Staff edit the knowledge base here; the database keeps the search index in step on save."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from tools.models import Article


class ArticleForm(forms.ModelForm):
    # Tags as "sso, saml" rather than a JSON list: staff type words, not JSON.
    tags = forms.CharField(
        required=False, help_text="Comma-separated keywords, e.g. sso, saml, okta."
    )

    class Meta:
        model = Article
        fields = ["id", "title", "category", "tags", "language", "url", "updated", "content"]
        widgets = {"content": forms.Textarea(attrs={"rows": 30, "cols": 100})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk and isinstance(self.instance.tags, list):
            self.initial["tags"] = ", ".join(self.instance.tags)

    def clean_tags(self) -> list[str]:
        words = (tag.strip().lower() for tag in self.cleaned_data["tags"].split(","))
        return list(dict.fromkeys(tag for tag in words if tag))


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    form = ArticleForm
    list_display = ["id", "title", "category", "language", "updated", "modified"]
    list_filter = ["category", "language", "updated"]
    search_fields = ["id", "title", "content"]
    fields = [*ArticleForm.Meta.fields, "created", "modified"]
    readonly_fields = ["created", "modified"]
    ordering = ["id"]
    date_hierarchy = "updated"

    def get_readonly_fields(self, request: HttpRequest, obj: Article | None = None) -> list[str]:
        # Renaming the primary key in a form would save a copy under the new id.
        if obj is not None:
            return ["id", *self.readonly_fields]
        return list(self.readonly_fields)
