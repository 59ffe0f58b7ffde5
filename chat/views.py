from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def chat_page(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/index.html")
