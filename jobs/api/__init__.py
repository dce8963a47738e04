"""The REST API: serializers, views, urls, authentication, throttling and the error handler."""
