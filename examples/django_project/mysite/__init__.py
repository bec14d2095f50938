"""A minimal Django project served by greenhorn: no database, two views.

pip install django
greenhorn --chdir examples/django_project mysite.wsgi:application
"""
