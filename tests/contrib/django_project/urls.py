from __future__ import annotations

from django.urls import path

from tests.contrib.django_project.notes import views

urlpatterns = [
    path("notes/", views.notes),
    path("notes/fail/", views.create_then_fail),
    path("backend/<str:alias>/", views.backend),
]
