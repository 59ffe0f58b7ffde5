from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from chat.views import chat_page, new_conversation
from chat.widget import widget_demo, widget_frame, widget_loader
from ops.metrics_views import prometheus_metrics
from ops.views import health
from supportbot.api import api

urlpatterns = [
    path("", chat_page, name="chat-page"),
    path("conversation/new", new_conversation, name="new-conversation"),
    path("widget.js", widget_loader, name="widget-loader"),
    path("widget/", widget_frame, name="widget-frame"),
    path("widget-demo/", widget_demo, name="widget-demo"),
    path("health", health, name="health"),
    path("metrics", prometheus_metrics, name="prometheus-metrics"),
    path("api/", api.urls),
    # The ops pages (rate limits, the index with review-queue counts) before the admin's own.
    path("admin/", include("ops.urls")),
    path("admin/", admin.site.urls),
]
