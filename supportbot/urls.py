from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from chat.views import chat_page, new_conversation
from ops.views import health
from supportbot.api import api

urlpatterns = [
    path("", chat_page, name="chat-page"),
    path("conversation/new", new_conversation, name="new-conversation"),
    path("health", health, name="health"),
    path("api/", api.urls),
    # The ops pages (rate limits, the index with review-queue counts) before the admin's own.
    path("admin/", include("ops.urls")),
    path("admin/", admin.site.urls),
]
