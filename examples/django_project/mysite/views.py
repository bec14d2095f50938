"""Views of the example project."""

import os

from django.http import HttpResponse, JsonResponse


def index(request):
    return HttpResponse("Hello from Django on greenhorn!\n", content_type="text/plain")


def info(request):
    """What Django sees of the request, as JSON."""
    return JsonResponse(
        {
            "method": request.method,
            "path": request.path,
            "host": request.get_host(),
            "secure": request.is_secure(),
            "query": request.GET.dict(),
            "server": request.META.get("SERVER_SOFTWARE"),
            "pid": os.getpid(),
        }
    )
