"""Render Farm add-on: submit the open .blend to the render farm from Render Properties and follow its job.

`ui` is the Blender side (imported by register, so `client` and `submission`, which hold the HTTP client and the
submission's thread, import and are tested without Blender).
"""

bl_info = {
    "name": "Render Farm",
    "author": "Render farm project",
    "version": (1, 0, 0),
    "blender": (3, 4, 0),
    "location": "Properties > Render > Render Farm",
    "description": "Submit the open file (its resources packed into a copy) to the render farm and follow the job",
    "category": "Render",
}


def register() -> None:
    from . import ui

    ui.register()


def unregister() -> None:
    from . import ui

    ui.unregister()
