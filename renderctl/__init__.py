"""renderctl: the render farm's command line for users; it speaks only HTTP to the REST API."""
