"""Views reading and writing the database, as an application's would."""

from __future__ import annotations

from django.db import connections, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse

from tests.contrib.django_project.notes.models import Note


def notes(request: HttpRequest) -> HttpResponse:
    """GET: every note; POST (text=...): add one."""
    if request.method == "POST":
        note = Note.objects.create(text=request.POST["text"])
        return JsonResponse({"id": note.id}, status=201)
    return JsonResponse({"notes": list(Note.objects.values_list("text", flat=True))})


def create_then_fail(request: HttpRequest) -> HttpResponse:
    """Add a note in a transaction that then fails: nothing is stored."""
    try:
        with transaction.atomic():
            Note.objects.create(text=request.POST["text"])
            raise ValueError("the rest of the work failed")
    except ValueError:
        return JsonResponse({"stored": False}, status=409)


def backend(request: HttpRequest, alias: str) -> HttpResponse:
    """The server process behind this request's connection."""
    with connections[alias].cursor() as cur:
        cur.execute("select pg_backend_pid()")
        (pid,) = cur.fetchone()
    return JsonResponse({"pid": pid})
