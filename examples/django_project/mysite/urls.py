"""URL routes of the example project."""

from django.urls import path

from mysite import views

urlpatterns = [
    path("", views.index),
    path("info/", views.info),
]
